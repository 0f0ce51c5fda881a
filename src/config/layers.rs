//! The four layers of settings, highest first: flags, `REDIS_PROXY_*` variables, the `--config`
//! TOML file, defaults. Generic over clap's argument definitions: every long option is a file
//! key of the same name, typed by its value parser, so an option added later is a key too.

use super::Config;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Options that make no sense inside the file they would name or as a standing setting.
const NOT_IN_FILE: &[&str] = &["config", "check-config"];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// A checked configuration and where each setting came from.
pub struct Loaded {
    pub cfg: Config,
    pub matches: ArgMatches,
    /// Arg ids set by the file.
    from_file: Vec<String>,
}

impl Loaded {
    pub fn source(&self, id: &str) -> Source {
        if self.from_file.iter().any(|f| f == id) {
            return Source::File;
        }
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            _ => Source::Default,
        }
    }
}

pub enum LoadError {
    /// Help, version, or a command-line error: clap prints it and picks the exit code.
    Clap(clap::Error),
    /// Refused: the message names the file and key when the value came from the file.
    Invalid(String),
}

/// The TOML type a file key must have: what its value parser produces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Bool,
    Text,
}

fn kind_of(arg: &Arg) -> Kind {
    let t = arg.get_value_parser().type_id();
    let integers = [
        TypeId::of::<usize>(),
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<u16>(),
        TypeId::of::<u8>(),
        TypeId::of::<i64>(),
        TypeId::of::<i32>(),
    ];
    if integers.iter().any(|i| t == *i) {
        Kind::Integer
    } else if t == TypeId::of::<bool>() {
        Kind::Bool
    } else {
        Kind::Text
    }
}

