//! lupine-relink, differential: an input it accepts gives an output whose analysis finds no
//! branch target inside a rewritten window and whose bytes outside the windows are the
//! input's (see `lupine_relink::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lupine_relink::fuzz::relink(data);
});
