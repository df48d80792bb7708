//! cargo-fuzz target `ipconfig`: the body is `lupine_init::fuzz::ipconfig`, which
//! init/tests/fuzz_corpus.rs also runs over fuzz/corpus/ipconfig/ and fuzz/artifacts/ipconfig/ on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_init::fuzz::ipconfig(data));
