# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with apps/build.sh
# Redis as an Alpine-based image has it: the same build as apps/redis, linked dynamically
# against musl, whose libc.so is also the dynamic linker (/lib/ld-musl-x86_64.so.1, from
# Debian's musl package). Sourced by apps/build.sh. jemalloc's configure would link its test
# programs with the host's (glibc) libstdc++, which musl's dynamic linker cannot load: no C++.
# shellcheck source=../redis/build.sh
source "$here/redis/build.sh"
redis_link=(JEMALLOC_CONFIGURE_OPTS=--disable-cxx)
dynamic=musl
