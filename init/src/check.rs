//! `lupine-init --check FILE`: validates a manifest on the host, as PID 1 would read it.

use std::fs;

use crate::manifest;

/// `--check FILE`: every problem with its JSON path, exit 1; `ok`, exit 0.
pub fn check(path: &str) -> i32 {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return 1;
        }
    };
    match manifest::parse(&text) {
        Ok(_) => {
            println!("ok");
            0
        }
        Err(problems) => {
            for p in problems.0 {
                println!("{path}: {p}");
            }
            1
        }
    }
}
