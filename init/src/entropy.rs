//! Crediting a seed file to the kernel's entropy pool, as systemd's random-seed does: the
//! seed is mixed in, the file is replaced with new kernel randomness (which now depends on the
//! old seed), and only then is the old seed credited (RNDADDENTROPY), so the same bytes are
//! never credited twice. When the file cannot be replaced, nothing is credited.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;

use crate::system::write_atomic;

/// About a pool's worth: more is pointless.
const MAX_SEED: usize = 512;

nix::ioctl_write_ptr_bad!(rnd_add_entropy, 0x4008_5203, libc::c_int);

pub fn credit_seed(path: &str) -> Result<(), String> {
    let mut seed = fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    seed.truncate(MAX_SEED);
    if seed.is_empty() {
        return Err(format!("{path}: empty seed file"));
    }
    let mut random = OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    random
        .write_all(&seed)
        .map_err(|e| format!("/dev/urandom: {e}"))?;

    let mut fresh = vec![0u8; seed.len()];
    // SAFETY: writes at most fresh.len() bytes into `fresh`.
    let n = unsafe { libc::getrandom(fresh.as_mut_ptr().cast(), fresh.len(), libc::GRND_INSECURE) };
    if n != fresh.len() as isize {
        return Err(format!("getrandom: {}", std::io::Error::last_os_error()));
    }
    if let Err(e) = write_atomic(path, &fresh) {
        log::warn!("{path}: mixed in without credit: cannot replace it: {e}");
        return Ok(());
    }

    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let bits = seed.len() * 8;
    let mut info = Vec::with_capacity(8 + seed.len());
    info.extend_from_slice(&(bits as i32).to_ne_bytes());
    info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    info.extend_from_slice(&seed);
    // SAFETY: `info` is a complete rand_pool_info with buf_size bytes of payload.
    unsafe { rnd_add_entropy(random.as_raw_fd(), info.as_ptr().cast()) }
        .map_err(|e| format!("RNDADDENTROPY: {}", e.desc()))?;
    log::info!("credited {bits} bits from {path}");
    Ok(())
}
