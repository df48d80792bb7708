//! Inputs lupine-relink must refuse: each gets a non-zero exit, one line on stderr that names
//! the file and the reason, no output file (nor report, nor temporary file), an untouched
//! input, and never a panic.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use support::*;

/// Relinks `input` into an empty directory and checks the refusal; `reason` lists words of
/// which the message must contain at least one (case-insensitive).
fn refused(label: &str, input: &Path, reason: &[&str]) -> String {
    let out_dir = scratch(&format!("out-{label}"));
    let output = out_dir.join("out");
    let report = out_dir.join("report.json");
    let before = fs::read(input).ok();
    let r = relink(input, &output, Some(&report));
    let err = r.stderr();
    assert!(
        !panicked(&r),
        "{label}: the relinker panicked: {}",
        r.describe()
    );
    assert!(!r.timed_out, "{label}: the relinker hung");
    assert!(
        !r.status.success(),
        "{label}: {} was accepted: {}",
        input.display(),
        r.describe()
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{label}: not one line: {err:?}"
    );
    assert!(
        err.contains(&*input.to_string_lossy()),
        "{label}: the message does not name {}: {err}",
        input.display()
    );
    let lower = err.to_lowercase();
    assert!(
        reason.iter().any(|w| lower.contains(&w.to_lowercase())),
        "{label}: the message gives no reason (one of {reason:?}): {err}"
    );
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{label}: files were written: {left:?}");
    assert_eq!(fs::read(input).ok(), before, "{label}: the input changed");
    err
}

/// Each test's own directory of inputs.
fn bad_dir(test: &str) -> PathBuf {
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    let d = work_dir().join("inputs").join(test);
    if !made.iter().any(|t| t == test) {
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        made.push(test.to_string());
    }
    d
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// An ELF header: class, data encoding, type, machine; the rest zero.
fn elf_header(class: u8, data: u8, e_type: u16, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; if class == 1 { 52 } else { 64 }];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = data;
    h[6] = 1; // EI_VERSION
    let put16 = |h: &mut Vec<u8>, at: usize, v: u16| {
        let b = if data == 2 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        h[at..at + 2].copy_from_slice(&b);
    };
    put16(&mut h, 16, e_type);
    put16(&mut h, 18, machine);
    h[20] = 1; // e_version (first byte, little-endian)
    h
}

/// A small static program to damage: hello.c, musl-gcc -static (ET_EXEC), built once.
fn victim_path() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = work_dir().join("hello-musl");
        must(
            Command::new("musl-gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&out)
                .arg(corpus_src().join("hello.c")),
        );
        out
    })
}

fn victim() -> Vec<u8> {
    fs::read(victim_path()).unwrap()
}

/// Dynamically linked programs are relinked, their interpreter and libraries named in the
/// report; shared objects with text relocations, or cut short, are refused with the reason.
#[test]
fn dynamic_programs_accepted_text_relocations_and_truncated_libraries_refused() {
    let dir = bad_dir("dynamic_programs_accepted");
    let src = corpus_src().join("hello.c");
    for (cc, flags, name, interp) in [
        (
            "gcc",
            &[][..],
            "dynamic-glibc",
            "/lib64/ld-linux-x86-64.so.2",
        ),
        (
            "gcc",
            &["-no-pie"][..],
            "dynamic-glibc-exec",
            "/lib64/ld-linux-x86-64.so.2",
        ),
        (
            "musl-gcc",
            &[][..],
            "dynamic-musl",
            "/lib/ld-musl-x86_64.so.1",
        ),
    ] {
        let out = dir.join(name);
        must(Command::new(cc).args(flags).arg("-o").arg(&out).arg(&src));
        let rep = dir.join(format!("{name}.json"));
        let o = relink(&out, &dir.join(format!("{name}.relinked")), Some(&rep));
        assert!(o.status.success(), "{name}: {}", o.describe());
        let r: lupine_relink::Report =
            serde_json::from_str(&fs::read_to_string(&rep).unwrap()).unwrap();
        assert_eq!(r.kind, "dynamic", "{name}");
        assert_eq!(r.interpreter.as_deref(), Some(interp), "{name}");
        assert!(
            r.needed.iter().any(|n| n.starts_with("libc.so")),
            "{name}: {:?}",
            r.needed
        );
    }
    // A library whose code the dynamic linker writes: an absolute address in its text.
    let tr = write(
        &dir,
        "textrel.S",
        b".text\n.globl f\nf: movabs $v, %rax\n mov $39, %eax\n syscall\n ret\n.data\nv: .quad 0\n",
    );
    let lib = dir.join("libtextrel.so");
    must(
        Command::new("gcc")
            .args(["-shared", "-nostdlib", "-Wl,-z,notext", "-o"])
            .arg(&lib)
            .arg(&tr),
    );
    refused("libtextrel.so", &lib, &["text relocations (DT_TEXTREL)"]);
    // musl's libc.so cut inside its program headers, and inside its code.
    let libc = fs::read("/usr/lib/x86_64-linux-musl/libc.so").unwrap();
    for (name, len) in [("libc-cut-headers.so", 200), ("libc-cut-code.so", 0x20000)] {
        let p = write(&dir, name, &libc[..len]);
        refused(name, &p, &["malformed", "truncated", "outside the file"]);
    }
}

