//! The parts of the kernel command line lupine-init reads (/proc/cmdline).

/// `lupine.manifest=PATH`, `lupine.log=LEVEL`, `lupine.config=SOURCE` and the standard `ip=`.
#[derive(Debug, Default, PartialEq)]
pub struct Cmdline {
    pub manifest: Option<String>,
    pub log: Option<String>,
    pub config: Option<String>,
    pub ip: Option<String>,
}

pub fn parse(text: &str) -> Cmdline {
    let mut c = Cmdline::default();
    for word in words(text) {
        if word == "--" {
            break; // the rest belongs to init's argv
        }
        if let Some((key, value)) = word.split_once('=') {
            match key {
                "lupine.manifest" => c.manifest = Some(value.to_string()),
                "lupine.log" => c.log = Some(value.to_string()),
                "lupine.config" => c.config = Some(value.to_string()),
                "ip" => c.ip = Some(value.to_string()),
                _ => {}
            }
        }
    }
    c
}

/// Splits like the kernel does: on spaces, with double quotes grouping a value.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lupine_parameters_and_ip() {
        let c = parse(
            "console=ttyS0 lupine.manifest=/m.json lupine.log=debug lupine.config=mmds ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off quiet\n",
        );
        assert_eq!(c.config.as_deref(), Some("mmds"));
        assert_eq!(c.manifest.as_deref(), Some("/m.json"));
        assert_eq!(c.log.as_deref(), Some("debug"));
        assert_eq!(
            c.ip.as_deref(),
            Some("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off")
        );
    }

    #[test]
    fn stops_at_double_dash() {
        let c = parse("quiet -- lupine.log=debug /bin/app");
        assert_eq!(c, Cmdline::default());
    }

    #[test]
    fn quotes_group_spaces() {
        let c = parse(r#"lupine.manifest="/a b.json" x"#);
        assert_eq!(c.manifest.as_deref(), Some("/a b.json"));
    }

    #[test]
    fn empty() {
        assert_eq!(parse(""), Cmdline::default());
    }
}
