//! Redis Cluster's redirections, parsed: `-MOVED <slot> <endpoint>:<port>` (the slot has a
//! new owner for good) and `-ASK <slot> <endpoint>:<port>` (this one key is being migrated:
//! ask the target once, after `ASKING`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub ask: bool,
    pub slot: u16,
    /// IP (IPv6 without brackets) or hostname; empty when Redis does not know the endpoint
    /// (`?` or nothing before the port): the map must be reloaded.
    pub host: String,
    pub port: u16,
}

pub use crate::backend::is_redirect;

/// Parses a redirection error line (with or without its `-` and CRLF).
pub fn parse(frame: &[u8]) -> Option<Redirect> {
    let line = std::str::from_utf8(frame).ok()?;
    let line = line.strip_prefix('-').unwrap_or(line).trim_end();
    let mut words = line.split(' ');
    let ask = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = words.next()?.parse().ok()?;
    if slot as usize >= super::slots::SLOTS {
        return None;
    }
    let endpoint = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let (host, port) = endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host == "?" { "" } else { host };
    Some(Redirect {
        ask,
        slot,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ask: bool, slot: u16, host: &str, port: u16) -> Option<Redirect> {
        Some(Redirect {
            ask,
            slot,
            host: host.into(),
            port,
        })
    }

    #[test]
    fn moved_and_ask() {
        assert_eq!(
            parse(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            r(false, 3999, "127.0.0.1", 6381)
        );
        assert_eq!(
            parse(b"-ASK 1 10.0.0.2:7000\r\n"),
            r(true, 1, "10.0.0.2", 7000)
        );
        assert!(is_redirect(b"-MOVED 1 h:1\r\n") && is_redirect(b"-ASK 1 h:1\r\n"));
        assert!(!is_redirect(b"-MOVEDX\r\n") && !is_redirect(b"+MOVED 1 h:1\r\n"));
    }

    /// Redis writes IPv6 addresses without brackets, hostnames as announced, and `?` (or
    /// nothing) when the endpoint is unknown.
    #[test]
    fn endpoints() {
        assert_eq!(parse(b"-MOVED 5 ::1:7001\r\n"), r(false, 5, "::1", 7001));
        assert_eq!(
            parse(b"-MOVED 5 [fe80::1]:7001\r\n"),
            r(false, 5, "fe80::1", 7001)
        );
        assert_eq!(
            parse(b"-ASK 16383 redis-2.cache.internal:6379\r\n"),
            r(true, 16383, "redis-2.cache.internal", 6379)
        );
        assert_eq!(parse(b"-MOVED 5 ?:7001\r\n"), r(false, 5, "", 7001));
        assert_eq!(parse(b"-MOVED 5 :7001\r\n"), r(false, 5, "", 7001));
    }

    #[test]
    fn refusals() {
        for bad in [
            &b"-MOVED\r\n"[..],
            b"-MOVED 16384 h:1\r\n",
            b"-MOVED x h:1\r\n",
            b"-MOVED 1 h\r\n",
            b"-MOVED 1 h:99999\r\n",
            b"-MOVED 1 h:1 extra\r\n",
            b"-ERR MOVED 1 h:1\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
