//! A connection's two tasks: the writer sends queued requests in batches; the reader frames
//! replies and hands each, with its waiter in FIFO order, to the sink; pushes go to the sink
//! as they come.

use super::{Conn, Sink, Status};
use crate::resp::frame::{FrameInfo, FrameScanner};
use crate::socket::{ReadHalf, WriteHalf};
use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

const READ_CHUNK: usize = 64 * 1024;
/// A write buffer that grew past this (one huge batch) is dropped rather than kept.
const KEEP_BUF: usize = 4 << 20;

pub async fn writer<W>(conn: Rc<Conn<W>>, mut w: WriteHalf, generation: u64) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let go = poll_fn(|cx| {
            let mut st = conn.st.borrow_mut();
            if st.generation != generation || st.status != Status::Up {
                return Poll::Ready(false);
            }
            if !st.out.is_empty() {
                std::mem::swap(&mut st.out, &mut buf);
                return Poll::Ready(true);
            }
            conn.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if !go {
            break;
        }
        let (res, b) = w.half.write_all(buf).await;
        buf = b;
        if res.is_err() {
            // Dropping the write half shuts the socket for writing; Redis then closes and the
            // reader sees the end of the connection.
            break;
        }
        buf.clear();
        if buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// How a connection's reader ended.
pub enum Ended {
    /// The connection failed, for this reason.
    Failed(String),
    /// It was reset by the proxy (a timeout, or retired), which has marked it down with the
    /// cause.
    Reset,
}

/// Reads and dispatches replies until the connection fails or is reset.
pub async fn reader<W, S: Sink<W>>(
    conn: &Conn<W>,
    sink: &S,
    mut r: ReadHalf,
    mut buf: BytesMut,
    generation: u64,
) -> Ended {
    let mut scanner = FrameScanner::default();
    let reset = || conn.st.borrow().generation != generation;
    loop {
        // After a reset the waiters belong to no one on this connection: a late reply must
        // not reach them. Invalidations already read still apply.
        if reset() {
            apply_pushes(sink, &buf, &conn.params);
            return Ended::Reset;
        }
        let mut consumed = 0;
        loop {
            match scanner.scan(&buf[consumed..]) {
                Ok(Some(info)) => {
                    let frame = &buf[consumed..consumed + info.len];
                    if let Err(e) = deliver(conn, sink, frame, info) {
                        return Ended::Failed(e.to_string());
                    }
                    consumed += info.len;
                }
                Ok(None) => break,
                Err(e) => return Ended::Failed(format!("protocol error from Redis: {}", e.0)),
            }
        }
        if consumed > 0 {
            buf.advance(consumed);
            let mut st = conn.st.borrow_mut();
            st.progress = sink.now();
            st.busy = None;
            drop(st);
            conn.wake_space();
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        buf.reserve(READ_CHUNK);
        let len = buf.len();
        let (res, slice) = r
            .half
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
            .await;
        buf = slice.into_inner();
        match res {
            // A reset shuts the socket down: the read ends, and the loop's top says why.
            Ok(0) | Err(_) if reset() => {}
            Ok(0) => return Ended::Failed("connection closed by Redis".into()),
            // Bytes arriving is progress, even in the middle of one huge reply.
            Ok(_) => {
                conn.st.borrow_mut().progress = sink.now();
                if conn.timed.get() {
                    crate::observe::clock::refresh();
                }
            }
            Err(e) => return Ended::Failed(format!("read from Redis: {e}")),
        }
    }
}

/// Applies the pushes among complete frames of a connection being abandoned.
fn apply_pushes<W, S: Sink<W>>(sink: &S, buf: &[u8], from: &super::Params) {
    let mut at = 0;
    while let Ok(Some(info)) = FrameScanner::default().scan(&buf[at..]) {
        if info.push {
            sink.push(&buf[at..at + info.len], from, u64::MAX);
        }
        at += info.len;
    }
}

fn deliver<W, S: Sink<W>>(
    conn: &Conn<W>,
    sink: &S,
    frame: &[u8],
    info: FrameInfo,
) -> Result<(), &'static str> {
    if info.push {
        let replies = conn.st.borrow().replies;
        sink.push(frame, &conn.params, replies);
        return Ok(());
    }
    let (waiter, resp3, again) = {
        let mut st = conn.st.borrow_mut();
        let w = st.waiters.pop_front();
        // A kept request: dropped, or, when Redis redirects it, handed to the sink.
        let again = st.journal.as_mut().and_then(|j| {
            let (len, tries) = j.entries.pop_front()?;
            if super::is_redirect(frame) && tries != super::NO_FOLLOW {
                Some((j.bytes.split_to(len as usize).freeze(), tries))
            } else {
                j.bytes.advance(len as usize);
                None
            }
        });
        st.replies += 1;
        if st.waiters.is_empty() {
            st.blocking = None;
        }
        if conn.timed.get() {
            let age = st.timing.answered(crate::observe::clock::last_us());
            crate::observe::stats::set_reply_age(age);
        }
        (w, st.server.resp3, again)
    };
    let Some(waiter) = waiter else {
        if sink.stray(frame, &conn.params) {
            return Ok(());
        }
        return Err("reply from Redis with no request waiting");
    };
    let waiter = match again {
        Some((req, tries)) => match sink.redirected(waiter, frame, req, tries, &conn.params) {
            Some(w) => w,
            None => return Ok(()),
        },
        None => waiter,
    };
    sink.reply(waiter, frame, info, resp3);
    Ok(())
}
