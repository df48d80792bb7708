//! cargo-fuzz target `config`: the body is `lupine_config::fuzz::config`, which
//! config/tests/fuzz_corpus.rs also runs over fuzz/corpus/config/ and fuzz/artifacts/config/ on
//! stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_config::fuzz::config(data));
