#!/usr/bin/env bash
# Build a Lupine kernel profile from Debian's linux-source-6.1.
#   kernel-patches/build.sh PROFILE OUTDIR
# Merges configs/PROFILE.config over allnoconfig, runs olddefconfig, fails listing every
# requested option that did not end up as requested, builds bzImage and vmlinux, and copies
# them with the final .config and a manifest.json to OUTDIR. Builds are cached in
# ${LUPINE_CACHE:-~/.cache/lupine}/kernel by a hash of every input.
set -euo pipefail

usage() { echo "usage: $0 PROFILE OUTDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
profile=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/configs/$profile.config
[ -f "$fragment" ] || { echo "build.sh: no profile '$profile' ($fragment missing)" >&2; exit 2; }

tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "build.sh: $tarball missing: run scripts/setup.sh" >&2; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
cache=${LUPINE_CACHE:-$HOME/.cache/lupine}

key=$( { echo "$srcver"; gcc --version | head -1; cat "$0" "$fragment"; } | sha256sum | cut -c1-16)
result=$cache/kernel/$profile-$key

# One build at a time per cache: concurrent runs share build trees.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9

if [ ! -f "$result/bzImage" ]; then
  src=$cache/src/linux-$srcver
  if [ ! -f "$src/.extracted" ]; then
    echo "build.sh: extracting $tarball" >&2
    rm -rf "$src" && mkdir -p "$src"
    tar -xJf "$tarball" -C "$src" --strip-components=1
    touch "$src/.extracted"
  fi
  # One build tree per profile keeps rebuilds after a config change incremental.
  obj=$cache/build/$profile
  mkdir -p "$obj"
  make -s -C "$src" O="$obj" KCONFIG_ALLCONFIG="$fragment" allnoconfig >/dev/null
  make -s -C "$src" O="$obj" olddefconfig >/dev/null

  # Kconfig drops options whose dependencies are unmet without a word: check every one.
  bad=()
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) opt=${line%%=*}; want=${line#*=}
        grep -qxF "$opt=$want" "$obj/.config" || bad+=("$opt=$want (got: $(grep -E "^(# )?$opt[= ]" "$obj/.config" || echo absent))") ;;
      "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
        grep -qE "^$opt=" "$obj/.config" && bad+=("$opt off (got: $(grep -E "^$opt=" "$obj/.config"))") ;;
    esac
  done < "$fragment"
  if [ "${#bad[@]}" -gt 0 ]; then
    echo "build.sh: profile '$profile': requested options not in the final config:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi

  echo "build.sh: building $profile (make -j$(nproc))" >&2
  make -s -C "$src" O="$obj" -j"$(nproc)" bzImage vmlinux >&2
  tmp=$result.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$tmp/"
  cp "$obj/.config" "$tmp/config"
  cat > "$tmp/manifest.json" <<JSON
{"profile": "$profile", "fragments": ["configs/$profile.config"], "source": "linux-source-6.1 $srcver",
 "bzImage_bytes": $(stat -c %s "$tmp/bzImage"), "vmlinux_bytes": $(stat -c %s "$tmp/vmlinux")}
JSON
  rm -rf "$result" && mv "$tmp" "$result"
fi

# Install by rename, so a reader never sees half a file.
mkdir -p "$outdir"
for f in bzImage vmlinux manifest.json config; do
  dest=$outdir/$f
  [ "$f" = config ] && dest=$outdir/.config
  cp "$result/$f" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
done
echo "$outdir/bzImage"
