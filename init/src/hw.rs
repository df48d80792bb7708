//! Talking to the VMM: I/O ports and MMIO for the boot marker and the exit status, and the
//! reboot(2) call that ends the VM.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::reboot::{reboot, RebootMode};

use crate::manifest::{BootMarker, OnExit};

/// Writes one byte to an I/O port (QEMU's isa-debug-exit and debugcon, Firecracker's 0x3f0).
pub fn outb(port: u16, value: u8) -> Result<(), String> {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(port.into(), 1, 1) } != 0 {
        return Err(format!(
            "ioperm port {port:#x}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the port is now accessible; writing it has no effect on our memory.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack, nomem))
    };
    // SAFETY: as above; the app must not inherit the permission.
    unsafe { libc::ioperm(port.into(), 1, 0) };
    Ok(())
}

/// Writes one byte to physical memory through /dev/mem (Firecracker's MMIO boot timer).
pub fn mmio_write(address: u64, value: u8) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {address:#x}: {e}");
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_SYNC)
        .open("/dev/mem")
        .map_err(|e| err("open /dev/mem for", e))?;
    let page = address & !0xfff;
    // SAFETY: a fresh shared mapping of one page of /dev/mem, unmapped below; nothing else
    // aliases it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_WRITE,
            libc::MAP_SHARED,
            mem.as_raw_fd(),
            page as libc::off_t,
        );
        if p == libc::MAP_FAILED {
            return Err(err("mmap", std::io::Error::last_os_error()));
        }
        std::ptr::write_volatile((p as *mut u8).add((address - page) as usize), value);
        libc::munmap(p, 4096);
    }
    Ok(())
}

/// The instruction that bench/cost's TCG plugin (bench/cost/lupine_cost.c) starts an interval
/// at: `nopl 0x4e50554c(%rax,%rax,1)`, a `nop` with a magic displacement ("LUPN") that nothing
/// else executes. It does nothing, here or in any VM.
pub fn cost_marker() {
    // SAFETY: a no-op instruction; it reads and writes nothing.
    unsafe {
        std::arch::asm!(
            ".byte 0x0f, 0x1f, 0x84, 0x00, 0x4c, 0x55, 0x50, 0x4e",
            options(nomem, nostack, preserves_flags)
        )
    };
}

pub fn boot_marker(marker: BootMarker) -> Result<(), String> {
    match marker {
        BootMarker::IoPort { port, value } => outb(port, value),
        BootMarker::Mmio { address, value } => mmio_write(address, value),
    }
}

/// Ends the VM. On return reboot(2) failed, and the caller exits (as PID 1 that panics the
/// kernel, which with panic=-1 ends the VM too).
pub fn end_vm(how: OnExit) -> nix::Error {
    let mode = match how {
        OnExit::Reboot => RebootMode::RB_AUTOBOOT,
        OnExit::Poweroff => RebootMode::RB_POWER_OFF,
        OnExit::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    match reboot(mode) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}
