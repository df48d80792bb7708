//! The JSON report (`--report`). Addresses are link-time virtual addresses as hex strings
//! (`"0x401234"`); for static-PIE programs they are relative to the load base.

use serde::{Deserialize, Serialize};

/// Version of the report's shape.
pub const REPORT_FORMAT: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub tool: String,
    pub tool_version: String,
    pub report_format: u32,
    pub input: String,
    pub output: String,
    /// `"ET_EXEC"` or `"ET_DYN"`.
    pub elf_type: String,
    /// `"static"` (a static program), `"dynamic"` (a dynamically linked program: its entry
    /// stub sets the slot) or `"shared"` (a shared object: its probe does).
    pub kind: String,
    /// A dynamic program's `PT_INTERP`.
    pub interpreter: Option<String>,
    /// `DT_SONAME` and `DT_NEEDED`.
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// With `--root`: every library the program loads, found in the image.
    pub libraries: Option<Vec<Library>>,
    pub counts: Counts,
    pub input_size: u64,
    pub output_size: u64,
    pub bytes_added: u64,
    pub entry: Entry,
    /// The two added segments.
    pub code_segment: Segment,
    pub slot_segment: Segment,
    /// Whether section headers `.lupine.text` and `.lupine.slot` were added.
    pub sections_added: bool,
    /// Trampolines given an FDE (the site's function had one), and the new `.eh_frame_hdr`
    /// that `PT_GNU_EH_FRAME` now points to (when any FDE was added).
    pub trampolines_with_unwind_info: u64,
    pub eh_frame_hdr: Option<String>,
    pub analysis: AnalysisSummary,
    /// Count of kept sites by reason kind.
    pub kept_by_reason: std::collections::BTreeMap<String, u64>,
    pub sites: Vec<Site>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub sites: u64,
    pub rewritten: u64,
    pub kept: u64,
}

/// A library of the program, found in the image root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Library {
    /// Its `DT_NEEDED` name, where it is in the image, and the first object that needs it.
    pub name: String,
    pub path: Option<String>,
    pub needed_by: String,
    /// `relinked`, `needs relinking (N syscall sites)`, `no syscall sites`, `not found`, or
    /// `cannot be relinked: REASON`.
    pub status: String,
}

/// The entry point, and what sets the slot: the entry stub (a program) or the probe (a shared
/// object, whose entry point is unchanged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub original: String,
    pub stub: Option<String>,
    pub probe: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: String,
    pub file_offset: u64,
    pub size: u64,
    pub flags: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AnalysisSummary {
    /// Decoded code ranges: `name start end`.
    pub code_ranges: Vec<String>,
    pub instructions: u64,
    pub undecodable: u64,
    pub branch_targets: u64,
    pub fdes: u64,
    pub landing_pads: u64,
    pub eh_frame_records_skipped: u64,
    pub symbols: u64,
    pub relocations: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Site {
    /// Address of the `syscall` instruction.
    pub address: String,
    /// `symbol+0xoffset` of the syscall, when the program has symbols.
    pub symbol: Option<String>,
    /// `"rewritten"` or `"kept"`.
    pub status: String,
    /// The syscall number when it is a constant at the site, and its name.
    pub syscall_number: Option<u64>,
    pub syscall_name: Option<String>,
    /// Kept sites: why (`reason_kind` is one of `pc-sensitive`, `syscall-number`, `no-window`,
    /// `undecodable-nearby`, `relocation-in-window`, `encode`).
    pub reason_kind: Option<String>,
    pub reason: Option<String>,
    /// Rewritten sites: the patched window `[start, end)` and its original bytes.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub window_bytes: Option<String>,
    /// Rewritten sites: the trampoline and the address of its real-path `syscall`.
    pub trampoline: Option<String>,
    pub trampoline_syscall: Option<String>,
    /// Rewritten sites: whether the trampoline has unwind information (an FDE).
    pub unwind_info: Option<bool>,
    /// A C library's cancellation point moved whole (its `trampoline` is the copy).
    pub cancellation_point: Option<MovedCancelPoint>,
}

/// How a cancellation point was moved: its original range, the jump that replaced its first
/// instructions, the copy's range, and the instructions whose operands now name the copy's
/// bounds instead of the original ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MovedCancelPoint {
    pub library: String,
    pub range: [String; 2],
    pub entry_window: [String; 2],
    pub entry_window_bytes: String,
    pub copy: [String; 2],
    /// `[instruction, operand field, "begin" or "end"]`.
    pub retargeted: Vec<[String; 3]>,
}

pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Parses a `"0x..."` address of the report.
pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}
