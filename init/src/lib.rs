//! lupine-init as a library: everything PID 1 does (`src/main.rs` is its argument handling
//! around [`boot::run`] and [`check::check`]), public so that the fuzz targets (`fuzz/`) and
//! their corpus replay (`tests/fuzz_corpus.rs`) run the very parsers and decoders the binary
//! ships ([`fuzz`]). What `main.rs` does not reach is not linked into the binary.
//!
//! The boot sequence lives here rather than in `main.rs`: across the crate boundary the
//! compiler inlines less and instantiates generics twice, which cost about 1.8 KB of PID 1's
//! 600 KiB budget.

pub mod boot;
pub mod check;
pub mod cmdline;
pub mod config;
pub mod entropy;
pub mod error;
pub mod fuzz;
pub mod hw;
pub mod ipconfig;
pub mod logger;
pub mod manifest;
pub mod mmds;
pub mod mounts;
pub mod net;
pub mod process;
pub mod ready;
pub mod relay;
pub mod supervise;
pub mod syslog;
pub mod system;
