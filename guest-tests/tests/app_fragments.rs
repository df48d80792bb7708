//! The hand-written application fragments (`kernel-patches/configs/apps/APP.config`) agree with
//! the binaries apps/build.sh builds: every option lupine-config derives from the app's binary
//! (beyond lupine-base) is in the fragment, or named below with the reason it is left out. The
//! fragments may carry more (needs no system call shows: a #! entrypoint, /proc/sys, setuid in
//! the image's scripts), but cannot drift from what the binary calls.

use guest_tests::{app, workspace_root};
use std::collections::BTreeSet;

/// Derived options an app's fragment leaves out on purpose: (app, option, why).
const LEFT_OUT: &[(&str, &str, &str)] = &[(
    "memcached",
    "IPV6",
    "memcached listens on every address getaddrinfo gives and skips a family the kernel \
     lacks; the VMs are IPv4-only",
)];

/// The `CONFIG_X=y` options of a fragment, without the prefix.
fn options(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("CONFIG_"))
        .filter_map(|l| l.strip_suffix("=y"))
        .map(String::from)
        .collect()
}

#[test]
fn app_fragments_hold_every_option_their_binaries_need() {
    let configs = workspace_root().join("kernel-patches/configs");
    let base = options(&std::fs::read_to_string(configs.join("lupine-base.config")).unwrap());
    let mut problems = Vec::new();
    for name in ["redis", "nginx", "memcached"] {
        let dir = app(name).unwrap();
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("build-info.json")).unwrap()).unwrap();
        let binary = dir.join(format!("rootfs{}", info["binary"].as_str().unwrap()));
        let findings = lupine_config::derive_file(&binary).unwrap();
        let derived = options(&lupine_config::render(&[findings], None));
        let fragment =
            options(&std::fs::read_to_string(configs.join(format!("apps/{name}.config"))).unwrap());
        for o in derived.difference(&base) {
            let left_out = LEFT_OUT.iter().any(|(a, opt, _)| *a == name && opt == o);
            if !fragment.contains(o) && !left_out {
                problems.push(format!(
                    "{name}: lupine-config derives CONFIG_{o} from {}, which apps/{name}.config \
                     lacks (add it, or name it in LEFT_OUT with the reason)",
                    binary.display()
                ));
            }
            if fragment.contains(o) && left_out {
                problems.push(format!(
                    "{name}: CONFIG_{o} is in the fragment and in LEFT_OUT"
                ));
            }
        }
        for (a, o, _) in LEFT_OUT.iter().filter(|(a, _, _)| *a == name) {
            if !derived.contains(*o) {
                problems.push(format!("{a}: LEFT_OUT names CONFIG_{o}, no longer derived"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
