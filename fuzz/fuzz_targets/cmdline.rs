//! cargo-fuzz target `cmdline`: the body is `lupine_init::fuzz::cmdline`, which
//! init/tests/fuzz_corpus.rs also runs over fuzz/corpus/cmdline/ and fuzz/artifacts/cmdline/ on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_init::fuzz::cmdline(data));