fn is_flag(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// The options that are file keys: every long option but help, version and `NOT_IN_FILE`.
pub fn file_keys(cmd: &clap::Command) -> impl Iterator<Item = (&str, &Arg)> {
    cmd.get_arguments().filter_map(|a| {
        let long = a.get_long()?;
        let settable = matches!(
            a.get_action(),
            ArgAction::Set | ArgAction::Append | ArgAction::SetTrue | ArgAction::SetFalse
        );
        (settable && !NOT_IN_FILE.contains(&long)).then_some((long, a))
    })
}

/// How `key`'s value is shown: as the file would hold it.
pub(super) fn toml_value(arg: &Arg, raw: &str) -> String {
    match kind_of(arg) {
        Kind::Integer | Kind::Bool => raw.to_string(),
        Kind::Text => toml::Value::String(raw.to_string()).to_string(),
    }
}

/// Parses the process's command line (`args`, program name first) and environment, and the
/// file `--config` names; validates; reads --requirepass-file.
pub fn load(args: &[OsString]) -> Result<Loaded, LoadError> {
    let cmd = Config::command();
    let first = cmd
        .clone()
        .try_get_matches_from(args)
        .map_err(LoadError::Clap)?;
    let mut extra: Vec<OsString> = Vec::new();
    let mut from_file = Vec::new();
    let path = first.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &path {
        let table = read_table(path)?;
        for (key, value) in &table {
            let Some(arg) = file_keys(&cmd).find(|(k, _)| k == key).map(|(_, a)| a) else {
                return Err(file_error(path, key, &unknown_key(&cmd, key)));
            };
            let id = arg.get_id().as_str();
            let values = to_strings(arg, value).map_err(|why| file_error(path, key, &why))?;
            for v in &values {
                check_value(&cmd, arg, v).map_err(|why| file_error(path, key, &why))?;
            }
            // A flag or a variable outranks the file.
            if matches!(
                first.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            if is_flag(arg) {
                if values == ["true"] {
                    extra.push(format!("--{key}").into());
                }
            } else {
                // `--key=value`: a value starting with '-' must not read as an option.
                extra.extend(values.iter().map(|v| format!("--{key}={v}").into()));
            }
            from_file.push(id.to_string());
        }
    }
    let matches = if extra.is_empty() {
        first
    } else {
        let all: Vec<OsString> = args.iter().cloned().chain(extra).collect();
        let path = path.as_deref().unwrap_or(Path::new(""));
        cmd.try_get_matches_from(all)
            .map_err(|e| LoadError::Invalid(format!("{}: {}", path.display(), clap_reason(&e))))?
    };
    let cfg = Config::from_arg_matches(&matches).map_err(LoadError::Clap)?;
    let mut loaded = Loaded {
        cfg,
        matches,
        from_file,
    };
    loaded.cfg.log_level_explicit = loaded.source("log_level") != Source::Default;
    let checked = loaded.cfg.validate().and_then(|_| loaded.cfg.prepare());
    if let Err(why) = checked {
        return Err(LoadError::Invalid(blame(&loaded, path.as_deref(), why)));
    }
    Ok(loaded)
}

fn read_table(path: &Path) -> Result<toml::Table, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    text.parse::<toml::Table>().map_err(|e| {
        // toml's message spans lines (a caret under the culprit); one line reads better in logs.
        let msg = e.message().to_string();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        LoadError::Invalid(format!("{}: invalid TOML{at}: {msg}", path.display()))
    })
}

fn file_error(path: &Path, key: &str, why: &str) -> LoadError {
    LoadError::Invalid(format!("{}: key '{key}': {why}", path.display()))
}

fn unknown_key(cmd: &clap::Command, key: &str) -> String {
    let dashed = key.replace('_', "-");
    if dashed != key && file_keys(cmd).any(|(k, _)| k == dashed) {
        format!("unknown key (did you mean '{dashed}'?)")
    } else {
        "unknown key".to_string()
    }
}

/// The key's value as option values, if its TOML type is the one the option takes.
fn to_strings(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let many = matches!(arg.get_action(), ArgAction::Append);
    let kind = kind_of(arg);
    let one = |v: &toml::Value| match (kind, v) {
        (Kind::Integer, toml::Value::Integer(i)) => Ok(i.to_string()),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
        (Kind::Text, toml::Value::String(s)) => Ok(s.clone()),
        (want, got) => Err(format!(
            "expected {}, got {}",
            match want {
                Kind::Integer => "an integer",
                Kind::Bool => "a boolean",
                Kind::Text => "a string",
            },
            got.type_str()
        )),
    };
    match value {
        toml::Value::Array(items) if many => items.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}

/// Runs the option's own value parser on `v` (clap keeps the parser's entry point private):
/// the whole command, so that the option's relations to others resolve, with only this option
/// given and its variable ignored.
fn check_value(cmd: &clap::Command, arg: &Arg, v: &str) -> Result<(), String> {
    let id = arg.get_id().clone();
    let long = arg.get_long().unwrap_or_default();
    let given = if is_flag(arg) {
        format!("--{long}")
    } else {
        format!("--{long}={v}")
    };
    let argv = [OsStr::new("redis-proxy"), OsStr::new(&given)];
    cmd.clone()
        .mut_arg(id, |a| a.env(None))
        .try_get_matches_from(argv)
        .map(drop)
        .map_err(|e| clap_reason(&e))
}

/// clap's reason without its "error: " prefix and usage hints.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_string()
}

/// A check that failed names an option (`--expire must be ...`): when the file set it, say so.
fn blame(l: &Loaded, path: Option<&Path>, why: String) -> String {
    let (Some(path), Some(start)) = (path, why.find("--")) else {
        return why;
    };
    let name: String = why[start + 2..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let cmd = Config::command();
    let from_file = file_keys(&cmd)
        .find(|(k, _)| *k == name)
        .is_some_and(|(_, a)| l.source(a.get_id().as_str()) == Source::File);
    if from_file {
        format!("{}: key '{name}': {why}", path.display())
    } else {
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(long: &str) -> Arg {
        let cmd = Config::command();
        let found = file_keys(&cmd).find(|(k, _)| *k == long).map(|(_, a)| a);
        found.unwrap_or_else(|| panic!("no key {long}")).clone()
    }

    #[test]
    fn every_long_option_but_the_meta_ones_is_a_key() {
        let cmd = Config::command();
        let keys: Vec<&str> = file_keys(&cmd).map(|(k, _)| k).collect();
        for k in [
            "listen",
            "redis",
            "capacity",
            "expire",
            "log-level",
            "requirepass-file",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        for k in ["config", "check-config", "help", "version"] {
            assert!(!keys.contains(&k), "{k} is a key");
        }
    }

    #[test]
    fn toml_types_follow_the_value_parser() {
        let int = toml::Value::Integer(5);
        let text = toml::Value::String("5".into());
        assert_eq!(to_strings(&arg("capacity"), &int).unwrap(), ["5"]);
        assert!(to_strings(&arg("capacity"), &text).is_err());
        assert_eq!(to_strings(&arg("expire"), &text).unwrap(), ["5"]);
        assert!(to_strings(&arg("expire"), &int).is_err());
        assert!(to_strings(&arg("invalidation"), &toml::Value::Boolean(true)).is_err());
        assert_eq!(toml_value(&arg("capacity"), "5"), "5");
        // Shown values read back as the same string.
        let shown = toml_value(&arg("listen"), "a\"b'c");
        let back: toml::Table = format!("k = {shown}").parse().unwrap();
        assert_eq!(back["k"].as_str(), Some("a\"b'c"));
    }

    #[test]
    fn underscores_get_a_hint() {
        let cmd = Config::command();
        assert!(unknown_key(&cmd, "max_clients").contains("'max-clients'"));
        assert_eq!(unknown_key(&cmd, "nope"), "unknown key");
    }
}
