//! Replays the corpus and crash inputs of lupine-config's fuzz target through its body
//! (`lupine_config::fuzz`), on stable: see `test_support::fuzz`.

use test_support::fuzz::replay;

#[test]
fn config() {
    replay("config", lupine_config::fuzz::config);
}
