//! Hash slots and slot maps, without I/O: a key's slot (CRC16 of the key or of its `{hash
//! tag}`, modulo 16384, as Redis Cluster computes it) and `CLUSTER SLOTS` replies parsed into
//! ranges of slots with the addresses of their master and replicas.

use crate::resp::cursor::Cursor;
use crate::resp::frame::frame_len;

pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XModem), the checksum Redis Cluster hashes keys with.
const fn crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            b += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static CRC16: [u16; 256] = crc16_table();

pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// The slot of `key`: only the part between the first `{` and the next `}` counts, when that
/// part is not empty.
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    crc16(hashed) & (SLOTS as u16 - 1)
}

/// A node as a slot map names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address or hostname, as Redis gave it (IPv6 without brackets); empty: unknown, the
    /// node that answered is meant.
    pub host: String,
    pub port: u16,
    pub id: String,
}

/// Slots `start..=end`, served by `master`, replicated on `replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    pub master: Endpoint,
    pub replicas: Vec<Endpoint>,
}

/// A whole slot map, as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub ranges: Vec<Range>,
}

impl Topology {
    /// Every slot has a master.
    pub fn complete(&self) -> bool {
        let mut covered = vec![false; SLOTS];
        for r in &self.ranges {
            for s in r.start..=r.end {
                covered[s as usize] = true;
            }
        }
        covered.iter().all(|&c| c)
    }

    /// Parses a `CLUSTER SLOTS` reply (RESP2 or RESP3); `None` if it is not one (an error).
    pub fn parse(reply: &[u8]) -> Option<Topology> {
        if reply.first() != Some(&b'*') {
            return None;
        }
        let mut c = Cursor::new(reply);
        let (b'*', n) = c.header()? else {
            return None;
        };
        let mut ranges = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            let (b'*', fields) = c.header()? else {
                return None;
            };
            if fields < 3 {
                return None;
            }
            let start = int(&mut c)?;
            let end = int(&mut c)?;
            if start > end || end >= SLOTS as i64 || start < 0 {
                return None;
            }
            let master = endpoint(&mut c, reply)?;
            let mut replicas = Vec::new();
            for _ in 3..fields {
                replicas.push(endpoint(&mut c, reply)?);
            }
            ranges.push(Range {
                start: start as u16,
                end: end as u16,
                master,
                replicas,
            });
        }
        Some(Topology { ranges })
    }
}

fn int(c: &mut Cursor) -> Option<i64> {
    match c.header()? {
        (b':', n) => Some(n),
        _ => None,
    }
}

/// `[host, port, id, (metadata)...]`: Redis 7 may add a map of hostname metadata.
fn endpoint(c: &mut Cursor, reply: &[u8]) -> Option<Endpoint> {
    let (b'*', fields) = c.header()? else {
        return None;
    };
    if fields < 2 {
        return None;
    }
    let host = String::from_utf8(c.bulk()?.to_vec()).ok()?;
    let port = u16::try_from(int(c)?).ok()?;
    let mut id = String::new();
    for i in 2..fields {
        let at = c.pos;
        match (i, c.bulk()) {
            (2, Some(v)) => id = String::from_utf8_lossy(v).into_owned(),
            (_, Some(_)) => {}
            (_, None) => {
                // Not a bulk (the metadata map): skip it whole.
                c.pos = at + frame_len(&reply[at..]).ok()??.len;
            }
        }
    }
    Some(Endpoint { host, port, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the Redis Cluster specification and `CLUSTER KEYSLOT` of redis-server.
    #[test]
    fn slots_as_redis_computes_them() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{"), crc16(b"{") & 16383);
        assert_eq!(key_slot(b""), 0);
    }

    fn node(host: &str, port: u16, id: &str) -> String {
        format!(
            "*3\r\n${}\r\n{host}\r\n:{port}\r\n${}\r\n{id}\r\n",
            host.len(),
            id.len()
        )
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = format!(
            "*2\r\n*4\r\n:0\r\n:5460\r\n{}{}*3\r\n:5461\r\n:16383\r\n{}",
            node("127.0.0.1", 7000, "a"),
            node("127.0.0.1", 7003, "d"),
            node("::1", 7001, "b"),
        );
        let t = Topology::parse(reply.as_bytes()).expect("parses");
        assert_eq!(t.ranges.len(), 2);
        assert_eq!((t.ranges[0].start, t.ranges[0].end), (0, 5460));
        assert_eq!(t.ranges[0].master.port, 7000);
        assert_eq!(t.ranges[0].replicas[0].id, "d");
        assert_eq!(t.ranges[1].master.host, "::1", "IPv6 as Redis gives it");
        assert!(t.complete());
        let mut partial = t.clone();
        partial.ranges.pop();
        assert!(!partial.complete());
    }

    /// Redis 7 adds a metadata map to each node (`hostname` when announced), and RESP3 sends
    /// it as a map: skipped whole, hostname endpoints kept as given.
    #[test]
    fn skips_node_metadata_and_keeps_hostnames() {
        let reply = "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$14\r\nnode-a.example\r\n:6379\r\n$2\r\nid\r\n%1\r\n$8\r\nhostname\r\n$6\r\nnode-a\r\n";
        let t = Topology::parse(reply.as_bytes()).unwrap();
        assert_eq!(t.ranges[0].master.host, "node-a.example");
        assert_eq!(t.ranges[0].master.id, "id");
        assert!(t.complete());
        let resp2 = reply.replace("%1\r\n", "*2\r\n");
        assert_eq!(Topology::parse(resp2.as_bytes()), Some(t));
    }

    #[test]
    fn refuses_what_is_not_a_slot_map() {
        assert_eq!(
            Topology::parse(b"-ERR This instance has cluster support disabled\r\n"),
            None
        );
        assert_eq!(
            Topology::parse(b"*1\r\n*3\r\n:5\r\n:2\r\n*2\r\n$1\r\nh\r\n:1\r\n"),
            None
        );
        assert_eq!(Topology::parse(b"*0\r\n"), Some(Topology::default()));
    }
}
