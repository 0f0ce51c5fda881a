//! A shard's subscriptions at Redis and who listens to each.
//!
//! A name is subscribed at Redis when its first local subscriber arrives. That subscriber's
//! confirmation waits for Redis's, so a message published once the client holds its
//! confirmation is delivered. Redis answers the subscriber connection's commands in order, so
//! each SUBSCRIBE sent for a name has a batch of waiters, popped by the confirmation that
//! answers it. When the connection drops, waiters are answered (their subscriptions stay, as
//! the client asked) and every name with listeners is subscribed again once it is back;
//! messages published in between are lost, as they would be for a client of Redis itself.

use super::{Class, Event};
use crate::backend::supervisor::supervise;
use crate::backend::{Conn, Sink, Status};
use crate::replies::ClientShared;
use crate::resp::cursor::Cursor;
use crate::resp::encode::Proto;
use crate::resp::frame::FrameInfo;
use crate::resp::write::put_command;
use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use hashbrown::{HashMap, HashSet};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// The subscriber connection sends nothing that gets a reply: on RESP3 every answer to the
/// (un)subscribe family is a push.
pub enum NoReply {}

/// Most names per SUBSCRIBE the proxy sends (restoring thousands at once).
const NAMES_PER_COMMAND: usize = 1024;

/// A client with subscriptions: what it listens to, and how to reach it.
pub struct Subscriber {
    pub client: Rc<ClientShared>,
    pub proto: Cell<Proto>,
    names: RefCell<[HashSet<Bytes>; 3]>,
}

impl Subscriber {
    pub fn new(client: Rc<ClientShared>, proto: Proto) -> Self {
        Subscriber {
            client,
            proto: Cell::new(proto),
            names: RefCell::default(),
        }
    }

    pub fn has(&self, class: Class, name: &[u8]) -> bool {
        self.names.borrow()[class.idx()].contains(name)
    }

    pub fn insert(&self, class: Class, name: Bytes) -> bool {
        self.names.borrow_mut()[class.idx()].insert(name)
    }

    pub fn remove(&self, class: Class, name: &[u8]) -> bool {
        self.names.borrow_mut()[class.idx()].remove(name)
    }

    pub fn len(&self, class: Class) -> usize {
        self.names.borrow()[class.idx()].len()
    }

    pub fn names(&self, class: Class) -> Vec<Bytes> {
        self.names.borrow()[class.idx()].iter().cloned().collect()
    }

    /// The count Redis puts in a confirmation of this class: channels and patterns together,
    /// shard channels on their own.
    pub fn count(&self, class: Class) -> usize {
        let n = self.names.borrow();
        match class {
            Class::Shard => n[2].len(),
            _ => n[0].len() + n[1].len(),
        }
    }

    /// Subscriptions of every class: a RESP2 client with any is in subscribed mode.
    pub fn total(&self) -> usize {
        self.names.borrow().iter().map(|s| s.len()).sum()
    }

    /// Copies a message push to the client, in its protocol.
    fn deliver(&self, frame: &[u8]) {
        let resp2 = self.proto.get() == Proto::Resp2;
        self.client.push_always(|o| {
            let at = o.len();
            o.extend_from_slice(frame);
            if resp2 {
                o[at] = b'*'; // a push is an array to a RESP2 client; the elements are alike
            }
        });
        self.client.wake_writer();
    }
}

#[derive(Default)]
struct Entry {
    subs: Vec<Rc<Subscriber>>,
    /// Subscribed at Redis, or to be once the connection is up (the last command for it is,
    /// or will be, SUBSCRIBE).
    live: bool,
    /// One batch of waiter ids per SUBSCRIBE not yet confirmed, oldest first.
    confirms: VecDeque<Vec<u64>>,
}

/// A client's confirmation reply, held until Redis confirmed every name it waits for.
struct Waiting {
    client: Rc<ClientShared>,
    seq: u64,
    reply: BytesMut,
    left: usize,
    /// Redis refused a subscription it waits for: its error reply is the reply.
    refused: Option<Vec<u8>>,
}

/// A command sent on the subscriber connection, and the pushes that still answer it.
struct Sent {
    class: Class,
    subscribe: bool,
    names: Vec<Bytes>,
    owed: usize,
}

