//! What a shard does with what its backend connections read: relays replies to clients in
//! their protocol, fills the cache from fetches, applies invalidation pushes.

use crate::backend::Sink;
use crate::fetch::FetchRef;
use crate::observe::stats::Class;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::cursor::{is_null, Cursor, NULL_BULK};
use crate::resp::encode::{put_null, relay, Proto};
use crate::resp::frame::{parse_int, FrameInfo};
use crate::resp::write::put_error;
use crate::shard::Shard;
use bytes::Bytes;
use std::rc::Rc;

/// Who receives a backend reply.
pub enum Waiter {
    /// Relay to a client in its protocol.
    Reply {
        client: Rc<ClientShared>,
        seq: u64,
        shape: Shape,
        proto: Proto,
    },
    /// A blocking command's reply, on a dedicated connection that then goes back to the pool.
    Blocking {
        client: Rc<ClientShared>,
        seq: u64,
        shape: Shape,
        proto: Proto,
        conn: crate::pool::Dedicated,
    },
    /// The GET of a cache fill: goes to every waiter of the fetch.
    Get(FetchRef),
    /// The PTTL that follows a fill's GET: decides whether and how long to cache.
    Ttl(FetchRef),
    /// The EXEC of a transaction, or a write that must evict again once it has run (on a
    /// dedicated connection; SWAPDB): relayed in the client's protocol.
    Exec(Box<crate::multi::ExecReply>),
    /// A PING on the out-of-band connection asking why the scripts connection gets no reply:
    /// `-BUSY` means a script holds it and Redis is alive.
    Probe(Rc<crate::backend::Conn<Waiter>>),
    /// A reply that counts subscribers (PUBLISH, PUBSUB NUMSUB), corrected for the proxy's
    /// own subscribers before it is relayed.
    Counted {
        client: Rc<ClientShared>,
        seq: u64,
        proto: Proto,
        fix: crate::pubsub::counts::Fix,
    },
    /// The BCAST connection's registration of prefixes: the clients whose CLIENT TRACKING
    /// waited for it get its `+OK`.
    Bcast(Vec<(Rc<ClientShared>, u64)>),
    /// The proxy's own command (or a MULTI block's `+OK`/`+QUEUED`); the reply is dropped.
    Ignore,
    /// INFO: Redis's reply with the proxy's section appended.
    Info {
        client: Rc<ClientShared>,
        seq: u64,
        proto: Proto,
    },
    /// One part of a command split across cluster nodes.
    Part(crate::cluster::split::GatherRef, u32),
}

impl Sink<Waiter> for Shard {
    fn reply(&self, w: Waiter, frame: &[u8], info: FrameInfo, resp3: bool) {
        if let Some(us) = crate::observe::stats::take_reply_age() {
            self.stats.rtt.observe(us, 1);
            match &w {
                Waiter::Reply { .. }
                | Waiter::Part(..)
                | Waiter::Exec(_)
                | Waiter::Info { .. }
                | Waiter::Counted { .. } => self.stats.replied(Class::Forwarded, us, 1),
                Waiter::Get(f) => {
                    self.stats
                        .replied(Class::Miss, us, f.borrow().waiters.len() as u64)
                }
                _ => {}
            }
        }
        match w {
            Waiter::Reply {
                client,
                seq,
                shape,
                proto,
            } => client.complete(seq, |out| relay(frame, info, shape, resp3, proto, out)),
            Waiter::Blocking {
                client,
                seq,
                shape,
                proto,
                conn,
            } => {
                client.complete(seq, |out| relay(frame, info, shape, resp3, proto, out));
                self.pool.release(self, &conn, true);
            }
            Waiter::Get(f) => on_get(self, &f, frame, info, resp3),
            Waiter::Probe(conn) => {
                let mut st = conn.st.borrow_mut();
                st.probing = false;
                if frame.starts_with(b"-BUSY") && !st.waiters.is_empty() {
                    let line = String::from_utf8_lossy(&frame[1..frame.len() - 2]).into_owned();
                    st.busy = Some(line);
                    st.progress = Shard::now(self);
                }
            }
            Waiter::Ttl(f) => on_ttl(self, &f, frame),
            Waiter::Exec(e) => e.on_reply(self, frame, resp3),
            Waiter::Info { client, seq, proto } => client.complete(seq, |out| {
                crate::observe::info::on_reply(frame, info, resp3, proto, out)
            }),
            Waiter::Counted {
                client,
                seq,
                proto,
                fix,
            } => client.complete(seq, |out| match crate::pubsub::counts::apply(&fix, frame) {
                Some(fixed) => out.extend_from_slice(&fixed),
                None => relay(frame, info, Shape::Plain, resp3, proto, out),
            }),
            Waiter::Bcast(clients) => {
                for (client, seq) in clients {
                    client.complete(seq, |out| {
                        relay(frame, info, Shape::Plain, resp3, Proto::Resp2, out)
                    });
                }
            }
            Waiter::Part(g, i) => crate::cluster::split::part_reply(&g, i as usize, frame, resp3),
            Waiter::Ignore => {
                // A redirected command of a transaction block: the map is out of date.
                if crate::backend::is_redirect(frame) {
                    if let Some(c) = &self.cluster {
                        c.want_reload();
                    }
                }
            }
        }
    }

