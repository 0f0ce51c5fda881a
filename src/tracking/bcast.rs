//! The shard's connection in BCAST tracking mode, for its BCAST clients. Redis refuses two
//! overlapping prefixes on one connection, so the connection carries a cover of the clients'
//! prefixes (none a prefix of another; every client prefix starts with one of them); the shard
//! filters each broadcast by the prefixes of each client. Prefixes are never dropped at Redis
//! while the connection lives (a broader registration only costs filtered-out keys).

use crate::backend::supervisor::supervise;
use crate::backend::Conn;
use crate::deliver::Waiter;
use crate::shard::Shard;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[derive(Default)]
pub struct Bcast {
    conn: RefCell<Option<Rc<Conn<Waiter>>>>,
    /// The prefixes registered (or being registered) at Redis.
    cover: RefCell<Vec<Bytes>>,
    /// The connection has been up before: coming back, invalidations were missed.
    was_up: Cell<bool>,
    /// Up, with the cover registered.
    live: Cell<bool>,
    /// Clients whose CLIENT TRACKING waits for the connection (their `+OK` comes with the
    /// registration's).
    waiting: RefCell<Vec<(Rc<crate::replies::ClientShared>, u64)>>,
}

/// What registering new prefixes takes.
pub enum Plan {
    /// Already covered: nothing to send.
    Covered,
    /// `CLIENT TRACKING ON BCAST PREFIX ...` for these.
    Add(Vec<Bytes>),
    /// A new prefix covers registered ones: tracking off, then on with this whole cover.
    Rebuild(Vec<Bytes>),
}

fn overlap(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Bcast {
    pub fn conn(&self, shard: &Rc<Shard>) -> Rc<Conn<Waiter>> {
        if let Some(c) = &*self.conn.borrow() {
            return c.clone();
        }
        let mut params = shard.params(
            shard.cfg.redis.db,
            false,
            format!("shard {} bcast tracking", shard.id),
        );
        params.bcast = true;
        let conn = Rc::new(Conn::new(params, shard.cfg.redis_ops_limit));
        *self.conn.borrow_mut() = Some(conn.clone());
        monoio::spawn(supervise(conn.clone(), shard.clone()));
        conn
    }

    /// Lets the connection's writer send what was queued (NOLOOP clients' writes).
    pub fn flush(&self) {
        if let Some(c) = &*self.conn.borrow() {
            c.flush();
        }
    }

    /// What it takes to have `prefixes` covered at Redis.
    pub fn plan(&self, prefixes: &[Bytes]) -> Plan {
        let cover = self.cover.borrow();
        let mut new: Vec<Bytes> = Vec::new();
        for p in prefixes {
            if cover.iter().any(|c| p.starts_with(c)) || new.iter().any(|c| p.starts_with(c)) {
                continue;
            }
            new.retain(|c| !c.starts_with(p));
            new.push(p.clone());
        }
        if new.is_empty() {
            return Plan::Covered;
        }
        if new.iter().any(|p| cover.iter().any(|c| overlap(c, p))) {
            let mut all: Vec<Bytes> = cover
                .iter()
                .filter(|c| !new.iter().any(|p| c.starts_with(p)))
                .cloned()
                .collect();
            all.extend(new);
            return Plan::Rebuild(all);
        }
        Plan::Add(new)
    }

    /// Registers what `plan` said; the client's `+OK` (its slot `seq`) comes with Redis's.
    pub fn apply(
        &self,
        conn: &Conn<Waiter>,
        plan: Plan,
        client: &Rc<crate::replies::ClientShared>,
        seq: u64,
    ) {
        let me = vec![(client.clone(), seq)];
        let args = match plan {
            Plan::Covered => {
                if self.live.get() {
                    client.complete(seq, |o| o.extend_from_slice(b"+OK\r\n"));
                } else {
                    self.waiting.borrow_mut().extend(me);
                }
                return;
            }
            Plan::Add(new) => {
                self.cover.borrow_mut().extend(new.iter().cloned());
                command(&new)
            }
            Plan::Rebuild(all) => {
                *self.cover.borrow_mut() = all.clone();
                if self.live.get() {
                    let off = [&b"CLIENT"[..], b"TRACKING", b"OFF"];
                    conn.send_args(off.into_iter(), Waiter::Ignore);
                }
                command(&all)
            }
        };
        if !self.live.get() {
            // Registered, with the whole cover, when the connection is up (`connected`).
            self.waiting.borrow_mut().extend(me);
            return;
        }
        conn.send_args(args.iter().map(|a| &a[..]), Waiter::Bcast(me));
        conn.flush();
    }

    /// The connection is up: register the whole cover (again, after a reconnect: the old
    /// registration went with the old connection, and what changed meanwhile was missed).
    pub fn connected(&self, shard: &Shard) {
        let Some(conn) = self.conn.borrow().clone() else {
            return;
        };
        let cover = self.cover.borrow().clone();
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        conn.send_args(
            command(&cover).iter().map(|a| &a[..]),
            Waiter::Bcast(waiting),
        );
        self.live.set(true);
        if self.was_up.replace(true) {
            shard.tracking.flush_bcast(shard);
        }
    }

    pub fn disconnected(&self) {
        self.live.set(false);
    }
}

fn command(prefixes: &[Bytes]) -> Vec<Bytes> {
    let mut args = vec![
        Bytes::from_static(b"CLIENT"),
        Bytes::from_static(b"TRACKING"),
        Bytes::from_static(b"ON"),
        Bytes::from_static(b"BCAST"),
        // Only NOLOOP BCAST clients write through this connection (see `dispatch`).
        Bytes::from_static(b"NOLOOP"),
    ];
    for p in prefixes {
        args.push(Bytes::from_static(b"PREFIX"));
        args.push(p.clone());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[&str]) -> Vec<Bytes> {
        v.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn plan_for(cover: &[&str], new: &[&str]) -> Plan {
        let bc = Bcast::default();
        *bc.cover.borrow_mut() = b(cover);
        bc.plan(&b(new))
    }

    #[test]
    fn covers_prefixes_without_overlap() {
        assert!(matches!(plan_for(&["user:"], &["user:1"]), Plan::Covered));
        assert!(matches!(plan_for(&[""], &["anything"]), Plan::Covered));
        match plan_for(&["user:"], &["cfg", "cfg.x", "other"]) {
            Plan::Add(v) => assert_eq!(v, b(&["cfg", "other"])),
            _ => panic!("expected Add"),
        }
        // Given in either order, the broader prefix wins.
        match plan_for(&[], &["cfg.x", "cfg"]) {
            Plan::Add(v) => assert_eq!(v, b(&["cfg"])),
            _ => panic!("expected Add"),
        }
        // A broader prefix than a registered one: Redis refuses the overlap, so the whole
        // cover is registered again, the narrower ones folded into it.
        match plan_for(&["user:", "cfg"], &["us"]) {
            Plan::Rebuild(v) => assert_eq!(v, b(&["cfg", "us"])),
            _ => panic!("expected Rebuild"),
        }
    }
}
