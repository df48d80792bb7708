//! Replays the corpora and crash inputs of the fuzz targets `elf` and `relink`
//! (`fuzz/corpus/T/`, `fuzz/artifacts/T/`) through the same bodies the fuzz targets run
//! (`lupine_relink::fuzz`), on stable: no panic, and the properties hold (the analysis's
//! windows are sound; an accepted input's output changes nothing outside its windows, has no
//! branch target inside one, and is refused as already relinked). Every crash the fuzzer
//! found stays a regression test.
//!
//! The seeds (`seed-*`) are small programs and libraries built like the corpus's (regs.S,
//! hello.c and cancel.c with musl, a few lines of assembly as a static program, a static-PIE
//! and a shared object), the unit tests' synthetic programs, and bad_inputs.rs's damaged
//! headers.

use lupine_relink::fuzz;
use test_support::fuzz::replay;

#[test]
fn elf_corpus_replays() {
    let accepted = replay("elf", fuzz::elf);
    assert!(
        accepted.iter().any(|n| n == "seed-cancel-musl-s"),
        "{accepted:?}"
    );
}

#[test]
fn relink_corpus_replays() {
    let accepted = replay("relink", fuzz::relink);
    // The seeds are real programs: the differential checks ran on each of them.
    for seed in [
        "seed-tiny",
        "seed-tiny-pie",
        "seed-libtiny.so",
        "seed-regs-asm-stripped",
        "seed-hello-musl-s",
        "seed-cancel-musl-s",
        "seed-synthetic-exec",
    ] {
        assert!(
            accepted.iter().any(|n| n == seed),
            "{seed} refused: {accepted:?}"
        );
    }
}
