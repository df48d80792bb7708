//! `--format initramfs`: a cpio "newc" archive written straight from the tree, so owners,
//! modes and device nodes are exact without root. Hard links share an inode number and carry
//! their data on the last link, as GNU cpio writes them (the kernel accepts that too).

use std::collections::HashMap;
use std::io::{self, Write};

use crate::layers::{Kind, Tree};

/// One newc header and name. `f` holds ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
/// devminor, rdevmajor, rdevminor; namesize and check are filled in here.
fn header(w: &mut impl Write, name: &str, f: [u32; 11]) -> io::Result<()> {
    let namesize = name.len() + 1;
    let mut h = String::from("070701");
    for v in f.into_iter().chain([namesize as u32, 0]) {
        h.push_str(&format!("{v:08x}"));
    }
    w.write_all(h.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + namesize)
}

fn pad(w: &mut impl Write, len: usize) -> io::Result<()> {
    w.write_all(&[0; 3][..(4 - len % 4) % 4])
}

pub fn write(tree: &Tree, w: &mut impl Write) -> io::Result<()> {
    let mut links: HashMap<u64, u32> = HashMap::new();
    for n in tree.nodes.values() {
        if matches!(n.kind, Kind::File(_)) {
            *links.entry(n.ino).or_default() += 1;
        }
    }
    let mut left = links.clone();
    for (path, n) in &tree.nodes {
        let name = if path.is_empty() { "." } else { path.as_str() };
        let mode = n.type_bits() | n.mode;
        let (data, nlink, rdev): (&[u8], u32, (u32, u32)) = match &n.kind {
            Kind::File(d) => {
                let l = left.get_mut(&n.ino).expect("counted above");
                *l -= 1;
                let data: &[u8] = if *l == 0 { d } else { &[] };
                (data, links[&n.ino], (0, 0))
            }
            Kind::Symlink(t) => (t.as_bytes(), 1, (0, 0)),
            Kind::Char(a, b) | Kind::Block(a, b) => (&[], 1, (*a, *b)),
            Kind::Dir => (&[], 2, (0, 0)),
            Kind::Fifo => (&[], 1, (0, 0)),
        };
        if data.len() > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/{path}: larger than the 4 GiB a newc cpio member can hold"),
            ));
        }
        let mtime = n.mtime.min(u32::MAX as u64) as u32;
        let f = [
            n.ino as u32,
            mode,
            n.uid,
            n.gid,
            nlink,
            mtime,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
        ];
        header(w, name, f)?;
        w.write_all(data)?;
        pad(w, data.len())?;
    }
    header(w, "TRAILER!!!", [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    w.flush()
}
