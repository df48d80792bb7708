#!/usr/bin/env bash
# Build an application's root filesystem from Debian 12's own binary packages, unmodified.
#   apps/debian.sh APP OUTDIR      APP: redis, nginx, memcached, lighttpd, or all
#
# Writes OUTDIR/APP-deb/ as apps/build.sh writes OUTDIR/APP/: rootfs/ (the packages of
# apps/debian/APP.packages, downloaded with `apt-get download` and unpacked with `dpkg-deb -x`,
# plus /etc/passwd and /etc/group and the app's configuration from apps/debian/), lupine.json
# (the app's manifest fragment) and build-info.json (packages and versions). These are the
# dynamically linked programs real images ship: glibc's libc.so.6 and ld-linux, and the app's
# own libraries. Every DT_NEEDED of every program and library must be found in the tree, or
# the build fails naming it.
#
# Packages are downloaded once into ${LUPINE_CACHE:-~/.cache/lupine}/debs; results are cached
# in .../apps/APP-deb-KEY by a hash of this script, the app's files and the package versions
# apt offers.
set -euo pipefail
{

usage() { echo "usage: $0 APP|all OUTDIR" >&2; exit 2; }
die() { echo "apps/debian.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
app=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
all_apps=(redis nginx memcached lighttpd)

if [ "$app" = all ]; then
  for a in "${all_apps[@]}"; do "$0" "$a" "$outdir"; done
  exit 0
fi
[[ " ${all_apps[*]} " == *" $app "* ]] || die "unknown app '$app' (one of: ${all_apps[*]}, all)"
for tool in apt-get apt-cache dpkg-deb readelf flock python3; do
  command -v "$tool" >/dev/null || die "$tool missing: run scripts/setup.sh"
done

cache=${LUPINE_CACHE:-$HOME/.cache/lupine}
debs=$cache/debs
mapfile -t packages < <(grep -v '^#' "$here/debian/$app.packages" | grep .)

# The version apt would install of package $1.
candidate() {
  local v
  v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  [ -n "$v" ] && [ "$v" != "(none)" ] || die "no candidate version of package '$1' (apt-get update?)"
  echo "$v"
}

declare -A version
for p in "${packages[@]}"; do version[$p]=$(candidate "$p"); done
key=$( {
  cat "$0"
  # The files APP.files copies in, wherever they are (redis's is apps/redis/redis.conf).
  srcs=$(awk '$1 !~ /^#/ && $1 !~ /\/$/ && NF == 2 { print $2 }' "$here/debian/$app.files")
  for f in "$here/debian/$app".* "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" \
           $(for s in $srcs; do echo "$here/debian/$s"; done); do
    echo "== ${f#"$here"/}"; cat "$f"
  done
  for p in "${packages[@]}"; do echo "$p ${version[$p]}"; done
} | sha256sum | cut -c1-16)
result=$cache/apps/$app-deb-$key

if [ ! -f "$result/build-info.json" ]; then
  mkdir -p "$debs" "$cache/apps/build"
  exec 9>"$cache/apps/build/$app-deb.lock"
  flock 9
fi
if [ ! -f "$result/build-info.json" ]; then
  work=$cache/apps/build/$app-deb-$key
  rm -rf "$work" && mkdir -p "$work/out/rootfs"
  stage=$work/out/rootfs
  for p in "${packages[@]}"; do
    v=${version[$p]}
    deb=$(ls "$debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
      # As root apt warns that it downloads unsandboxed: expected here.
      (cd "$debs" && apt-get download -qq "$p=$v") >"$debs/$p.log" 2>&1 \
        || die "apt-get download $p=$v failed: $(grep -m1 '^E:' "$debs/$p.log" || true)"
      deb=$(ls "$debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
      [ -n "$deb" ] || die "apt-get download $p=$v wrote no .deb (log: $debs/$p.log)"
    fi
    dpkg-deb -x "$deb" "$stage"
  done
  # Debian 12 keeps /lib, /lib64, /bin and /sbin as links into /usr (merged /usr); the
  # packages ship files under both spellings.
  for d in lib lib64 bin sbin; do
    if [ -d "$stage/$d" ] && [ ! -L "$stage/$d" ]; then
      mkdir -p "$stage/usr/$d"
      cp -a "$stage/$d/." "$stage/usr/$d/"
      rm -rf "${stage:?}/$d"
    fi
    mkdir -p "$stage/usr/$d"
    ln -s "usr/$d" "$stage/$d"
  done
  # Documentation, and glibc's iconv modules (gconv: loaded only by iconv_open, never by these
  # apps), go.
  rm -rf "$stage/usr/share/doc" "$stage/usr/share/man" "$stage/usr/share/lintian" \
    "$stage/usr/lib/x86_64-linux-gnu/gconv"
  mkdir -p "$stage/etc"
  cp "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" "$stage/etc/"
  # The app's configuration and directories (apps/debian/APP.files: "DEST SOURCE", or "DEST/"
  # with an optional octal MODE).
  while read -r dest src; do
    case $dest in
      '' | '#'*) continue ;;
      */) mkdir -p "$stage/$dest" && if [ -n "$src" ]; then chmod "$src" "$stage/$dest"; fi ;;
      *) install -D -m 644 "$here/debian/$src" "$stage/$dest" ;;
    esac
  done < "$here/debian/$app.files"
  python3 - "$stage" <<'PY' || die "$app: a library is missing (see above)"
# Every DT_NEEDED of every ELF file is found in the tree's library directories.
import os, subprocess, sys
root = sys.argv[1]
dirs = ["usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib"]
have = {f for d in dirs if os.path.isdir(os.path.join(root, d)) for f in os.listdir(os.path.join(root, d))}
missing = []
for top, _, files in os.walk(root):
    for f in files:
        p = os.path.join(top, f)
        if os.path.islink(p) or not open(p, "rb").read(4) == b"\x7fELF":
            continue
        out = subprocess.run(["readelf", "-dW", p], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "(NEEDED)" in line:
                lib = line.split("[")[1].rstrip("]")
                if lib not in have:
                    missing.append(f"{os.path.relpath(p, root)} needs {lib}")
for m in missing:
    print("apps/debian.sh:", m, file=sys.stderr)
sys.exit(1 if missing else 0)
PY
  pkgs=$(for p in "${packages[@]}"; do printf '%s\t%s\n' "$p" "${version[$p]}"; done)
  python3 - "$work/out/build-info.json" "$app" "$key" "$pkgs" <<'PY'
import json, sys
out, app, key, pkgs = sys.argv[1:]
info = {"app": app, "key": key, "from": "Debian 12 binary packages",
        "packages": [dict(zip(("package", "version"), l.split("\t"))) for l in pkgs.splitlines()]}
with open(out, "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
PY
  rm -rf "$result.tmp" && mv "$work/out" "$result.tmp" && mv "$result.tmp" "$result"
  rm -rf "$work"
  echo "apps/debian.sh: built $app-deb from ${#packages[@]} packages" >&2
fi

mkdir -p "$outdir"
tmp=$outdir/.$app-deb.tmp.$$
rm -rf "$tmp"
cp -a "$result" "$tmp"
cp "$here/debian/$app.json" "$tmp/lupine.json"
rm -rf "${outdir:?}/$app-deb"
mv "$tmp" "$outdir/$app-deb"
echo "$outdir/$app-deb"
exit
}
