//! lupine-relink's ELF front end and analysis on arbitrary bytes: no panic, and the windows it
//! chooses hold their site with no branch target inside (see `lupine_relink::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lupine_relink::fuzz::elf(data);
});
