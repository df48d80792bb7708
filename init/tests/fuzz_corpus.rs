//! Replays the corpora and crash inputs of lupine-init's fuzz targets through their bodies
//! (`lupine_init::fuzz`), on stable: see `test_support::fuzz`.

use lupine_init::fuzz;
use test_support::fuzz::replay;

#[test]
fn manifest() {
    replay("manifest", |d| {
        fuzz::manifest(d);
        true
    });
}

#[test]
fn cmdline() {
    replay("cmdline", |d| {
        fuzz::cmdline(d);
        true
    });
}

#[test]
fn ipconfig() {
    replay("ipconfig", |d| {
        fuzz::ipconfig(d);
        true
    });
}

#[test]
fn netlink() {
    replay("netlink", |d| {
        fuzz::netlink(d);
        true
    });
}

#[test]
fn mmds() {
    replay("mmds", |d| {
        fuzz::mmds(d);
        true
    });
}
