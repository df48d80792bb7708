//! Dynamically linked programs: the program's own sites and the C library functions it
//! imports, and for each library it loads (found in the image root, see
//! `lupine_relink::needed`) the same, but for the C library itself, whose own sites cover
//! every system call it offers: what its users import stands for what they use of it.

use iced_x86::{Code, Instruction, Register};
use lupine_relink::elf::{self, Elf};
use lupine_relink::needed::{self, ReadFile};
use lupine_relink::Error;

use crate::{derive_elf, Findings};

/// Files of the C library (glibc's and musl's): a program that loads them uses what it imports.
fn is_c_library(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.split(".so").next().unwrap_or(file);
    file.starts_with("ld-linux")
        || file.starts_with("ld-musl")
        || matches!(
            stem,
            "libc"
                | "libc.musl-x86_64"
                | "libpthread"
                | "librt"
                | "libdl"
                | "libm"
                | "libutil"
                | "libanl"
        )
}

/// The program `input` (at `path` in the image that `read` reads) and every library it loads
/// but the C library, each as its findings (the program's first, its `c_libraries` naming the C
/// library files). A library that is not in the image is an error.
pub fn derive_dynamic(
    input: &str,
    path: &str,
    data: &[u8],
    read: &ReadFile<'_>,
) -> Result<Vec<Findings>, Error> {
    let elf = Elf::parse(input, data)?;
    let mut out = vec![derive_elf(input, &elf)];
    for lib in needed::resolve(&elf, path, read) {
        let (Some(lib_path), Some(lib_data)) = (&lib.path, &lib.data) else {
            return Err(Error::NotProgram {
                file: input.into(),
                what: format!(
                    "needs {} (through {}), which is not in the image",
                    lib.name, lib.needed_by
                ),
            });
        };
        if is_c_library(lib_path) {
            out[0].c_libraries.push(lib_path.clone());
            continue;
        }
        let lib_elf = Elf::parse(lib_path, lib_data)?;
        out.push(derive_elf(lib_path, &lib_elf));
    }
    Ok(out)
}

/// The functions `elf` imports, as symbols: at their PLT stub (a `jmp [rip+slot]` through the
/// GOT slot the dynamic linker fills, with the `endbr64` before it) when it has one, so that
/// calls to them are seen with their arguments, else at address 0.
pub(crate) fn imported_functions(elf: &Elf<'_>, ins: &[Instruction]) -> Vec<elf::Symbol> {
    let slots = elf.import_slots();
    let mut stubs: std::collections::BTreeMap<String, u64> = Default::default();
    for (k, i) in ins.iter().enumerate() {
        if i.code() != Code::Jmp_rm64 || i.memory_base() != Register::RIP {
            continue;
        }
        let Some(name) = slots.get(&i.ip_rel_memory_address()) else {
            continue;
        };
        let start = match k.checked_sub(1).map(|p| &ins[p]) {
            Some(p) if p.code() == Code::Endbr64 && p.next_ip() == i.ip() => p.ip(),
            _ => i.ip(),
        };
        stubs.entry(name.clone()).or_insert(start);
    }
    elf.imports
        .iter()
        .map(|name| {
            let at = stubs.get(name).copied();
            elf::Symbol {
                name: name.clone(),
                value: at.unwrap_or(0),
                size: if at.is_some() { 16 } else { 0 },
                st_type: elf::STT_FUNC,
                shndx: 1,
            }
        })
        .collect()
}
