//! `lupine_config`: derives a Kconfig application fragment from x86-64 programs, on top of
//! lupine-relink's analysis (the same decoding, sites and branch targets it relinks by): static
//! programs alone, dynamically linked ones with the libraries of their image
//! ([`derive_dynamic`]: their imports from the C library count, by name and at their PLT stubs).
//!
//! ```no_run
//! let findings = lupine_config::derive_file("hello".as_ref())?;
//! print!("{}", lupine_config::render(&[findings], None));
//! # Ok::<(), lupine_relink::Error>(())
//! ```
//!
//! What it reads, per program (all static, no execution):
//! 1. the constant system call number at each `syscall` site ([`lupine_relink::analyze`]);
//! 2. direct calls (and tail jumps) to libc's generic entries (`syscall`, musl's `__syscall_cp`,
//!    `__syscall_cp_c`, `__syscall_cp_asm`) with a constant number in the number's register;
//! 3. when the program has symbols, the libc wrappers it contains, by name (`epoll_wait`,
//!    `eventfd`, `posix_fadvise`, ... : every conditional system call's name, and the
//!    `wrapper` rows of the table), for the sites whose number is not a constant at the
//!    `syscall` (musl's cancellation points, for instance);
//! 4. the socket address family, when the first argument (`edi`) of a `socket`/`socketpair`
//!    system call, or of a direct call to a function that makes one (found by symbol, by the
//!    function that contains such a site, and through wrappers that pass their first argument
//!    on untouched), is a constant in the basic block.
//!
//! Each system call and family is mapped to the options that provide it by the table
//! [`TABLE_TSV`] (`config/kconfig-map.tsv`), which names the kernel source line that makes each
//! one conditional. System calls that are always built have no row and need nothing.
//!
//! What cannot be seen: numbers computed at run time (libc's `syscall()` with a variable number,
//! busybox-style dispatch through tables), families that are not constants where the call is
//! made, and everything that is not a system call (files under `/proc/sys`, filesystems it mounts,
//! ioctls, ...).

use iced_x86::{Code, FlowControl, Instruction, InstructionInfoFactory, OpAccess, OpKind};
use lupine_relink::analyze::{self, Analysis, Regs};
use lupine_relink::elf::{self, Elf};
use lupine_relink::{syscalls, Error};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

mod dynamic;
pub mod fuzz;
pub use dynamic::derive_dynamic;

/// The built-in table (`config/kconfig-map.tsv`).
pub const TABLE_TSV: &str = include_str!("../kconfig-map.tsv");

/// Register numbers (iced's full 64-bit register numbering).
const RSI: usize = 6;
const RDI: usize = 7;
const SYS_SOCKET: u64 = 41;
const SYS_SOCKETPAIR: u64 = 53;

/// Generic system call entries by symbol, and the register that holds the number.
const GENERIC_ENTRIES: [(&str, usize); 5] = [
    ("syscall", RDI),
    ("__syscall_cp", RDI),
    ("__syscall_cp_c", RDI),
    ("sccp", RDI),
    ("__syscall_cp_asm", RSI),
];

/// What a row of the table describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKind {
    /// A conditional system call: `targets` are Kconfig options.
    Syscall,
    /// A socket address family: `targets` are Kconfig options (maybe none).
    Family,
    /// A libc function, by symbol: `targets` are system call names.
    Wrapper,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: RowKind,
    /// The system call or family number (`None` for wrappers).
    pub number: Option<u64>,
    pub name: String,
    pub targets: Vec<String>,
    /// The kernel file or Makefile line that makes it conditional (or, for wrappers, why).
    pub source: String,
    /// 1-based line in the table.
    pub line: usize,
}

/// The parsed table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub syscalls: BTreeMap<u64, Row>,
    pub families: BTreeMap<u64, Row>,
    pub wrappers: BTreeMap<String, Row>,
}

fn is_option_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with("CONFIG_")
}

fn syscall_number(name: &str) -> Option<u64> {
    syscalls::SYSCALLS
        .iter()
        .find(|s| s.1 == name)
        .map(|s| u64::from(s.0))
}

