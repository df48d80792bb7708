#!/usr/bin/env bash
# The main job, end to end, set-up included: build lupine-init, lupine-relink and a Linux 6.1
# kernel, relink Debian's static busybox (the sample app), put lupine-init, the relinked
# busybox and a manifest in an initramfs, boot it in QEMU (TCG) with user networking, and print
# what the app printed and its exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo build --release -p lupine-init --target x86_64-unknown-linux-musl
cargo build --release -p lupine-relink
init=target/x86_64-unknown-linux-musl/release/lupine-init
kernel=$(kernel-patches/build.sh lupine-base target/kernel/lupine-base)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,run}
cp "$init" "$root/lupine-init"
target/release/lupine-relink /bin/busybox -o "$root/bin/busybox" --report "$work/busybox.json"
for applet in sh echo cat hostname ip uname; do ln -s busybox "$root/bin/$applet"; done
cat > "$root/etc/lupine.json" <<'JSON'
{
  "version": 1,
  "app": {"path": "/bin/sh", "args": ["-c",
    "echo \"hello from $(hostname), Linux $(uname -r)\"; ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf; exit 3"],
    "env": {"GREETING": "hi"}},
  "hostname": "lupine-demo",
  "network": {
    "interfaces": [{"name": "eth0", "addresses": ["10.0.2.15/24"]}],
    "routes": [{"destination": "default", "gateway": "10.0.2.2"}],
    "dns": {"nameservers": ["10.0.2.3"]},
    "wait_s": 2
  }
}
JSON
"$init" --check "$root/etc/lupine.json" >/dev/null
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"

echo "booting $kernel with lupine-init ($(stat -c %s "$init") bytes)" >&2
console=$work/console
timeout 120 qemu-system-x86_64 -M microvm,acpi=off -accel tcg -m 128 -no-reboot -nodefaults \
  -nographic -serial stdio -kernel "$kernel" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1 reboot=t rdinit=/lupine-init" \
  -netdev user,id=n0 -device virtio-net-device,netdev=n0 | tee "$console"

# The app's exit status, as lupine-init reported it.
status=$(sed -n 's/^lupine: exit status \([0-9]*\).*/\1/p' "$console" | tr -d '\r')
[ -n "$status" ] || { echo "no exit status line on the console" >&2; exit 1; }
echo "the app exited with status $status (expected 3)"
[ "$status" = 3 ]
