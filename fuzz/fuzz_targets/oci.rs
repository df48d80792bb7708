//! lupine-image's OCI image index, image manifest and image config readers (and the docker
//! save ones): an image layout built from the input (see `lupine_image::fuzz`), read with
//! `lupine_image::read_tree`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lupine_image::fuzz::oci(data);
});