    /// `>2 invalidate [keys]`: drop the keys, and tell the tracking clients that read them; a
    /// null key list (FLUSHALL/FLUSHDB) drops everything. From the BCAST connection: the keys
    /// go to the BCAST clients whose prefixes match.
    fn push(&self, frame: &[u8], from: &crate::backend::Params, replies: u64) {
        let mut p = Cursor::new(frame);
        let Some((b'>', n)) = p.header() else { return };
        if n < 2 || p.bulk() != Some(&b"invalidate"[..]) {
            return;
        }
        match p.header() {
            Some((b'*', k)) if k >= 0 && from.bcast => {
                let keys: Vec<Bytes> = (0..k)
                    .filter_map(|_| p.bulk().map(Bytes::copy_from_slice))
                    .collect();
                for key in &keys {
                    self.evict(key);
                }
                self.tracking.broadcast(self, &keys);
            }
            Some((b'*', k)) if k >= 0 => {
                // Which connection: the clients' replies still expected from it follow the
                // invalidation (see `ClientShared::push_ahead`).
                let conn = from as *const crate::backend::Params as usize
                    - std::mem::offset_of!(crate::backend::Conn<Waiter>, params);
                self.push_via.set(conn);
                self.push_replies.set(replies);
                for _ in 0..k {
                    if let Some(key) = p.bulk() {
                        self.invalidate_from(key, crate::tracking::table::REDIS);
                    }
                }
                self.push_via.set(0);
            }
            _ if from.bcast => {}
            _ => {
                self.flush_cache();
                self.tracking.flush_all(self);
            }
        }
    }

    fn fail(&self, w: Waiter, msg: &str) {
        match w {
            Waiter::Reply { client, seq, .. }
            | Waiter::Counted { client, seq, .. }
            | Waiter::Info { client, seq, .. } => {
                client.complete(seq, |out| put_error(out, msg.as_bytes()))
            }
            Waiter::Blocking {
                client, seq, conn, ..
            } => {
                client.complete(seq, |out| put_error(out, msg.as_bytes()));
                self.pool.release(self, &conn, false);
            }
            Waiter::Get(f) => {
                self.inflight.borrow_mut().finish(&f);
                let mut f = f.borrow_mut();
                f.poisoned = true;
                for (client, seq, _) in f.waiters.drain(..) {
                    client.complete(seq, |out| put_error(out, msg.as_bytes()));
                }
            }
            Waiter::Exec(e) => e.fail(self, msg),
            Waiter::Ttl(f) => self.inflight.borrow_mut().finish(&f),
            Waiter::Probe(conn) => conn.st.borrow_mut().probing = false,
            Waiter::Part(g, i) => crate::cluster::split::part_fail(&g, i as usize, msg),
            // Registered again, with everything, when the connection is back.
            Waiter::Bcast(clients) => {
                for (client, seq) in clients {
                    client.complete(seq, |out| out.extend_from_slice(b"+OK\r\n"));
                }
            }
            Waiter::Ignore => {}
        }
    }

    fn tracking_reset(&self) {
        self.flush_cache();
        self.tracking.flush_all(self);
    }

    /// The BCAST connection came (back) up: register the prefixes again.
    fn connected(&self, from: &crate::backend::Params) {
        if from.bcast {
            self.bcast.connected(self);
        }
    }

    fn disconnected(&self, from: &crate::backend::Params) {
        if from.bcast {
            self.bcast.disconnected();
        }
        // A node connection failed: the node may have failed over; look at the map soon.
        if let Some(c) = self.cluster.as_ref().filter(|c| c.is_node(from)) {
            c.want_reload();
        }
    }

    fn now(&self) -> u32 {
        Shard::now(self)
    }

    /// A cluster node redirected a request: sent again where it says.
    fn redirected(
        &self,
        w: Waiter,
        frame: &[u8],
        req: Bytes,
        tries: u8,
        from: &crate::backend::Params,
    ) -> Option<Waiter> {
        crate::cluster::follow(self, w, frame, req, tries, from.addr)
    }
}

fn on_get(shard: &Shard, f: &FetchRef, frame: &[u8], info: FrameInfo, resp3: bool) {
    let null = is_null(frame);
    let mut f = f.borrow_mut();
    f.replied = true;
    for (client, seq, proto) in f.waiters.drain(..) {
        client.complete(seq, |out| {
            if null {
                put_null(out, proto);
            } else {
                relay(frame, info, Shape::Plain, resp3, proto, out);
            }
        });
    }
    // Absent keys are cached only while tracking is on: Redis then tracks them too.
    let cacheable = if null {
        shard.shared.st.borrow().server.tracking
    } else {
        frame.first() == Some(&b'$')
    };
    if cacheable && !f.poisoned {
        f.value = Some(if null {
            Bytes::from_static(NULL_BULK)
        } else {
            Bytes::copy_from_slice(frame)
        });
    }
}

fn on_ttl(shard: &Shard, f: &FetchRef, frame: &[u8]) {
    shard.inflight.borrow_mut().finish(f);
    let f = f.borrow();
    let Some(value) = &f.value else { return };
    if f.poisoned {
        return;
    }
    let ttl = match frame
        .strip_prefix(b":")
        .and_then(|r| r.strip_suffix(b"\r\n"))
    {
        Some(n) => parse_int(n),
        None => None,
    };
    let expire = shard.expire_ms.get();
    let life = match ttl {
        Some(-1) => expire,
        Some(-2) if value[..] == *NULL_BULK => expire,
        Some(n) if n >= 0 => expire.min(n.min(u32::MAX as i64) as u32),
        _ => return, // expired between GET and PTTL, or an error: don't cache
    };
    if life == 0 {
        return;
    }
    shard
        .cache
        .borrow_mut()
        .insert_in(f.db, &f.key, value, f.sent_at.wrapping_add(life));
}
