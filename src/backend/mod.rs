//! A pipelined connection to Redis as a value: a queue of request bytes, the FIFO of who waits
//! for each reply, and the connection's state. A shard owns several: one shared connection per
//! db, and dedicated ones for clients that hold server state (WATCH) or block.
//!
//! A connection knows nothing of shards, clients or caches: it is given its handshake
//! parameters ([`Params`]) and a [`Sink`] that receives each reply with its waiter, the push
//! frames, and the waiters of a connection that failed. Clients append requests (`send_*`) and
//! a waiter each; the writer task sends everything queued in one write; the reader task frames
//! replies and hands each to the sink with the oldest waiter (`io.rs`). The supervisor
//! (`supervisor.rs`) connects, handshakes (`handshake.rs`), and reconnects with backoff; while
//! a shared connection is down, requests are refused at once with an error instead of waiting.

pub mod handshake;
pub mod io;
pub mod supervisor;
pub mod timing;

pub use timing::Timing;

use crate::resp::frame::FrameInfo;
use crate::resp::request::Args;
use crate::resp::write::{put_command, put_error};
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Receives what a connection reads; implemented by the shard.
pub trait Sink<W> {
    /// The reply to the request `w` waited for. `resp3`: the connection speaks RESP3.
    fn reply(&self, w: W, frame: &[u8], info: FrameInfo, resp3: bool);
    /// An out-of-band push frame (an invalidation, a message), read by the connection `from`
    /// after it had delivered `replies` replies.
    fn push(&self, frame: &[u8], from: &Params, replies: u64);
    /// `w` gets no reply: its connection failed, with this error line (without `-`).
    fn fail(&self, w: W, msg: &str);
    /// A connection with CLIENT TRACKING came up or went down: invalidations may have been
    /// missed, so what it tracked must be dropped.
    fn tracking_reset(&self);
    /// Milliseconds on the owner's clock.
    fn now(&self) -> u32;
    /// The connection is up, handshake done, before anything queued is written: the sink may
    /// queue what must come first (the subscriber connection restores its subscriptions).
    fn connected(&self, _from: &Params) {}
    /// The connection went down (or could not be made).
    fn disconnected(&self, _from: &Params) {}
    /// A redirection (`-MOVED`, `-ASK`) answered `req`, on a connection that keeps a
    /// [`Journal`]; it was sent `tries` times before. The sink may send it again elsewhere
    /// (`None`), or give the waiter back to get the redirection as its reply.
    fn redirected(
        &self,
        w: W,
        _frame: &[u8],
        _req: bytes::Bytes,
        _tries: u8,
        _from: &Params,
    ) -> Option<W> {
        Some(w)
    }
    /// A reply with no request waiting for it: true if the sink expected it (the subscriber
    /// connection's commands are answered by pushes, or refused by an error); false fails the
    /// connection as out of step.
    fn stray(&self, _frame: &[u8], _from: &Params) -> bool {
        false
    }
}

/// How to connect and what to set up on the connection.
#[derive(Clone)]
pub struct Params {
    pub addr: SocketAddr,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Ask for CLIENT TRACKING (the connection must then speak RESP3).
    pub tracking: bool,
    /// Fetch Redis's command table (`COMMAND`) into [`ServerInfo::commands`].
    pub commands: bool,
    pub connect_timeout: Duration,
    /// For logs: which shard and connection this is.
    pub label: String,
    /// Log each (re)connection: for long-lived connections, not per-client dedicated ones.
    pub log_connects: bool,
    /// Carries CLIENT TRACKING in BCAST mode for the proxy's BCAST clients (set up by its
    /// owner, not the handshake): its invalidations are broadcasts.
    pub bcast: bool,
    /// Send `READONLY`: reads of a cluster replica's slots are served by the replica.
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Up,
    Down,
    /// Retired: no reconnect, every request refused.
    Closed,
}

pub enum Admit {
    Yes,
    /// The in-flight limit is reached: wait with `wait_space`, then try again.
    Full,
    /// The connection is down, or Redis is busy: answer with `put_down_error` now.
    Down,
}

