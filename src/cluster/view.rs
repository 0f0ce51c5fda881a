//! What cluster-aware clients see of the proxy: a cluster of one master owning every slot, at
//! the address they reached it on. `CLUSTER SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID` and
//! `KEYSLOT` are answered here, so `redis-cli -c` and cluster-mode libraries send everything
//! to the proxy, which routes it to the real nodes. Slot-specific questions
//! (`COUNTKEYSINSLOT`, `GETKEYSINSLOT`) go to the node serving that slot; commands that change
//! the cluster are refused.

use super::slots::{key_slot, SLOTS};
use crate::resp::encode::{put_map_header, Proto};
use crate::resp::write::{put_bulk, put_error, put_header};
use bytes::BytesMut;

/// Where the proxy is, as the client reached it.
pub struct Me<'a> {
    pub ip: &'a str,
    pub port: u16,
    pub id: &'a str,
}

pub enum Answer {
    /// Answered: the bytes are written.
    Done,
    /// Forwarded to the node serving this slot.
    Slot(u16),
    /// Forwarded to any node (HELP).
    Any,
}

fn put_int(out: &mut BytesMut, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}

/// `CLUSTER <sub> ...`; `sub` upper-cased.
pub fn cluster(me: &Me, args: &[&[u8]], proto: Proto, out: &mut BytesMut) -> Answer {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let last = SLOTS as i64 - 1;
    let arity = |out: &mut BytesMut| {
        let name = String::from_utf8_lossy(&sub).to_lowercase();
        put_error(
            out,
            format!("ERR wrong number of arguments for 'cluster|{name}' command").as_bytes(),
        )
    };
    match &sub[..] {
        b"SLOTS" if args.len() == 2 => {
            put_header(out, b'*', 1);
            put_header(out, b'*', 3);
            put_int(out, 0);
            put_int(out, last);
            put_header(out, b'*', 4);
            put_bulk(out, me.ip.as_bytes());
            put_int(out, me.port as i64);
            put_bulk(out, me.id.as_bytes());
            put_map_header(out, 0, proto);
        }
        b"SHARDS" if args.len() == 2 => {
            put_header(out, b'*', 1);
            put_map_header(out, 2, proto);
            put_bulk(out, b"slots");
            put_header(out, b'*', 2);
            put_int(out, 0);
            put_int(out, last);
            put_bulk(out, b"nodes");
            put_header(out, b'*', 1);
            put_map_header(out, 7, proto);
            put_bulk(out, b"id");
            put_bulk(out, me.id.as_bytes());
            put_bulk(out, b"port");
            put_int(out, me.port as i64);
            put_bulk(out, b"ip");
            put_bulk(out, me.ip.as_bytes());
            put_bulk(out, b"endpoint");
            put_bulk(out, me.ip.as_bytes());
            put_bulk(out, b"role");
            put_bulk(out, b"master");
            put_bulk(out, b"replication-offset");
            put_int(out, 0);
            put_bulk(out, b"health");
            put_bulk(out, b"online");
        }
        b"NODES" if args.len() == 2 => {
            let bus = me.port.checked_add(10000).unwrap_or(0);
            let line = format!(
                "{} {}:{}@{bus} myself,master - 0 0 1 connected 0-{last}\n",
                me.id,
                bracketed(me.ip),
                me.port
            );
            put_bulk(out, line.as_bytes());
        }
        b"INFO" if args.len() == 2 => {
            let text =
                "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
                cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\n\
                cluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n\
                cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
                total_cluster_links_buffer_limit_exceeded:0\r\n";
            if proto == Proto::Resp3 {
                out.extend_from_slice(format!("={}\r\ntxt:{text}\r\n", text.len() + 4).as_bytes());
            } else {
                put_bulk(out, text.as_bytes());
            }
        }
        b"MYID" | b"MYSHARDID" if args.len() == 2 => put_bulk(out, me.id.as_bytes()),
        b"KEYSLOT" if args.len() == 3 => put_int(out, key_slot(args[2]) as i64),
        b"COUNTKEYSINSLOT" | b"GETKEYSINSLOT" => {
            let int = |i: usize| {
                args.get(i)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<i64>().ok())
            };
            let arity = if &sub[..] == b"COUNTKEYSINSLOT" { 3 } else { 4 };
            let count_ok = arity == 3 || int(3).is_some_and(|n| n >= 0);
            match int(2) {
                Some(s) if args.len() == arity && (0..SLOTS as i64).contains(&s) && count_ok => {
                    return Answer::Slot(s as u16)
                }
                // Redis's own error, whichever it is.
                _ => return Answer::Any,
            }
        }
        b"HELP" | b"" => return Answer::Any,
        b"SLOTS" | b"SHARDS" | b"NODES" | b"INFO" | b"MYID" | b"MYSHARDID" | b"KEYSLOT" => {
            arity(out)
        }
        _ => {
            let name = String::from_utf8_lossy(&sub).to_lowercase();
            let msg = format!(
                "ERR command 'cluster|{name}' is not supported by redis-proxy (it presents one \
                 node owning every slot)"
            );
            put_error(out, msg.as_bytes());
        }
    }
    Answer::Done
}

