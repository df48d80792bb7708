//! Replays the corpora and crash inputs of the fuzz targets `oci` and `layer` (`fuzz/corpus/T/`,
//! `fuzz/artifacts/T/`) through the same bodies the fuzz targets run
//! (`lupine_image::fuzz`), on stable: no panic, and the properties hold (an accepted layer
//! writes nothing outside the root, follows no symlink while writing, leaves no relative
//! symlink that leads out of the root). Every crash the fuzzer found stays a regression test.
//!
//! The seeds (`seed-*` in the corpora) are the inputs of `layer_seeds` and `oci_seeds` below:
//! the shapes the other tests build.

mod support;

use lupine_image::fuzz::{self, GZIP, LEGACY, NO_FIXUP, REF, SNIFF, TARBALL};
use support::*;
use test_support::fuzz::replay;

#[test]
fn layer_corpus_replays() {
    replay("layer", fuzz::layer);
}

#[test]
fn oci_corpus_replays() {
    replay("oci", fuzz::oci);
}

/// The seeds (the shapes of the other tests) run too, whatever `cargo fuzz cmin` kept of them;
/// the well-formed ones are accepted: the token format reaches past the digest checks, where
/// the fuzzer cannot compute digests itself.
#[test]
fn seeds_run_and_well_formed_ones_are_accepted() {
    let accepted = [
        "oci",
        "oci-tar",
        "oci-tarball-ref",
        "oci-nested",
        "oci-nested-tarball",
        "legacy",
        "legacy-dir-gzip",
        "build-two-layers",
        "build-two-layers-gzip",
        "build-two-layers-sniff",
        "symlinks-ok",
        "whiteouts",
        "long-names",
        "real-image",
        "quote",
    ];
    let oci = oci_seeds()
        .into_iter()
        .map(|(n, d)| (n, d, fuzz::oci as fn(&[u8]) -> bool));
    let layer = layer_seeds()
        .into_iter()
        .map(|(n, d)| (n, d, fuzz::layer as fn(&[u8]) -> bool));
    for (name, data, body) in oci.chain(layer) {
        let ok = body(&data);
        assert_eq!(
            ok,
            accepted.contains(&name.as_str()),
            "seed {name}: accepted {ok}"
        );
    }
}

/// The first crash input of the `layer` target: each relative symlink stays inside the root on
/// its own, but `t -> s/../beside` passes through `s -> .`, and on the host leads to the
/// directory beside the root.
#[test]
fn a_symlink_escaping_through_another_is_refused() {
    for (s, t) in [
        (".", "s/../beside"),
        ("d/..", "s/../x"),
        ("a", "./s/d/../../x"),
    ] {
        let l = LayerTar::new()
            .dir("d", 0o755)
            .symlink("a", ".")
            .symlink("s", s)
            .symlink("t", t)
            .finish();
        let mut tree = lupine_image::layers::Tree::new();
        let e = tree.apply_layer("L", &l[..]).unwrap_err().to_string();
        assert!(e.contains("\"t\"") && e.contains("escapes the root"), "{e}");
        assert!(e.contains("\"s\""), "{e}");
    }
    // Chains that stay inside, and absolute links (root-relative in the VM), are accepted.
    let l = LayerTar::new()
        .dir("d", 0o755)
        .dir("d/e", 0o755)
        .symlink("s", "d/e")
        .symlink("d/f", "../s/..")
        .symlink("a", "/")
        .symlink("u", "a/../x")
        .symlink("loop1", "loop2")
        .symlink("loop2", "loop1/..")
        .finish();
    let mut tree = lupine_image::layers::Tree::new();
    tree.apply_layer("L", &l[..]).unwrap();
    // A later layer that turns a directory into a link can make an earlier link escape.
    let l2 = LayerTar::new().symlink("d/e", "..").finish();
    let e = tree.apply_layer("L2", &l2[..]).unwrap_err().to_string();
    assert!(e.contains("escapes the root"), "{e}");
}

/// The second crash input of the `layer` target: a hard link named `.` replaced the root with a
/// file (then every entry was gone, and the ext4 or cpio root was a regular file).
#[test]
fn a_hard_link_cannot_replace_the_root() {
    for name in [".", "./", "a/.."] {
        let l = LayerTar::new()
            .file("f", b"x", 0o644)
            .hardlink(name, "f")
            .finish();
        let mut tree = lupine_image::layers::Tree::new();
        let e = tree.apply_layer("L", &l[..]).unwrap_err().to_string();
        assert!(e.contains("the root must be a directory"), "{name}: {e}");
    }
}

