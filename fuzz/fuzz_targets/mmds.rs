//! cargo-fuzz target `mmds`: the body is `lupine_init::fuzz::mmds`, which
//! init/tests/fuzz_corpus.rs also runs over fuzz/corpus/mmds/ and fuzz/artifacts/mmds/ on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_init::fuzz::mmds(data));