#[test]
fn files_that_are_not_elf() {
    let dir = bad_dir("files_that_are_not_elf");
    for (name, bytes) in [
        ("empty", &b""[..]),
        ("text", &b"just some text, not a program\n"[..]),
        ("script", &b"#!/bin/sh\necho hi\n"[..]),
        ("elf-magic-only", &b"\x7fELF"[..]),
        (
            "almost-magic",
            &b"\x7fELG\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
        ),
    ] {
        let p = write(&dir, name, bytes);
        refused(
            name,
            &p,
            &["not an ELF", "truncated", "too short", "malformed"],
        );
    }
    // A gzip file and an ar archive, as real non-ELF binaries.
    let archive = Path::new("/usr/lib/x86_64-linux-musl/libc.a");
    refused("ar-archive", archive, &["not an ELF"]);
}

#[test]
fn thirty_two_bit_elf() {
    let dir = bad_dir("thirty_two_bit_elf");
    let mut h = elf_header(1, 1, 2, 3); // ELFCLASS32, ET_EXEC, EM_386
    h[24..28].copy_from_slice(&0x8048000u32.to_le_bytes()); // e_entry
    h[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
    let p = write(&dir, "i386", &h);
    refused("i386", &p, &["32-bit", "ELFCLASS32", "32 bit"]);
    // x32 (ELFCLASS32 for x86-64) too.
    let h = elf_header(1, 1, 2, 62);
    let p = write(&dir, "x32", &h);
    refused("x32", &p, &["32-bit", "ELFCLASS32", "32 bit"]);
}

#[test]
fn other_machines_and_encodings() {
    let dir = bad_dir("other_machines_and_encodings");
    // A complete 64-bit header for AArch64, otherwise plausible.
    let mut h = elf_header(2, 1, 2, 183);
    h[24..32].copy_from_slice(&0x400000u64.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    let p = write(&dir, "aarch64", &h);
    refused("aarch64", &p, &["aarch64", "machine 183", "not x86-64"]);
    // A real x86-64 static program whose e_machine says RISC-V.
    let mut v = victim();
    v[18..20].copy_from_slice(&243u16.to_le_bytes());
    let p = write(&dir, "riscv", &v);
    refused("riscv", &p, &["risc-v", "machine 243", "not x86-64"]);
    // Big-endian.
    let p = write(&dir, "big-endian", &elf_header(2, 2, 2, 62));
    refused("big-endian", &p, &["endian", "encoding"]);
    // Not an executable: a relocatable object and a core-like file.
    let obj = dir.join("object.o");
    must(
        Command::new("gcc")
            .arg("-c")
            .arg("-o")
            .arg(&obj)
            .arg(corpus_src().join("hello.c")),
    );
    refused(
        "relocatable",
        &obj,
        &[
            "relocatable",
            "ET_REL",
            "not a program",
            "not an executable",
        ],
    );
    let mut core = victim();
    core[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    let p = write(&dir, "core", &core);
    refused(
        "core",
        &p,
        &["core", "ET_CORE", "not a program", "not an executable"],
    );
}

#[test]
fn truncated_programs() {
    let dir = bad_dir("truncated_programs");
    let v = victim();
    let phnum = u16::from_le_bytes([v[56], v[57]]) as usize;
    let phoff = u64::from_le_bytes(v[32..40].try_into().unwrap()) as usize;
    let mut cuts = vec![
        1,
        3,
        16,
        40,
        63,
        64,
        phoff + 56 * phnum - 1,
        v.len() / 2,
        v.len() - 1,
    ];
    if phoff + 20 < v.len() {
        cuts.push(phoff + 20);
    }
    cuts.sort();
    cuts.dedup();
    for cut in cuts {
        let name = format!("truncated-at-{cut}");
        let p = write(&dir, &name, &v[..cut]);
        refused(
            &name,
            &p,
            &[
                "truncated",
                "malformed",
                "not an ELF",
                "too short",
                "outside",
                "beyond",
            ],
        );
    }
}

#[test]
fn malformed_headers() {
    let dir = bad_dir("malformed_headers");
    let v = victim();
    let size = v.len() as u64;
    let set = |name: &str, at: usize, bytes: &[u8]| -> PathBuf {
        let mut m = v.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        write(&dir, name, &m)
    };
    let why = [
        "malformed",
        "truncated",
        "outside",
        "beyond",
        "program header",
        "PT_LOAD",
        "no ",
    ];
    // e_phoff: past the end, into the last bytes, absurd.
    for (name, phoff) in [
        ("phoff-past-end", size + 4096),
        ("phoff-last-bytes", size - 10),
        ("phoff-huge", u64::MAX - 8),
    ] {
        refused(name, &set(name, 32, &phoff.to_le_bytes()), &why);
    }
    // e_phnum: zero, too many for the file, the PN_XNUM escape with no section 0 to back it.
    for (name, phnum) in [
        ("phnum-zero", 0u16),
        ("phnum-many", 0xfff0),
        ("phnum-xnum", 0xffff),
    ] {
        refused(name, &set(name, 56, &phnum.to_le_bytes()), &why);
    }
    // e_phentsize other than 56.
    refused(
        "phentsize-32",
        &set("phentsize-32", 54, &32u16.to_le_bytes()),
        &why,
    );
    // A PT_LOAD whose file range runs past the end of the file.
    let phoff = u64::from_le_bytes(v[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([v[56], v[57]]) as usize;
    let load = (0..phnum)
        .map(|i| phoff + 56 * i)
        .find(|&at| u32::from_le_bytes(v[at..at + 4].try_into().unwrap()) == 1)
        .unwrap();
    refused(
        "load-offset-past-end",
        &set("load-offset-past-end", load + 8, &(size * 2).to_le_bytes()),
        &why,
    );
    refused(
        "load-filesz-past-end",
        &set("load-filesz-past-end", load + 32, &(size * 2).to_le_bytes()),
        &why,
    );
}

#[test]
fn damaged_section_headers_are_refused_or_ignored_safely() {
    // Section headers are optional for running a program: refusing is fine, and so is
    // relinking without them, as long as the result still runs like the original.
    let dir = bad_dir("damaged_section_headers");
    let v = victim();
    let size = v.len() as u64;
    for (name, at, bytes) in [
        (
            "shoff-past-end",
            40usize,
            (size + 100).to_le_bytes().to_vec(),
        ),
        ("shnum-many", 60, 0xfff0u16.to_le_bytes().to_vec()),
        ("shstrndx-bad", 62, 0xfff0u16.to_le_bytes().to_vec()),
    ] {
        let mut m = v.clone();
        m[at..at + bytes.len()].copy_from_slice(&bytes);
        let p = write(&dir, name, &m);
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = scratch(&format!("out-{name}")).join("out");
        let r = relink(&p, &out, None);
        assert!(!panicked(&r), "{name}: panicked: {}", r.describe());
        if r.status.success() {
            let case = Case {
                program: name.into(),
                args: vec!["3".into()],
                kmlrun_ok: true,
            };
            let a = run_case(&p, &case, None, &[]);
            let b = run_case(&out, &case, None, &[]);
            assert_eq!(
                a.observable(),
                b.observable(),
                "{name}: relinked, but runs differently"
            );
        } else {
            let err = r.stderr();
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{name}: not one line: {err}"
            );
            assert!(
                err.contains(&*p.to_string_lossy()),
                "{name}: file not named: {err}"
            );
            assert!(!out.exists(), "{name}: output written although refused");
        }
    }
}

#[test]
fn directories_and_missing_files() {
    let dir = bad_dir("directories_and_missing_files");
    let sub = dir.join("a-directory");
    fs::create_dir_all(&sub).unwrap();
    refused("directory", &sub, &["directory"]);
    refused(
        "missing",
        &dir.join("no-such-program"),
        &["no such file", "not found", "does not exist"],
    );
    // A dangling symlink is a missing file too.
    let link = dir.join("dangling");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("nowhere"), &link).unwrap();
    refused(
        "dangling-symlink",
        &link,
        &["no such file", "not found", "does not exist"],
    );
}

#[test]
fn bad_output_paths_and_usage() {
    let dir = bad_dir("bad_output_paths_and_usage");
    let prog = victim_path();
    let before = fs::read(prog).unwrap();
    // The output would replace the input.
    let r = relink(prog, prog, None);
    assert!(
        !panicked(&r) && !r.status.success(),
        "output = input accepted: {}",
        r.describe()
    );
    assert_eq!(fs::read(prog).unwrap(), before, "the input was overwritten");
    // An output directory that does not exist.
    let r = relink(prog, &dir.join("missing-dir/out"), None);
    assert!(!panicked(&r) && !r.status.success(), "{}", r.describe());
    assert_eq!(r.stderr().trim_end().lines().count(), 1, "{}", r.describe());
    // Usage errors: no arguments, no -o, an unknown option.
    for args in [
        vec![],
        vec!["in"],
        vec!["in", "-o"],
        vec!["--bogus", "in", "-o", "out"],
    ] {
        let r = run_with_timeout(
            Command::new(relinker()).args(&args).current_dir(&dir),
            std::time::Duration::from_secs(30),
        );
        assert!(!panicked(&r), "{args:?}: {}", r.describe());
        assert!(!r.status.success(), "{args:?} accepted");
        assert!(
            r.stderr().contains("usage"),
            "{args:?}: no usage: {}",
            r.describe()
        );
    }
}
