//! A plain root filesystem directory as the image, with what to run from the command line; and
//! `--entrypoint`, `--cmd`, `--env`, `--workdir`, `--user` over an image's config, as
//! `docker run` applies them.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

use lupine_image::manifest::ConfigOverrides;
use lupine_image::Error;
use serde_json::json;
use support::*;

#[test]
fn a_root_filesystem_directory_becomes_a_disk() {
    let d = scratch("rootfs");
    let root = d.join("rootfs");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("srv/private")).unwrap();
    fs::write(root.join("usr/bin/app"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("usr/bin/app"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("srv/private"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(root.join("srv/fifo"))
        .status()
        .unwrap();
    assert!(fifo.success());

    let out = d.join("root.ext4");
    let mut o = options(&root, &out);
    o.config = ConfigOverrides {
        entrypoint: Some("/bin/app".into()),
        cmd: Some(vec!["serve".into(), "--port=80".into()]),
        env: vec!["MODE=prod".into()],
        workdir: Some("/srv".into()),
        user: Some("1000:1000".into()),
    };
    let built = lupine_image::build(&o).unwrap();
    assert_eq!(
        built.manifest["app"],
        json!({"path": "/bin/app", "args": ["serve", "--port=80"], "env": {"MODE": "prod"},
               "cwd": "/srv", "user": "1000:1000"})
    );
    let uid = |p: &std::path::Path| std::os::unix::fs::MetadataExt::uid(&fs::metadata(p).unwrap());
    let usr_bin = ext4_ls(&out, "/usr/bin");
    assert_eq!(usr_bin["app"].0, 0o104755, "{usr_bin:?}");
    assert_eq!(usr_bin["app"].1, uid(&root.join("usr/bin/app")));
    let srv = ext4_ls(&out, "/srv");
    assert_eq!(srv["private"].0, 0o40700, "{srv:?}");
    assert_eq!(srv["fifo"].0 & 0o170000, 0o010000, "{srv:?}");
    assert_eq!(ext4_ls(&out, "/")["bin"].0 & 0o170000, 0o120000);
    assert!(ext4_cat(&out, "/etc/lupine.json").starts_with(b"{"));
    // The input is untouched and nothing is left beside the output.
    assert_eq!(listing(&d), ["root.ext4", "rootfs"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_without_a_command_is_refused() {
    let d = scratch("rootfs-nocmd");
    fs::create_dir_all(d.join("rootfs/bin")).unwrap();
    let out = d.join("root.ext4");
    match lupine_image::build(&options(&d.join("rootfs"), &out)) {
        Err(e @ Error::NoEntrypoint { .. }) => {
            assert!(e.to_string().contains("rootfs"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(listing(&d), ["rootfs"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_command_line_overrides_the_image_config_as_docker_run_does() {
    let d = scratch("overrides");
    let l = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"x", 0o755)
        .finish();
    let config = json!({"Entrypoint": ["/bin/app"], "Cmd": ["default"], "Env": ["A=1", "B=2"],
                        "WorkingDir": "/", "User": "nobody"});
    oci(&d.join("oci"), &Spec::new(vec![l], config));
    let build = |c: ConfigOverrides, name: &str| {
        let mut o = options(&d.join("oci"), &d.join(name));
        o.config = c;
        lupine_image::build(&o).unwrap().manifest["app"].clone()
    };
    let app = build(
        ConfigOverrides {
            env: vec!["B=3".into(), "C=4".into()],
            cmd: Some(vec!["other".into()]),
            ..Default::default()
        },
        "a.ext4",
    );
    assert_eq!(
        app,
        json!({"path": "/bin/app", "args": ["other"], "env": {"A": "1", "B": "3", "C": "4"},
               "cwd": "/", "user": "nobody"})
    );
    // --entrypoint alone drops the image's Cmd.
    let app = build(
        ConfigOverrides {
            entrypoint: Some("/bin/sh".into()),
            workdir: Some("/tmp".into()),
            user: Some("0".into()),
            ..Default::default()
        },
        "b.ext4",
    );
    assert_eq!(app["path"], "/bin/sh");
    assert_eq!(app["args"], json!([]));
    assert_eq!((&app["cwd"], &app["user"]), (&json!("/tmp"), &json!("0")));
    fs::remove_dir_all(&d).unwrap();
}
