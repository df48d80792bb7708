//! `/etc/lupine.json`: derived from the image config, patched with the user's fragment
//! (RFC 7386 JSON merge patch), checked by the real `lupine-init --check`.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Map, Value};

use crate::error::{io, Error, Result};

/// What the command line says over the image config, as `docker run` does: `--entrypoint`
/// replaces `Entrypoint` (and, without `--cmd`, drops `Cmd`), `--cmd` replaces `Cmd`, `--env
/// KEY=VALUE` sets one variable, `--workdir` and `--user` replace theirs.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    pub entrypoint: Option<String>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

impl ConfigOverrides {
    /// Applies them to an image config (`{"config": {...}}`).
    pub fn apply(&self, config: &mut Value) {
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        let c = &mut config["config"];
        if let Some(entrypoint) = &self.entrypoint {
            c["Entrypoint"] = json!([entrypoint]);
            if self.cmd.is_none() {
                c["Cmd"] = json!([]);
            }
        }
        if let Some(cmd) = &self.cmd {
            c["Cmd"] = json!(cmd);
        }
        for kv in &self.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            let mut env: Vec<Value> = c["Env"].as_array().cloned().unwrap_or_default();
            env.retain(|e| e.as_str().and_then(|e| e.split('=').next()) != Some(key));
            env.push(json!(kv));
            c["Env"] = Value::Array(env);
        }
        if let Some(w) = &self.workdir {
            c["WorkingDir"] = json!(w);
        }
        if let Some(u) = &self.user {
            c["User"] = json!(u);
        }
    }
}

/// The manifest the image config implies: Entrypoint + Cmd, Env, WorkingDir, User.
pub fn from_config(config: &Value) -> Value {
    let c = &config["config"];
    let words = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = words(&c["Entrypoint"]);
    argv.extend(words(&c["Cmd"]));
    let mut app = Map::new();
    if let Some((path, args)) = argv.split_first() {
        app.insert("path".into(), json!(path));
        app.insert("args".into(), json!(args));
    }
    let env: Map<String, Value> = words(&c["Env"])
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (kv, json!("")),
        })
        .collect();
    if !env.is_empty() {
        app.insert("env".into(), Value::Object(env));
    }
    for (key, field) in [("WorkingDir", "cwd"), ("User", "user")] {
        if let Some(s) = c[key].as_str().filter(|s| !s.is_empty()) {
            app.insert(field.into(), json!(s));
        }
    }
    let mut m = Map::new();
    m.insert("version".into(), json!(1));
    if !app.is_empty() {
        m.insert("app".into(), Value::Object(app));
    }
    Value::Object(m)
}

/// RFC 7386: objects merge recursively, null deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The final manifest: config-derived, then patched; it must name a program.
pub fn build(config_name: &str, config: &Value, fragment: Option<&Value>) -> Result<Value> {
    let mut m = from_config(config);
    if let Some(f) = fragment {
        merge_patch(&mut m, f);
    }
    if m["app"]["path"].is_null() {
        return Err(Error::NoEntrypoint {
            file: config_name.into(),
        });
    }
    Ok(m)
}

/// Runs `init --check` on the manifest, written to `file`.
pub fn validate(init: &Path, manifest: &Value, file: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
    std::fs::write(file, text + "\n").map_err(io(file.display(), "write"))?;
    let out = Command::new(init)
        .arg("--check")
        .arg(file)
        .output()
        .map_err(|e| Error::Tool {
            tool: init.display().to_string(),
            what: format!("cannot run --check: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let prefix = format!("{}: ", file.display());
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l).trim())
        .filter(|l| !l.is_empty())
        .collect();
    Err(Error::Manifest {
        what: if lines.is_empty() {
            format!("lupine-init --check failed ({})", out.status)
        } else {
            lines.join("; ")
        },
    })
}
