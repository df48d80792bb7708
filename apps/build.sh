#!/usr/bin/env bash
# Build an application as a static x86-64 musl binary from its Debian 12 source package.
#   apps/build.sh APP OUTDIR      APP: redis, nginx, memcached, redis-musl, or all
# (redis-musl: redis linked dynamically against musl, as Alpine-based images have it.)
#
# Writes OUTDIR/APP/: rootfs/, a root-filesystem tree (the stripped static binary and the files
# it needs to run: configuration, /etc/passwd and /etc/group); lupine.json, a lupine-init
# manifest fragment for the app; and build-info.json (source packages and versions, configure
# flags, sizes).
#
# Each app is described by apps/APP/build.sh (sourced): the source packages it needs and
# app_build, which builds into the tree. Its other files in apps/APP/ are its configuration.
# Sources come from `apt-get source` (deb-src, see scripts/setup.sh), downloaded once into
# ${LUPINE_CACHE:-~/.cache/lupine}/src/apt; results are cached in .../apps/APP-KEY by a hash of
# every input, so a second run only copies the tree.
# shellcheck disable=SC2034,SC2154  # sources, binary, version_args, src: shared with apps/APP/build.sh
set -euo pipefail
# One compound command, read whole before it runs: editing this file during a build cannot
# change what that build does.
{

usage() { echo "usage: $0 APP|all OUTDIR" >&2; exit 2; }
die() { echo "apps/build.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
app=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
all_apps=(redis nginx memcached redis-musl)

if [ "$app" = all ]; then
  for a in "${all_apps[@]}"; do "$0" "$a" "$outdir"; done
  exit 0
fi
[[ " ${all_apps[*]} " == *" $app "* ]] || die "unknown app '$app' (one of: ${all_apps[*]}, all)"
for tool in musl-gcc apt-get apt-cache dpkg-source patch make strip readelf flock python3; do
  command -v "$tool" >/dev/null || die "$tool missing: run scripts/setup.sh"
done

cache=${LUPINE_CACHE:-$HOME/.cache/lupine}
srcdir=$cache/src/apt
jobs=$(nproc)

# Defines: sources (source package names), binary (path in the tree), version_args (an
# argument that makes the binary print its version and exit) and app_build; dynamic=musl for a
# binary linked dynamically against musl.
dynamic=
# shellcheck source=/dev/null
source "$here/$app/build.sh"

# The versions apt knows for source package $1, newest first.
src_versions() {
  local v i sorted=()
  while read -r v; do
    i=0
    while [ "$i" -lt "${#sorted[@]}" ] && dpkg --compare-versions "${sorted[$i]}" gt "$v"; do
      i=$((i + 1))
    done
    sorted=("${sorted[@]:0:$i}" "$v" "${sorted[@]:$i}")
  done < <(apt-cache showsrc "$1" 2>/dev/null \
             | awk -v p="$1" '/^Package:/ { pkg = $2 } /^Version:/ && pkg == p { print $2 }' | sort -u)
  [ "${#sorted[@]}" -gt 0 ] || die "no deb-src record for '$1': run scripts/setup.sh (it enables deb-src)"
  printf '%s\n' "${sorted[@]}"
}

# Every input: this script, the app's files and the shared rootfs files, the source versions
# apt offers, the compiler and the musl version. Not lupine.json: it is copied at install, so
# editing the manifest rebuilds nothing.
key=$( {
  echo "$app"
  cat "$0"
  while IFS= read -r f; do echo "== ${f#"$here"/}"; cat "$f"; done \
    < <(find "$here/$app" "$here/rootfs" "$here"/*/build.sh -type f ! -path "$here/$app/lupine.json" \
        | LC_ALL=C sort -u)
  for p in "${sources[@]}"; do echo "$p $(src_versions "$p" | tr '\n' ' ')"; done
  musl-gcc --version | head -1
  dpkg-query -W -f='musl-dev ${Version}\n' musl-dev
} | sha256sum | cut -c1-16)
result=$cache/apps/$app-$key

# Download source package $1 (newest version that the mirror serves; security updates can be
# missing from a snapshot mirror) into $srcdir, once; print the .dsc path and the version.
fetch_source() {
  local pkg=$1 v ok
  mkdir -p "$srcdir"
  (
    flock 8
    for v in $(src_versions "$pkg"); do
      ok=$srcdir/${pkg}_${v#*:}.ok
      if [ ! -f "$ok" ]; then
        if (cd "$srcdir" && apt-get source -qq --download-only "$pkg=$v") >"$srcdir/$pkg.log" 2>&1; then
          touch "$ok"
        else
          echo "apps/build.sh: $pkg $v: download failed, trying an older version ($(grep -m1 '^E:' "$srcdir/$pkg.log" || true))" >&2
          continue
        fi
      fi
      echo "$srcdir/${pkg}_${v#*:}.dsc $v"
      exit 0
    done
    exit 1
  ) 8>"$cache/.apps-src.lock" || die "could not download any version of source package '$pkg' (log: $srcdir/$pkg.log)"
}

# Run a build step quietly into $log; on failure show its end and name the step.
run() {
  local what=$1; shift
  echo "== $what: $*" >>"$log"
  "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "$app: $what failed (full log: $log)"; }
}

# Debian patches touch Makefile.am/configure.ac, which would make automake regenerate the
# build system (needs autotools); the shipped generated files are kept current instead. Only
# safe because no patch of these packages changes what gets built for a static library.
keep_generated_autotools() {
  find "$1" \( -name Makefile.in -o -name configure -o -name aclocal.m4 -o -name config.h.in \
               -o -name '*.h.in' \) -exec touch {} +
}

if [ ! -f "$result/build-info.json" ]; then
  mkdir -p "$cache/apps/build"
  # One build of an app at a time; a concurrent run waits and then finds the result.
  exec 9>"$cache/apps/build/$app.lock"
  flock 9
fi

# Checked again under the lock: a concurrent build may have finished.
if [ ! -f "$result/build-info.json" ]; then
  work=$cache/apps/build/$app-$key
  rm -rf "$work" && mkdir -p "$work"
  log=$work/build.log
  out=$work/out
  stage=$out/rootfs        # what app_build installs into
  prefix=$work/prefix      # private install prefix for static libraries (zlib, pcre2, libevent)
  mkdir -p "$stage" "$prefix/include" "$prefix/lib"
  start=$SECONDS
  declare -A src version
  for p in "${sources[@]}"; do
    fetched=$(fetch_source "$p")
    dsc=${fetched% *}
    v=${fetched##* }
    echo "apps/build.sh: $app: $p $v" >&2
    run "unpack $p" dpkg-source -x "$dsc" "$work/$p"
    src[$p]=$work/$p
    version[$p]=$v
  done

  configure_flags=()    # set by app_build, for build-info.json: the app's own flags
  dependency_flags=()   # and one "PACKAGE: flags" line per library built for it
  echo "apps/build.sh: building $app (make -j$jobs, log $log)" >&2
  app_build

  bin=$stage/$binary
  [ -x "$bin" ] || die "$app: $binary not built"
  strip "$bin"
  if [ "$dynamic" = musl ]; then
    # musl's libc.so is its dynamic linker too: the one library of the image.
    interp=$(readelf -lW "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    [ "$interp" = /lib/ld-musl-x86_64.so.1 ] || die "$app: $binary's interpreter is '$interp'"
    install -D -m 755 /usr/lib/x86_64-linux-musl/libc.so "$stage/lib/ld-musl-x86_64.so.1"
    dependency_flags+=("musl libc.so: $(dpkg-query -W -f='${Version}' musl), as /lib/ld-musl-x86_64.so.1")
  else
    # Static means no program interpreter (and so no shared libraries at all).
    if readelf -lW "$bin" | grep -q INTERP; then die "$app: $binary has a PT_INTERP: not static"; fi
    if readelf -dW "$bin" 2>/dev/null | grep -q NEEDED; then die "$app: $binary needs shared libraries"; fi
  fi
  binver=$("$bin" "$version_args" 2>&1) || die "$app: '$binary $version_args' failed: $binver"
  binver=${binver%%$'\n'*}

  mkdir -p "$stage/etc"
  cp "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" "$stage/etc/"
  srcjson=$(for p in "${sources[@]}"; do printf '%s\t%s\n' "$p" "${version[$p]}"; done)
  python3 - "$out/build-info.json" "$app" "$key" "$binary" "$(stat -c %s "$bin")" \
      "$binver" "$((SECONDS - start))" "$(musl-gcc --version | head -1)" \
      "$(dpkg-query -W -f='${Version}' musl-dev)" "$srcjson" \
      "$(printf '%s\n' "${dependency_flags[@]}")" "${configure_flags[@]}" <<'PY'
import json, sys
out, app, key, binary, size, binver, secs, cc, musl, srcs, deps, *flags = sys.argv[1:]
info = {
    "app": app, "key": key,
    "sources": [dict(zip(("package", "version"), l.split("\t"))) for l in srcs.splitlines()],
    "configure_flags": flags, "dependency_flags": [l for l in deps.splitlines() if l],
    "binary": "/" + binary, "binary_bytes": int(size),
    "binary_version": binver, "compiler": cc, "musl": musl, "build_seconds": int(secs),
}
with open(out, "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
PY
  rm -rf "$result.tmp" && mv "$out" "$result.tmp" && mv "$result.tmp" "$result"
  rm -rf "$work"
  echo "apps/build.sh: built $app in $((SECONDS - start)) s: $binary $(stat -c %s "$result/rootfs/$binary") bytes" >&2
fi

# Install by rename, so a reader never sees half a tree.
mkdir -p "$outdir"
tmp=$outdir/.$app.tmp.$$
rm -rf "$tmp"
cp -a "$result" "$tmp"
cp "$here/$app/lupine.json" "$tmp/lupine.json"
rm -rf "${outdir:?}/$app"
mv "$tmp" "$outdir/$app"
echo "$outdir/$app"
exit
}
