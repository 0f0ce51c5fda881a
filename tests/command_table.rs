//! The dispatch table against a live redis-server's `COMMAND` output.
//!
//! A command the proxy forwards as a plain read cannot invalidate anything, so every command
//! Redis flags as a write (or whose key specs say it writes a key) must be a write (with key
//! positions covering the keys Redis declares), a flush, or refused.
mod common;

use common::*;
use redis_proxy::command::{kind_of_name, write_keys, Keys, Kind};
use std::collections::BTreeSet;

/// One entry of `COMMAND` (RESP2 form).
#[derive(Debug)]
struct Info {
    /// Lower-case, `container|sub` for subcommands.
    name: String,
    arity: i64,
    flags: Vec<String>,
    first: i64,
    last: i64,
    step: i64,
    specs: Vec<KeySpec>,
    subcommands: Vec<Info>,
}

/// The parts of a key spec this test understands.
#[derive(Debug, Clone)]
struct KeySpec {
    flags: Vec<String>,
    /// `Some(index)` for an `index` begin-search; `None` for `keyword`/`unknown`.
    begin_index: Option<i64>,
    /// `Some((lastkey, keystep, limit))` for a `range` find-keys; `None` for `keynum`/`unknown`.
    range: Option<(i64, i64, i64)>,
}

impl KeySpec {
    /// The spec declares keys that the command modifies (RW, OW or RM).
    fn writes(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "RW" | "OW" | "RM"))
    }
}

fn text(r: &Reply) -> String {
    match r {
        Reply::Simple(s) => s.clone(),
        Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("expected a string in COMMAND output, got {other:?}"),
    }
}

fn items(r: &Reply) -> &[Reply] {
    match r {
        Reply::Array(Some(v)) => v,
        other => panic!("expected an array in COMMAND output, got {other:?}"),
    }
}

/// A flat `[name, value, name, value, ...]` array as (name, value) pairs.
fn fields(r: &Reply) -> Vec<(String, &Reply)> {
    items(r)
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (text(&c[0]).to_ascii_lowercase(), &c[1]))
        .collect()
}

fn field<'a>(fs: &[(String, &'a Reply)], name: &str) -> Option<&'a Reply> {
    fs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn parse_spec(r: &Reply) -> KeySpec {
    let fs = fields(r);
    let flags = field(&fs, "flags")
        .map(|f| items(f).iter().map(text).collect())
        .unwrap_or_default();
    let begin_index = field(&fs, "begin_search").and_then(|bs| {
        let bs = fields(bs);
        let kind = text(field(&bs, "type")?);
        let spec = fields(field(&bs, "spec")?);
        (kind == "index").then(|| field(&spec, "index").map(Reply::as_int))?
    });
    let range = field(&fs, "find_keys").and_then(|fk| {
        let fk = fields(fk);
        let kind = text(field(&fk, "type")?);
        let spec = fields(field(&fk, "spec")?);
        if kind != "range" {
            return None;
        }
        Some((
            field(&spec, "lastkey")?.as_int(),
            field(&spec, "keystep")?.as_int(),
            field(&spec, "limit").map(Reply::as_int).unwrap_or(0),
        ))
    });
    KeySpec {
        flags,
        begin_index,
        range,
    }
}

fn parse_info(r: &Reply) -> Info {
    let v = items(r);
    Info {
        name: text(&v[0]).to_ascii_lowercase(),
        arity: v[1].as_int(),
        flags: items(&v[2]).iter().map(text).collect(),
        first: v[3].as_int(),
        last: v[4].as_int(),
        step: v[5].as_int(),
        specs: v
            .get(8)
            .map(|s| items(s).iter().map(parse_spec).collect())
            .unwrap_or_default(),
        subcommands: v
            .get(9)
            .map(|s| items(s).iter().map(parse_info).collect())
            .unwrap_or_default(),
    }
}

fn command_table(redis: &RedisServer) -> Vec<Info> {
    let reply = redis.cmd(&["COMMAND"]);
    let infos: Vec<Info> = items(&reply).iter().map(parse_info).collect();
    assert!(
        infos.len() > 100,
        "COMMAND returned only {} commands",
        infos.len()
    );
    infos
}

impl Info {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// Argument counts to try: the fixed arity, or a range above a minimum.
    fn sample_argcs(&self) -> Vec<usize> {
        if self.arity > 0 {
            vec![self.arity as usize]
        } else {
            let min = self.arity.unsigned_abs() as usize;
            (min..min + 8).collect()
        }
    }