/// What the handshake learnt of the server.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// The connection speaks RESP3 (replies may need conversion for RESP2 clients).
    pub resp3: bool,
    /// CLIENT TRACKING is on: invalidations arrive as pushes.
    pub tracking: bool,
    /// Redis's `version` (from HELLO), empty if unknown.
    pub version: String,
    /// Redis's id for this connection (from HELLO), for CLIENT UNBLOCK; 0 if unknown.
    pub id: i64,
    /// `COMMAND`'s reply, when asked for.
    pub commands: Option<bytes::Bytes>,
    /// Redis's `databases` setting, when asked for (with the commands).
    pub databases: Option<u32>,
}

/// Each request's bytes, kept until its reply (cluster node connections): a request Redis
/// redirects is sent again to another node. One buffer for all, so keeping them costs a copy,
/// not an allocation per request.
#[derive(Default)]
pub struct Journal {
    pub bytes: BytesMut,
    /// Per waiter: its request's length and how often it was sent before (`NO_FOLLOW`: part
    /// of a block that must not be split up, a MULTI ... EXEC).
    pub entries: VecDeque<(u32, u8)>,
}

/// A request that is never sent again elsewhere.
pub const NO_FOLLOW: u8 = u8::MAX;

/// Whether a reply is a Redis Cluster redirection (cheap: its first bytes).
#[inline]
pub fn is_redirect(frame: &[u8]) -> bool {
    frame.starts_with(b"-MOVED ") || frame.starts_with(b"-ASK ")
}

pub struct State<W> {
    pub status: Status,
    /// Requests not yet written.
    pub out: BytesMut,
    /// One per request written or queued, oldest first.
    pub waiters: VecDeque<W>,
    pub server: ServerInfo,
    /// Why the connection is down, for error replies (never holds credentials).
    pub last_error: String,
    /// Bumped per connection so a writer of a dead connection stops.
    pub generation: u64,
    /// The live connection's socket, to shut it down on a timeout.
    pub sock: crate::socket::Handle,
    /// Clock when a reply last arrived, or when nothing was waiting.
    pub progress: u32,
    /// A blocking command is in flight: no backend timeout before this instant (None: the
    /// command blocks forever).
    pub blocking: Option<Option<u32>>,
    /// Redis answers other connections `-BUSY` (a long script holds this one): the error line
    /// new requests get at once, until a reply arrives here.
    pub busy: Option<String>,
    /// A probe (PING on another connection) is finding out why no reply comes: no timeout
    /// meanwhile; the probe's own connection times out if Redis is frozen.
    pub probing: bool,
    /// Replies delivered so far (over every connection this one has been): with the waiters,
    /// where a request stands in the connection's order (see `tracking`).
    pub replies: u64,
    /// Reconnections after the first connect, and resets for --backend-timeout (metrics).
    pub reconnects: u64,
    pub timeouts: u64,
    /// When the requests in flight were queued, for round-trip metrics (timed connections).
    pub timing: Timing,
    /// Kept request bytes (cluster node connections only).
    pub journal: Option<Journal>,
}

pub struct Conn<W> {
    pub st: RefCell<State<W>>,
    /// Redis's id for the live connection (0 until known), readable from other shards (CLIENT
    /// UNBLOCK of a client blocked here).
    pub redis_id: std::sync::Arc<std::sync::atomic::AtomicI64>,
    pub(crate) writer: Cell<Option<Waker>>,
    space: RefCell<Vec<Waker>>,
    limit: usize,
    pub params: Params,
    /// Round trips are measured (the shard's shared connections).
    pub timed: Cell<bool>,
}

impl<W> Conn<W> {
    pub fn new(params: Params, limit: usize) -> Self {
        Conn {
            st: RefCell::new(State {
                status: Status::Connecting,
                out: BytesMut::with_capacity(16 * 1024),
                waiters: VecDeque::new(),
                server: ServerInfo::default(),
                last_error: String::new(),
                generation: 0,
                sock: Default::default(),
                progress: 0,
                blocking: None,
                busy: None,
                probing: false,
                replies: 0,
                reconnects: 0,
                timeouts: 0,
                timing: Timing::default(),
                journal: None,
            }),
            timed: Cell::new(false),
            redis_id: Default::default(),
            writer: Cell::new(None),
            space: RefCell::new(Vec::new()),
            limit,
            params,
        }
    }

