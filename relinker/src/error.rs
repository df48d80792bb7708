//! Every way relinking can fail. Each error's `Display` is one line that starts with the file.

use std::fmt;
use std::io;

/// Why a program was refused or could not be relinked.
#[derive(Debug)]
pub enum Error {
    /// The input does not exist.
    NotFound { file: String },
    /// The input is a directory.
    IsDirectory { file: String },
    /// Reading the input, or writing the output or report, failed.
    Io {
        file: String,
        op: &'static str,
        source: io::Error,
    },
    /// The output would replace the input.
    SameFile { file: String },
    /// Not an ELF file (bad magic, or too short to hold an ELF header).
    NotElf { file: String },
    /// A 32-bit ELF file.
    Elf32 { file: String },
    /// A big-endian or otherwise unsupported data encoding.
    Encoding { file: String, data: u8 },
    /// An ELF file for another machine.
    Machine { file: String, machine: u16 },
    /// Not a program or shared object (a relocatable object, a core dump...).
    NotProgram { file: String, what: String },
    /// A header field or table that is truncated or inconsistent.
    Malformed { file: String, what: String },
    /// The object has text relocations.
    TextRelocations { file: String },
    /// The program already carries lupine-relink's marker.
    AlreadyRelinked { file: String },
    /// A Go program.
    Go { file: String, evidence: String },
    /// The added code would not be within reach of the program's code.
    Layout { file: String, what: String },
}

impl Error {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            Error::NotFound { file }
            | Error::IsDirectory { file }
            | Error::Io { file, .. }
            | Error::SameFile { file }
            | Error::NotElf { file }
            | Error::Elf32 { file }
            | Error::Encoding { file, .. }
            | Error::Machine { file, .. }
            | Error::NotProgram { file, .. }
            | Error::Malformed { file, .. }
            | Error::TextRelocations { file }
            | Error::AlreadyRelinked { file }
            | Error::Go { file, .. }
            | Error::Layout { file, .. } => file,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { file } => write!(f, "{file}: no such file"),
            Error::IsDirectory { file } => write!(f, "{file}: is a directory, not a program"),
            Error::Io { file, op, source } => write!(f, "{file}: cannot {op}: {source}"),
            Error::SameFile { file } => {
                write!(f, "{file}: the output would replace the input; choose another output path")
            }
            Error::NotElf { file } => write!(f, "{file}: not an ELF file"),
            Error::Elf32 { file } => {
                write!(f, "{file}: is a 32-bit ELF file; only x86-64 (ELFCLASS64) programs are supported")
            }
            Error::Encoding { file, data } => write!(
                f,
                "{file}: unsupported ELF data encoding {data} (EI_DATA); only little-endian x86-64 is supported"
            ),
            Error::Machine { file, machine } => write!(
                f,
                "{file}: is an ELF file for machine {machine} ({}), not x86-64",
                machine_name(*machine)
            ),
            Error::NotProgram { file, what } => write!(f, "{file}: {what}"),
            Error::Malformed { file, what } => write!(f, "{file}: malformed ELF: {what}"),
            Error::TextRelocations { file } => write!(
                f,
                "{file}: has text relocations (DT_TEXTREL): the dynamic linker writes into its code, \
                 so patched code could be overwritten; rebuild it with -fPIC"
            ),
            Error::AlreadyRelinked { file } => {
                write!(f, "{file}: already relinked by lupine-relink")
            }
            Error::Go { file, evidence } => write!(
                f,
                "{file}: is a Go program ({evidence}): not supported, because goroutine stacks are small \
                 and the Go runtime makes raw system calls from assembly that it also uses to switch stacks"
            ),
            Error::Layout { file, what } => write!(f, "{file}: cannot lay out the added code: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        43 => "SPARC V9",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "unknown",
    }
}
