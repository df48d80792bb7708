#!/usr/bin/env bash
# The whole test suite, set-up included: formatting and lints, unit tests, host namespace
# tests (root), and guest tests that boot real kernels in QEMU (TCG). Run as root (CI is):
# the tests marked #[ignore = "needs root"] run too, and fail rather than pass without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

cargo build --release -p lupine-init --target x86_64-unknown-linux-musl
export LUPINE_INIT=$PWD/target/x86_64-unknown-linux-musl/release/lupine-init
size=$(stat -c %s "$LUPINE_INIT")
limit=$((600 * 1024))
if [ "$size" -gt "$limit" ]; then
  echo "lupine-init is $size bytes, over the $limit-byte limit" >&2
  exit 1
fi
echo "lupine-init: $size bytes (limit $limit)"

# The kernel profiles and applications the guest tests boot, each cached by build.sh outside
# the checkout (cold, on 2 cores: see README); guest-tests reads
# $LUPINE_KERNEL_DIR/PROFILE/bzImage and $LUPINE_APPS_DIR/APP.
export LUPINE_APPS_DIR=$PWD/target/apps
apps/build.sh all "$LUPINE_APPS_DIR" >/dev/null
apps/debian.sh all "$LUPINE_APPS_DIR" >/dev/null
export LUPINE_KERNEL_DIR=$PWD/target/kernel
for profile in lupine-base lupine-general microvm lupine-redis lupine-nginx lupine-memcached \
               lupine-base+kml lupine-general+kml+userns+preempt+kprobes+debug-entry; do
  kernel-patches/build.sh "$profile" "$LUPINE_KERNEL_DIR/$profile" >/dev/null
done

cargo test --workspace --no-fail-fast -- --include-ignored
