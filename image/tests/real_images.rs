//! Images shaped like what real tools write: a multi-platform Docker Hub pull saved by docker ≥ 25
//! (nested index, attestation manifests, platforms whose blobs are absent, annotations and
//! config fields lupine-image does not use), in OCI and in Docker v2 media types, and the legacy
//! manifest.json of the same tarball.

mod support;

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use support::*;

/// Media types of (index, manifest, config, gzip layer).
const OCI: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
];
const DOCKER: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

fn layer() -> Vec<u8> {
    LayerTar::new()
        .file("docker-entrypoint.sh", b"#!/bin/sh\n", 0o755)
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=test\n", 0o644)
        .finish()
}

/// A docker-built image config, with the fields docker, BuildKit and buildah write.
fn config_blob(diff_id: &str) -> Vec<u8> {
    let config = json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "ExposedPorts": {"80/tcp": {}}, "Tty": false, "OpenStdin": false,
        "StdinOnce": false,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25.4"],
        "Cmd": ["nginx", "-g", "daemon off;"], "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": ["/docker-entrypoint.sh"], "OnBuild": null,
        "Labels": {"maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"},
        "StopSignal": "SIGQUIT", "ArgsEscaped": true, "Shell": ["/bin/sh", "-c"],
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000u64}
    });
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "container": "0c1d2e3f", "container_config": {"Cmd": ["/bin/sh"], "Labels": null},
        "created": "2024-02-14T18:38:59.446735286Z", "docker_version": "20.10.23",
        "history": [
            {"created": "2024-01-27T00:30:48.743965523Z",
             "created_by": "/bin/sh -c #(nop) ADD file:5dd1f7e3e in / "},
            {"created": "2024-01-27T00:30:48.987361321Z",
             "created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true}
        ],
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    }))
    .unwrap()
}

fn fake_digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Writes the layout at `dir` (the amd64 image's blobs only, as `docker save` does) and returns
/// the digests of the config and the layer.
fn docker_hub_save(dir: &Path, types: [&str; 4]) -> (String, String) {
    let [index_t, manifest_t, config_t, layer_t] = types;
    let (ld, ls) = put_blob(dir, &gzip(&layer()));
    let (cd, cs) = put_blob(dir, &config_blob(&sha(&layer())));
    let build_annotations = json!({
        "com.docker.official-images.bashbrew.arch": "amd64",
        "org.opencontainers.image.base.name": "debian:bookworm-slim",
        "org.opencontainers.image.created": "2024-02-14T18:38:59Z",
        "org.opencontainers.image.revision": "b2d8b8b3",
        "org.opencontainers.image.source": "https://github.com/nginxinc/docker-nginx.git",
        "org.opencontainers.image.version": "1.25.4"
    });
    let manifest = json!({
        "schemaVersion": 2, "mediaType": manifest_t,
        "config": {"mediaType": config_t, "digest": cd, "size": cs},
        "layers": [{"mediaType": layer_t, "digest": ld, "size": ls}],
        "annotations": build_annotations
    });
    let (md, ms) = put_blob(dir, &serde_json::to_vec(&manifest).unwrap());
    let other = |arch: &str, variant: Option<&str>, c: char| {
        let mut p = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            p["variant"] = json!(v);
        }
        json!({"mediaType": manifest_t, "digest": fake_digest(c), "size": 1022, "platform": p,
               "annotations": build_annotations})
    };
    let attestation = |of: &str, c: char| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": fake_digest(c), "size": 840,
               "platform": {"architecture": "unknown", "os": "unknown"},
               "annotations": {"vnd.docker.reference.digest": of,
                               "vnd.docker.reference.type": "attestation-manifest"}})
    };
    let list = json!({
        "schemaVersion": 2, "mediaType": index_t,
        "manifests": [
            {"mediaType": manifest_t, "digest": md, "size": ms,
             "platform": {"architecture": "amd64", "os": "linux"}, "annotations": build_annotations},
            attestation(&md, 'a'),
            other("arm", Some("v7"), 'b'),
            other("arm64", Some("v8"), 'c'),
            attestation(&fake_digest('c'), 'd'),
            {"mediaType": manifest_t, "digest": fake_digest('e'), "size": 1022,
             "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.5576"}},
        ]
    });
    let (xd, xs) = put_blob(dir, &serde_json::to_vec(&list).unwrap());
    let top = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": index_t, "digest": xd, "size": xs,
            "annotations": {"io.containerd.image.name": "docker.io/library/nginx:1.25",
                            "org.opencontainers.image.ref.name": "1.25"}}]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    // docker ≥ 25 writes the legacy listing of the same blobs beside the layout.
    let legacy = json!([{"Config": format!("blobs/sha256/{}", &cd[7..]),
        "RepoTags": ["nginx:1.25"], "Layers": [format!("blobs/sha256/{}", &ld[7..])],
        "LayerSources": {sha(&layer()): {"mediaType": layer_t, "size": ls, "digest": ld}}}]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&legacy).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("repositories"), br#"{"nginx":{"1.25":"0123"}}"#).unwrap();
    (cd, ld)
}

fn expected_app() -> Value {
    json!({"path": "/docker-entrypoint.sh", "args": ["nginx", "-g", "daemon off;"],
           "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "NGINX_VERSION": "1.25.4"}})
}

fn assert_builds(image: &Path, ref_name: Option<&str>, out: &Path) {
    let mut o = options(image, out);
    o.ref_name = ref_name.map(String::from);
    let built = lupine_image::build(&o).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    assert_eq!(built.manifest["app"], expected_app());
    let (_, tree) = lupine_image::read_tree(image, ref_name).unwrap();
    assert!(tree.nodes.contains_key("etc/os-release"));
}

#[test]
fn docker_hub_multi_platform_save_in_oci_and_docker_media_types() {
    for (name, types) in [("oci", OCI), ("docker", DOCKER)] {
        let d = scratch(name);
        let dir = d.join("layout");
        docker_hub_save(&dir, types);
        assert_builds(&dir, None, &d.join("a.img"));
        assert_builds(&dir, Some("1.25"), &d.join("b.img"));
        tar_dir(&dir, &d.join("save.tar"));
        assert_builds(&d.join("save.tar"), Some("1.25"), &d.join("c.img"));
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn docker_25_legacy_listing_with_untagged_image() {
    let d = scratch("legacy25");
    let dir = d.join("layout");
    docker_hub_save(&dir, OCI);
    fs::remove_file(dir.join("oci-layout")).unwrap();
    assert_builds(&dir, Some("nginx:1.25"), &d.join("a.img"));
    // An untagged image: docker writes "RepoTags": null.
    let mut m: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m[0]["RepoTags"] = Value::Null;
    fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    assert_builds(&dir, None, &d.join("b.img"));
    fs::remove_dir_all(&d).unwrap();
}