    /// Key positions by the legacy (first, last, step) triple, as redis-server computes them.
    fn legacy_keys(&self, argc: usize) -> BTreeSet<usize> {
        if self.first <= 0 {
            return BTreeSet::new();
        }
        let last = if self.last < 0 {
            argc as i64 + self.last
        } else {
            self.last
        };
        let step = self.step.max(1) as usize;
        (self.first..=last.min(argc as i64 - 1))
            .step_by(step)
            .map(|i| i as usize)
            .collect()
    }
}

/// Key positions a (begin: index, find: range) spec declares for `argc` arguments, as
/// redis-server's `getKeysUsingKeySpecs` computes them; `None` if they depend on the
/// arguments' contents (keyword search, key counts).
fn spec_keys(spec: &KeySpec, argc: usize) -> Option<BTreeSet<usize>> {
    let first = spec.begin_index?;
    let (lastkey, keystep, limit) = spec.range?;
    let argc = argc as i64;
    if first >= argc {
        return Some(BTreeSet::new());
    }
    let last = if lastkey >= 0 {
        first + lastkey
    } else if limit == 0 {
        argc + lastkey
    } else {
        first + ((argc - first) / limit + lastkey)
    };
    let step = keystep.max(1) as usize;
    Some(
        (first..=last.min(argc - 1))
            .step_by(step)
            .map(|i| i as usize)
            .collect(),
    )
}

fn is_write_kind(k: Kind) -> bool {
    // Blocking commands invalidate every argument (they run on a dedicated connection).
    matches!(
        k,
        Kind::Write(_)
            | Kind::Flush
            | Kind::FlushDb
            | Kind::Swapdb
            | Kind::Refused(_)
            | Kind::Blocking
    )
}

/// Write-flagged subcommands of containers the proxy forwards as reads, with the reason that
/// is safe: they modify server state but no key, so no cached GET can go stale.
const KEYLESS_WRITE_CONTAINERS: &[(&str, &str)] = &[(
    "FUNCTION",
    "FUNCTION LOAD/DELETE/FLUSH/RESTORE change the function library, not keys",
)];

/// Every (command or subcommand, argc) whose declared written keys our table misses.
fn coverage_problems(info: &Info, kind: Kind, problems: &mut Vec<String>) {
    let keys = match kind {
        Kind::Write(Keys::Range { first, last, step }) => Keys::Range { first, last, step },
        // Every argument, or the script's declared keys: always covers.
        Kind::Write(_)
        | Kind::Flush
        | Kind::FlushDb
        | Kind::Swapdb
        | Kind::Refused(_)
        | Kind::Blocking => return,
        _ => return, // reported elsewhere as "not a write"
    };
    let ours_for = |argc: usize| -> BTreeSet<usize> { write_keys(keys, argc).collect() };
    for argc in info.sample_argcs() {
        let ours = ours_for(argc);
        let legacy = if info.has_flag("write") {
            info.legacy_keys(argc)
        } else {
            BTreeSet::new()
        };
        let missing: Vec<usize> = legacy.difference(&ours).copied().collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} (legacy keys {}..{} step {}): argc {argc}: Redis declares key positions \
                 {legacy:?}, the proxy invalidates {ours:?}, missing {missing:?}",
                info.name, info.first, info.last, info.step
            ));
        }
        for spec in info.specs.iter().filter(|s| s.writes()) {
            match spec_keys(spec, argc) {
                Some(declared) => {
                    let missing: Vec<usize> = declared.difference(&ours).copied().collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "{}: argc {argc}: key spec {:?} declares written positions \
                             {declared:?}, the proxy invalidates {ours:?}, missing {missing:?}",
                            info.name, spec.flags
                        ));
                    }
                }
                None => {
                    problems.push(format!(
                        "{}: key spec {spec:?} writes keys found by keyword or count; a fixed \
                         range ({keys:?}) cannot cover them (use Keys::AllArgs)",
                        info.name
                    ));
                    break;
                }
            }
        }
    }
}

