# shellcheck shell=bash disable=SC2034,SC2154  # variables shared with apps/build.sh
# nginx (Debian 12 source package nginx) with zlib and pcre2 (source packages zlib, pcre2), all
# static with musl, sourced by apps/build.sh. Debian's usual HTTP modules without OpenSSL (no
# ssl, mail or dynamic modules); no file AIO (musl-gcc does not see <linux/aio_abi.h>).
#
# Prefix /etc/nginx: nginx.conf, mime.types, html/, logs/ (pid) and temp/ (request bodies,
# proxy buffers) all live under it, by relative paths, so `nginx -p DIR -c DIR/nginx.conf`
# runs a copy of the tree anywhere.
sources=(zlib pcre2 nginx)
binary=usr/sbin/nginx
version_args=-v

app_build() {
  local z=${src[zlib]} pc=${src[pcre2]} n=${src[nginx]} t
  dependency_flags=("zlib: CC=musl-gcc CFLAGS=-O2 ./configure --static; make libz.a")
  (cd "$z" && run "configure zlib" env CC=musl-gcc CFLAGS=-O2 ./configure --static --prefix="$prefix")
  run "make zlib" make -C "$z" -j"$jobs" libz.a
  cp "$z/libz.a" "$prefix/lib/" && cp "$z/zlib.h" "$z/zconf.h" "$prefix/include/"

  keep_generated_autotools "$pc"
  local pcre2_flags=(CC=musl-gcc CFLAGS=-O2 --disable-shared --enable-static --enable-jit)
  dependency_flags+=("pcre2: ./configure ${pcre2_flags[*]}; make libpcre2-8.la")
  (cd "$pc" && run "configure pcre2" ./configure "${pcre2_flags[@]}" --prefix="$prefix")
  run "make pcre2" make -C "$pc" -j"$jobs" libpcre2-8.la
  run "install pcre2" make -C "$pc" install-libLTLIBRARIES install-nodist_includeHEADERS

  # Debian's musl-dev has neither <crypt.h> (which nginx includes unconditionally on Linux)
  # nor crypt() (see crypt.c); nginx's configure then finds crypt() in this -lcrypt.
  printf '#include <unistd.h>\n' >"$prefix/include/crypt.h"
  run "compile crypt stub" musl-gcc -O2 -c "$here/nginx/crypt.c" -o "$prefix/crypt.o"
  run "archive crypt stub" ar rcs "$prefix/lib/libcrypt.a" "$prefix/crypt.o"

  configure_flags=(
    --with-cc=musl-gcc --with-cc-opt="-O2 -I$prefix/include" --with-ld-opt="-static -L$prefix/lib"
    --prefix=/etc/nginx --sbin-path=/usr/sbin/nginx --conf-path=/etc/nginx/nginx.conf
    --pid-path=logs/nginx.pid --lock-path=logs/nginx.lock
    --error-log-path=stderr --http-log-path=/dev/stdout
    --http-client-body-temp-path=temp/body --http-proxy-temp-path=temp/proxy
    --http-fastcgi-temp-path=temp/fastcgi --http-uwsgi-temp-path=temp/uwsgi
    --http-scgi-temp-path=temp/scgi
    --user=nobody --group=nogroup
    --with-pcre-jit --with-threads --with-compat
    --with-http_stub_status_module --with-http_realip_module --with-http_auth_request_module
    --with-http_v2_module --with-http_dav_module --with-http_slice_module
    --with-http_addition_module --with-http_gunzip_module --with-http_gzip_static_module
    --with-http_random_index_module --with-http_secure_link_module --with-http_sub_module
    --with-stream --with-stream_realip_module
  )
  (cd "$n" && run "configure nginx" ./configure "${configure_flags[@]}")
  run "make nginx" make -C "$n" -j"$jobs"
  install -D -m 755 "$n/objs/nginx" "$stage/$binary"
  install -D -m 644 "$here/nginx/nginx.conf" "$stage/etc/nginx/nginx.conf"
  install -D -m 644 "$n/conf/mime.types" "$stage/etc/nginx/mime.types"
  install -D -m 644 "$n/html/index.html" "$stage/etc/nginx/html/index.html"
  install -D -m 644 "$n/html/50x.html" "$stage/etc/nginx/html/50x.html"
  for t in body proxy fastcgi uwsgi scgi; do mkdir -p "$stage/etc/nginx/temp/$t"; done
  mkdir -p "$stage/etc/nginx/logs"
}
