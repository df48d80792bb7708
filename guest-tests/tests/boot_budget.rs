//! The boot path's instruction budget: `lupine-base` boots to a static hello-world
//! (bench/cost/hello.c) within the instruction count recorded in `bench/cost/budget.json`,
//! counted, not timed (`bench/cost.py budget`: QEMU TCG under `-icount` with the
//! bench/cost/lupine_cost.c plugin, reset to the power-off). A change that makes the boot 5%
//! heavier, or lighter (then the budget is out of date and would let a regression through),
//! fails with both counts and how to update the budget.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn lupine_base_boots_hello_world_within_its_instruction_budget() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = top.join("bench/cost/budget.json");
    let budget: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let recorded = budget["instructions"]
        .as_u64()
        .expect("budget.json: instructions");
    let percent = budget["allowed_change_percent"]
        .as_u64()
        .expect("budget.json: allowed_change_percent");

    let out = Command::new("python3")
        .arg(top.join("bench/cost.py"))
        .arg("budget")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "bench/cost.py budget: {out:?}");
    let counts: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let counted = counts["kernel"].as_u64().unwrap() + counts["program"].as_u64().unwrap();

    let allowed = recorded * percent / 100;
    assert!(
        counted.abs_diff(recorded) <= allowed,
        "lupine-base booted to hello-world in {counted} instructions; the budget is {recorded} \
         ± {percent}% (bench/cost/budget.json). If the change is meant, record the new count \
         there ({})",
        budget["update"].as_str().unwrap_or("")
    );
}
