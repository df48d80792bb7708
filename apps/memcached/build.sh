# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with apps/build.sh
# memcached (Debian 12 source package memcached) on libevent (source package libevent), both
# static with musl, sourced by apps/build.sh. No SASL, no TLS; extstore is kept (it builds).
sources=(libevent memcached)
binary=usr/bin/memcached
version_args=-V

app_build() {
  local le=${src[libevent]} mc=${src[memcached]}
  keep_generated_autotools "$le"
  keep_generated_autotools "$mc"
  local le_flags=(CC=musl-gcc CFLAGS=-O2 --disable-shared --enable-static --disable-openssl
                  --disable-samples --disable-libevent-regress --disable-debug-mode)
  dependency_flags=("libevent: ./configure ${le_flags[*]}; make")
  (cd "$le" && run "configure libevent" ./configure "${le_flags[@]}" --prefix="$prefix")
  run "make libevent" make -C "$le" -j"$jobs"
  run "install libevent" make -C "$le" install
  configure_flags=(CC=musl-gcc CFLAGS=-O2 --prefix=/usr --enable-static --disable-sasl
                   --disable-docs --disable-coverage --disable-dependency-tracking)
  (cd "$mc" && run "configure memcached" ./configure "${configure_flags[@]}" --with-libevent="$prefix")
  run "make memcached" make -C "$mc" -j"$jobs" memcached
  install -D -m 755 "$mc/memcached" "$stage/$binary"
}