/// Every command Redis flags `write` is a write, a flush or refused: never forwarded as a
/// plain read (which would leave the cache holding the old value).
#[test]
fn every_write_command_invalidates() {
    let redis = RedisServer::start();
    let infos = command_table(&redis);
    let mut problems = Vec::new();
    let mut exempt = Vec::new();
    let mut checked = 0;
    for info in &infos {
        let upper = info.name.to_ascii_uppercase();
        let kind = kind_of_name(upper.as_bytes());
        let writes_by_spec = info.specs.iter().any(KeySpec::writes);
        if info.has_flag("write") || writes_by_spec {
            checked += 1;
            if !is_write_kind(kind) {
                let why = if info.has_flag("write") {
                    "flagged write".to_string()
                } else {
                    "its key specs write keys".to_string()
                };
                problems.push(format!("{upper} ({why}) is classified {kind:?}"));
            }
        }
        for sub in &info.subcommands {
            let writes_by_spec = sub.specs.iter().any(KeySpec::writes);
            if !(sub.has_flag("write") || writes_by_spec) {
                continue;
            }
            checked += 1;
            if is_write_kind(kind) {
                continue;
            }
            let allowed = KEYLESS_WRITE_CONTAINERS
                .iter()
                .any(|(c, _)| *c == upper.as_str());
            let declares_keys = sub.first > 0 || !sub.specs.is_empty();
            if allowed && !declares_keys {
                exempt.push(sub.name.clone());
                continue;
            }
            problems.push(format!(
                "subcommand {} (flags {:?}) is dispatched as {upper}, classified {kind:?}",
                sub.name, sub.flags
            ));
        }
    }
    println!("{checked} write commands checked; keyless writes exempted: {exempt:?}");
    assert!(checked > 50, "only {checked} write commands found");
    assert!(
        problems.is_empty(),
        "{} write command(s) not treated as writes:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// For writes with fixed key positions, the positions the proxy invalidates cover every key
/// Redis declares: by the legacy (first, last, step) triple and by written key specs.
#[test]
fn write_key_positions_cover_redis_key_specs() {
    let redis = RedisServer::start();
    let infos = command_table(&redis);
    let mut problems = Vec::new();
    for info in &infos {
        let upper = info.name.to_ascii_uppercase();
        let kind = kind_of_name(upper.as_bytes());
        if info.has_flag("write") || info.specs.iter().any(KeySpec::writes) {
            coverage_problems(info, kind, &mut problems);
        }
        for sub in &info.subcommands {
            if sub.has_flag("write") || sub.specs.iter().any(KeySpec::writes) {
                coverage_problems(sub, kind, &mut problems);
            }
        }
    }
    problems.dedup();

    // The checker itself: a range too narrow for MSET, or a fixed range for a command whose
    // written keys follow a keyword (SORT .. STORE), must be reported.
    let find = |name: &str| infos.iter().find(|i| i.name == name).expect(name);
    let mut selftest = Vec::new();
    coverage_problems(
        find("mset"),
        Kind::Write(Keys::Range {
            first: 1,
            last: 1,
            step: 1,
        }),
        &mut selftest,
    );
    assert!(!selftest.is_empty(), "checker missed MSET's later keys");
    selftest.clear();
    coverage_problems(
        find("sort"),
        Kind::Write(Keys::Range {
            first: 1,
            last: 1,
            step: 1,
        }),
        &mut selftest,
    );
    assert!(!selftest.is_empty(), "checker missed SORT's STORE key");

    assert!(
        problems.is_empty(),
        "{} key-position mismatch(es) between redis-server's COMMAND and the proxy's table:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Commands Redis flags `readonly` that the proxy treats as writes: harmless (a spurious
/// invalidation), listed for review, not a failure.
#[test]
fn readonly_commands_marked_write_are_listed() {
    let redis = RedisServer::start();
    let infos = command_table(&redis);
    let mut listed = Vec::new();
    for info in &infos {
        let upper = info.name.to_ascii_uppercase();
        if info.has_flag("readonly") {
            if let Kind::Write(keys) = kind_of_name(upper.as_bytes()) {
                listed.push(format!("{upper} -> {keys:?}"));
            }
        }
    }
    println!(
        "readonly commands the proxy treats as writes ({}):\n  {}",
        listed.len(),
        listed.join("\n  ")
    );
    // The table's own entries for the known ones stay writes: PFCOUNT may rewrite its key.
    assert!(
        matches!(kind_of_name(b"PFCOUNT"), Kind::Write(_)),
        "PFCOUNT rewrites the HyperLogLog's cached cardinality"
    );
}
