"""What the bench scripts share: paths, running commands, building lupine-init, other release
binaries and kernels, packing an initramfs, and the QEMU command line of a guest.

Imported by the scripts beside it (`import lib`: a script's own directory is first on
sys.path); not a script itself.
"""
import os, shutil, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
# lupine-init is static (musl), so it runs as PID 1 of any root filesystem.
MUSL = "x86_64-unknown-linux-musl"


def sh(*args, **kw):
    """Runs a command; one that fails ends the script with a CalledProcessError."""
    return subprocess.run(args, check=True, **kw)


def accel(script):
    """$LUPINE_ACCEL: "tcg" (QEMU's emulation, the default) or "kvm", which boots the guests
    under KVM on a host where KVM works (not the machine these tables come from: its /dev/kvm
    cannot run guests). Anything else ends `script`."""
    value = os.environ.get("LUPINE_ACCEL", "tcg")
    if value not in ("tcg", "kvm"):
        sys.exit(f"{script}: LUPINE_ACCEL={value!r}: use tcg or kvm")
    return value


def cargo_release(package, target=None):
    """Builds a workspace package with `cargo build --release` (for `target`, if given) and
    returns the path of its binary of the same name."""
    sh("cargo", "build", "-q", "--release", "-p", package,
       *(["--target", target] if target else []), cwd=TOP)
    return os.path.join(TOP, "target", *([target] if target else []), "release", package)


def lupine_init():
    """The static lupine-init, built for the musl target ($LUPINE_INIT instead when set, as the
    test suite sets it)."""
    return os.environ.get("LUPINE_INIT") or cargo_release("lupine-init", MUSL)


def kernel_dir(profile):
    """kernel-patches/build.sh PROFILE target/kernel/PROFILE (cached by build.sh): the
    directory with its bzImage and manifest.json; $LUPINE_KERNEL_DIR/PROFILE instead, unbuilt,
    when that is set (kernels built elsewhere, such as another version of a patch series)."""
    if os.environ.get("LUPINE_KERNEL_DIR"):
        return os.path.join(os.environ["LUPINE_KERNEL_DIR"], profile)
    out = os.path.join(TOP, "target/kernel", profile)
    sh(os.path.join(TOP, "kernel-patches/build.sh"), profile, out, stdout=subprocess.DEVNULL)
    return out


def initramfs_root(work, dirs=()):
    """WORK/root, to be packed by pack_initramfs: lupine-init (built here) at /lupine-init, the
    directories it mounts on or writes in, and `dirs`."""
    root = os.path.join(work, "root")
    for d in ("etc", "dev", "proc", "sys", "tmp", "run", *dirs):
        os.makedirs(os.path.join(root, d))
    shutil.copy(lupine_init(), os.path.join(root, "lupine-init"))
    return root


def pack_initramfs(root, out):
    """A newc cpio archive of `root` at `out` (GNU cpio), every entry owned by root: KML runs
    /trusted programs only if root owns them and others cannot write them."""
    files = sh("find", ".", cwd=root, capture_output=True).stdout
    with open(out, "wb") as f:
        sh("cpio", "-o", "-H", "newc", "--quiet", "--owner=0:0", cwd=root, input=files,
           stdout=f)
    return out


def qemu(profile, kernel, mem, serial, cmdline, accel):
    """The QEMU command line of a guest of kernel `profile`, to which the caller adds its disk
    or initramfs and devices. Lupine profiles boot on `-M microvm,acpi=off` (virtio-mmio
    devices on the command line); microvm's config finds devices through ACPI, so it boots on
    `-M microvm` with `pci=off`."""
    machine, extra = ("microvm", " pci=off") if profile == "microvm" else ("microvm,acpi=off", "")
    return ["qemu-system-x86_64", "-M", machine, "-accel", accel, "-m", str(mem),
            "-no-reboot", "-nodefaults", "-nographic", "-serial", serial,
            "-kernel", kernel, "-append", cmdline + extra]
