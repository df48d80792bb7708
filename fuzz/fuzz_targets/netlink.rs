//! cargo-fuzz target `netlink`: the body is `lupine_init::fuzz::netlink`, which
//! init/tests/fuzz_corpus.rs also runs over fuzz/corpus/netlink/ and fuzz/artifacts/netlink/ on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lupine_init::fuzz::netlink(data));
