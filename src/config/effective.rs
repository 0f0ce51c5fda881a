//! The effective configuration, one `key = value` per option as the file would hold it, with
//! where each value came from; secrets masked. Printed by --check-config, and compared by
//! SIGHUP to find what changed.

use super::layers::{file_keys, toml_value, Loaded, Source};
use super::{Config, RedisTarget};
use clap::CommandFactory;

/// One option's effective value (`None`: unset) and its source. No `Debug`: `raw` holds
/// secrets.
#[derive(Clone)]
pub struct Setting {
    pub key: String,
    /// As printed: secrets masked.
    pub value: Option<String>,
    pub source: Source,
    /// As given, to tell whether a secret changed.
    pub raw: Option<Vec<String>>,
}

/// Every file key, in `--help` order.
pub fn settings(l: &Loaded) -> Vec<Setting> {
    let cmd = Config::command();
    file_keys(&cmd)
        .map(|(key, arg)| {
            let id = arg.get_id().as_str();
            let raw: Option<Vec<String>> = l.matches.get_raw(id).map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            });
            // Secrets are the options whose environment value --help hides.
            let secret = arg.is_hide_env_values_set();
            let raw = raw.filter(|v| !v.is_empty());
            let value = raw.as_ref().map(|vals| {
                let shown: Vec<String> = vals
                    .iter()
                    .map(|v| toml_value(arg, &if secret { mask(key, v) } else { v.clone() }))
                    .collect();
                if matches!(arg.get_action(), clap::ArgAction::Append) {
                    format!("[{}]", shown.join(", "))
                } else {
                    shown.join(" ")
                }
            });
            Setting {
                key: key.to_string(),
                value,
                source: l.source(id),
                raw,
            }
        })
        .collect()
}

/// A secret's printable form: a Redis target keeps all but its password.
fn mask(key: &str, raw: &str) -> String {
    match key {
        "redis" => RedisTarget::parse(raw).map_or("***".into(), |t| t.to_string()),
        _ => "***".into(),
    }
}

/// `key = value  # source` lines: a valid config file, but for the masked secrets.
pub fn render(l: &Loaded) -> String {
    let mut out = String::new();
    for s in settings(l) {
        let line = match &s.value {
            Some(v) => format!("{} = {v}", s.key),
            None => format!("# {} (unset)", s.key),
        };
        out.push_str(&format!("{line:<48} # {}\n", s.source.as_str()));
    }
    out
}
