//! One client's replies, kept in request order whatever mix of local answers, cache hits and
//! backend replies a pipeline holds.
//!
//! The client's reader task appends a slot per request; local answers go straight into `ready`
//! while nothing is pending before them, so the all-hits path never allocates. Backend replies
//! complete their slot; the run of finished slots at the head moves into `ready`, and the
//! client's writer task sends all of `ready` in one write.

use crate::socket::Handle;
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

enum Slot {
    /// Waits for a reply; `true`: the client asked for none (CLIENT REPLY OFF/SKIP).
    Pending(bool),
    Done(BytesMut),
    /// Done, its bytes at `at..at + len` of `Queue::arena`.
    Held {
        at: usize,
        len: usize,
    },
}

/// Replies completed out of order go into one buffer while it is under this size (no
/// allocation per reply: through a cluster, replies from different nodes complete a
/// client's slots out of order all the time); past it, each gets its own.
const ARENA_MAX: usize = 1 << 20;

#[derive(Default)]
struct Queue {
    /// Bytes ready to send, in order, ahead of every slot.
    ready: BytesMut,
    slots: VecDeque<Slot>,
    /// Bytes held in finished slots behind a pending one: unsent output like `ready`.
    held: usize,
    /// The bytes of `Slot::Held` slots; emptied (capacity kept) when none is left.
    arena: BytesMut,
    /// `Slot::Held` slots in `slots`.
    in_arena: usize,
    /// Sequence number of `slots[0]`.
    head_seq: u64,
    pending: usize,
    /// No more requests will come: the writer exits once everything is sent.
    closing: bool,
    /// The socket failed: replies are dropped on arrival.
    dead: bool,
}

pub struct ClientShared {
    q: RefCell<Queue>,
    writer: Cell<Option<Waker>>,
    reader: Cell<Option<Waker>>,
    /// Most unsent reply bytes before the client is disconnected (--client-output-limit).
    output_limit: usize,
    /// The socket, to shut it down when the client must go (limit, idle, shutdown).
    sock: RefCell<Handle>,
    /// The client's id (CLIENT ID, HELLO), unique in the process.
    pub id: u64,
    /// Shard clock at the client's last input (for --client-idle-timeout).
    pub last_active: Cell<u32>,
    pub authed: Cell<bool>,
    /// Reply bytes written to the socket so far: tells a slow reader from one that never reads.
    pub written: Cell<u64>,
    /// The writer task is in the middle of a write.
    pub writing: Cell<bool>,
    /// Replies to the requests being dispatched are dropped (CLIENT REPLY OFF/SKIP).
    pub muted: Cell<bool>,
    /// The backend connection this client's last request went to (its address), so that a
    /// request for another one waits until the earlier replies are in: Redis then runs the
    /// client's commands in the order it sent them.
    pub last_conn: Cell<usize>,
    /// Speaks RESP3, and has subscriptions: how an invalidation redirected to this client
    /// reaches it (see `tracking`).
    pub resp3: Cell<bool>,
    pub pubsub: Cell<bool>,
    /// What CLIENT LIST shows of this client (see `registry`).
    info: std::cell::OnceCell<std::sync::Arc<crate::registry::Info>>,
}

