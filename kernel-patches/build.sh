#!/usr/bin/env bash
# Build a Lupine kernel profile from Debian's linux-source-6.1.
#   kernel-patches/build.sh PROFILE OUTDIR
#
# Profiles (fragments are in configs/):
#   microvm         Firecracker's 6.1 guest config (configs/microvm.config, a full .config),
#                   kept as it is: used as .config, then olddefconfig.
#   lupine-base     configs/lupine-base.config merged over allnoconfig.
#   lupine-APP      lupine-base + configs/apps/APP.config.
#   lupine-general  lupine-base + every configs/apps/*.config (the union).
#   NAME            any other configs/NAME.config merged over allnoconfig.
# Fragments of one profile must agree: an option set to two different values is an error.
#
# After olddefconfig, every option a fragment requests must come out as requested (Kconfig
# drops options whose dependencies are unmet without a word); the build fails listing each one
# that did not, with its fragment. configs/PROFILE.ignore lists options exempt from that check
# (one `CONFIG_X  reason` a line), for a full config taken from elsewhere (microvm).
#
# Writes bzImage, vmlinux, .config and manifest.json to OUTDIR and prints OUTDIR/bzImage.
# Builds are cached in ${LUPINE_CACHE:-~/.cache/lupine}/kernel by a hash of every input.
set -euo pipefail

usage() { echo "usage: $0 PROFILE OUTDIR" >&2; exit 2; }
die() { echo "build.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
profile=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
configs=$here/configs

case "$profile" in
  *+kml) die "profile '$profile': the +kml variants need the Kernel Mode Linux patch series, which does not exist yet" ;;
esac

# The profile's fragments, in merge order, and how they are applied.
base=allnoconfig
fragments=()
case "$profile" in
  microvm)
    base=full
    fragments=("$configs/microvm.config") ;;
  lupine-general)
    fragments=("$configs/lupine-base.config")
    for f in "$configs"/apps/*.config; do fragments+=("$f"); done ;;
  lupine-base)
    fragments=("$configs/lupine-base.config") ;;
  lupine-*)
    app=${profile#lupine-}
    [ -f "$configs/apps/$app.config" ] || die "no profile '$profile': configs/apps/$app.config missing"
    fragments=("$configs/lupine-base.config" "$configs/apps/$app.config") ;;
  *)
    [ -f "$configs/$profile.config" ] || die "no profile '$profile': configs/$profile.config missing"
    fragments=("$configs/$profile.config") ;;
esac
ignore=$configs/$profile.ignore
for f in "${fragments[@]}"; do [ -f "$f" ] || die "profile '$profile': $f missing"; done

tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || die "$tarball missing: run scripts/setup.sh"
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
cache=${LUPINE_CACHE:-$HOME/.cache/lupine}

# Every input: this script, the source and compiler versions, each fragment's name and text.
key=$( {
  echo "$profile $base $srcver"
  gcc --version | head -1
  cat "$0"
  for f in "${fragments[@]}" "$ignore"; do
    if [ -f "$f" ]; then echo "== ${f#"$here"/}"; cat "$f"; fi
  done
} | sha256sum | cut -c1-16)
result=$cache/kernel/$profile-$key

# The option lines of the fragments as "OPTION<tab>VALUE<tab>FRAGMENT" (VALUE "n" for "is not
# set"; a string value may hold spaces).
requested() {
  local f line opt
  for f in "${fragments[@]}"; do
    while IFS= read -r line; do
      case "$line" in
        CONFIG_*=*) printf '%s\t%s\t%s\n' "${line%%=*}" "${line#*=}" "${f#"$here"/}" ;;
        "# CONFIG_"*" is not set") opt=${line#\# }; printf '%s\tn\t%s\n' "${opt%% *}" "${f#"$here"/}" ;;
      esac
    done < "$f"
  done
}

# Fragments that disagree about an option are an error, whatever the order would make of it.
conflicts=$(requested | awk -F '\t' '
  !(($1, $2) in from) { values[$1] = values[$1] SUBSEP $2; count[$1]++; from[$1, $2] = $3; next }
  { from[$1, $2] = from[$1, $2] ", " $3 }
  END {
    for (opt in count) if (count[opt] > 1) {
      line = "  " opt ":"
      n = split(substr(values[opt], 2), v, SUBSEP)
      for (i = 1; i <= n; i++) line = line (i > 1 ? ";" : "") " " (v[i] == "n" ? "off" : v[i]) " in " from[opt, v[i]]
      print line
    }
  }' | sort)
[ -z "$conflicts" ] || die "profile '$profile': fragments disagree:
$conflicts"

mkdir -p "$cache/kernel" "$cache/build"
if [ ! -f "$result/bzImage" ]; then
  # The shared source tree is extracted once, under its own lock.
  src=$cache/src/linux-$srcver
  (
    flock 9
    if [ ! -f "$src/.extracted" ]; then
      echo "build.sh: extracting $tarball" >&2
      rm -rf "$src" && mkdir -p "$src"
      tar -xJf "$tarball" -C "$src" --strip-components=1
      touch "$src/.extracted"
    fi
  ) 9>"$cache/.src.lock"

  # One build tree per profile keeps rebuilds after a config change incremental; its lock
  # serialises builds of the same profile (different profiles may build at once).
  obj=$cache/build/$profile
  mkdir -p "$obj"
  exec 9>"$obj.lock"
  flock 9
fi

# Checked again under the lock: a concurrent build of this profile may have finished.
if [ ! -f "$result/bzImage" ]; then
  if [ "$base" = full ]; then
    cp "${fragments[0]}" "$obj/.config"
    make -s -C "$src" O="$obj" olddefconfig >/dev/null
  else
    merged=$obj/lupine-fragments.config
    # Lines repeated across fragments (app fragments share most options) once each.
    awk '!seen[$0]++' "${fragments[@]}" > "$merged"
    make -s -C "$src" O="$obj" KCONFIG_ALLCONFIG="$merged" allnoconfig >/dev/null
    make -s -C "$src" O="$obj" olddefconfig >/dev/null
  fi

  # Check every requested option, except those the profile's .ignore list names.
  ignored=()
  if [ -f "$ignore" ]; then
    mapfile -t ignored < <(grep -oE '^CONFIG_[A-Za-z0-9_]+' "$ignore")
  fi
  bad=()
  while IFS=$'\t' read -r opt want frag; do
    [[ " ${ignored[*]} " == *" $opt "* ]] && continue
    got=$(grep -E "^$opt=" "$obj/.config" || true)
    if [ "$want" = n ]; then
      [ -z "$got" ] || bad+=("$frag: $opt off (got: $got)")
    elif [ "$got" != "$opt=$want" ]; then
      bad+=("$frag: $opt=$want (got: ${got:-$(grep -E "^# $opt is not set" "$obj/.config" || echo absent)})")
    fi
  done < <(requested)
  if [ "${#bad[@]}" -gt 0 ]; then
    echo "build.sh: profile '$profile': ${#bad[@]} requested options not in the final config:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi

  echo "build.sh: building $profile (make -j$(nproc))" >&2
  make -s -C "$src" O="$obj" -j"$(nproc)" bzImage vmlinux >&2
  tmp=$result.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$tmp/"
  cp "$obj/.config" "$tmp/config"
  fragjson=$(for f in "${fragments[@]}"; do printf '"kernel-patches/%s", ' "${f#"$here"/}"; done)
  cat > "$tmp/manifest.json" <<JSON
{"profile": "$profile", "fragments": [${fragjson%, }],
 "base": "$base", "source": "linux-source-6.1 $srcver", "key": "$key",
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