/// The third crash input of the `layer` target: an entry of a layer under a lower layer's
/// directory, then an opaque whiteout of the root in the same layer, removed the directory and
/// left the entry without a parent. Whiteouts hide lower layers only: the directory stays, with
/// only this layer's entries.
#[test]
fn an_opaque_whiteout_keeps_the_directories_of_its_own_layer() {
    let lower = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/app", b"1", 0o755)
        .file("bin/old", b"o", 0o755)
        .dir("etc", 0o755)
        .finish();
    let upper = LayerTar::new()
        .file("bin/app", b"2", 0o755)
        .whiteout(".wh..wh..opq")
        .finish();
    let mut tree = lupine_image::layers::Tree::new();
    tree.apply_layer("lower", &lower[..]).unwrap();
    tree.apply_layer("upper", &upper[..]).unwrap();
    let paths: Vec<&str> = tree.nodes.keys().map(String::as_str).collect();
    assert_eq!(paths, ["", "bin", "bin/app"]);
    assert!(matches!(
        tree.nodes["bin"].kind,
        lupine_image::layers::Kind::Dir
    ));
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// A tar without its end-of-archive blocks (the applier stops at the end of the stream too).
fn trim(mut t: Vec<u8>) -> Vec<u8> {
    while t.len() >= 512 && t[t.len() - 512..].iter().all(|&b| b == 0) {
        t.truncate(t.len() - 512);
    }
    t
}

fn ok_layer() -> Vec<u8> {
    trim(
        LayerTar::new()
            .dir("bin", 0o755)
            .file("bin/app", b"x", 0o755)
            .finish(),
    )
}

/// The layers of the other tests (build.rs, refusals.rs, real_images.rs).
fn seed_layers() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let [l1, l2]: [Vec<u8>; 2] = two_layers().try_into().unwrap();
    let one = |t: LayerTar| vec![ok_layer(), trim(t.finish())];
    let long = "d/".repeat(60) + "long-name";
    vec![
        ("build-two-layers", vec![trim(l1), trim(l2)]),
        ("dotdot", one(LayerTar::new().file("../x", b"x", 0o644))),
        (
            "dotdot2",
            one(LayerTar::new().file("bin/../../x", b"x", 0o644)),
        ),
        ("absolute", one(LayerTar::new().file("/etc/x", b"x", 0o644))),
        (
            "escaping-symlink",
            one(LayerTar::new()
                .dir("a", 0o755)
                .symlink("a/b", "../../../etc")),
        ),
        (
            "symlinks-ok",
            one(LayerTar::new()
                .dir("a", 0o755)
                .symlink("a/b", "../bin/app")
                .symlink("a/c", "/etc/x")),
        ),
        (
            "parent-through-symlink",
            one(LayerTar::new()
                .symlink("etc2", "/etc")
                .file("etc2/passwd", b"x", 0o644)),
        ),
        (
            "hardlink-missing",
            one(LayerTar::new().hardlink("h", "nothing")),
        ),
        (
            "hardlink-escaping",
            one(LayerTar::new().hardlink("h", "../../etc/shadow")),
        ),
        (
            "real-image",
            vec![trim(
                LayerTar::new()
                    .file("docker-entrypoint.sh", b"#!/bin/sh\n", 0o755)
                    .dir("etc", 0o755)
                    .file("etc/os-release", b"ID=test\n", 0o644)
                    .finish(),
            )],
        ),
        (
            "quote",
            vec![trim(
                LayerTar::new()
                    .file("bin/app", b"x", 0o755)
                    .file("say\"hi\"", b"q", 0o644)
                    .finish(),
            )],
        ),
        (
            "whiteouts",
            one(LayerTar::new()
                .whiteout(".wh.bin")
                .whiteout(".wh..wh..opq")
                .whiteout("bin/.wh..wh..opq")
                .whiteout(".wh..")
                .file("bin", b"now a file", 0o644)),
        ),
        (
            "symlink-then-child",
            vec![
                trim(
                    LayerTar::new()
                        .dir("a", 0o755)
                        .file("a/f", b"1", 0o644)
                        .finish(),
                ),
                trim(
                    LayerTar::new()
                        .symlink("a", ".")
                        .symlink("b", "a/../a")
                        .hardlink("c", "b")
                        .finish(),
                ),
            ],
        ),
        (
            "long-names",
            vec![trim({
                // The tar crate's own writer, for its GNU long-name entries.
                let header = |kind, mode, size| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(kind);
                    h.set_mode(mode);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(0);
                    h.set_size(size);
                    h
                };
                let mut b = tar::Builder::new(Vec::new());
                let mut h = header(tar::EntryType::Regular, 0o644, 1);
                b.append_data(&mut h, &long, &b"l"[..]).unwrap();
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, "link", long.as_str()).unwrap();
                b.into_inner().unwrap()
            })],
        ),
    ]
}

