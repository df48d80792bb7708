//! Every failure of `lupine-image`, each displayed as one line naming what is at fault.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        file: String,
        op: &'static str,
        source: io::Error,
    },
    /// The input is neither an OCI layout nor a docker-save tarball, or its structure is wrong.
    Image { file: String, what: String },
    /// A JSON document (index, manifest, config, fragment) does not parse or has the wrong shape.
    Json { file: String, what: String },
    /// A blob named by the image is not there.
    MissingBlob { digest: String },
    /// A blob's content does not match its digest.
    Digest { digest: String, actual: String },
    /// A blob's size does not match its descriptor.
    Size {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// Several images match and nothing says which one.
    Ambiguous { file: String, what: String },
    /// A layer media type we cannot read (zstd, foreign, ...).
    MediaType { digest: String, media_type: String },
    /// A layer entry that would escape the root, go through a symlink, or is otherwise unsafe.
    Entry {
        layer: String,
        path: String,
        what: String,
    },
    /// A layer that is not a valid (possibly gzipped) tar.
    Layer { layer: String, what: String },
    /// The image config and fragment give no program to run.
    NoEntrypoint { file: String },
    /// `lupine-init --check` refused the final manifest.
    Manifest { what: String },
    /// An external tool (mkfs.ext4, debugfs, lupine-init) failed.
    Tool { tool: String, what: String },
    /// A path that the output format cannot represent.
    Output { path: String, what: String },
    /// Relinking a program failed for a reason other than "not relinkable".
    Relink { path: String, what: String },
    /// The kernel fragment of the entry point cannot be derived.
    Fragment { path: String, what: String },
    /// A Firecracker config option that Firecracker would refuse, or that cannot be met.
    Firecracker { option: String, what: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { file, op, source } => write!(f, "{file}: cannot {op}: {source}"),
            Error::Image { file, what } => write!(f, "{file}: {what}"),
            Error::Json { file, what } => write!(f, "{file}: bad JSON: {what}"),
            Error::MissingBlob { digest } => write!(f, "blob {digest}: missing from the image"),
            Error::Digest { digest, actual } => {
                write!(f, "blob {digest}: content does not match its digest (it hashes to {actual})")
            }
            Error::Size {
                digest,
                expected,
                actual,
            } => write!(f, "blob {digest}: size is {actual} bytes, the descriptor says {expected}"),
            Error::Ambiguous { file, what } => write!(f, "{file}: {what}"),
            Error::MediaType { digest, media_type } => write!(
                f,
                "layer {digest}: unsupported media type {media_type} (only tar and tar+gzip are supported)"
            ),
            Error::Entry { layer, path, what } => write!(f, "layer {layer}: entry {path:?}: {what}"),
            Error::Layer { layer, what } => write!(f, "layer {layer}: {what}"),
            Error::NoEntrypoint { file } => write!(
                f,
                "{file}: the image has no Entrypoint or Cmd, and neither the command line (--entrypoint, --cmd) nor the manifest fragment (app.path) says what to run"
            ),
            Error::Manifest { what } => write!(f, "invalid /etc/lupine.json: {what}"),
            Error::Tool { tool, what } => write!(f, "{tool}: {what}"),
            Error::Output { path, what } => write!(f, "{path}: {what}"),
            Error::Relink { path, what } => write!(f, "relinking {path}: {what}"),
            Error::Fragment { path, what } => write!(f, "kernel fragment of {path}: {what}"),
            Error::Firecracker { option, what } => write!(f, "{option}: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an I/O error with the file and the operation that failed.
pub fn io(file: impl fmt::Display, op: &'static str) -> impl FnOnce(io::Error) -> Error {
    let file = file.to_string();
    move |source| Error::Io { file, op, source }
}
