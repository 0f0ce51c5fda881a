//! Which argument of a command decides its slot: the first key, found from the dispatch
//! table's key positions, Redis's command table (first/last/step, subcommands included), or,
//! for commands with movable keys, their arguments. Redis itself refuses keys of different
//! slots in one command (`-CROSSSLOT`), so the first key is enough to route by.

use crate::command::{script_keys, Keys, Kind};
use crate::multi::CommandTable;
use crate::resp::request::Args;

/// The position of the key that routes `args`, or `None` for a keyless command.
pub fn first_key(table: Option<&CommandTable>, kind: Kind, args: &Args) -> Option<usize> {
    let argc = args.len();
    let pos = match kind {
        Kind::Get | Kind::Mget => Some(1),
        Kind::Write(Keys::Range { first, .. }) => Some(first as usize),
        Kind::Write(Keys::Script) => {
            script_keys(args).and_then(|r| (!r.is_empty()).then_some(r.start))
        }
        Kind::Watch => Some(1),
        _ => from_table(table, args),
    };
    pos.filter(|&p| p >= 1 && p < argc)
}

fn from_table(table: Option<&CommandTable>, args: &Args) -> Option<usize> {
    if let Some(p) = movable(args) {
        return p;
    }
    let Some(spec) = table.and_then(|t| t.spec(args)) else {
        // Redis's table is unknown (COMMAND refused to the proxy's user): the common shape.
        return (args.len() > 1).then_some(1);
    };
    (spec.first > 0).then_some(spec.first as usize)
}

/// Commands whose first key follows a count or a keyword: `Some(None)` when they name no key.
fn movable(args: &Args) -> Option<Option<usize>> {
    let name = args.get(0);
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let counted = |at: usize| -> Option<usize> {
        let n: usize = std::str::from_utf8(args.iter().nth(at)?)
            .ok()?
            .parse()
            .ok()?;
        (n > 0).then_some(at + 1)
    };
    if [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .iter()
    .any(|n| is(n.as_bytes()))
    {
        return Some(counted(2));
    }
    if [
        "ZUNION",
        "ZINTER",
        "ZDIFF",
        "SINTERCARD",
        "ZINTERCARD",
        "LMPOP",
        "ZMPOP",
    ]
    .iter()
    .any(|n| is(n.as_bytes()))
    {
        return Some(counted(1));
    }
    if is(b"BLMPOP") || is(b"BZMPOP") {
        return Some(counted(2));
    }
    if is(b"XREAD") || is(b"XREADGROUP") {
        let at = args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
        return Some((at + 1 < args.len()).then_some(at + 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::classify;
    use crate::resp::request::{RequestScanner, Scan};

    fn first(line: &str) -> Option<String> {
        let input = format!("{line}\r\n");
        let mut sc = RequestScanner::new();
        assert!(matches!(sc.scan(input.as_bytes()), Scan::Command { .. }));
        let args = sc.args(input.as_bytes());
        let kind = classify(&args).kind;
        first_key(None, kind, &args).map(|i| String::from_utf8(args.get(i).to_vec()).unwrap())
    }

    #[test]
    fn first_keys() {
        assert_eq!(first("get k").as_deref(), Some("k"));
        assert_eq!(first("set k v").as_deref(), Some("k"));
        assert_eq!(first("mset a 1 b 2").as_deref(), Some("a"));
        assert_eq!(first("bitop and dest a b").as_deref(), Some("dest"));
        assert_eq!(first("eval s 2 a b").as_deref(), Some("a"));
        assert_eq!(first("eval s 0").as_deref(), None, "no keys: any node");
        assert_eq!(first("fcall f 1 k").as_deref(), Some("k"));
        assert_eq!(first("zunion 2 a b").as_deref(), Some("a"));
        assert_eq!(first("lmpop 2 a b left").as_deref(), Some("a"));
        assert_eq!(first("blmpop 0 1 l left").as_deref(), Some("l"));
        assert_eq!(
            first("xread count 1 streams s1 s2 0 0").as_deref(),
            Some("s1")
        );
        assert_eq!(
            first("xreadgroup group g c streams s >").as_deref(),
            Some("s")
        );
        assert_eq!(first("hget h f").as_deref(), Some("h"));
        assert_eq!(first("watch w").as_deref(), Some("w"));
        assert_eq!(first("set").as_deref(), None);
    }
}
