use super::*;
use crate::manifest::parse;

fn etc() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lupine-etc-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\n# comment\nredis:x:999:998:Redis:/var/lib/redis:/usr/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        dir.join("group"),
        "root:x:0:\nredis:x:998:\nwheel:x:10:redis\n",
    )
    .unwrap();
    dir
}

fn app(json: &str) -> App {
    parse(&format!(r#"{{"version": 1, "app": {json}}}"#))
        .unwrap()
        .app
}

fn launch(json: &str, inherited: &[(&str, &str)]) -> Result<Launch, Fatal> {
    let env = inherited
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    resolve(&app(json), env, &[], &etc())
}

fn env_of(l: &Launch) -> Vec<String> {
    l.env
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn environment_precedence_defaults_kernel_manifest() {
    let l = launch(
        r#"{"path": "/bin/sh", "env": {"TERM": "xterm", "KEY": "VALUE"}}"#,
        &[("TERM", "linux"), ("FROM_KERNEL", "1"), ("HOME", "/kernel")],
    )
    .unwrap();
    assert_eq!(
        env_of(&l),
        [
            "FROM_KERNEL=1",
            "HOME=/kernel",
            "KEY=VALUE",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm"
        ]
    );
}

#[test]
fn argv0_and_args() {
    let l = launch(
        r#"{"path": "/bin/sh", "argv0": "shell", "args": ["-c", "true"]}"#,
        &[],
    )
    .unwrap();
    assert_eq!(l.path.to_str().unwrap(), "/bin/sh");
    let argv: Vec<_> = l.argv.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(argv, ["shell", "-c", "true"]);
}

#[test]
fn bare_names_are_searched_in_path() {
    let l = launch(
        r#"{"path": "sh", "env": {"PATH": "/nonexistent:/bin"}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(l.path.to_str().unwrap(), "/bin/sh");
}

#[test]
fn missing_or_non_executable_app_is_exit_127() {
    for path in ["/no/such/app", "/etc/passwd", "no-such-app-anywhere"] {
        let e = launch(&format!(r#"{{"path": "{path}"}}"#), &[]).unwrap_err();
        assert_eq!(e.step, "exec");
        assert_eq!(e.status, 127);
        assert!(e.reason.starts_with(path), "{e}");
    }
}

#[test]
fn no_path_at_all_is_explained() {
    let e = launch("{}", &[]).unwrap_err();
    assert_eq!(e.step, "app");
    assert!(e.reason.contains("app.path is not set"), "{e}");
}

#[test]
fn users_by_name_and_id() {
    let ids = |user: &str| {
        launch(&format!(r#"{{"path": "/bin/sh", "user": "{user}"}}"#), &[]).map(|l| l.ids.unwrap())
    };
    assert_eq!(
        ids("redis").unwrap(),
        Ids {
            uid: 999,
            gid: 998,
            groups: vec![998]
        }
    );
    assert_eq!(
        ids("999").unwrap(),
        Ids {
            uid: 999,
            gid: 998,
            groups: vec![998]
        }
    );
    assert_eq!(
        ids("redis:wheel").unwrap(),
        Ids {
            uid: 999,
            gid: 10,
            groups: vec![10]
        }
    );
    // Not in passwd: gid 0, as container runtimes do.
    assert_eq!(
        ids("1234").unwrap(),
        Ids {
            uid: 1234,
            gid: 0,
            groups: vec![0]
        }
    );
    assert_eq!(
        ids("1234:5").unwrap(),
        Ids {
            uid: 1234,
            gid: 5,
            groups: vec![5]
        }
    );
    let e = ids("nobody-here").unwrap_err();
    assert_eq!(e.step, "app.user");
    assert!(e.reason.contains("no user \"nobody-here\""), "{e}");
    assert!(ids("redis:nogroup")
        .unwrap_err()
        .reason
        .contains("no group \"nogroup\""));
}

#[test]
fn home_comes_from_passwd_and_explicit_groups_win() {
    let l = launch(
        r#"{"path": "/bin/sh", "user": "redis", "groups": [1, 2]}"#,
        &[],
    )
    .unwrap();
    assert!(env_of(&l).contains(&"HOME=/var/lib/redis".to_string()));
    assert_eq!(l.ids.unwrap().groups, [1, 2]);
}
