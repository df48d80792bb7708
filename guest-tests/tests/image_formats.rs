//! Every output lupine-image offers boots on `lupine-base`, the smallest kernel: an ext4 disk
//! (`root=/dev/vda init=/lupine-init`), a cpio initramfs and a gzipped one (`.cpio.gz`,
//! `rdinit=/lupine-init`: lupine-base has the gzip decompressor for it).

use std::path::Path;

use guest_tests::{hello_image, lupine_init, Outcome, TempDir, Vm, BASE};
use lupine_image::{Format, Options};

const LINE: &str = "Hello from lupine-image";

fn build(image: &Path, output: &Path, format: Format) {
    lupine_image::build(&Options {
        format,
        ..Options::new(
            image.to_path_buf(),
            output.to_path_buf(),
            lupine_init().unwrap(),
        )
    })
    .unwrap_or_else(|e| panic!("lupine-image {}: {e}", output.display()));
}

fn ran(out: Outcome) {
    assert!(out.has_line(LINE), "{out}");
    out.assert_exit_status(0);
}

#[test]
fn ext4_cpio_and_gzipped_cpio_boot_on_lupine_base() {
    let tmp = TempDir::new("image-formats").unwrap();
    let image = hello_image(tmp.path(), LINE).unwrap();

    let disk = tmp.join("root.ext4");
    build(&image, &disk, Format::Ext4);
    ran(Vm::lupine_disk(BASE, &disk).unwrap().run().unwrap());

    for name in ["root.cpio", "root.cpio.gz"] {
        let archive = tmp.join(name);
        build(&image, &archive, Format::Initramfs);
        let gzipped = std::fs::read(&archive).unwrap().starts_with(&[0x1f, 0x8b]);
        assert_eq!(gzipped, name.ends_with(".gz"), "{name}");
        ran(Vm::lupine_on(BASE, &archive).unwrap().run().unwrap());
    }
}
