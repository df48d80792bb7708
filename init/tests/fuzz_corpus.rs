//! Replays the corpora and crash inputs of lupine-init's fuzz targets through their bodies
//! (`lupine_init::fuzz`), on stable: see `test_support::fuzz`.

use lupine_init::fuzz;
use test_support::fuzz::replay;

#[test]
fn manifest() {
    replay("manifest", fuzz::manifest);
}

#[test]
fn cmdline() {
    replay("cmdline", fuzz::cmdline);
}

#[test]
fn ipconfig() {
    replay("ipconfig", fuzz::ipconfig);
}

#[test]
fn netlink() {
    replay("netlink", fuzz::netlink);
}

#[test]
fn mmds() {
    replay("mmds", fuzz::mmds);
}