/// Client ids, across shards; taken once per connection.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for ClientShared {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl ClientShared {
    pub fn new(output_limit: usize) -> Self {
        ClientShared {
            q: RefCell::default(),
            writer: Cell::new(None),
            reader: Cell::new(None),
            output_limit,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sock: RefCell::default(),
            last_active: Cell::new(0),
            authed: Cell::new(false),
            written: Cell::new(0),
            writing: Cell::new(false),
            muted: Cell::new(false),
            last_conn: Cell::new(0),
            resp3: Cell::new(false),
            pubsub: Cell::new(false),
            info: std::cell::OnceCell::new(),
        }
    }

    pub fn set_info(&self, info: std::sync::Arc<crate::registry::Info>) {
        let _ = self.info.set(info);
    }

    pub fn info(&self) -> &crate::registry::Info {
        self.info
            .get_or_init(|| crate::registry::detached(self.id, String::new(), String::new(), 0))
    }

    pub fn set_socket(&self, sock: Handle) {
        *self.sock.borrow_mut() = sock;
    }

    /// Shutdown has begun: end a pending read (the reader then takes no new request), keep
    /// writing the replies owed.
    pub fn stop_reading(&self) {
        self.sock.borrow().shutdown_read();
        self.wake_reader();
    }

    /// Ends the connection now: pending reads and writes on it fail, both tasks finish.
    pub fn disconnect(&self) {
        self.disconnect_locked(&mut self.q.borrow_mut());
    }

    /// A client that stops reading while replies pile up is dropped past the output limit.
    fn check_output_limit(&self, q: &Queue) -> bool {
        let over = q.ready.len() + q.held > self.output_limit;
        if over {
            let limit = self.output_limit;
            crate::log::limit_hit(
                "client-output-limit",
                format_args!("a client's unsent replies passed {limit} bytes; disconnected"),
            );
        }
        over
    }

    /// Appends a reply produced now, written by `f`.
    #[inline]
    pub fn push_local(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.muted.get() {
            return;
        }
        self.push_always(f);
    }

    /// Appends what redis-server sends even under CLIENT REPLY OFF/SKIP: pub/sub confirmations
    /// and messages, tracking invalidations.
    #[inline]
    pub fn push_always(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut q = self.q.borrow_mut();
        if q.dead {
            return;
        }
        let q = &mut *q;
        if q.slots.is_empty() {
            f(&mut q.ready);
            if self.check_output_limit(q) {
                self.disconnect_locked(q);
            }
            return;
        }
        let added = match q.slots.back_mut() {
            Some(Slot::Done(buf)) => {
                let before = buf.len();
                f(buf);
                buf.len() - before
            }
            _ => {
                let mut buf = BytesMut::new();
                f(&mut buf);
                let n = buf.len();
                q.slots.push_back(Slot::Done(buf));
                n
            }
        };
        q.held += added;
        if self.check_output_limit(q) {
            self.disconnect_locked(q);
        }
    }

    /// Appends an invalidation Redis pushed on the connection at address `conn`, ahead of the
    /// replies still expected when they all come from that connection and nothing is held
    /// behind them: Redis runs those requests after it sent the push, so their replies must
    /// follow it, as they would on a direct connection (an eviction's invalidation before the
    /// reply of the command that caused it). Otherwise behind everything, which is always safe.
    pub fn push_ahead(&self, conn: usize, f: impl FnOnce(&mut BytesMut)) {
        {
            let mut q = self.q.borrow_mut();
            let q = &mut *q;
            let all_expected = q.held == 0 && q.slots.iter().all(|s| matches!(s, Slot::Pending(_)));
            if conn != 0
                && !q.dead
                && !q.slots.is_empty()
                && all_expected
                && self.last_conn.get() == conn
            {
                f(&mut q.ready);
                if self.check_output_limit(q) {
                    self.disconnect_locked(q);
                }
                return;
            }
        }
        self.push_always(f);
    }

    /// `disconnect` for callers that hold the queue borrowed.
    fn disconnect_locked(&self, q: &mut Queue) {
        Self::drop_output(q);
        self.sock.borrow().shutdown();
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Reserves the place of a reply that will come later; returns its sequence number.
    #[inline]
    pub fn push_pending(&self) -> u64 {
        self.push_pending_as(self.muted.get())
    }

    /// `push_pending` for a reply sent even under CLIENT REPLY OFF (see `push_always`).
    pub fn push_pending_always(&self) -> u64 {
        self.push_pending_as(false)
    }

    fn push_pending_as(&self, muted: bool) -> u64 {
        let mut q = self.q.borrow_mut();
        q.slots.push_back(Slot::Pending(muted));
        q.pending += 1;
        q.head_seq + q.slots.len() as u64 - 1
    }

    /// Fills the slot `seq` with the reply written by `f`.
    pub fn complete(&self, seq: u64, f: impl FnOnce(&mut BytesMut)) {
        let mut guard = self.q.borrow_mut();
        let q = &mut *guard;
        let idx = (seq - q.head_seq) as usize;
        let muted = match q.slots.get(idx) {
            Some(Slot::Pending(muted)) => *muted,
            _ => unreachable!("a reply for a slot that waits for none"),
        };
        q.pending -= 1;
        if idx == 0 {
            q.slots.pop_front();
            q.head_seq += 1;
            if !q.dead && !muted {
                f(&mut q.ready);
            }
            loop {
                match q.slots.front() {
                    Some(Slot::Done(_)) => {
                        if let Some(Slot::Done(buf)) = q.slots.pop_front() {
                            q.held -= buf.len();
                            q.ready.extend_from_slice(&buf);
                        }
                    }
                    Some(&Slot::Held { at, len }) => {
                        q.slots.pop_front();
                        q.held -= len;
                        q.ready.extend_from_slice(&q.arena[at..at + len]);
                        q.in_arena -= 1;
                        if q.in_arena == 0 {
                            if q.arena.capacity() > 64 * 1024 {
                                q.arena = BytesMut::new(); // a burst: give the memory back
                            } else {
                                q.arena.clear();
                            }
                        }
                    }
                    _ => break,
                }
                q.head_seq += 1;
            }
            if self.check_output_limit(q) {
                self.disconnect_locked(q);
            }
            drop(guard);
            self.wake_writer();
        } else if q.arena.len() < ARENA_MAX {
            let at = q.arena.len();
            if !q.dead && !muted {
                f(&mut q.arena);
            }
            let len = q.arena.len() - at;
            q.held += len;
            q.in_arena += 1;
            q.slots[idx] = Slot::Held { at, len };
            if self.check_output_limit(q) {
                self.disconnect_locked(q);
            }
        } else {
            let mut buf = BytesMut::new();
            if !q.dead && !muted {
                f(&mut buf);
            }
            q.held += buf.len();
            q.slots[idx] = Slot::Done(buf);
            if self.check_output_limit(q) {
                self.disconnect_locked(q);
            }
        }
    }

    /// Bytes waiting to be written plus replies still expected: the reader stops reading
    /// while this is high, so a client that never reads cannot grow memory without bound.
    pub fn backlog(&self) -> (usize, usize) {
        let q = self.q.borrow();
        (q.ready.len() + q.held, q.pending)
    }

    pub fn has_pending(&self) -> bool {
        let q = self.q.borrow();
        !q.slots.is_empty() || !q.ready.is_empty()
    }

    pub fn is_dead(&self) -> bool {
        self.q.borrow().dead
    }

    /// Dead, or its reader is done (the client left or quit).
    pub fn is_closed(&self) -> bool {
        let q = self.q.borrow();
        q.dead || q.closing
    }

    /// The reader is done: the writer finishes what is queued, then closes.
    pub fn close(&self) {
        self.q.borrow_mut().closing = true;
        self.wake_writer();
    }

    /// Unsent reply bytes, for the reader's pause threshold.
    pub fn output_limit(&self) -> usize {
        self.output_limit
    }

    pub fn mark_dead(&self) {
        Self::drop_output(&mut self.q.borrow_mut());
        self.wake_reader();
    }

    fn drop_output(q: &mut Queue) {
        q.dead = true;
        q.ready = BytesMut::new();
        q.held = 0;
        for s in q.slots.iter_mut() {
            match s {
                Slot::Done(b) => *b = BytesMut::new(),
                Slot::Held { at, len } => (*at, *len) = (0, 0),
                Slot::Pending(_) => {}
            }
        }
        q.arena = BytesMut::new();
    }

    #[inline]
    pub fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    pub fn wake_reader(&self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Waits for bytes to send and swaps them into `buf` (which must be empty). `false`: the
    /// connection is finished.
    pub async fn next_batch(&self, buf: &mut BytesMut) -> bool {
        poll_fn(|cx| {
            let mut q = self.q.borrow_mut();
            if q.dead {
                return Poll::Ready(false);
            }
            if !q.ready.is_empty() {
                std::mem::swap(&mut q.ready, buf);
                return Poll::Ready(true);
            }
            if q.closing && q.slots.is_empty() {
                return Poll::Ready(false);
            }
            self.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// What is ready to send, taken (for tests of the code that completes replies).
    #[cfg(test)]
    pub(crate) fn take_ready(&self, out: &mut BytesMut) {
        out.extend_from_slice(&std::mem::take(&mut self.q.borrow_mut().ready));
    }

    /// Whether the backlog is under the limits (or the client is dead).
    #[inline]
    pub fn backlog_below(&self, bytes: usize, replies: usize) -> bool {
        let q = self.q.borrow();
        q.dead || (q.ready.len() + q.held < bytes && q.pending < replies)
    }

    /// A measure of output the client has taken: moves while it reads, however slowly.
    pub fn delivered(&self) -> u64 {
        self.sock
            .borrow()
            .bytes_acked()
            .unwrap_or_else(|| self.written.get())
    }

    /// Whether reply bytes wait that the client could be reading now: queued for the writer,
    /// or in a write under way (not those held behind a reply still expected from Redis).
    pub fn has_writable_output(&self) -> bool {
        !self.q.borrow().ready.is_empty() || self.writing.get()
    }

    /// Waits until the backlog (unsent bytes, counted as `backlog` does, and replies still
    /// expected) is under the limits, or the client is dead.
    pub async fn wait_backlog_below(&self, bytes: usize, replies: usize) {
        poll_fn(|cx| {
            if self.backlog_below(bytes, replies) {
                return Poll::Ready(());
            }
            self.reader.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(c: &ClientShared) -> Vec<u8> {
        std::mem::take(&mut c.q.borrow_mut().ready).to_vec()
    }

    #[test]
    fn replies_leave_in_request_order() {
        let c = ClientShared::default();
        c.push_local(|b| b.extend_from_slice(b"1"));
        let s2 = c.push_pending();
        c.push_local(|b| b.extend_from_slice(b"3"));
        let s4 = c.push_pending();
        c.push_local(|b| b.extend_from_slice(b"5"));
        assert_eq!(ready(&c), b"1");
        c.complete(s4, |b| b.extend_from_slice(b"4"));
        assert_eq!(ready(&c), b"");
        c.complete(s2, |b| b.extend_from_slice(b"2"));
        assert_eq!(ready(&c), b"2345");
        assert!(!c.has_pending());
    }

    #[test]
    fn output_limit_disconnects() {
        let c = ClientShared::new(4);
        c.push_local(|b| b.extend_from_slice(b"1234"));
        assert!(!c.is_dead());
        c.push_local(|b| b.extend_from_slice(b"5"));
        assert!(c.is_dead());
    }

    /// Found in review: replies queued behind a pending one were not counted.
    #[test]
    fn output_held_behind_a_pending_reply_counts() {
        let c = ClientShared::new(8);
        let s = c.push_pending();
        c.push_local(|b| b.extend_from_slice(b"12345"));
        assert_eq!(c.backlog(), (5, 1));
        c.push_local(|b| b.extend_from_slice(b"6789"));
        assert!(c.is_dead());
        c.complete(s, |b| b.extend_from_slice(b"x"));
        assert_eq!(c.backlog(), (0, 0));
    }

    /// Found in review: the reader's pause ignored replies held behind a pending one, read on,
    /// and the client was dropped at the output limit instead of paused.
    #[test]
    fn held_replies_pause_the_reader() {
        let c = ClientShared::new(100);
        let s = c.push_pending();
        c.push_local(|b| b.extend_from_slice(b"1234567890"));
        assert!(!c.backlog_below(10, 100));
        assert!(
            !c.has_writable_output(),
            "held bytes wait on Redis, not the client"
        );
        c.complete(s, |b| b.extend_from_slice(b"x"));
        assert!(c.has_writable_output());
        assert!(!c.backlog_below(10, 100));
        assert!(c.backlog_below(12, 100));
    }

    /// Replies completed out of order share one buffer, mixed with local answers and replies
    /// past the buffer's size; a client that dies with some held leaves nothing behind.
    #[test]
    fn out_of_order_replies_in_the_arena() {
        let c = ClientShared::default();
        let s: Vec<u64> = (0..4).map(|_| c.push_pending()).collect();
        c.complete(s[3], |b| b.extend_from_slice(b"d"));
        c.push_local(|b| b.extend_from_slice(b"e"));
        c.complete(s[1], |b| b.extend_from_slice(&vec![b'b'; ARENA_MAX]));
        c.complete(s[2], |b| b.extend_from_slice(b"c")); // past the arena: its own buffer
        assert_eq!(c.backlog(), (ARENA_MAX + 3, 1));
        c.complete(s[0], |b| b.extend_from_slice(b"a"));
        let mut want = b"a".to_vec();
        want.extend(vec![b'b'; ARENA_MAX]);
        want.extend(b"cde");
        assert_eq!(ready(&c), want);
        assert_eq!(c.backlog(), (0, 0));
        assert_eq!(c.q.borrow().in_arena, 0);
        // Dead with held replies: they are dropped, and later ones too.
        let s: Vec<u64> = (0..3).map(|_| c.push_pending()).collect();
        c.complete(s[2], |b| b.extend_from_slice(b"z"));
        c.mark_dead();
        c.complete(s[1], |b| b.extend_from_slice(b"y"));
        c.complete(s[0], |b| b.extend_from_slice(b"x"));
        assert_eq!(ready(&c), b"");
        assert_eq!(c.backlog(), (0, 0));
    }

    #[test]
    fn dead_client_drops_replies() {
        let c = ClientShared::default();
        let s = c.push_pending();
        c.mark_dead();
        c.complete(s, |b| b.extend_from_slice(b"x"));
        assert_eq!(ready(&c), b"");
        assert_eq!(c.backlog(), (0, 0));
    }
}