impl Table {
    /// Parses the tab-separated table; an error names the line and the problem.
    pub fn parse(text: &str) -> Result<Table, String> {
        let mut t = Table::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            if raw.trim().is_empty() || raw.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = raw.split('\t').collect();
            let err = |m: String| format!("line {line}: {m}");
            if cols.len() != 5 {
                return Err(err(format!("{} columns, expected 5", cols.len())));
            }
            let (kind, number, name, targets, source) =
                (cols[0], cols[1], cols[2], cols[3], cols[4].trim());
            if source.is_empty() {
                return Err(err(format!("{name}: no source")));
            }
            let list: Vec<String> = if targets == "-" {
                Vec::new()
            } else {
                targets.split(',').map(|s| s.trim().to_string()).collect()
            };
            let kind = match kind {
                "syscall" => RowKind::Syscall,
                "family" => RowKind::Family,
                "wrapper" => RowKind::Wrapper,
                k => return Err(err(format!("unknown row kind {k:?}"))),
            };
            let number = match kind {
                RowKind::Wrapper => {
                    if number != "-" {
                        return Err(err(format!("wrapper {name}: number must be -")));
                    }
                    None
                }
                _ => Some(
                    number
                        .parse::<u64>()
                        .map_err(|_| err(format!("{name}: bad number {number:?}")))?,
                ),
            };
            match kind {
                RowKind::Syscall | RowKind::Family => {
                    if kind == RowKind::Syscall && list.is_empty() {
                        return Err(err(format!("{name}: no option")));
                    }
                    if let Some(o) = list.iter().find(|o| !is_option_name(o)) {
                        return Err(err(format!("{name}: bad option name {o:?}")));
                    }
                }
                RowKind::Wrapper => {
                    if list.is_empty() {
                        return Err(err(format!("wrapper {name}: no system call")));
                    }
                    if let Some(s) = list.iter().find(|s| syscall_number(s).is_none()) {
                        return Err(err(format!("wrapper {name}: unknown system call {s:?}")));
                    }
                }
            }
            let row = Row {
                kind,
                number,
                name: name.to_string(),
                targets: list,
                source: source.to_string(),
                line,
            };
            let dup = match kind {
                RowKind::Syscall => {
                    let nr = number.unwrap_or_default();
                    if syscalls::name(nr) != Some(name) {
                        return Err(err(format!(
                            "syscall {nr} is {:?}, not {name:?}",
                            syscalls::name(nr)
                        )));
                    }
                    t.syscalls.insert(nr, row).is_some()
                }
                RowKind::Family => {
                    if !name.starts_with("AF_") {
                        return Err(err(format!("family {name:?} does not start with AF_")));
                    }
                    t.families.insert(number.unwrap_or_default(), row).is_some()
                }
                RowKind::Wrapper => t.wrappers.insert(name.to_string(), row).is_some(),
            };
            if dup {
                return Err(err(format!("{name}: a second row")));
            }
        }
        Ok(t)
    }

    /// The row of the conditional system call named `name`.
    pub fn syscall_by_name(&self, name: &str) -> Option<&Row> {
        self.syscalls.values().find(|r| r.name == name)
    }
}

/// The built-in table, parsed once (its validity is a unit test).
pub fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table::parse(TABLE_TSV).unwrap_or_else(|e| panic!("kconfig-map.tsv: {e}")))
}

/// How a system call or family was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// A constant at a `syscall` site.
    Site,
    /// A constant at a direct call of a generic entry (`syscall()`) or socket wrapper.
    Call,
    /// A libc wrapper present by symbol.
    Symbol(String),
}

/// What one program showed.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub input: String,
    pub sites: usize,
    /// Sites whose number is a constant at the `syscall`.
    pub constant_sites: usize,
    /// Every system call found (conditional or not), with how.
    pub syscalls: BTreeMap<u64, BTreeSet<Evidence>>,
    /// Socket families found (any number, mapped or not).
    pub families: BTreeMap<u64, BTreeSet<Evidence>>,
    /// Calls of socket functions (and socket sites) whose family is not a constant there.
    pub unknown_family_calls: usize,
    /// Whether the program has code symbols (so that wrappers can be named).
    pub has_symbols: bool,
    /// Generic entries present by symbol (`syscall`, `__syscall_cp`, ...).
    pub generic_entries: Vec<String>,
    /// Functions and objects it imports from its libraries.
    pub imports: usize,
    /// The C libraries it loads: their own sites are not counted (they cover every system call
    /// the library offers), what their users import is.
    pub c_libraries: Vec<String>,
}

impl Findings {
    fn add_syscall(&mut self, n: u64, e: Evidence) {
        self.syscalls.entry(n).or_default().insert(e);
    }
}

