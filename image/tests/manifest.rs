//! /etc/lupine.json: derived from the config, merge-patched, validated by lupine-init --check.

mod support;

use std::fs;

use serde_json::{json, Value};
use support::*;

fn image(dir: &std::path::Path, config: Value) {
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .finish();
    oci(dir, &Spec::new(vec![l], config));
}

fn build_with(config: Value, fragment: Option<Value>) -> Result<Value, String> {
    let d = scratch("manifest");
    image(&d.join("oci"), config);
    let out = d.join("root.cpio");
    let mut o = options(&d.join("oci"), &out);
    o.format = lupine_image::Format::Initramfs;
    if let Some(f) = fragment {
        fs::write(d.join("frag.json"), serde_json::to_vec(&f).unwrap()).unwrap();
        o.manifest = Some(d.join("frag.json"));
    }
    let r = lupine_image::build(&o).map_err(|e| e.to_string());
    let res = match r {
        Ok(b) => {
            // The manifest in the archive is the one reported.
            let x = d.join("x");
            cpio_extract(&out, &x);
            let inside: Value =
                serde_json::from_slice(&fs::read(x.join("etc/lupine.json")).unwrap()).unwrap();
            assert_eq!(inside, b.manifest);
            Ok(inside)
        }
        Err(e) => {
            assert!(!out.exists());
            let left: Vec<String> = listing(&d)
                .into_iter()
                .filter(|n| n != "oci" && n != "frag.json")
                .collect();
            assert!(left.is_empty(), "left behind: {left:?}");
            Err(e)
        }
    };
    fs::remove_dir_all(&d).unwrap();
    res
}

#[test]
fn derived_from_the_config() {
    let m = build_with(
        json!({"Entrypoint": ["/bin/app", "-v"], "Cmd": ["serve"], "Env": ["PATH=/usr/bin:/bin", "EMPTY=", "EQ=a=b"],
               "WorkingDir": "/srv", "User": "999:998"}),
        None,
    )
    .unwrap();
    assert_eq!(
        m,
        json!({"version": 1, "app": {"path": "/bin/app", "args": ["-v", "serve"],
               "env": {"PATH": "/usr/bin:/bin", "EMPTY": "", "EQ": "a=b"}, "cwd": "/srv", "user": "999:998"}})
    );
    // Cmd alone.
    let m = build_with(json!({"Cmd": ["sh", "-c", "echo hi"]}), None).unwrap();
    assert_eq!(m["app"], json!({"path": "sh", "args": ["-c", "echo hi"]}));
}

#[test]
fn fragment_is_a_merge_patch() {
    let m = build_with(
        json!({"Cmd": ["/bin/app", "a"], "Env": ["A=1", "B=2"], "User": "nobody"}),
        Some(
            json!({"app": {"env": {"B": null, "C": "3"}, "user": null, "args": ["z"]},
                    "hostname": "vm1", "mode": "exec"}),
        ),
    )
    .unwrap();
    assert_eq!(
        m,
        json!({"version": 1, "hostname": "vm1", "mode": "exec",
               "app": {"path": "/bin/app", "args": ["z"], "env": {"A": "1", "C": "3"}}})
    );
    // The fragment can supply the program when the image has none.
    let m = build_with(json!({}), Some(json!({"app": {"path": "/bin/app"}}))).unwrap();
    assert_eq!(m["app"]["path"], "/bin/app");
}

#[test]
fn invalid_manifest_is_refused_with_lupine_init_message() {
    let e = build_with(json!({"Cmd": ["/bin/app"], "WorkingDir": "relative"}), None).unwrap_err();
    assert!(
        e.contains("app.cwd") && e.contains("not an absolute path"),
        "{e}"
    );
    let e = build_with(json!({"Cmd": ["/bin/app"]}), Some(json!({"bogus": 1}))).unwrap_err();
    assert!(e.starts_with("invalid /etc/lupine.json: "), "{e}");
    assert!(e.contains("bogus"), "{e}");
    assert!(
        !e.contains("lupine-image."),
        "no temp path in the message: {e}"
    );
    let e = build_with(
        json!({"Cmd": ["/bin/app"]}),
        Some(json!({"app": {"path": null}})),
    )
    .unwrap_err();
    assert!(e.contains("no Entrypoint or Cmd"), "{e}");
}

#[test]
fn merge_patch_rfc7386_examples() {
    use lupine_image::manifest::merge_patch;
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (mut target, patch, want) in cases {
        merge_patch(&mut target, &patch);
        assert_eq!(target, want, "patch {patch}");
    }
}
