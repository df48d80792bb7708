//! lupine-image's layer applier (tar, gzip, whiteouts, links): the input's layers applied by
//! the real applier, the tree written to a fresh directory, and every entry checked to be
//! inside the root (see `lupine_image::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lupine_image::fuzz::layer(data);
});
