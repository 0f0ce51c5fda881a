//! The backend connection's two tasks: the writer sends queued requests in batches; the reader
//! frames replies, hands each to its waiter in FIFO order, and applies invalidation pushes.

use super::{Status, Waiter};
use crate::fetch::FetchRef;
use crate::replies::ClientShared;
use crate::resp::convert::{to_resp2, Shape};
use crate::resp::cursor::{is_null, Cursor, NULL_BULK};
use crate::resp::frame::{parse_int, FrameInfo, FrameScanner};
use crate::resp::write::put_error;
use crate::shard::Shard;
use crate::socket::{ReadHalf, WriteHalf};
use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

const READ_CHUNK: usize = 64 * 1024;
/// A write buffer that grew past this (one huge batch) is dropped rather than kept.
const KEEP_BUF: usize = 4 << 20;

pub async fn writer(shard: Rc<Shard>, mut w: WriteHalf, generation: u64) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let go = poll_fn(|cx| {
            let mut st = shard.backend.st.borrow_mut();
            if st.generation != generation || st.status != Status::Up {
                return Poll::Ready(false);
            }
            if !st.out.is_empty() {
                std::mem::swap(&mut st.out, &mut buf);
                return Poll::Ready(true);
            }
            shard.backend.writer.set(Some(cx.waker().clone()));
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
    /// It was reset by the proxy (backend timeout), which has marked it down with the cause.
    Reset,
}

/// Reads and dispatches replies until the connection fails or is reset.
pub async fn reader(shard: &Shard, mut r: ReadHalf, mut buf: BytesMut, generation: u64) -> Ended {
    let mut scanner = FrameScanner::default();
    loop {
        // After a reset (backend timeout) the waiters belong to no one on this connection:
        // a late reply must not reach them. Invalidations already read still apply.
        if shard.backend.st.borrow().generation != generation {
            apply_pushes(shard, &buf);
            return Ended::Reset;
        }
        let mut consumed = 0;
        loop {
            match scanner.scan(&buf[consumed..]) {
                Ok(Some(info)) => {
                    let frame = &buf[consumed..consumed + info.len];
                    if let Err(e) = deliver(shard, frame, info) {
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
            shard.backend.st.borrow_mut().progress = shard.update_clock();
            shard.backend.wake_space();
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
            Ok(0) if shard.backend.st.borrow().generation != generation => {}
            Ok(0) => return Ended::Failed("connection closed by Redis".into()),
            // Bytes arriving is progress, even in the middle of one huge reply.
            Ok(_) => shard.backend.st.borrow_mut().progress = shard.update_clock(),
            Err(_) if shard.backend.st.borrow().generation != generation => {}
            Err(e) => return Ended::Failed(format!("read from Redis: {e}")),
        }
    }
}

/// Applies the invalidation pushes among complete frames of a connection being abandoned.
fn apply_pushes(shard: &Shard, buf: &[u8]) {
    let mut at = 0;
    while let Ok(Some(info)) = FrameScanner::default().scan(&buf[at..]) {
        if info.push {
            on_push(shard, &buf[at..at + info.len]);
        }
        at += info.len;
    }
}

fn deliver(shard: &Shard, frame: &[u8], info: FrameInfo) -> Result<(), &'static str> {
    if info.push {
        on_push(shard, frame);
        return Ok(());
    }
    let (waiter, resp3) = {
        let mut st = shard.backend.st.borrow_mut();
        (st.waiters.pop_front(), st.resp3)
    };
    match waiter.ok_or("reply from Redis with no request waiting")? {
        Waiter::Reply { client, seq, shape } => {
            client.complete(seq, |out| relay(frame, info, shape, resp3, out));
        }
        Waiter::Get(f) => on_get(shard, &f, frame, info, resp3),
        Waiter::Ttl(f) => on_ttl(shard, &f, frame),
        Waiter::Ignore => {}
    }
    Ok(())
}

/// Copies a reply for a RESP2 client, converting it if the backend speaks RESP3 and the reply
/// or the command's reply shape needs it.
#[inline]
pub fn relay(frame: &[u8], info: FrameInfo, shape: Shape, resp3: bool, out: &mut BytesMut) {
    if resp3 && (info.resp3 || shape != Shape::Plain) {
        to_resp2(frame, shape, out);
    } else {
        out.extend_from_slice(frame);
    }
}

fn on_get(shard: &Shard, f: &FetchRef, frame: &[u8], info: FrameInfo, resp3: bool) {
    let null = is_null(frame);
    let mut f = f.borrow_mut();
    f.replied = true;
    for (client, seq) in f.waiters.drain(..) {
        client.complete(seq, |out| {
            if null {
                out.extend_from_slice(NULL_BULK);
            } else {
                relay(frame, info, Shape::Plain, resp3, out);
            }
        });
    }
    // Absent keys are cached only while tracking is on: Redis then tracks them too.
    let cacheable = if null {
        shard.backend.st.borrow().tracking
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
    let expire = shard.expire_ms;
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
        .insert(&f.key, value, f.sent_at.wrapping_add(life));
}

/// `>2 invalidate [keys]`: drop the keys; a null key list (FLUSHALL/FLUSHDB) drops everything.
fn on_push(shard: &Shard, frame: &[u8]) {
    let mut p = Cursor::new(frame);
    let Some((b'>', n)) = p.header() else { return };
    if n < 2 || p.bulk() != Some(&b"invalidate"[..]) {
        return;
    }
    match p.header() {
        Some((b'*', k)) if k >= 0 => {
            for _ in 0..k {
                if let Some(key) = p.bulk() {
                    shard.invalidate(key);
                }
            }
        }
        _ => shard.flush_cache(),
    }
}

/// Answers every waiter with an error: the connection is lost (or could not be made).
pub fn fail_all(shard: &Shard, msg: &str) {
    let waiters = {
        let mut st = shard.backend.st.borrow_mut();
        st.out.clear();
        std::mem::take(&mut st.waiters)
    };
    let err = |client: &ClientShared, seq: u64| {
        client.complete(seq, |out| put_error(out, msg.as_bytes()))
    };
    for w in waiters {
        match w {
            Waiter::Reply { client, seq, .. } => err(&client, seq),
            Waiter::Get(f) => {
                let mut f = f.borrow_mut();
                f.poisoned = true;
                for (client, seq) in f.waiters.drain(..) {
                    err(&client, seq);
                }
            }
            Waiter::Ttl(_) | Waiter::Ignore => {}
        }
    }
    shard.inflight.borrow_mut().poison_all();
    shard.backend.wake_space();
}
