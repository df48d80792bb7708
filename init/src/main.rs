//! lupine-init: PID 1 of a Lupine microVM. It reads the app's JSON manifest, sets up the VM
//! (filesystems, network, hostname, sysctls), runs the one application, reports how it ended
//! and ends the VM.

use lupine_init::boot::{self, Ending};
use lupine_init::check::check;
use lupine_init::error::{announce, say};

const USAGE: &str = "usage: lupine-init                 run as PID 1 (init=/lupine-init)
       lupine-init --check FILE    validate a manifest and print every problem
       lupine-init --version";

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args.get(1).map(String::as_str) {
        Some("--check") => match args.get(2) {
            Some(path) => std::process::exit(check(path)),
            None => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        },
        Some("--version") => {
            println!("lupine-init {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return;
        }
        _ => {}
    }
    if std::process::id() != 1 {
        // Guard: PID 1's last act is reboot(2), which must never reach a host.
        eprintln!("lupine-init: not PID 1: boot it with init=/lupine-init\n{USAGE}");
        std::process::exit(2);
    }
    let mut ending = Ending::default();
    match boot::run(&args[1..], &mut ending) {
        Ok(exit) => {
            nix::unistd::sync();
            announce(&exit.line());
            ending.finish(exit.status())
        }
        Err(fatal) => {
            log::error!("fatal: {fatal}");
            nix::unistd::sync();
            say(&format!("lupine: fatal: {fatal}"));
            ending.finish(fatal.status)
        }
    }
}
