//! Per-instance configuration: a manifest fragment named by `lupine.config=` on the kernel
//! command line, applied over the image's manifest as a JSON merge patch (RFC 7386), so one
//! image serves many VMs and their secrets stay out of the image and the command line.

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use crate::mmds;

/// How long a config drive may take to appear (virtio-blk may probe after init starts).
const DRIVE_WAIT: Duration = Duration::from_secs(5);
/// A fragment is a small JSON document; a device is read this far at most.
const MAX_FRAGMENT: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Firecracker's metadata service, at this path of its data store.
    Mmds(String),
    /// A raw block device holding the JSON (then zeros to the end of the device).
    Drive(String),
}

impl Source {
    /// `mmds`, `mmds:/PATH` or `/dev/NAME`.
    pub fn parse(word: &str) -> Result<Source, String> {
        match word.split_once(':') {
            None if word == "mmds" => Ok(Source::Mmds("/lupine".into())),
            Some(("mmds", path))
                if path.starts_with('/') && !path.contains(char::is_whitespace) =>
            {
                Ok(Source::Mmds(path.into()))
            }
            None if word.starts_with("/dev/") => Ok(Source::Drive(word.into())),
            _ => Err(format!(
                "lupine.config={word}: expected \"mmds\", \"mmds:/PATH\" or a device \"/dev/NAME\""
            )),
        }
    }

    /// Whether the source needs the network up before it can be read.
    pub fn needs_network(&self) -> bool {
        matches!(self, Source::Mmds(_))
    }

    /// The fragment: a JSON object. Errors name the source; no value of the fragment ever
    /// appears in one (it may hold secrets).
    pub fn fetch(&self) -> Result<Value, String> {
        let text = match self {
            Source::Mmds(path) => mmds::get(path)?,
            Source::Drive(dev) => read_drive(dev)?,
        };
        parse_fragment(&self.name(), &text)
    }

    pub fn name(&self) -> String {
        match self {
            Source::Mmds(path) => format!("mmds {path}"),
            Source::Drive(dev) => dev.clone(),
        }
    }
}

/// The fragment in `text` as read from the source `name`: JSON text, then, on a drive, zeros
/// (or whitespace) to its end; it must be an object. Errors name the source and never quote
/// the text (it may hold secrets).
pub fn parse_fragment(name: &str, text: &[u8]) -> Result<Value, String> {
    let end = text
        .iter()
        .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let text =
        std::str::from_utf8(&text[..end]).map_err(|e| format!("{name}: not UTF-8 text: {e}"))?;
    // serde_json's error says where, not what: safe to show. from_str, as the manifest's
    // parser: from_slice would link a second copy of the parser.
    match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(format!("{name}: not a JSON object")),
        Err(e) => Err(format!("{name}: not valid JSON: {e}")),
    }
}

fn read_drive(dev: &str) -> Result<Vec<u8>, String> {
    crate::mounts::wait_for(dev, DRIVE_WAIT.as_secs_f64());
    let file = File::open(dev).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{dev}: no such device (waited {} s)", DRIVE_WAIT.as_secs())
        }
        _ => format!("{dev}: {e}"),
    })?;
    let mut text = Vec::new();
    file.take(MAX_FRAGMENT)
        .read_to_end(&mut text)
        .map_err(|e| format!("{dev}: {e}"))?;
    Ok(text)
}

/// RFC 7386: members of `patch` replace those of `target`, objects merge, null deletes.
pub fn merge(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            // shift_remove, not remove: the rest keep their order (sysctls apply in it).
            map.shift_remove(&key);
        } else if let Some(member) = map.get_mut(&key) {
            merge(member, value);
        } else {
            let mut member = Value::Null;
            merge(&mut member, value); // drops the nulls inside a new member
            map.insert(key, member);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources() {
        assert_eq!(Source::parse("mmds"), Ok(Source::Mmds("/lupine".into())));
        assert_eq!(
            Source::parse("mmds:/tenants/a"),
            Ok(Source::Mmds("/tenants/a".into()))
        );
        assert_eq!(
            Source::parse("/dev/vdb"),
            Ok(Source::Drive("/dev/vdb".into()))
        );
        for bad in ["", "mmds:", "mmds:x", "vdb", "http://x", "/etc/x.json"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    /// RFC 7386's appendix A examples.
    #[test]
    fn merge_patch_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge(&mut target, patch.clone());
            assert_eq!(target, want, "patch {patch}");
        }
    }

    /// Sysctls apply in manifest order: a deletion keeps the others' order.
    #[test]
    fn merging_keeps_the_order_of_members() {
        let mut target = json!({"sysctl": {"a": "1", "b": "2", "c": "3", "d": "4"}});
        merge(&mut target, json!({"sysctl": {"a": null, "e": "5"}}));
        let keys: Vec<&String> = target["sysctl"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "c", "d", "e"]);
    }
}
