//! One client connection: the reader task scans requests and dispatches each (`dispatch.rs`);
//! the writer task sends replies in order, one write per batch.

use crate::dispatch::{dispatch, Flow, Session};
use crate::observe::stats::{self, Class};
use crate::replies::ClientShared;
use crate::resp::request::{RequestScanner, Scan, MAX_BULK};
use crate::resp::write::put_error;
use crate::shard::Shard;
use crate::socket::{ReadHalf, WriteHalf};
use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Stop reading from a client while this many of its requests wait for Redis (reply bytes
/// waiting to be written pause it at --client-output-limit).
const PENDING_HIGH: usize = 16 * 1024;
/// A client whose unsent replies stay at the output limit this long, reading nothing, is
/// dropped rather than left stuck.
const STUCK: std::time::Duration = std::time::Duration::from_secs(2);
pub(crate) const KEEP_BUF: usize = 1 << 20;
/// Longest a closing connection keeps reading (and dropping) input so that its last replies
/// are not lost to a reset.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const TOO_BIG: &[u8] = b"ERR Protocol error: request larger than --max-request-bytes";

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let addr =
        |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (peer, local) = (addr(stream.peer_addr()), addr(stream.local_addr()));
    let (r, w, sock) = crate::socket::split(stream);
    let live = shard.live();
    let client = Rc::new(ClientShared::new(live.client_output_limit));
    client.set_socket(sock);
    let registered =
        crate::registry::register(client.id, shard.id, peer, local, shard.cfg.redis.db);
    client.set_info(registered.0.clone());
    client.last_active.set(shard.now());
    client.authed.set(live.requirepass.is_none());
    let _slot = shard.client_connected(&client);
    let writer = monoio::spawn(write_loop(client.clone(), w));
    let mut session = Session::new(shard.cfg.redis.db);
    let mut r = r;
    read_loop(&shard, &client, &mut session, &mut r).await;
    session.end(&shard);
    // Gone for everyone else now, as redis-server frees a client once it quit: CLIENT LIST,
    // and tracking clients redirecting here (they learn their redirect broke).
    drop(registered);
    shard.forget_client(client.id);
    client.close();
    writer.await;
    if !client.is_dead() {
        linger(&mut r).await;
    }
}

/// The writer has sent everything and half-closed the socket. Closing it now with requests
/// still unread (a client pipelining at shutdown) would make the kernel reset the connection
/// and discard replies not yet delivered: read and drop input until the client closes too,
/// for a short while at most.
pub(crate) async fn linger(r: &mut ReadHalf) {
    let deadline = std::time::Instant::now() + LINGER;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match monoio::time::timeout(left, r.half.read(buf)).await {
            Ok((Ok(n), mut b)) if n > 0 => {
                b.clear();
                buf = b;
            }
            _ => return,
        }
    }
}

/// Writes a batch of output to the client's socket; gives the buffer back emptied for reuse,
/// or `None` if the socket failed (the client is then dead).
pub(crate) async fn send_batch(
    client: &ClientShared,
    w: &mut WriteHalf,
    buf: BytesMut,
) -> Option<BytesMut> {
    client.writing.set(true);
    let (res, mut buf) = w.half.write_all(buf).await;
    client.writing.set(false);
    if res.is_err() {
        client.mark_dead();
        return None;
    }
    client.written.set(client.written.get() + buf.len() as u64);
    buf.clear();
    if buf.capacity() > KEEP_BUF {
        buf = BytesMut::with_capacity(READ_CHUNK);
    }
    Some(buf)
}

async fn write_loop(client: Rc<ClientShared>, mut w: WriteHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    while client.next_batch(&mut buf).await {
        match send_batch(&client, &mut w, buf).await {
            Some(b) => buf = b,
            None => break,
        }
        client.wake_reader();
    }
}

