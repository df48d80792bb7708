//! Every refusal names what is at fault and leaves no OUTPUT and no temp files behind.

mod support;

use std::fs;
use std::path::Path;

use serde_json::json;
use support::*;

fn config() -> serde_json::Value {
    json!({"Cmd": ["/bin/app"]})
}

fn ok_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .finish()
}

/// Builds `image` into a fresh output directory, expects an error containing every `needle`,
/// and checks the output directory is still empty.
fn refused(image: &Path, needles: &[&str]) -> String {
    let out_dir = image.parent().unwrap().join("out");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir(&out_dir).unwrap();
    for format in [lupine_image::Format::Ext4, lupine_image::Format::Initramfs] {
        let mut o = options(image, &out_dir.join("root.img"));
        o.format = format;
        let e = lupine_image::build(&o)
            .expect_err("must be refused")
            .to_string();
        for n in needles {
            assert!(e.contains(n), "{e:?} should contain {n:?}");
        }
        assert!(!e.contains('\n'), "one line: {e:?}");
        assert!(
            listing(&out_dir).is_empty(),
            "left behind: {:?}",
            listing(&out_dir)
        );
        if format == lupine_image::Format::Initramfs {
            return e;
        }
    }
    unreachable!()
}

fn layer_image(name: &str, layer: Vec<u8>) -> (std::path::PathBuf, String) {
    let d = scratch(name);
    let layers = vec![ok_layer(), layer];
    oci(&d.join("oci"), &Spec::new(layers, config()));
    let (_, m) = manifest_of(&d.join("oci"));
    let digest = m["layers"][1]["digest"].as_str().unwrap().to_string();
    (d, digest)
}