#[derive(Default)]
pub struct Hub {
    /// The node its subscriber connection goes to (`None`: the shard's Redis, or first node).
    /// Cluster mode keeps one hub per node for shard channels, whose subscriptions live on the
    /// master serving their slot.
    pub addr: Cell<Option<std::net::SocketAddr>>,
    conn: RefCell<Option<Rc<Conn<NoReply>>>>,
    entries: RefCell<[HashMap<Bytes, Entry>; 3]>,
    waiting: RefCell<HashMap<u64, Waiting>>,
    next_id: Cell<u64>,
    /// Names to (un)subscribe at Redis, sent together by `send`.
    to_send: RefCell<[[Vec<Bytes>; 3]; 2]>,
    /// Commands sent and not fully answered, oldest first: an error reply is the oldest's.
    sent: RefCell<VecDeque<Sent>>,
}

impl Hub {
    /// The subscriber connection, opened on first use.
    pub fn conn(&self, shard: &Rc<Shard>) -> Rc<Conn<NoReply>> {
        if let Some(c) = &*self.conn.borrow() {
            return c.clone();
        }
        let label = match self.addr.get() {
            Some(a) => format!("shard {} subscriber at {a}", shard.id),
            None => format!("shard {} subscriber", shard.id),
        };
        let mut params = shard.params(shard.cfg.redis.db, false, label);
        if let Some(a) = self.addr.get() {
            params.addr = a;
        }
        let conn = Rc::new(Conn::new(params, usize::MAX));
        *self.conn.borrow_mut() = Some(conn.clone());
        monoio::spawn(supervise::<NoReply, Shard>(conn.clone(), shard.clone()));
        conn
    }

    /// The node the subscriber connection is at, if it is open.
    pub fn node(&self) -> Option<std::net::SocketAddr> {
        self.conn.borrow().as_ref().map(|c| c.params.addr)
    }

    /// Moves the subscriber connection to the node at `addr` (its node left the cluster's
    /// map): every name with listeners is subscribed there, as after a reconnection.
    pub fn move_to(&self, shard: &Rc<Shard>, addr: std::net::SocketAddr) {
        self.addr.set(Some(addr));
        let old = self.conn.borrow_mut().take();
        if let Some(old) = old {
            crate::backend::supervisor::close(&*old, &**shard, "the node left the slot map");
        }
        self.disconnected();
        if self.entries.borrow().iter().any(|m| !m.is_empty()) {
            self.conn(shard);
        }
    }

    /// Where the subscriber connection lives, as `dispatch::switching` names connections.
    pub fn conn_addr(&self, shard: &Rc<Shard>) -> usize {
        Rc::as_ptr(&self.conn(shard)) as usize
    }

