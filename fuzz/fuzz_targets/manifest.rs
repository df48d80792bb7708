//! cargo-fuzz target `manifest`: the body is `lupine_init::fuzz::manifest`, which
//! init/tests/fuzz_corpus.rs also runs over fuzz/corpus/manifest/ and fuzz/artifacts/manifest/ on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_init::fuzz::manifest(data));
