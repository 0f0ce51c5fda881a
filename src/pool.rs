//! A shard's dedicated backend connections: one per client that holds server state (WATCH) or
//! blocks (BLPOP ...), for as long as it does. A few stay open and idle (warm) so pinning a
//! client costs no connect; at most `--max-pinned` are in use at once. A connection goes back
//! to the idle set only if its user left it clean (no transaction or watch open, no reply
//! pending, its own db); any other is closed, never handed to someone else.

use crate::backend::supervisor::{close, run_dedicated};
use crate::backend::{Conn, Status};
use crate::deliver::Waiter;
use crate::shard::Shard;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

pub type Dedicated = Rc<Conn<Waiter>>;

pub struct Pool {
    idle: RefCell<Vec<Dedicated>>,
    busy: RefCell<Vec<Dedicated>>,
    opened: Cell<u64>,
    warm: usize,
    max: usize,
}

impl Pool {
    pub fn new(warm: usize, max: usize) -> Self {
        Pool {
            idle: RefCell::new(Vec::new()),
            busy: RefCell::new(Vec::new()),
            opened: Cell::new(0),
            warm,
            max,
        }
    }

    /// A dedicated connection to `db`, or `None` past `--max-pinned`. It may still be
    /// connecting: requests queue until it is up (or fail with its error).
    pub fn acquire(&self, shard: &Rc<Shard>, db: u32) -> Option<Dedicated> {
        self.acquire_at(shard, shard.redis_addr, db)
    }

    /// `acquire` on the node at `addr` (a cluster node; the warm ones go to `redis_addr`).
    pub fn acquire_at(&self, shard: &Rc<Shard>, addr: SocketAddr, db: u32) -> Option<Dedicated> {
        if self.busy.borrow().len() >= self.max {
            return None;
        }
        let reuse = {
            let mut idle = self.idle.borrow_mut();
            idle.retain(|c| c.status() != Status::Closed);
            idle.iter()
                .position(|c| c.params.db == db && c.params.addr == addr)
                .map(|i| idle.swap_remove(i))
        };
        let conn = reuse.unwrap_or_else(|| self.open(shard, addr, db));
        self.busy.borrow_mut().push(conn.clone());
        Some(conn)
    }

    fn open(&self, shard: &Rc<Shard>, addr: SocketAddr, db: u32) -> Dedicated {
        let n = self.opened.get() + 1;
        self.opened.set(n);
        let label = format!("shard {} dedicated #{n} (db {db})", shard.id);
        let mut params = shard.params(db, false, label);
        params.addr = addr;
        params.log_connects = false;
        let conn = Rc::new(Conn::new(params, usize::MAX));
        monoio::spawn(run_dedicated(conn.clone(), shard.clone()));
        conn
    }

    /// Gives a connection back. `clean`: its user left no state on it.
    pub fn release(&self, shard: &Shard, conn: &Dedicated, clean: bool) {
        {
            let mut busy = self.busy.borrow_mut();
            if let Some(i) = busy.iter().position(|c| Rc::ptr_eq(c, conn)) {
                busy.swap_remove(i);
            }
        }
        let targets = Self::targets(shard);
        let idle_there = self
            .idle
            .borrow()
            .iter()
            .filter(|c| c.params.addr == conn.params.addr)
            .count();
        let reusable = clean
            && conn.status() == Status::Up
            && conn.in_flight() == 0
            && conn.params.db == shard.cfg.redis.db
            && targets.contains(&conn.params.addr)
            && idle_there < self.warm;
        if reusable {
            self.idle.borrow_mut().push(conn.clone());
        } else {
            close(&**conn, shard, "dedicated connection released");
        }
    }

    /// Where warm connections are kept: Redis, or every master of a cluster (a blocking
    /// command or WATCH on any of them then starts without a connect, which another
    /// client's command sent after it could overtake).
    fn targets(shard: &Shard) -> Vec<SocketAddr> {
        match &shard.cluster {
            Some(c) => c.master_addrs(),
            None => vec![shard.redis_addr],
        }
    }

    /// Keeps `--backend-idle-connections` warm ones open, per target; drops idle ones to
    /// nodes that are no longer masters.
    pub fn top_up(&self, shard: &Rc<Shard>) {
        let targets = Self::targets(shard);
        let mut idle = self.idle.borrow_mut();
        idle.retain(|c| {
            let keep = c.status() != Status::Closed && targets.contains(&c.params.addr);
            if !keep {
                close(&**c, &**shard, "no longer a warm connection's target");
            }
            keep
        });
        let db = shard.cfg.redis.db;
        for addr in targets {
            let have = idle.iter().filter(|c| c.params.addr == addr).count();
            for _ in have..self.warm {
                idle.push(self.open(shard, addr, db));
            }
        }
    }

    /// Every dedicated connection, for timeouts. Over a snapshot: failing a connection's
    /// waiters gives it back to the pool, which must not be borrowed meanwhile.
    pub fn each(&self, mut f: impl FnMut(&Dedicated)) {
        let all: Vec<Dedicated> = self
            .busy
            .borrow()
            .iter()
            .chain(self.idle.borrow().iter())
            .cloned()
            .collect();
        for c in &all {
            f(c);
        }
    }

    pub fn in_use(&self) -> usize {
        self.busy.borrow().len()
    }
}
