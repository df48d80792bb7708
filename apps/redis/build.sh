# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with apps/build.sh
# Redis (Debian 12 source package redis), sourced by apps/build.sh: static with musl, the
# bundled jemalloc (musl's own malloc is much slower under Redis' allocation pattern), no TLS,
# no systemd.
sources=(redis)
binary=usr/local/bin/redis-server
version_args=--version
# How redis-server links (apps/redis-musl/build.sh: dynamically, against musl).
redis_link=(LDFLAGS=-static)

app_build() {
  local s=${src[redis]}
  # Debian patch 0004 (USE_SYSTEM_JEMALLOC) is reverted: its test
  # `#if defined(USE_JEMALLOC) && (USE_SYSTEM_JEMALLOC == yes)` is true whenever both names are
  # undefined (0 == 0), so it renames je_mallctl & co. to the system jemalloc's names and the
  # link with the bundled jemalloc fails.
  run "revert Debian patch 0004" patch -R -p1 -d "$s" \
    -i "$s/debian/patches/0004-Add-support-for-USE_SYSTEM_JEMALLOC-flag.patch"
  configure_flags=(CC=musl-gcc MALLOC=jemalloc USE_SYSTEMD=no BUILD_TLS=no "${redis_link[@]}")
  run "make redis-server" make -C "$s/src" -j"$jobs" "${configure_flags[@]}" redis-server
  install -D -m 755 "$s/src/redis-server" "$stage/$binary"
  install -D -m 644 "$here/redis/redis.conf" "$stage/etc/redis/redis.conf"
  mkdir -p "$stage/var/lib/redis"
}