fn token_documents() -> Vec<(&'static str, u8, [String; 4], usize)> {
    const MT: &str = "application/vnd.oci.image.manifest.v1+json";
    const IT: &str = "application/vnd.oci.image.index.v1+json";
    let index = |extra: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MT}","digest":"@M","size":#M,"annotations":{{"org.opencontainers.image.ref.name":"latest"}},"platform":{{"os":"linux","architecture":"amd64"}}}}{extra}]}}"#
        )
    };
    let manifest = |layer_t: &str, n: usize| {
        let layers: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"mediaType":"{layer_t}","digest":"@{i}","size":#{i}}}"#))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{MT}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@C","size":#C}},"layers":[{}]}}"#,
            layers.join(",")
        )
    };
    let config = |n: usize| {
        let ids: Vec<String> = (0..n).map(|i| format!(r#""%{i}""#)).collect();
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/app"],"Cmd":["--flag","x"],"Env":["PATH=/bin","A=b=c"],"WorkingDir":"/work","User":"1000:1000"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids.join(",")
        )
    };
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let tar = "application/vnd.oci.image.layer.v1.tar";
    let fake = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let attestation = format!(
        r#",{{"mediaType":"{MT}","digest":"{}","size":840,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.digest":"@M","vnd.docker.reference.type":"attestation-manifest"}}}},{{"mediaType":"{MT}","digest":"{}","size":1022,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}"#,
        fake('a'),
        fake('c')
    );
    let nested_top = format!(
        r#"{{"schemaVersion":2,"mediaType":"{IT}","manifests":[{{"mediaType":"{IT}","digest":"@N","size":#N,"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#
    );
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"{IT}","manifests":[{{"mediaType":"{MT}","digest":"@M","size":#M,"platform":{{"architecture":"amd64","os":"linux"}}}}{attestation}]}}"#
    );
    let legacy = r#"[{"Config":"@C","RepoTags":["latest"],"Layers":["@0","@1"]}]"#.to_string();
    vec![
        (
            "oci",
            GZIP,
            [index(""), manifest(gz, 2), config(2), String::new()],
            2,
        ),
        (
            "oci-tar",
            0,
            [index(""), manifest(tar, 2), config(2), String::new()],
            2,
        ),
        (
            "oci-tarball-ref",
            GZIP | TARBALL | REF,
            [
                index(&attestation),
                manifest(gz, 2),
                config(2),
                String::new(),
            ],
            2,
        ),
        (
            "oci-nested",
            GZIP | REF,
            [
                nested_top.clone(),
                manifest(gz, 1),
                config(1),
                nested.clone(),
            ],
            1,
        ),
        (
            "oci-nested-tarball",
            TARBALL,
            [nested_top, manifest(tar, 1), config(1), nested],
            1,
        ),
        (
            "legacy",
            LEGACY | TARBALL | REF,
            [legacy.clone(), String::new(), config(2), String::new()],
            2,
        ),
        (
            "legacy-dir-gzip",
            LEGACY | GZIP,
            [legacy, String::new(), config(2), String::new()],
            2,
        ),
        (
            "zstd",
            0,
            [
                index(""),
                manifest("application/vnd.oci.image.layer.v1.tar+zstd", 1),
                config(1),
                String::new(),
            ],
            1,
        ),
        (
            "size-mismatch",
            GZIP,
            [
                index(""),
                manifest(gz, 1).replace("#0", "1"),
                config(1),
                String::new(),
            ],
            1,
        ),
        (
            "missing-blob",
            0,
            [
                index(""),
                manifest(tar, 1).replace("@0", &fake('f')),
                config(1),
                String::new(),
            ],
            1,
        ),
        (
            "diff-id-mismatch",
            NO_FIXUP,
            [
                index(""),
                manifest(tar, 1),
                config(1).replace("%0", &fake('e')),
                String::new(),
            ],
            1,
        ),
        (
            "bad-json",
            0,
            [
                "{not json".into(),
                manifest(tar, 1),
                config(1),
                String::new(),
            ],
            1,
        ),
    ]
}

/// The `layer` seeds: name, input.
fn layer_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, layers) in seed_layers() {
        let parts: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        for (suffix, flags) in [("", 0), ("-gzip", GZIP), ("-sniff", SNIFF)] {
            if !suffix.is_empty() && name != "build-two-layers" {
                continue;
            }
            out.push((format!("{name}{suffix}"), fuzz::input(flags, &parts)));
        }
    }
    out
}

/// The `oci` seeds: name, input.
fn oci_seeds() -> Vec<(String, Vec<u8>)> {
    let second = trim(
        LayerTar::new()
            .file("etc/os-release", b"ID=test\n", 0o644)
            .finish(),
    );
    let ok = ok_layer();
    let all = [&ok[..], &second[..]];
    token_documents()
        .into_iter()
        .map(|(name, flags, docs, layers)| {
            let mut parts: Vec<&[u8]> = docs.iter().map(|d| d.as_bytes()).collect();
            parts.extend_from_slice(&all[..layers]);
            (name.to_string(), fuzz::input(flags, &parts))
        })
        .collect()
}
