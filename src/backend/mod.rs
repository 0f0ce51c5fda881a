//! One shard's pipelined connection to Redis: a queue of request bytes, the FIFO of who waits
//! for each reply, and the connection's state.
//!
//! Clients append requests (`send_*`) and a waiter each; the writer task sends everything queued
//! in one write; the reader task frames replies and hands each to the oldest waiter
//! (`io.rs`). Push frames are invalidations, not replies. The supervisor (`conn.rs`) connects,
//! handshakes, and reconnects with backoff; while the backend is down, requests are refused at
//! once with an error instead of waiting.

pub mod conn;
pub mod io;

use crate::fetch::FetchRef;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::request::Args;
use crate::resp::write::{put_command, put_error};
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Who receives a backend reply.
pub enum Waiter {
    /// Relay to a client, converted to RESP2 if needed.
    Reply {
        client: Rc<ClientShared>,
        seq: u64,
        shape: Shape,
    },
    /// The GET of a cache fill: goes to every waiter of the fetch.
    Get(FetchRef),
    /// The PTTL that follows a fill's GET: decides whether and how long to cache.
    Ttl(FetchRef),
    /// The proxy's own command; the reply is dropped.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Up,
    Down,
}

pub enum Admit {
    Yes,
    /// The in-flight limit is reached: wait with `wait_space`, then try again.
    Full,
    /// The backend is down: answer with this error now.
    Down,
}

pub struct State {
    pub status: Status,
    /// Requests not yet written.
    pub out: BytesMut,
    /// One per request written or queued, oldest first.
    pub waiters: VecDeque<Waiter>,
    /// The connection speaks RESP3 (replies may need conversion for clients).
    pub resp3: bool,
    /// CLIENT TRACKING is on: invalidations arrive as pushes.
    pub tracking: bool,
    /// Why the backend is down, for error replies (never holds credentials).
    pub last_error: String,
    /// Bumped per connection so a writer of a dead connection stops.
    pub generation: u64,
    /// The live connection's socket, to shut it down on a backend timeout.
    pub sock: crate::socket::Handle,
    /// Shard clock when a reply last arrived, or when nothing was waiting.
    pub progress: u32,
}

pub struct Backend {
    pub st: RefCell<State>,
    pub(crate) writer: Cell<Option<Waker>>,
    space: RefCell<Vec<Waker>>,
    limit: usize,
}

impl Backend {
    pub fn new(limit: usize) -> Self {
        Backend {
            st: RefCell::new(State {
                status: Status::Connecting,
                out: BytesMut::with_capacity(64 * 1024),
                waiters: VecDeque::new(),
                resp3: false,
                tracking: false,
                last_error: String::new(),
                generation: 0,
                sock: Default::default(),
                progress: 0,
            }),
            writer: Cell::new(None),
            space: RefCell::new(Vec::new()),
            limit,
        }
    }

    /// Can `n` more requests be queued?
    #[inline]
    pub fn admit(&self, n: usize) -> Admit {
        let st = self.st.borrow();
        match st.status {
            Status::Down => Admit::Down,
            _ if st.waiters.len() + n > self.limit && !st.waiters.is_empty() => Admit::Full,
            _ => Admit::Yes,
        }
    }

    /// Writes the "backend down" error reply.
    pub fn put_down_error(&self, out: &mut BytesMut) {
        let st = self.st.borrow();
        put_error(
            out,
            format!("ERR backend unavailable: {}", st.last_error).as_bytes(),
        );
    }

    /// Queues a client's request: its raw RESP bytes when it came as RESP (forwarded verbatim),
    /// else (an inline command) its arguments encoded as RESP.
    #[inline]
    pub fn send_request(&self, raw: Option<&[u8]>, args: &Args, w: Waiter) {
        match raw {
            Some(raw) => {
                let mut st = self.st.borrow_mut();
                st.out.extend_from_slice(raw);
                st.waiters.push_back(w);
            }
            None => self.send_args(args.iter(), w),
        }
    }

    pub fn send_args<'a>(&self, args: impl ExactSizeIterator<Item = &'a [u8]>, w: Waiter) {
        let mut st = self.st.borrow_mut();
        put_command(&mut st.out, args);
        st.waiters.push_back(w);
    }

    /// Lets the writer task send what is queued (call once per batch of requests).
    #[inline]
    pub fn flush(&self) {
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

    pub fn in_flight(&self) -> usize {
        self.st.borrow().waiters.len()
    }

    pub fn status(&self) -> Status {
        self.st.borrow().status
    }
}