async fn read_loop(
    shard: &Rc<Shard>,
    client: &Rc<ClientShared>,
    session: &mut Session,
    r: &mut ReadHalf,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scanner = RequestScanner::new();
    let mut want = 0usize;
    let max_request = shard.live().max_request_bytes;
    // Like redis-server, a client may send a large pipeline before reading any reply; only
    // at half the output limit does the proxy stop reading it (and it drops it if it stays
    // there). The other half absorbs replies already requested from Redis.
    let pause_at = client.output_limit() / 2;
    // Bytes read while waiting for replies (see `Flow::Drain`), scanned after the current batch.
    let mut early = BytesMut::new();
    let mut unscanned = false;
    let mut batch_start = 0;
    // Commands of the current batch (requests not counted by class at a dispatch site count
    // as local: see `stats::end_batch`).
    let mut requests = 0u64;
    loop {
        if !wait_for_room(client, pause_at).await {
            return;
        }
        // Bytes read ahead while waiting (see `drain`) are scanned before reading more.
        if !std::mem::take(&mut unscanned) {
            // At shutdown the requests already read are answered, and no new one is taken.
            if shard.stopping() {
                return;
            }
            // A large command announced its size: read it in few, large reads.
            let room = want
                .saturating_sub(buf.len())
                .clamp(READ_CHUNK, MAX_BULK + 1024);
            buf.reserve(room);
            let len = buf.len();
            let (res, slice) = r
                .half
                .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
                .await;
            buf = slice.into_inner();
            match res {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let now = shard.update_clock();
            batch_start = crate::observe::clock::last_us();
            client.last_active.set(now);
            client.info().touch(now);
            shard.check_swaps();
            crate::tracking::mail::take(shard);
            if shard.cache_on {
                // An invalidation that reached this shard together with this read must be applied
                // before any hit is served: let the backend reader, woken by the same batch of
                // completions, run first (measured: cuts stale first reads after a direct write).
                yield_to_ready_tasks().await;
            }
        }
        let mut consumed = 0;
        let mut quit = false;
        loop {
            match scanner.scan(&buf[consumed..]) {
                Scan::Command { len, .. } if len > max_request => {
                    too_big(max_request);
                    stats::count(Class::Error);
                    requests += 1;
                    client.push_local(|o| put_error(o, TOO_BIG));
                    quit = true;
                    break;
                }
                Scan::Command { len, inline } => {
                    let cmd = &buf[consumed..consumed + len];
                    let args = scanner.args(cmd);
                    let raw = (!inline).then_some(cmd);
                    session.batch_end = consumed + len == buf.len();
                    loop {
                        match dispatch(shard, client, session, args, raw) {
                            Flow::Next => break,
                            Flow::Quit => {
                                quit = true;
                                break;
                            }
                            Flow::Wait(conn, n) => {
                                conn.flush();
                                conn.wait_space(n).await;
                            }
                            Flow::Drain => {
                                // What it waits for may still sit in a connection's queue.
                                flush(shard, session);
                                if !drain(client, r, &mut early, max_request).await {
                                    return;
                                }
                            }
                            Flow::DrainAfter => {
                                flush(shard, session);
                                if !drain(client, r, &mut early, max_request).await {
                                    return; // still blocked: `Session::end` closes its connection
                                }
                                session.blocked = None;
                                client.info().set_blocked(None);
                                break;
                            }
                        }
                    }
                    consumed += len;
                    requests += 1;
                    want = 0;
                    if quit {
                        break;
                    }
                    // Replies answered locally (hits) can outgrow the output limit within one
                    // read: pause mid-batch until the client has taken some.
                    if client.backlog().0 >= pause_at {
                        flush(shard, session);
                        client.wake_writer();
                        if !wait_for_room(client, pause_at).await {
                            return;
                        }
                    }
                }
                Scan::Skip { len } => consumed += len,
                Scan::Incomplete { hint } => {
                    // Refuse an oversized command before allocating for it.
                    if hint > max_request || buf.len() - consumed > max_request {
                        too_big(max_request);
                        stats::count(Class::Error);
                        requests += 1;
                        client.push_local(|o| put_error(o, TOO_BIG));
                        quit = true;
                    }
                    want = hint;
                    break;
                }
                Scan::Error(e) => {
                    stats::count(Class::Error);
                    requests += 1;
                    client.push_local(|o| {
                        put_error(o, format!("ERR Protocol error: {}", e.0).as_bytes())
                    });
                    quit = true;
                    break;
                }
            }
        }
        buf.advance(consumed);
        if !early.is_empty() {
            buf.extend_from_slice(&early);
            early.clear();
            unscanned = true;
        }
        // Flushed first: the backend connections stamp what they send with the batch's
        // clock, which `end_batch` then moves on.
        flush(shard, session);
        stats::end_batch(&shard.stats, batch_start, std::mem::take(&mut requests));
        client.wake_writer();
        if quit {
            return;
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Lets the writers of the connections the client uses send what it queued.
fn flush(shard: &Shard, session: &Session) {
    shard.flush_shared();
    if let Some(c) = &session.pinned {
        c.flush();
    }
}

fn too_big(max: usize) {
    crate::log::limit_hit(
        "max-request-bytes",
        format_args!("a request over {max} bytes; client disconnected"),
    );
}

/// Waits until the client's backlog allows reading more; false if the client is gone or was
/// dropped for leaving its replies unread for `STUCK`.
pub(crate) async fn wait_for_room(client: &ClientShared, pause_at: usize) -> bool {
    // The usual case costs no timer and no syscall.
    if client.backlog_below(pause_at, PENDING_HIGH) {
        return !client.is_dead();
    }
    loop {
        let delivered = client.delivered();
        let wait = client.wait_backlog_below(pause_at, PENDING_HIGH);
        if monoio::time::timeout(STUCK, wait).await.is_ok() {
            return !client.is_dead();
        }
        // Waiting on Redis (replies held behind one still expected) is the backend timeout's
        // business, and a client that reads slowly is still reading; only output it could be
        // reading, left wholly unread, drops a client.
        if client.has_writable_output() && client.delivered() == delivered {
            crate::log::limit_hit(
                "client-output-limit",
                format_args!("a client left its replies unread for {STUCK:?}; disconnected"),
            );
            client.disconnect();
            return false;
        }
    }
}

/// Lets every task that is already ready run once before this one continues. Unlike monoio's
/// `yield_now` (which requeues the task at the front), waking ourselves requeues at the back.
pub(crate) async fn yield_to_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Waits until every reply the client is owed is in (so its next command may go to another
/// connection), while still reading its socket: a client that leaves while it waits, say
/// blocked in BLPOP, is noticed at once. What it sends meanwhile is kept in `early`. False if
/// the client left.
async fn drain(
    client: &ClientShared,
    r: &mut ReadHalf,
    early: &mut BytesMut,
    max_request: usize,
) -> bool {
    client.wake_writer();
    loop {
        if client.backlog().1 == 0 {
            return !client.is_dead();
        }
        let mut replied = std::pin::pin!(client.wait_backlog_below(usize::MAX, 1));
        if early.len() > max_request {
            // Enough read ahead; the limit is enforced when it is scanned.
            replied.await;
            continue;
        }
        early.reserve(READ_CHUNK);
        let len = early.len();
        let canceller = Canceller::new();
        let spare = monoio::buf::IoBufMut::slice_mut(std::mem::take(early), len..);
        let mut read = std::pin::pin!(r.half.cancelable_read(spare, canceller.handle()));
        let read_first = std::future::poll_fn(|cx| {
            if let Poll::Ready(res) = read.as_mut().poll(cx) {
                return Poll::Ready(Some(res));
            }
            replied.as_mut().poll(cx).map(|_| None)
        })
        .await;
        // A read that lost the race is cancelled and still awaited: it may have read bytes,
        // which are kept.
        let (cancelled, (res, slice)) = match read_first {
            Some(done) => (false, done),
            None => {
                let _ = canceller.cancel();
                (true, read.await)
            }
        };
        *early = slice.into_inner();
        match res {
            Ok(0) => return false,
            Ok(_) => {}
            Err(_) if cancelled => {}
            Err(_) => return false,
        }
    }
}
