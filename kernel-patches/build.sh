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
#   PROFILE+FEATURE adds configs/features/FEATURE.config to any of those but microvm, e.g.
#                   lupine-general+ipv6 (several: lupine-redis+ipv6+...).
#                   A feature with a patch series (patches/FEATURE/series, one patch file name
#                   a line, e.g. kml: Kernel Mode Linux) also patches the source: such a
#                   profile builds from its own copy of the source, extracted from the tarball
#                   with the series applied (patch -p1, in order) into
#                   $cache/src/linux-VERSION-FEATURE-HASH (HASH of the patches); the trees
#                   of older versions of the series are removed once no build uses them.
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
# One compound command, read whole before it runs: editing this file during a build cannot
# change what that build does.
{

usage() { echo "usage: $0 PROFILE OUTDIR" >&2; exit 2; }
die() { echo "build.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
profile=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
configs=$here/configs

# NAME+FEATURE+...: the features' fragments go after the profile's own.
name=${profile%%+*}
features=()
if [ "$name" != "$profile" ]; then
  IFS=+ read -ra features <<< "${profile#*+}"
fi
for feature in "${features[@]}"; do
  [ -f "$configs/features/$feature.config" ] || die "profile '$profile': no feature '$feature' (configs/features/$feature.config missing)"
done

# The patches of the features that have a series, in order (blank and # lines skipped).
patched=()
patches=()
for feature in "${features[@]}"; do
  series=$here/patches/$feature/series
  [ -f "$series" ] || continue
  patched+=("$feature")
  while IFS= read -r p || [ -n "$p" ]; do
    case "$p" in ''|'#'*) continue ;; esac
    [ -f "$here/patches/$feature/$p" ] || die "profile '$profile': patches/$feature/series names $p, which is missing"
    patches+=("$here/patches/$feature/$p")
  done < "$series"
done

# The profile's fragments, in merge order, and how they are applied.
base=allnoconfig
fragments=()
case "$name" in
  microvm)
    [ "${#features[@]}" -eq 0 ] || die "profile '$profile': microvm is Firecracker's configuration kept as it is; it takes no features"
    base=full
    fragments=("$configs/microvm.config") ;;
  lupine-general)
    fragments=("$configs/lupine-base.config")
    for f in "$configs"/apps/*.config; do fragments+=("$f"); done ;;
  lupine-base)
    fragments=("$configs/lupine-base.config") ;;
  lupine-*)
    app=${name#lupine-}
    [ -f "$configs/apps/$app.config" ] || die "no profile '$name': configs/apps/$app.config missing"
    fragments=("$configs/lupine-base.config" "$configs/apps/$app.config") ;;
  *)
    [ -f "$configs/$name.config" ] || die "no profile '$name': configs/$name.config missing"
    fragments=("$configs/$name.config") ;;
esac
for feature in "${features[@]}"; do fragments+=("$configs/features/$feature.config"); done
ignore=$configs/$name.ignore
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
  for f in "${fragments[@]}" "$ignore" "${patches[@]}"; do
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
  if [ "${#patches[@]}" -eq 0 ]; then
    (
      flock 9
      if [ ! -f "$src/.extracted" ]; then
        echo "build.sh: extracting $tarball" >&2
        rm -rf "$src" && mkdir -p "$src"
        tar -xJf "$tarball" -C "$src" --strip-components=1
        touch "$src/.extracted"
      fi
    ) 9>"$cache/.src.lock"
  else
    # A patched profile never touches the shared tree: its own copy, named by a hash of the
    # patches' names and contents, is extracted and patched once, under its own lock.
    phash=$(for p in "${patches[@]}"; do echo "== ${p#"$here"/}"; cat "$p"; done | sha256sum | cut -c1-16)
    family=$cache/src/linux-$srcver-$(IFS=-; echo "${patched[*]}")
    src=$family-$phash
    mkdir -p "$cache/src"
    # While this build uses the tree it holds a shared lock on $src.use (fd 7, until exit);
    # trees of an older version of the same series (another hash, 1.5 GB each) that no build
    # holds are removed. An old checkout that needs one again extracts it again.
    exec 7>"$src.use"
    flock -s 7
    for old in "$family"-*; do
      [ -d "$old" ] && [ "$old" != "$src" ] && [[ ${old#"$family"-} =~ ^[0-9a-f]{16}$ ]] || continue
      if (flock -n 8 && rm -rf "$old") 8>"$old.use"; then
        echo "build.sh: removed $old (an older version of the series)" >&2
      fi
    done
    (
      flock 9
      if [ ! -f "$src/.extracted" ]; then
        echo "build.sh: extracting $tarball and applying ${#patches[@]} patches into $src" >&2
        rm -rf "$src" && mkdir -p "$src"
        tar -xJf "$tarball" -C "$src" --strip-components=1
        for p in "${patches[@]}"; do
          if ! out=$(patch -p1 --batch --forward --fuzz=0 --no-backup-if-mismatch -d "$src" < "$p" 2>&1); then
            rm -rf "$src"
            die "profile '$profile': ${p#"$here"/} does not apply to linux-source-6.1 $srcver:
$out"
          fi
        done
        touch "$src/.extracted"
      fi
    ) 9>"$src.lock"
  fi

  # One build tree per profile keeps rebuilds after a config change incremental; its lock
  # serialises builds of the same profile (different profiles may build at once).
  obj=$cache/build/$profile
  mkdir -p "$obj"
  exec 9>"$obj.lock"
  flock 9
  # A new allnoconfig profile starts from a copy of another one's build tree: Kbuild then
  # recompiles only what the options that differ touch (minutes become seconds for an app
  # profile). The seed's lock is only tried, so that two profiles seeding from each other
  # cannot wait on each other. The seed must have been built from the same source tree
  # (.lupine-source; a tree without it is from the shared one): a patched profile seeds from
  # lupine-general or lupine-base with the same features.
  if [ "$base" = allnoconfig ] && [ ! -f "$obj/vmlinux" ]; then
    for seed in lupine-general lupine-base; do
      [ "${#patches[@]}" -eq 0 ] || seed=$seed${profile#"$name"}
      [ "$seed" != "$profile" ] && [ -f "$cache/build/$seed/vmlinux" ] || continue
      seedsrc=$(cat "$cache/build/$seed/.lupine-source" 2>/dev/null || echo "$cache/src/linux-$srcver")
      [ "$seedsrc" = "$src" ] || continue
      if (flock -n 8 && rm -rf "$obj" && cp -a "$cache/build/$seed" "$obj") 8>"$cache/build/$seed.lock"; then
        echo "build.sh: $profile starts from the $seed build tree" >&2
        break
      fi
    done
  fi
fi

# Checked again under the lock: a concurrent build of this profile may have finished.
if [ ! -f "$result/bzImage" ]; then
  echo "$src" > "$obj/.lupine-source"
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
  patchjson=
  if [ "${#patches[@]}" -gt 0 ]; then
    patchjson=$(for p in "${patches[@]}"; do printf '"kernel-patches/%s", ' "${p#"$here"/}"; done)
    patchjson=" \"patches\": [${patchjson%, }],"
  fi
  cat > "$tmp/manifest.json" <<JSON
{"profile": "$profile", "fragments": [${fragjson%, }],$patchjson
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
exit
}