fn bracketed(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The address part and port of a `laddr` (`ip:port`, IPv6 without brackets as Redis shows).
pub fn split_addr(laddr: &str) -> (&str, u16) {
    match laddr.rsplit_once(':') {
        Some((ip, port)) => (
            ip.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (laddr, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Me<'static> {
        Me {
            ip: "127.0.0.1",
            port: 6380,
            id: "0123456789012345678901234567890123456789",
        }
    }

    fn ask(line: &str, proto: Proto) -> String {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let mut out = BytesMut::new();
        cluster(&me(), &args, proto, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn one_node_owning_every_slot() {
        let slots = ask("CLUSTER SLOTS", Proto::Resp2);
        assert!(slots.starts_with("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n"));
        // The map parses as a slot map with one master.
        let t = crate::cluster::slots::Topology::parse(slots.as_bytes()).unwrap();
        assert!(t.complete());
        assert_eq!(t.ranges[0].master.port, 6380);
        let t3 =
            crate::cluster::slots::Topology::parse(ask("cluster slots", Proto::Resp3).as_bytes());
        assert_eq!(t3, Some(t));
        assert!(ask("cluster nodes", Proto::Resp2)
            .contains("127.0.0.1:6380@16380 myself,master - 0 0 1 connected 0-16383\n"));
        assert!(ask("cluster info", Proto::Resp2).contains("cluster_state:ok"));
        assert_eq!(ask("cluster keyslot foo", Proto::Resp2), ":12182\r\n");
        assert!(ask("cluster shards", Proto::Resp3).starts_with("*1\r\n%2\r\n$5\r\nslots"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            ask("cluster keyslot", Proto::Resp2),
            "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
        );
        assert!(ask("cluster meet 1.2.3.4 5", Proto::Resp2)
            .starts_with("-ERR command 'cluster|meet' is not supported"));
        let out = |line: &str| {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            cluster(&me(), &args, Proto::Resp2, &mut BytesMut::new())
        };
        // Redis's own errors for these: asked of a node.
        assert!(matches!(out("cluster countkeysinslot x"), Answer::Any));
        assert!(matches!(out("cluster getkeysinslot 99999 10"), Answer::Any));
        assert!(matches!(out("cluster getkeysinslot 5 -1"), Answer::Any));
        assert!(matches!(out("cluster countkeysinslot 5 6"), Answer::Any));
        assert!(matches!(out("cluster"), Answer::Any));
        assert!(matches!(out("cluster getkeysinslot 5 10"), Answer::Slot(5)));
        assert_eq!(split_addr("::1:6380"), ("::1", 6380));
        assert_eq!(split_addr("127.0.0.1:6380"), ("127.0.0.1", 6380));
    }
}
