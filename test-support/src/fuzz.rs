//! The replay of the fuzz targets' corpora and crash inputs (`fuzz/corpus/TARGET/`,
//! `fuzz/artifacts/TARGET/`) on stable, through the same bodies the targets run: every input
//! the fuzzer kept, and every crash or hang it found, stays a regression test.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// How long one input may take, unoptimised: libFuzzer's limit is 5 s, optimised with
/// AddressSanitizer. An input that takes longer is a hang.
const LIMIT: Duration = Duration::from_secs(30);

/// The files of `fuzz/DIR/TARGET/`, sorted; none when the directory does not exist.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = crate::workspace_root().join("fuzz").join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What a fuzz body returns: whether it accepted the input (`bool`), or nothing (`()`) for
/// bodies whose only property is not to panic or hang.
pub trait Verdict: Send + 'static {
    fn accepted(&self) -> bool;
}

impl Verdict for bool {
    fn accepted(&self) -> bool {
        *self
    }
}

impl Verdict for () {
    fn accepted(&self) -> bool {
        false
    }
}

/// Runs `body` over the corpus (which must not be empty) and the crash inputs of `target`,
/// fails naming every input that panicked or ran longer than [`LIMIT`], and returns the file
/// names of the inputs `body` accepted.
pub fn replay<V: Verdict>(target: &str, body: fn(&[u8]) -> V) -> Vec<String> {
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing"
    );
    let crashes = inputs("artifacts", target);
    let (mut failed, mut accepted) = (Vec::new(), Vec::new());
    for file in corpus.iter().chain(&crashes) {
        let data = std::fs::read(file).expect("read a fuzz input");
        let (done, finished) = mpsc::channel();
        // A thread per input, so that a hang fails the test instead of stalling it (the thread
        // is left behind, and ends with the test process).
        std::thread::spawn(move || {
            let _ = done.send(body(&data));
        });
        match finished.recv_timeout(LIMIT) {
            Ok(v) if v.accepted() => {
                accepted.push(file.file_name().unwrap().to_string_lossy().into_owned())
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failed.push(format!("{}: panicked", file.display()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                failed.push(format!("{}: still running after {LIMIT:?}", file.display()))
            }
        }
    }
    eprintln!(
        "{target}: {} corpus inputs and {} crash inputs replayed",
        corpus.len(),
        crashes.len()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failed.len(),
        corpus.len() + crashes.len(),
        failed.join("\n")
    );
    accepted
}
