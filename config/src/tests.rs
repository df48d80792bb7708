use super::*;

#[test]
fn the_table_parses_and_every_row_is_sound() {
    let t = Table::parse(TABLE_TSV).expect("the table parses");
    assert!(t.syscalls.len() > 100, "{} syscall rows", t.syscalls.len());
    for (n, r) in &t.syscalls {
        assert_eq!(syscalls::name(*n), Some(r.name.as_str()), "line {}", r.line);
        assert!(!r.targets.is_empty(), "line {}: no option", r.line);
        assert!(
            r.source.contains("CONFIG_") || r.source.contains("Kbuild"),
            "line {}: source {:?} names no CONFIG_ line",
            r.line,
            r.source
        );
        assert!(
            r.source.contains('/') || r.source.starts_with("Kbuild"),
            "line {}: source names no file",
            r.line
        );
    }
    for r in t.families.values() {
        assert!(r.name.starts_with("AF_"));
        assert!(!r.source.is_empty());
    }
    for r in t.wrappers.values() {
        for s in &r.targets {
            assert!(syscall_number(s).is_some(), "line {}: {s}", r.line);
        }
    }
    // A few mappings checked by hand against linux-6.1.
    let opt = |name: &str| t.syscall_by_name(name).map(|r| r.targets.clone());
    assert_eq!(opt("epoll_create1"), Some(vec!["EPOLL".to_string()]));
    assert_eq!(opt("eventfd2"), Some(vec!["EVENTFD".to_string()]));
    assert_eq!(opt("timerfd_create"), Some(vec!["TIMERFD".to_string()]));
    assert_eq!(opt("flock"), Some(vec!["FILE_LOCKING".to_string()]));
    assert_eq!(opt("futex"), Some(vec!["FUTEX".to_string()]));
    assert_eq!(opt("socketpair"), Some(vec!["NET".to_string()]));
    // Always built: no row.
    for always in [
        "read",
        "write",
        "mmap",
        "mprotect",
        "clone",
        "execve",
        "clock_gettime",
    ] {
        assert_eq!(opt(always), None, "{always}");
    }
    assert_eq!(t.families[&1].targets, vec!["UNIX".to_string()]);
    assert_eq!(t.families[&2].targets, vec!["INET".to_string()]);
    assert_eq!(t.families[&10].targets, vec!["IPV6".to_string()]);
    assert_eq!(t.families[&17].targets, vec!["PACKET".to_string()]);
    assert!(t.families[&16].targets.is_empty());
}

#[test]
fn bad_tables_are_refused_with_the_line() {
    let cases = [
        ("syscall\t291\tepoll_create1\tEPOLL", "columns"),
        (
            "syscall\t292\tepoll_create1\tEPOLL\tsrc",
            "not \"epoll_create1\"",
        ),
        ("syscall\t291\tepoll_create1\t-\tsrc", "no option"),
        ("syscall\t291\tepoll_create1\tepoll\tsrc", "bad option"),
        ("syscall\t291\tepoll_create1\tEPOLL\t ", "no source"),
        ("syscall\tx\tepoll_create1\tEPOLL\tsrc", "bad number"),
        ("family\t1\tUNIX\tUNIX\tsrc", "AF_"),
        ("wrapper\t-\tfoo\tnot_a_syscall\tsrc", "unknown system call"),
        ("wrapper\t3\tfoo\tread\tsrc", "must be -"),
        ("bogus\t1\tx\tY\tsrc", "row kind"),
        (
            "syscall\t291\tepoll_create1\tEPOLL\tsrc\nsyscall\t291\tepoll_create1\tEPOLL\tsrc",
            "second row",
        ),
    ];
    for (text, want) in cases {
        let e = Table::parse(&format!("# comment\n{text}\n")).expect_err(text);
        let line = format!("line {}:", 1 + text.lines().count());
        assert!(e.starts_with(&line), "{e}");
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn base_fragments_and_names() {
    let b = parse_base(
        "# x\nCONFIG_EPOLL=y\nCONFIG_NET=m\n# CONFIG_UNIX is not set\n CONFIG_FUTEX=y \n",
    );
    assert_eq!(
        b.into_iter().collect::<Vec<_>>(),
        vec!["EPOLL".to_string(), "FUTEX".to_string()]
    );
    assert_eq!(bare("__GI___socket"), "socket");
    assert_eq!(bare("__libc_recvfrom"), "recvfrom");
    assert_eq!(bare("epoll_wait"), "epoll_wait");
}

#[test]
fn render_is_sorted_and_honours_the_base() {
    let mut f = Findings {
        input: "/x/app".into(),
        sites: 3,
        constant_sites: 2,
        has_symbols: true,
        ..Findings::default()
    };
    for n in [233, 291, 232, 1, 290] {
        f.add_syscall(n, Evidence::Site);
    }
    f.families.entry(1).or_default().insert(Evidence::Call);
    let text = render(std::slice::from_ref(&f), None);
    let configs: Vec<&str> = text.lines().filter(|l| l.starts_with("CONFIG_")).collect();
    assert_eq!(
        configs,
        vec!["CONFIG_EPOLL=y", "CONFIG_EVENTFD=y", "CONFIG_UNIX=y"]
    );
    assert!(text.contains(
        "# epoll_create1 (291), epoll_ctl (233), epoll_wait (232): fs/Makefile obj-$(CONFIG_EPOLL) += eventpoll.o\nCONFIG_EPOLL=y\n"
    ), "{text}");
    assert!(text.starts_with("# lupine-config: derived from app (static analysis"));
    let base = parse_base("CONFIG_EPOLL=y\n");
    let text = render(&[f], Some(("configs/lupine-base.config", &base)));
    assert!(!text.contains("CONFIG_EPOLL=y"));
    assert!(text.contains("# already =y in lupine-base.config: EPOLL"));
}

#[test]
fn symbol_only_evidence_is_marked() {
    let mut a = Findings {
        input: "a".into(),
        has_symbols: true,
        ..Findings::default()
    };
    a.add_syscall(232, Evidence::Symbol("epoll_wait".into()));
    a.add_syscall(283, Evidence::Symbol("timerfd_create".into()));
    let mut b = Findings {
        input: "b".into(),
        ..Findings::default()
    };
    b.add_syscall(283, Evidence::Call);
    let text = render(&[a, b], None);
    assert!(text.contains("# epoll_wait (232, by symbol): "), "{text}");
    // Seen as a constant in another program: not marked.
    assert!(text.contains("# timerfd_create (283): "), "{text}");
    assert!(text.contains("; no symbols, so libc wrappers are not identified"));
}