    /// Can `n` more requests be queued?
    #[inline]
    pub fn admit(&self, n: usize) -> Admit {
        let st = self.st.borrow();
        match st.status {
            Status::Down | Status::Closed => Admit::Down,
            _ if st.busy.is_some() => Admit::Down,
            _ if st.waiters.len() + n > self.limit && !st.waiters.is_empty() => Admit::Full,
            _ => Admit::Yes,
        }
    }

    /// Writes why requests are refused now: Redis's `-BUSY`, or the backend is down.
    pub fn put_down_error(&self, out: &mut BytesMut) {
        let st = self.st.borrow();
        match &st.busy {
            Some(busy) => put_error(out, busy.as_bytes()),
            None => put_error(
                out,
                format!("ERR backend unavailable: {}", st.last_error).as_bytes(),
            ),
        }
    }

    /// Queues a client's request: its raw RESP bytes when it came as RESP (forwarded verbatim),
    /// else (an inline command) its arguments encoded as RESP.
    #[inline]
    pub fn send_request(&self, raw: Option<&[u8]>, args: &Args, w: W) {
        match raw {
            Some(raw) => self.send_raw(raw, w),
            None => self.send_args(args.iter(), w),
        }
    }

    /// Queues one request already encoded as RESP.
    #[inline]
    pub fn send_raw(&self, raw: &[u8], w: W) {
        self.send_again(raw, w, 0);
    }

    /// `send_raw` of a request sent `tries` times before (a redirection followed).
    #[inline]
    pub fn send_again(&self, raw: &[u8], w: W, tries: u8) {
        crate::observe::stats::count(crate::observe::stats::Class::Forwarded);
        let mut st = self.st.borrow_mut();
        st.out.extend_from_slice(raw);
        st.waiters.push_back(w);
        if let Some(j) = &mut st.journal {
            j.bytes.extend_from_slice(raw);
            j.entries.push_back((raw.len() as u32, tries));
        }
    }

    pub fn send_args<'a>(&self, args: impl ExactSizeIterator<Item = &'a [u8]>, w: W) {
        crate::observe::stats::count(crate::observe::stats::Class::Forwarded);
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        let at = st.out.len();
        put_command(&mut st.out, args);
        st.waiters.push_back(w);
        if let Some(j) = &mut st.journal {
            j.bytes.extend_from_slice(&st.out[at..]);
            j.entries.push_back(((st.out.len() - at) as u32, 0));
        }
    }

    /// Queues bytes holding several requests at once, with their waiters in order: nothing
    /// else can come between them on the wire (a MULTI ... EXEC block).
    pub fn send_block(&self, raw: &[u8], waiters: impl IntoIterator<Item = W>) {
        crate::observe::stats::count(crate::observe::stats::Class::Forwarded);
        let mut st = self.st.borrow_mut();
        st.out.extend_from_slice(raw);
        let before = st.waiters.len();
        st.waiters.extend(waiters);
        let n = st.waiters.len() - before;
        if let Some(j) = &mut st.journal {
            j.entries.extend((0..n).map(|_| (0, NO_FOLLOW)));
        }
    }

    /// Lets the writer task send what is queued (call once per batch of requests).
    #[inline]
    pub fn flush(&self) {
        if self.timed.get() {
            let mut st = self.st.borrow_mut();
            let n = st.waiters.len();
            st.timing.mark(n, crate::observe::clock::last_us());
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    pub async fn wait_space(&self, n: usize) {
        poll_fn(|cx| match self.admit(n) {
            Admit::Full => {
                self.space.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
        .await
    }

    pub(crate) fn wake_space(&self) {
        let wakers = std::mem::take(&mut *self.space.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Replies delivered so far, and the index the next request's reply will have.
    pub fn order(&self) -> (u64, u64) {
        let st = self.st.borrow();
        (st.replies, st.replies + st.waiters.len() as u64)
    }

    pub fn in_flight(&self) -> usize {
        self.st.borrow().waiters.len()
    }

    pub fn status(&self) -> Status {
        self.st.borrow().status
    }

    pub fn resp3(&self) -> bool {
        self.st.borrow().server.resp3
    }

    pub fn server(&self) -> ServerInfo {
        self.st.borrow().server.clone()
    }
}
