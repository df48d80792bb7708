//! `lupine-image`: the command line over [`lupine_image::build`].

use std::mem::take;
use std::path::PathBuf;
use std::process::exit;

use lupine_image::firecracker::Firecracker;
use lupine_image::{Format, Options};

const USAGE: &str =
    "usage: lupine-image IMAGE -o OUTPUT --init PATH/TO/lupine-init [--manifest FRAGMENT.json] \
[--relink] [--format ext4|initramfs] [--size MiB] [--ref NAME] [--report PATH]
[--entrypoint PATH] [--cmd ARG]... [--env KEY=VALUE]... [--workdir DIR] [--user USER]
[--kernel-fragment PATH] [--quiet]
[--firecracker VM.json --kernel PATH/vmlinux [--vcpus N] [--mem MiB] [--tap NAME [--mac MAC]]
 [--mmds] [--boot-args ARGS] [--firecracker-log FILE] [--firecracker-metrics FILE]]

IMAGE is an OCI image layout directory, a `docker save` tarball, or a root filesystem
directory (its files as they are; say what to run with --entrypoint and --cmd). --entrypoint,
--cmd (one word each, repeated), --env, --workdir and --user override the image config as
`docker run` does (--entrypoint without --cmd drops the image's Cmd). OUTPUT is an ext4 image
(boot with init=/lupine-init) or, with --format initramfs, a cpio archive (gzipped if it ends
in .gz; boot with rdinit=/lupine-init). --kernel-fragment writes the Kconfig fragment the
image's program needs (lupine-config's, for it and every library it loads), to build a kernel
profile with kernel-patches/build.sh. --firecracker also writes a config file for
`firecracker --no-api --config-file VM.json` that boots OUTPUT on the vmlinux (default: 1 vCPU,
64 MiB; --tap: eth0 on that tap device; --mmds: Firecracker's metadata service on eth0;
--boot-args: added to the kernel command line).";

fn usage(msg: &str) -> ! {
    eprintln!("lupine-image: {msg}\n{USAGE}");
    exit(2)
}

fn parse(args: &[String]) -> Options {
    let mut image = None;
    let mut o = Options {
        verbose: true,
        ..Options::new(PathBuf::new(), PathBuf::new(), PathBuf::new())
    };
    let mut fc = Firecracker::new(PathBuf::new(), PathBuf::new());
    let (mut fc_config, mut kernel, mut fc_options) = (None, None, vec![]);
    let (mut output, mut init) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            "-o" | "--output" => output = Some(PathBuf::from(value(a))),
            "--init" => init = Some(PathBuf::from(value(a))),
            "--manifest" => o.manifest = Some(PathBuf::from(value(a))),
            "--relink" => o.relink = true,
            "--quiet" => o.verbose = false,
            "--format" => {
                o.format = match value(a).as_str() {
                    "ext4" => Format::Ext4,
                    "initramfs" => Format::Initramfs,
                    f => usage(&format!("unknown --format {f:?} (ext4 or initramfs)")),
                }
            }
            "--size" => {
                let v = value(a);
                o.size_mib = Some(v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    usage(&format!("--size {v:?} is not a positive number of MiB"))
                }))
            }
            "--ref" => o.ref_name = Some(value(a)),
            "--entrypoint" => o.config.entrypoint = Some(value(a)),
            "--cmd" => {
                let mut cmd = take(&mut o.config.cmd).unwrap_or_default();
                cmd.push(value(a));
                o.config.cmd = Some(cmd);
            }
            "--env" => {
                let v = value(a);
                if !v.contains('=') || v.starts_with('=') {
                    usage(&format!("--env {v:?}: give KEY=VALUE"))
                }
                o.config.env.push(v)
            }
            "--workdir" => o.config.workdir = Some(value(a)),
            "--user" => o.config.user = Some(value(a)),
            "--report" => o.report = Some(PathBuf::from(value(a))),
            "--kernel-fragment" => o.kernel_fragment = Some(PathBuf::from(value(a))),
            "--firecracker" => fc_config = Some(PathBuf::from(value(a))),
            "--kernel" => kernel = Some(PathBuf::from(value(a))),
            s if firecracker_option(s, &mut value, &mut fc) => fc_options.push(a.clone()),
            s if s.starts_with('-') && s != "-" => usage(&format!("unknown option {s}")),
            s => {
                if image.replace(PathBuf::from(s)).is_some() {
                    usage("more than one IMAGE")
                }
            }
        }
    }
    o.image = image.unwrap_or_else(|| usage("missing IMAGE"));
    o.output = output.unwrap_or_else(|| usage("missing -o OUTPUT"));
    o.init = init.unwrap_or_else(|| usage("missing --init PATH"));
    match (fc_config, kernel) {
        (Some(config), Some(kernel)) => {
            fc.config = config;
            fc.kernel = kernel;
            o.firecracker = Some(fc);
        }
        (Some(_), None) => usage("--firecracker needs --kernel PATH/vmlinux"),
        (None, Some(_)) => usage("--kernel is for --firecracker's config file"),
        (None, None) => {
            if let Some(option) = fc_options.first() {
                usage(&format!("{option} is for --firecracker's config file"))
            }
        }
    }
    o
}

/// Sets the Firecracker config option `a` (taking its value from `value`) in `fc`; false if `a`
/// is not one.
fn firecracker_option(
    a: &str,
    value: &mut dyn FnMut(&str) -> String,
    fc: &mut Firecracker,
) -> bool {
    let number = |v: String| -> u64 {
        v.parse()
            .unwrap_or_else(|_| usage(&format!("{a} {v:?} is not a number")))
    };
    match a {
        "--vcpus" => fc.vcpus = number(value(a)),
        "--mem" => fc.mem_mib = number(value(a)),
        "--tap" => fc.tap = Some(value(a)),
        "--mac" => fc.mac = Some(value(a)),
        "--boot-args" => fc.extra_boot_args = Some(value(a)),
        "--firecracker-log" => fc.log = Some(PathBuf::from(value(a))),
        "--firecracker-metrics" => fc.metrics = Some(PathBuf::from(value(a))),
        "--mmds" => fc.mmds = true,
        _ => return false,
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = parse(&args);
    match lupine_image::build(&o) {
        Ok(_) => eprintln!("lupine-image: wrote {}", o.output.display()),
        Err(e) => {
            eprintln!("lupine-image: {e}");
            exit(1)
        }
    }
}
