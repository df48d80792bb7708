#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root): the packages and the Rust
# target every Lupine command needs. Safe to run again; it does nothing when all is present.
set -euo pipefail

PACKAGES=(
  musl-tools            # musl-gcc for static C programs
  libc6-dev             # glibc static and static-PIE corpus programs
  qemu-system-x86       # qemu-system-x86_64 for guest tests
  busybox-static        # the sample application inside test guests
  linux-source-6.1      # kernel source (tarball under /usr/src)
  bc bison flex libelf-dev libssl-dev make gcc xz-utils cpio  # kernel build
  iproute2 util-linux   # ip, unshare for host namespace tests
  e2fsprogs             # mkfs.ext4 for root-disk guests
  strace                # the relinker's coverage tests
  python3               # bench scripts
  dpkg-dev              # apt-get source / dpkg-source for apps/build.sh
  redis-tools apache2-utils  # redis-cli, redis-benchmark, ab: app guest tests and bench/apps.py
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  # deb-src lets later issues fetch application sources with apt-get source.
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q '^Types:.*deb-src' "$src"; then
    sed -i 's/^Types: deb$/Types: deb deb-src/' "$src"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