#[test]
fn missing_blob() {
    let d = scratch("missing");
    oci(&d.join("oci"), &Spec::new(vec![ok_layer()], config()));
    let (_, m) = manifest_of(&d.join("oci"));
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    fs::remove_file(blob_path(&d.join("oci"), digest)).unwrap();
    refused(&d.join("oci"), &[digest, "missing"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn digest_mismatch_in_layer_config_and_manifest() {
    let d = scratch("digest");
    let dir = d.join("oci");
    oci(&dir, &Spec::new(vec![ok_layer()], config()));
    let (mpath, m) = manifest_of(&dir);
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let orig = fs::read(blob_path(&dir, &layer)).unwrap();
    let mut bad = orig.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    fs::write(blob_path(&dir, &layer), &bad).unwrap();
    refused(&dir, &[&layer, "does not match its digest"]);
    fs::write(blob_path(&dir, &layer), &orig).unwrap();

    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let c = fs::read(blob_path(&dir, &config)).unwrap();
    fs::write(
        blob_path(&dir, &config),
        String::from_utf8(c.clone()).unwrap().replace("app", "apq"),
    )
    .unwrap();
    refused(&dir, &[&config, "does not match its digest"]);
    fs::write(blob_path(&dir, &config), &c).unwrap();

    // Same size, different content.
    let mb = String::from_utf8(fs::read(&mpath).unwrap()).unwrap();
    fs::write(
        &mpath,
        mb.replace("\"schemaVersion\":2", "\"schemaVersion\":3"),
    )
    .unwrap();
    let mdigest = format!("sha256:{}", mpath.file_name().unwrap().to_string_lossy());
    refused(&dir, &[&mdigest, "does not match its digest"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn size_mismatch() {
    let d = scratch("size");
    let dir = d.join("oci");
    oci(&dir, &Spec::new(vec![ok_layer()], config()));
    let mut digest = String::new();
    edit_manifest(&dir, |m| {
        digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
        m["layers"][0]["size"] = json!(m["layers"][0]["size"].as_u64().unwrap() + 1);
    });
    let e = refused(&dir, &[&digest, "size is"]);
    assert!(e.contains("the descriptor says"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn diff_id_mismatch_in_legacy_docker_save() {
    let d = scratch("diffid");
    let spec = Spec::new(vec![ok_layer()], config());
    docker_save(&d.join("img.tar"), &spec, "x:1");
    // Rewrite the tarball with a layer whose content differs from its diff_id.
    let mut ar = tar::Archive::new(fs::File::open(d.join("img.tar")).unwrap());
    let mut b = tar::Builder::new(fs::File::create(d.join("bad.tar")).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let mut h = e.header().clone();
        if e.path().unwrap().ends_with("layer.tar") {
            data = LayerTar::new().file("evil", b"x", 0o644).finish();
            h.set_size(data.len() as u64);
            h.set_cksum();
        }
        b.append(&h, &data[..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    refused(&d.join("bad.tar"), &["diff_id", &sha(&ok_layer())]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn path_traversal() {
    let (d, digest) = layer_image("dotdot", LayerTar::new().file("../x", b"x", 0o644).finish());
    refused(&d.join("oci"), &[&digest, "\"../x\"", "escapes the root"]);
    fs::remove_dir_all(&d).unwrap();
    let (d, digest) = layer_image(
        "dotdot2",
        LayerTar::new().file("bin/../../x", b"x", 0o644).finish(),
    );
    refused(&d.join("oci"), &[&digest, "bin/../../x"]);
    fs::remove_dir_all(&d).unwrap();
    let (d, digest) = layer_image("abs", LayerTar::new().file("/etc/x", b"x", 0o644).finish());
    refused(&d.join("oci"), &[&digest, "/etc/x", "absolute"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn escaping_symlink() {
    let (d, digest) = layer_image(
        "symlink",
        LayerTar::new()
            .dir("a", 0o755)
            .symlink("a/b", "../../../etc")
            .finish(),
    );
    refused(&d.join("oci"), &[&digest, "a/b", "escapes the root"]);
    fs::remove_dir_all(&d).unwrap();
    // Absolute and in-root relative targets are fine.
    let d = scratch("symlink-ok");
    let l = LayerTar::new()
        .dir("a", 0o755)
        .symlink("a/b", "../bin/app")
        .symlink("a/c", "/etc/x")
        .finish();
    oci(&d.join("oci"), &Spec::new(vec![ok_layer(), l], config()));
    lupine_image::build(&options(&d.join("oci"), &d.join("root.img"))).unwrap();
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn parent_through_symlink() {
    let (d, digest) = layer_image(
        "parent",
        LayerTar::new()
            .symlink("etc2", "/etc")
            .file("etc2/passwd", b"x", 0o644)
            .finish(),
    );
    refused(&d.join("oci"), &[&digest, "etc2/passwd", "symlink"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hardlink_to_missing_or_escaping_target() {
    let (d, digest) = layer_image(
        "hl-missing",
        LayerTar::new().hardlink("h", "nothing").finish(),
    );
    refused(&d.join("oci"), &[&digest, "\"h\"", "missing"]);
    fs::remove_dir_all(&d).unwrap();
    let (d, digest) = layer_image(
        "hl-escape",
        LayerTar::new().hardlink("h", "../../etc/shadow").finish(),
    );
    refused(&d.join("oci"), &[&digest, "escapes"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn zstd_and_unknown_media_types() {
    for mt in [
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/x-unknown",
    ] {
        let d = scratch("zstd");
        oci_with_media_type(&d.join("oci"), &Spec::new(vec![ok_layer()], config()), mt);
        refused(&d.join("oci"), &[mt, "unsupported media type"]);
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn bad_json() {
    let d = scratch("json");
    let dir = d.join("oci");
    oci(&dir, &Spec::new(vec![ok_layer()], config()));
    fs::write(dir.join("index.json"), b"{not json").unwrap();
    refused(&dir, &["index.json", "bad JSON"]);
    // A bad fragment.
    oci(&dir, &Spec::new(vec![ok_layer()], config()));
    fs::write(d.join("frag.json"), b"[1,").unwrap();
    let out = d.join("out.img");
    let mut o = options(&dir, &out);
    o.manifest = Some(d.join("frag.json"));
    let e = lupine_image::build(&o).unwrap_err().to_string();
    assert!(e.contains("frag.json") && e.contains("bad JSON"), "{e}");
    assert!(!out.exists());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn no_entrypoint() {
    let d = scratch("noentry");
    oci(
        &d.join("oci"),
        &Spec::new(vec![ok_layer()], json!({"Env": ["A=1"]})),
    );
    refused(&d.join("oci"), &["no Entrypoint or Cmd"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn not_an_image() {
    let d = scratch("notimage");
    fs::create_dir(d.join("empty")).unwrap();
    refused(&d.join("empty"), &["neither an OCI image layout"]);
    fs::write(d.join("junk"), b"hello").unwrap();
    refused(&d.join("junk"), &["junk"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn input_is_never_modified() {
    let d = scratch("readonly");
    oci(&d.join("oci"), &Spec::new(vec![ok_layer()], config()));
    let before = listing(&d.join("oci/blobs/sha256"));
    lupine_image::build(&options(&d.join("oci"), &d.join("root.img"))).unwrap();
    assert_eq!(before, listing(&d.join("oci/blobs/sha256")));
    let e = lupine_image::build(&options(&d.join("oci"), &d.join("oci/x.img"))).unwrap_err();
    assert!(e.to_string().contains("inside it"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}
