//! Writing an output file so that a reader sees the old file or the whole new one, never a
//! part: the data goes to a file without a name (O_TMPFILE) in the output's directory, which
//! is named and renamed onto the output only once complete. A process killed meanwhile
//! leaves nothing; one killed in the instant between naming and renaming leaves a
//! `.NAME.lupine-relink.PID.tmp` that the next write of the same output removes.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes `bytes` to `path` (with `mode`) through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let name = path.display().to_string();
    let io = |op: &'static str| {
        let name = name.clone();
        move |source| Error::Io {
            file: name,
            op,
            source,
        }
    };
    let base = path.file_name().ok_or_else(|| {
        io("write")(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ))
    })?;
    let dir = parent(path);
    let prefix = format!(".{}.lupine-relink.", base.to_string_lossy());
    remove_stale_temporaries(&dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}.tmp", std::process::id()));
    let result = (|| {
        let (mut f, named) = match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&dir)
        {
            Ok(f) => (f, false),
            // Filesystems without O_TMPFILE: a named temporary file from the start.
            Err(_) => (
                create_new(&tmp).map_err(io("create a temporary file next to"))?,
                true,
            ),
        };
        f.write_all(bytes).map_err(io("write"))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of"))?;
        f.sync_all().map_err(io("write"))?;
        if !named {
            link(&f, &tmp).map_err(io("name the temporary file next to"))?;
        }
        std::fs::rename(&tmp, path).map_err(io("rename the temporary file onto"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Gives the O_TMPFILE file `f` the name `to` (linkat through /proc, as open(2) describes:
/// AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
fn link(f: &File, to: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths for the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes the entries of `dir` named `PREFIX` + PID + anything whose process is gone: what
/// a writer killed with SIGKILL left (lupine-image's work directories too).
pub fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_removes_what_dead_writers_left() {
        let dir = std::env::temp_dir().join(format!("lupine-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("prog");
        std::fs::write(&out, b"old").unwrap();
        // What a writer killed earlier left: a file and (lupine-image's) a directory, both
        // of a process that no longer exists; and one of this process, still running.
        let dead = i32::MAX - 7; // beyond pid_max: no such process
        let stale_file = dir.join(format!(".prog.lupine-relink.{dead}.tmp"));
        std::fs::write(&stale_file, b"partial").unwrap();
        let live = dir.join(format!(".prog.lupine-relink.{}.x", std::process::id()));
        std::fs::write(&live, b"in use").unwrap();

        write_atomically(&out, b"new contents", 0o750).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new contents");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
        assert!(!stale_file.exists());
        assert!(live.exists(), "a running writer's file stays");
        std::fs::remove_file(&live).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["prog"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