    fn is_up(&self) -> bool {
        self.conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.status() == Status::Up)
    }

    /// Whether a client subscribing to `name` now must wait for Redis's confirmation.
    pub fn must_wait(&self, class: Class, name: &[u8]) -> bool {
        match self.entries.borrow()[class.idx()].get(name) {
            Some(e) => !e.live || !e.confirms.is_empty(),
            None => true,
        }
    }

    /// Adds a listener; true if its confirmation must wait for Redis's (see `wait`).
    pub fn add(&self, class: Class, name: &Bytes, sub: &Rc<Subscriber>) -> bool {
        let up = self.is_up();
        let mut entries = self.entries.borrow_mut();
        let e = entries[class.idx()].entry(name.clone()).or_default();
        e.subs.push(sub.clone());
        super::counts::changed(class, name, e.subs.len() == 1, 1);
        if !e.live {
            e.live = true;
            if up {
                self.to_send.borrow_mut()[0][class.idx()].push(name.clone());
                e.confirms.push_back(Vec::new());
            } else if e.confirms.is_empty() {
                // Subscribed when the connection comes up (`connected`).
                e.confirms.push_back(Vec::new());
            }
        }
        !e.confirms.is_empty()
    }

    /// Removes a listener; the name is unsubscribed at Redis when it was the last.
    pub fn remove(&self, class: Class, name: &[u8], sub: &Rc<Subscriber>) {
        let up = self.is_up();
        let mut entries = self.entries.borrow_mut();
        let map = &mut entries[class.idx()];
        let Some(e) = map.get_mut(name) else { return };
        let Some(at) = e.subs.iter().position(|s| Rc::ptr_eq(s, sub)) else {
            return;
        };
        e.subs.swap_remove(at);
        super::counts::changed(class, name, e.subs.is_empty(), -1);
        if !e.subs.is_empty() {
            return;
        }
        if e.live {
            e.live = false;
            if up {
                self.to_send.borrow_mut()[1][class.idx()].push(Bytes::copy_from_slice(name));
            }
        }
        if e.confirms.is_empty() {
            map.remove(name);
        }
    }

    /// Holds a confirmation `reply` (slot `seq` of `client`) until Redis has confirmed each of
    /// `names` (which `add` said to wait for).
    pub fn wait(
        &self,
        client: &Rc<ClientShared>,
        seq: u64,
        reply: BytesMut,
        class: Class,
        names: &[Bytes],
    ) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut entries = self.entries.borrow_mut();
        let mut left = 0;
        for name in names {
            if let Some(batch) = entries[class.idx()]
                .get_mut(name)
                .and_then(|e| e.confirms.back_mut())
            {
                batch.push(id);
                left += 1;
            }
        }
        drop(entries);
        if left == 0 {
            client.complete(seq, |o| o.extend_from_slice(&reply));
            return;
        }
        let w = Waiting {
            client: client.clone(),
            seq,
            reply,
            left,
            refused: None,
        };
        self.waiting.borrow_mut().insert(id, w);
    }

    /// Sends what `add` and `remove` queued, one command per kind.
    pub fn send(&self) {
        let conn = self.conn.borrow().clone();
        let mut to_send = self.to_send.borrow_mut();
        let Some(conn) = conn.filter(|c| c.status() == Status::Up) else {
            // Restored by `connected` from the entries themselves.
            *to_send = Default::default();
            return;
        };
        let mut st = conn.st.borrow_mut();
        for (i, subscribe) in [true, false].into_iter().enumerate() {
            for class in Class::ALL {
                let names = std::mem::take(&mut to_send[i][class.idx()]);
                self.put_commands(&mut st.out, class, subscribe, &names);
            }
        }
        drop(st);
        conn.flush();
    }

    fn done(&self, id: u64) {
        let mut waiting = self.waiting.borrow_mut();
        let Some(w) = waiting.get_mut(&id) else {
            return;
        };
        w.left -= 1;
        if w.left == 0 {
            let w = waiting.remove(&id).expect("present");
            drop(waiting);
            w.client.complete(w.seq, |o| match &w.refused {
                Some(line) => o.extend_from_slice(line),
                None => o.extend_from_slice(&w.reply),
            });
        }
    }

    fn confirmed(&self, class: Class, name: &[u8]) {
        let batch = {
            let mut entries = self.entries.borrow_mut();
            let map = &mut entries[class.idx()];
            let Some(e) = map.get_mut(name) else { return };
            let batch = e.confirms.pop_front().unwrap_or_default();
            if e.subs.is_empty() && !e.live && e.confirms.is_empty() {
                map.remove(name);
            }
            batch
        };
        for id in batch {
            self.done(id);
        }
    }

    fn message(&self, class: Class, name: &[u8], frame: &[u8]) {
        if let Some(e) = self.entries.borrow()[class.idx()].get(name) {
            for s in &e.subs {
                s.deliver(frame);
            }
        }
    }

    /// Every waiter is answered, and names nobody listens to any more are forgotten.
    fn all_waiters_done(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        for map in self.entries.borrow_mut().iter_mut() {
            map.retain(|_, e| {
                ids.extend(e.confirms.drain(..).flatten());
                !e.subs.is_empty()
            });
        }
        ids
    }

    /// The connection came up: subscribe everything that has listeners; confirmations then
    /// answer whoever waited meanwhile.
    fn connected(&self) {
        let Some(conn) = self.conn.borrow().clone() else {
            return;
        };
        let mut names: [Vec<Bytes>; 3] = Default::default();
        let mut waiters: Vec<u64> = Vec::new();
        {
            let mut entries = self.entries.borrow_mut();
            for class in Class::ALL {
                entries[class.idx()].retain(|name, e| {
                    let batch: Vec<u64> = e.confirms.drain(..).flatten().collect();
                    if e.subs.is_empty() {
                        waiters.extend(batch);
                        return false;
                    }
                    e.live = true;
                    e.confirms.push_back(batch);
                    names[class.idx()].push(name.clone());
                    true
                });
            }
        }
        *self.to_send.borrow_mut() = Default::default();
        self.sent.borrow_mut().clear();
        {
            let mut st = conn.st.borrow_mut();
            st.out.clear();
            for class in Class::ALL {
                self.put_commands(&mut st.out, class, true, &names[class.idx()]);
            }
        }
        for id in waiters {
            self.done(id);
        }
    }

    fn disconnected(&self) {
        self.sent.borrow_mut().clear();
        for id in self.all_waiters_done() {
            self.done(id);
        }
    }

    /// A push from the subscriber connection: a message to fan out, or a confirmation.
    /// Whether `from` is this hub's connection.
    fn owns(&self, from: &crate::backend::Params) -> bool {
        self.conn
            .borrow()
            .as_ref()
            .is_some_and(|c| std::ptr::eq(&c.params, from))
    }

    fn push(&self, frame: &[u8]) {
        let mut c = Cursor::new(frame);
        let Some((b'>', n)) = c.header() else { return };
        let (Some(event), Some(name)) = (c.bulk(), c.bulk()) else {
            return;
        };
        match Class::of_event(event) {
            Some((class, Event::Message)) if n >= 3 => self.message(class, name, frame),
            Some((class, Event::Subscribed)) => {
                self.answered();
                self.confirmed(class, name);
            }
            _ if event.ends_with(b"unsubscribe") => self.answered(),
            _ => {}
        }
    }

    /// One push answering the oldest command sent.
    fn answered(&self) {
        let mut sent = self.sent.borrow_mut();
        if let Some(s) = sent.front_mut() {
            s.owed = s.owed.saturating_sub(1);
            if s.owed == 0 {
                sent.pop_front();
            }
        }
    }

    /// An error reply: Redis refused the oldest command sent (`-NOPERM` for a channel the
    /// proxy's user may not use). A refused SUBSCRIBE leaves its names unsubscribed, and the
    /// clients that waited for them get Redis's error instead of a confirmation.
    fn refused(&self, shard: &Shard, frame: &[u8]) -> bool {
        if frame.first() != Some(&b'-') {
            return false;
        }
        let Some(s) = self.sent.borrow_mut().pop_front() else {
            return false;
        };
        if !s.subscribe {
            return true;
        }
        let line = frame.to_vec();
        let mut ids = Vec::new();
        {
            let mut entries = self.entries.borrow_mut();
            let map = &mut entries[s.class.idx()];
            for name in &s.names {
                let Some(e) = map.get_mut(name) else { continue };
                ids.extend(e.confirms.pop_front().unwrap_or_default());
                if e.confirms.is_empty() {
                    let subs = std::mem::take(&mut e.subs);
                    let last = subs.len().saturating_sub(1);
                    for (i, sub) in subs.iter().enumerate() {
                        sub.remove(s.class, name);
                        super::counts::changed(s.class, name, i == last, -1);
                        super::session::show(shard, &sub.client, sub);
                    }
                    map.remove(name);
                }
            }
        }
        for id in ids {
            if let Some(w) = self.waiting.borrow_mut().get_mut(&id) {
                w.refused = Some(line.clone());
            }
            self.done(id);
        }
        true
    }

    fn put_commands(&self, out: &mut BytesMut, class: Class, subscribe: bool, names: &[Bytes]) {
        for chunk in names.chunks(NAMES_PER_COMMAND) {
            put_command(
                out,
                std::iter::once(class.command(subscribe))
                    .chain(chunk.iter().map(|n| &n[..]))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            self.sent.borrow_mut().push_back(Sent {
                class,
                subscribe,
                names: chunk.to_vec(),
                owed: chunk.len(),
            });
        }
    }
}

