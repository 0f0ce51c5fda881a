//! The keys a read command reads, for a tracking client: Redis remembers the keys of commands
//! flagged `readonly`, at the positions its command table gives (first, last, step), or, for
//! the few with movable keys, where their arguments say.

use crate::multi::CommandTable;
use crate::resp::request::Args;

/// Positions of the keys `args` reads, if Redis would remember them for a tracking client.
pub fn read_keys(table: &CommandTable, args: &Args) -> Vec<usize> {
    let Some(spec) = table.spec(args) else {
        return Vec::new();
    };
    if !spec.readonly {
        return Vec::new();
    }
    let argc = args.len() as i64;
    if spec.movable {
        return movable(args);
    }
    if spec.first <= 0 || spec.step <= 0 {
        return Vec::new();
    }
    let last = if spec.last < 0 {
        argc + spec.last
    } else {
        spec.last
    };
    (spec.first..=last.min(argc - 1))
        .step_by(spec.step as usize)
        .map(|i| i as usize)
        .collect()
}

/// Readonly commands whose keys follow a count or a keyword.
fn movable(args: &Args) -> Vec<usize> {
    let name = args.get(0).to_ascii_uppercase();
    let counted = |at: usize| -> Vec<usize> {
        let n = std::str::from_utf8(args.iter().nth(at).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        (at + 1..(at + 1 + n).min(args.len())).collect()
    };
    match &name[..] {
        b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"SINTERCARD" | b"ZINTERCARD" => counted(1),
        b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => counted(2),
        b"SORT_RO" => (args.len() > 1).then_some(1).into_iter().collect(),
        b"XREAD" => {
            let Some(at) = args.iter().position(|a| a.eq_ignore_ascii_case(b"STREAMS")) else {
                return Vec::new();
            };
            let n = (args.len() - at - 1) / 2;
            (at + 1..at + 1 + n).collect()
        }
        _ => Vec::new(),
    }
}