/// `__GI_socket`, `__libc_socket`, `__socket` -> `socket`.
fn bare(name: &str) -> &str {
    let mut s = name;
    loop {
        let t = s
            .strip_prefix("__GI_")
            .or_else(|| s.strip_prefix("__libc_"))
            .or_else(|| s.strip_prefix("__"))
            .unwrap_or(s);
        if t == s {
            return s;
        }
        s = t;
    }
}

fn is_code_func(s: &elf::Symbol) -> bool {
    s.shndx != 0 && s.shndx < 0xff00 && s.st_type == elf::STT_FUNC && !s.name.is_empty()
}

/// A `syscall` instruction or a direct call/jump, with the registers known before it.
struct Point {
    address: u64,
    /// The callee (calls and jumps).
    target: Option<u64>,
    /// A call, not a jump.
    is_call: bool,
    regs: Regs,
    /// The first instruction of the basic block.
    block_start: u64,
    /// Whether rdi still holds (a copy of) the block's incoming rdi.
    rdi_untouched: bool,
}

/// How a register-to-register move carries the value.
#[derive(Clone, Copy)]
enum Width {
    Full,
    ZeroExtend32,
    SignExtend32,
}

fn writes(a: OpAccess) -> bool {
    matches!(
        a,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

/// Walks the code in basic blocks (as the analysis delimits them) and records the register
/// constants at each `syscall`, direct call and direct jump.
fn walk(an: &Analysis<'_>, ins: &[Instruction]) -> (Vec<Point>, Vec<Point>) {
    let mut f = InstructionInfoFactory::new();
    let mut sys = Vec::new();
    let mut calls = Vec::new();
    let mut regs: Regs = [None; 16];
    let mut block_start = 0u64;
    // Registers that hold the block's incoming rdi (its first argument, at a function entry).
    let mut arg0 = [false; 16];
    for k in 0..ins.len() {
        let i = &ins[k];
        let new_block = k == 0 || {
            let p = &ins[k - 1];
            an.is_target(i.ip())
                || p.is_invalid()
                || p.next_ip() != i.ip()
                || p.flow_control() != FlowControl::Next
                || p.code() == Code::Syscall
        };
        if new_block {
            regs = [None; 16];
            block_start = i.ip();
            arg0 = [false; 16];
            arg0[RDI] = true;
        }
        if i.is_invalid() {
            continue;
        }
        let point = |target| Point {
            address: i.ip(),
            target,
            is_call: i.flow_control() == FlowControl::Call,
            regs,
            block_start,
            rdi_untouched: arg0[RDI],
        };
        if i.code() == Code::Syscall {
            sys.push(point(None));
        } else if matches!(
            i.flow_control(),
            FlowControl::Call | FlowControl::UnconditionalBranch
        ) && matches!(
            i.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        ) {
            calls.push(point(Some(i.near_branch_target())));
        }
        // Register copies, and `movslq` widening an int argument, keep the value (and whether
        // it is the block's incoming rdi).
        let copy = match i.code() {
            Code::Movsxd_r64_rm32
            | Code::Mov_r64_rm64
            | Code::Mov_rm64_r64
            | Code::Mov_r32_rm32
            | Code::Mov_rm32_r32
                if i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register =>
            {
                let (d, src) = (i.op0_register(), i.op1_register());
                let width = match i.code() {
                    Code::Movsxd_r64_rm32 => Width::SignExtend32,
                    Code::Mov_r32_rm32 | Code::Mov_rm32_r32 => Width::ZeroExtend32,
                    _ => Width::Full,
                };
                match (d.full_register().is_gpr64(), src.full_register().is_gpr64()) {
                    (true, true) => Some((
                        d.full_register().number(),
                        src.full_register().number(),
                        width,
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut after_arg0 = arg0;
        for u in f.info(i).used_registers() {
            if writes(u.access()) && u.register().full_register().is_gpr64() {
                after_arg0[u.register().full_register().number()] = false;
            }
        }
        let widened = copy.map(|(d, src, width)| {
            after_arg0[d] = arg0[src];
            let v = regs[src].map(|v| match width {
                Width::SignExtend32 => v as u32 as i32 as i64 as u64,
                Width::ZeroExtend32 => v & 0xffff_ffff,
                Width::Full => v,
            });
            (d, v)
        });
        analyze::step_regs(&mut f, i, &mut regs);
        if let Some((d, v)) = widened {
            regs[d] = v;
        }
        arg0 = after_arg0;
    }
    (sys, calls)
}

/// Reads and analyses one program.
pub fn derive_file(path: &Path) -> Result<Findings, Error> {
    let data = lupine_relink::read_input(path)?;
    derive_bytes(&path.display().to_string(), &data)
}

/// Analyses one static program given as bytes; refuses what lupine-relink refuses, and
/// dynamically linked programs and shared objects (their system calls are in their libraries:
/// see [`derive_dynamic`]).
pub fn derive_bytes(input: &str, data: &[u8]) -> Result<Findings, Error> {
    let elf = Elf::parse(input, data)?;
    let what = match &elf.kind {
        elf::Kind::Static => return Ok(derive_elf(input, &elf)),
        elf::Kind::Dynamic { interpreter } => format!(
            "is dynamically linked (interpreter {interpreter}): give the image root (--root) so \
             that its libraries can be read"
        ),
        elf::Kind::Shared => "is a shared object, not a program".into(),
    };
    Err(Error::NotProgram {
        file: input.into(),
        what,
    })
}

/// The findings of one object: its own sites, the libc functions it contains or imports (by
/// name, and through its PLT stubs for the calls' arguments), the socket families it passes.
fn derive_elf(input: &str, elf: &Elf<'_>) -> Findings {
    let an = analyze::analyze(elf);
    let ins = analyze::decode_all(elf);
    let mut out = Findings {
        input: input.to_string(),
        sites: an.sites.len(),
        imports: elf.imports.len(),
        ..Findings::default()
    };
    for s in &an.sites {
        if let Some(n) = s.number {
            out.constant_sites += 1;
            out.add_syscall(n, Evidence::Site);
        }
    }
    let imported = dynamic::imported_functions(elf, &ins);
    let mut funcs: Vec<&elf::Symbol> = elf
        .symbols
        .iter()
        .filter(|s| is_code_func(s) && an.in_code(s.value))
        .collect();
    out.has_symbols = !funcs.is_empty() || !imported.is_empty();
    funcs.extend(imported.iter());
    let named = out.add_symbols(&funcs);
    let (sys, calls) = walk(&an, &ins);
    out.add_generic_calls(&calls, &named.generic);
    let functions = Functions::new(&an, &funcs, &calls);
    out.add_socket_families(&functions, &sys, &calls, named.socket_fns);
    out
}

/// What the symbols name: the generic entries (address to the register holding the number)
/// and the socket functions (`socket`, `socketpair`, by address).
struct Named {
    generic: BTreeMap<u64, usize>,
    socket_fns: BTreeSet<u64>,
}

/// The functions of a program: their starts, and the ranges around an address.
struct Functions {
    starts: BTreeSet<u64>,
    ranges: Vec<(u64, u64)>,
}

impl Functions {
    fn new(an: &Analysis<'_>, funcs: &[&elf::Symbol], calls: &[Point]) -> Functions {
        let mut starts: BTreeSet<u64> = funcs.iter().map(|s| s.value).collect();
        starts.extend(an.eh.fdes.iter().map(|f| f.0));
        // Targets of direct calls are function entries too (stripped programs without unwind
        // information, like musl's libc code).
        starts.extend(calls.iter().filter(|c| c.is_call).filter_map(|c| c.target));
        // The function around an address: a sized symbol, else an FDE.
        let mut ranges: Vec<(u64, u64)> = funcs
            .iter()
            .filter(|s| s.size > 0)
            .map(|s| (s.value, s.value.saturating_add(s.size)))
            .collect();
        ranges.extend(an.eh.fdes.iter().copied());
        ranges.sort_unstable();
        Functions { starts, ranges }
    }

    /// The point passes its caller's first argument on: `rdi` untouched since a function's start.
    fn forwards(&self, p: &Point) -> bool {
        p.rdi_untouched && self.starts.contains(&p.block_start)
    }

    /// The starts of the functions around `a` (the innermost 64 at most).
    fn enclosing(&self, a: u64) -> Vec<u64> {
        let n = self.ranges.partition_point(|r| r.0 <= a);
        self.ranges[..n]
            .iter()
            .rev()
            .take(64)
            .filter(|r| a < r.1)
            .map(|r| r.0)
            .collect()
    }
}

impl Findings {
    /// System calls named by function symbols (wrappers, the calls themselves).
    fn add_symbols(&mut self, funcs: &[&elf::Symbol]) -> Named {
        let table = table();
        let mut named = Named {
            generic: BTreeMap::new(),
            socket_fns: BTreeSet::new(),
        };
        let mut generic_names = BTreeSet::new();
        for s in funcs {
            let b = bare(&s.name);
            for name in [s.name.as_str(), b] {
                if let Some(r) = table.syscall_by_name(name) {
                    self.add_syscall(
                        r.number.unwrap_or_default(),
                        Evidence::Symbol(s.name.clone()),
                    );
                }
                if let Some(w) = table.wrappers.get(name) {
                    for t in &w.targets {
                        if let Some(n) = syscall_number(t) {
                            self.add_syscall(n, Evidence::Symbol(s.name.clone()));
                        }
                    }
                }
            }
            if let Some(&(_, reg)) = GENERIC_ENTRIES.iter().find(|g| g.0 == s.name) {
                named.generic.insert(s.value, reg);
                generic_names.insert(s.name.clone());
            }
            if b == "socket" || b == "socketpair" {
                named.socket_fns.insert(s.value);
            }
        }
        self.generic_entries = generic_names.into_iter().collect();
        named
    }

    /// Constant numbers given to generic entries (`syscall()`).
    fn add_generic_calls(&mut self, calls: &[Point], generic: &BTreeMap<u64, usize>) {
        for c in calls {
            if let Some(&reg) = c.target.and_then(|t| generic.get(&t)) {
                if let Some(n) = c.regs[reg].filter(|&n| syscalls::name(n).is_some()) {
                    self.add_syscall(n, Evidence::Call);
                }
            }
        }
    }

    /// Address families of `socket`/`socketpair`: constants at the sites, else at the calls of
    /// the functions that forward their first argument to one, a few levels up. Sites and
    /// calls with an unknown family count unless they are inside a socket function (whose
    /// callers give the family).
    fn add_socket_families(
        &mut self,
        functions: &Functions,
        sys: &[Point],
        calls: &[Point],
        mut socket_fns: BTreeSet<u64>,
    ) {
        let mut unknown: BTreeSet<u64> = BTreeSet::new();
        for p in sys {
            if !matches!(p.regs[0], Some(SYS_SOCKET | SYS_SOCKETPAIR)) {
                continue;
            }
            match p.regs[RDI] {
                Some(af) => {
                    self.families.entry(af).or_default().insert(Evidence::Site);
                }
                None if functions.forwards(p) => {
                    socket_fns.insert(p.block_start);
                }
                None => {
                    unknown.insert(p.address);
                }
            }
        }
        let mut done: BTreeSet<u64> = BTreeSet::new();
        for _round in 0..8 {
            let mut new = Vec::new();
            for c in calls {
                if !c.target.is_some_and(|t| socket_fns.contains(&t)) || !done.insert(c.address) {
                    continue;
                }
                match c.regs[RDI] {
                    Some(af) => {
                        self.families.entry(af).or_default().insert(Evidence::Call);
                    }
                    None if functions.forwards(c) => new.push(c.block_start),
                    None => {
                        unknown.insert(c.address);
                    }
                }
            }
            let before = socket_fns.len();
            socket_fns.extend(new);
            if socket_fns.len() == before {
                break;
            }
        }
        self.unknown_family_calls = unknown
            .iter()
            .filter(|&&a| {
                !functions
                    .enclosing(a)
                    .iter()
                    .any(|f| socket_fns.contains(f))
            })
            .count();
    }
}

/// Why an option is in the fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Why {
    pub syscalls: BTreeSet<u64>,
    /// System calls seen only through libc wrapper symbols (no constant at a site or call).
    pub by_symbol_only: BTreeSet<u64>,
    pub families: BTreeSet<u64>,
    pub sources: BTreeSet<String>,
    pub inputs: BTreeSet<String>,
}

/// The options the findings need, by name (without `CONFIG_`), with why.
pub fn options(findings: &[Findings]) -> BTreeMap<String, Why> {
    let t = table();
    let mut out: BTreeMap<String, Why> = BTreeMap::new();
    // System calls some program showed as a constant.
    let mut direct: BTreeSet<u64> = BTreeSet::new();
    for f in findings {
        for (n, ev) in &f.syscalls {
            if let Some(r) = t.syscalls.get(n) {
                for o in &r.targets {
                    let w = out.entry(o.clone()).or_default();
                    w.syscalls.insert(*n);
                    if ev.iter().all(|e| matches!(e, Evidence::Symbol(_))) {
                        w.by_symbol_only.insert(*n);
                    } else {
                        direct.insert(*n);
                    }
                    w.sources.insert(r.source.clone());
                    w.inputs.insert(f.input.clone());
                }
            }
        }
        for n in f.families.keys() {
            if let Some(r) = t.families.get(n) {
                for o in &r.targets {
                    let w = out.entry(o.clone()).or_default();
                    w.families.insert(*n);
                    w.sources.insert(r.source.clone());
                    w.inputs.insert(f.input.clone());
                }
            }
        }
    }
    for w in out.values_mut() {
        w.by_symbol_only.retain(|n| !direct.contains(n));
    }
    out
}

/// The options set to `y` in a Kconfig fragment (`CONFIG_X=y` lines), without `CONFIG_`.
pub fn parse_base(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("CONFIG_")?.strip_suffix("=y"))
        .map(str::to_string)
        .collect()
}

fn short_name(input: &str) -> String {
    Path::new(input)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| input.to_string())
}

fn family_name(n: u64) -> String {
    table()
        .families
        .get(&n)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| format!("family {n}"))
}

/// The fragment: a header saying what was read and what cannot be seen, then one comment and
/// one `CONFIG_X=y` line per option, sorted by option name. Options in `base` are left out (and
/// named in a comment).
pub fn render(findings: &[Findings], base: Option<(&str, &BTreeSet<String>)>) -> String {
    let mut s = String::new();
    let names: Vec<String> = findings.iter().map(|f| short_name(&f.input)).collect();
    let _ = writeln!(
        s,
        "# lupine-config: derived from {} (static analysis of syscall sites)",
        names.join(", ")
    );
    for (f, name) in findings.iter().zip(&names) {
        let mut line = format!(
            "# {name}: {} syscall sites, {} with a constant number",
            f.sites, f.constant_sites
        );
        if !f.has_symbols {
            line.push_str("; no symbols, so libc wrappers are not identified");
        }
        if f.imports > 0 {
            let _ = write!(line, "; imports {} symbols", f.imports);
        }
        if !f.families.is_empty() {
            let fams: Vec<String> = f.families.keys().map(|&n| family_name(n)).collect();
            let _ = write!(line, "; socket families {}", fams.join(", "));
        }
        if f.unknown_family_calls > 0 {
            let n = f.unknown_family_calls;
            let _ = write!(
                line,
                "; {n} socket call{} with a family not constant there",
                if n == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(s, "{line}");
        if !f.c_libraries.is_empty() {
            let _ = writeln!(
                s,
                "# {name} loads the C library {}: counted by what is imported from it",
                f.c_libraries.join(", ")
            );
        }
    }
    let _ = writeln!(
        s,
        "# Not visible statically: numbers computed at run time (syscall() with a variable number,\n\
         # dispatch tables), socket families not constant at the call, and needs that are not system\n\
         # calls (/proc/sys needs PROC_SYSCTL; filesystems, devices and ioctls)."
    );
    let opts = options(findings);
    let empty = BTreeSet::new();
    let (base_name, base_set) = base.unwrap_or(("", &empty));
    let skipped: Vec<&str> = opts
        .keys()
        .filter(|o| base_set.contains(*o))
        .map(String::as_str)
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            s,
            "# already =y in {}: {}",
            short_name(base_name),
            skipped.join(", ")
        );
    }
    for (o, w) in &opts {
        if base_set.contains(o) {
            continue;
        }
        let mut items: Vec<(String, String)> = w
            .syscalls
            .iter()
            .map(|&n| {
                let nm = syscalls::name(n).unwrap_or("?").to_string();
                let how = if w.by_symbol_only.contains(&n) {
                    ", by symbol"
                } else {
                    ""
                };
                (nm.clone(), format!("{nm} ({n}{how})"))
            })
            .collect();
        items.sort();
        let mut what: Vec<String> = items.into_iter().map(|i| i.1).collect();
        what.extend(
            w.families
                .iter()
                .map(|&n| format!("{} ({n}) sockets", family_name(n))),
        );
        let srcs: Vec<&str> = w.sources.iter().map(String::as_str).collect();
        let mut comment = format!("# {}: {}", what.join(", "), srcs.join("; "));
        if findings.len() > 1 {
            let ins: Vec<String> = findings
                .iter()
                .filter(|f| w.inputs.contains(&f.input))
                .map(|f| short_name(&f.input))
                .collect();
            let _ = write!(comment, " [{}]", ins.join(", "));
        }
        let _ = writeln!(s, "{comment}\nCONFIG_{o}=y");
    }
    s
}

#[cfg(test)]
mod tests;