impl Shard {
    /// The hub whose subscriptions `class` `name` belongs to (`None`: in cluster mode, no node
    /// serves the shard channel's slot).
    pub fn hub(&self, class: Class, name: &[u8]) -> Option<Rc<Hub>> {
        let Some(cluster) = self.cluster.as_ref().filter(|_| class == Class::Shard) else {
            return Some(self.pubsub.clone());
        };
        let addr = cluster.master_addr(crate::cluster::slots::key_slot(name))?;
        let mut hubs = self.shard_hubs.borrow_mut();
        if let Some(h) = hubs.iter().find(|h| h.addr.get() == Some(addr)) {
            return Some(h.clone());
        }
        let h = Rc::new(Hub {
            addr: Cell::new(Some(addr)),
            ..Hub::default()
        });
        hubs.push(h.clone());
        Some(h)
    }

    /// The hub of the subscriber connection `from`.
    fn hub_of(&self, from: &crate::backend::Params) -> Rc<Hub> {
        self.shard_hubs
            .borrow()
            .iter()
            .find(|h| h.owns(from))
            .cloned()
            .unwrap_or_else(|| self.pubsub.clone())
    }
}

impl Sink<NoReply> for Shard {
    fn reply(&self, w: NoReply, _: &[u8], _: FrameInfo, _: bool) {
        match w {}
    }

    fn push(&self, frame: &[u8], from: &crate::backend::Params, _: u64) {
        self.hub_of(from).push(frame);
    }

    fn fail(&self, w: NoReply, _: &str) {
        match w {}
    }

    fn tracking_reset(&self) {}

    fn now(&self) -> u32 {
        Shard::now(self)
    }

    fn connected(&self, from: &crate::backend::Params) {
        self.hub_of(from).connected();
    }

    fn disconnected(&self, from: &crate::backend::Params) {
        self.hub_of(from).disconnected();
    }

    fn stray(&self, frame: &[u8], from: &crate::backend::Params) -> bool {
        self.hub_of(from).refused(self, frame)
    }
}
