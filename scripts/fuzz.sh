#!/usr/bin/env bash
# The fuzz targets (fuzz/README.md), with what they need installed: a nightly toolchain and
# cargo-fuzz (the product and the corpus replay tests build on stable).
#
#   scripts/fuzz.sh run TARGET|all [SECONDS] [RUNS]
#       fuzz each target until SECONDS (default 1800) or RUNS executions (default 1000000),
#       whichever comes first; new inputs go to fuzz/corpus/TARGET, crashes to
#       fuzz/artifacts/TARGET, the log to fuzz/target/TARGET.log
#   scripts/fuzz.sh minimize TARGET|all
#       shrink fuzz/corpus/TARGET to inputs that reach new edges (seed-* files are kept)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
TARGETS=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^lupine-fuzz$')
what=${1:-}
which=${2:-}
case "$which" in
  all) targets=$TARGETS ;;
  *) grep -qx "$which" <<<"$TARGETS" || { echo "usage: $0 run|minimize TARGET|all; targets:" $TARGETS >&2; exit 2; } ;;
esac
targets=${targets:-$which}
cargo +nightly fuzz build -O
bin=target/x86_64-unknown-linux-gnu/release

for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  case "$what" in
    run)
      echo "fuzz: $t" >&2
      "$bin/$t" -max_total_time="${3:-1800}" -runs="${4:-1000000}" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        "corpus/$t" 2>"target/$t.log" || { tail -n 40 "target/$t.log" >&2; exit 1; }
      grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "target/$t.log" >&2
      ;;
    minimize)
      # Edges only (-use_counters=0): the smallest set of inputs that reaches every edge the
      # corpus reaches, smallest inputs first; the seeds stay as the tests' shapes.
      fresh=$(mktemp -d)
      cp corpus/"$t"/seed-* "$fresh"/ 2>/dev/null || true
      "$bin/$t" -merge=1 -use_counters=0 -timeout=10 "$fresh" "corpus/$t" 2>"target/$t.merge.log"
      rm -rf "corpus/$t"
      mv "$fresh" "corpus/$t"
      chmod 755 "corpus/$t"
      echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sb "corpus/$t" | cut -f1) bytes" >&2
      ;;
    *) echo "usage: $0 run|minimize TARGET|all" >&2; exit 2 ;;
  esac
done
