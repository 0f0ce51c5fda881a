//! One client connection: the reader task scans requests and dispatches each (local answer,
//! cache hit, or backend request); the writer task sends replies in order, one write per batch.

use crate::backend::{Admit, Waiter};
use crate::command::{classify, script_keys, write_keys, Keys, Kind};
use crate::fetch::Join;
use crate::replies::ClientShared;
use crate::resp::convert::Shape;
use crate::resp::request::{Args, RequestScanner, Scan, MAX_BULK};
use crate::resp::write::{put_bulk, put_error, put_header};
use crate::shard::Shard;
use crate::socket::{ReadHalf, WriteHalf};
use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::rc::Rc;

const READ_CHUNK: usize = 16 * 1024;
/// Stop reading from a client while this many of its requests wait for Redis (reply bytes
/// waiting to be written pause it at --client-output-limit).
const PENDING_HIGH: usize = 16 * 1024;
/// A client whose unsent replies stay at the output limit this long, reading nothing, is
/// dropped rather than left stuck.
const STUCK: std::time::Duration = std::time::Duration::from_secs(2);
const KEEP_BUF: usize = 1 << 20;
const TOO_BIG: &[u8] = b"ERR Protocol error: request larger than --max-request-bytes";

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (r, w, sock) = crate::socket::split(stream);
    let client = Rc::new(ClientShared::new(shard.cfg.client_output_limit));
    client.set_socket(sock);
    client.last_active.set(shard.now());
    client.authed.set(shard.cfg.requirepass.is_none());
    let _slot = shard.client_connected(&client);
    let writer = monoio::spawn(write_loop(client.clone(), w));
    read_loop(&shard, &client, r).await;
    client.close();
    writer.await;
}

async fn write_loop(client: Rc<ClientShared>, mut w: WriteHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    while client.next_batch(&mut buf).await {
        client.writing.set(true);
        let (res, b) = w.half.write_all(buf).await;
        client.writing.set(false);
        buf = b;
        if res.is_err() {
            client.mark_dead();
            break;
        }
        client.written.set(client.written.get() + buf.len() as u64);
        buf.clear();
        if buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        client.wake_reader();
    }
}

enum Flow {
    Next,
    Quit,
    /// The backend's in-flight limit is reached: wait for room for this many requests.
    Wait(usize),
}

async fn read_loop(shard: &Shard, client: &Rc<ClientShared>, mut r: ReadHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scanner = RequestScanner::new();
    let mut want = 0usize;
    let max_request = shard.cfg.max_request_bytes;
    // Like redis-server, a client may send a large pipeline before reading any reply; only
    // at half the output limit does the proxy stop reading it (and it drops it if it stays
    // there). The other half absorbs replies already requested from Redis.
    let pause_at = client.output_limit() / 2;
    loop {
        if !wait_for_room(client, pause_at).await {
            return;
        }
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
        client.last_active.set(shard.update_clock());
        if shard.cache_on {
            // An invalidation that reached this shard together with this read must be applied
            // before any hit is served: let the backend reader, woken by the same batch of
            // completions, run first (measured: cuts stale first reads after a direct write).
            yield_to_ready_tasks().await;
        }
        let mut consumed = 0;
        let mut quit = false;
        loop {
            match scanner.scan(&buf[consumed..]) {
                Scan::Command { len, .. } if len > max_request => {
                    client.push_local(|o| put_error(o, TOO_BIG));
                    quit = true;
                    break;
                }
                Scan::Command { len, inline } => {
                    let cmd = &buf[consumed..consumed + len];
                    let args = scanner.args(cmd);
                    let raw = (!inline).then_some(cmd);
                    loop {
                        match dispatch(shard, client, args, raw) {
                            Flow::Next => break,
                            Flow::Quit => {
                                quit = true;
                                break;
                            }
                            Flow::Wait(n) => {
                                shard.backend.flush();
                                shard.backend.wait_space(n).await;
                            }
                        }
                    }
                    consumed += len;
                    want = 0;
                    if quit {
                        break;
                    }
                    // Replies answered locally (hits) can outgrow the output limit within one
                    // read: pause mid-batch until the client has taken some.
                    if client.backlog().0 >= pause_at {
                        shard.backend.flush();
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
                        client.push_local(|o| put_error(o, TOO_BIG));
                        quit = true;
                    }
                    want = hint;
                    break;
                }
                Scan::Error(e) => {
                    client.push_local(|o| {
                        put_error(o, format!("ERR Protocol error: {}", e.0).as_bytes())
                    });
                    quit = true;
                    break;
                }
            }
        }
        buf.advance(consumed);
        shard.backend.flush();
        client.wake_writer();
        if quit {
            return;
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Waits until the client's backlog allows reading more; false if the client is gone or was
/// dropped for leaving its replies unread for `STUCK`.
async fn wait_for_room(client: &ClientShared, pause_at: usize) -> bool {
    loop {
        let written = client.written.get();
        let wait = client.wait_backlog_below(pause_at, PENDING_HIGH);
        if monoio::time::timeout(STUCK, wait).await.is_ok() {
            return !client.is_dead();
        }
        // Waiting on Redis (replies held behind one still expected) is the backend timeout's
        // business, and a client that reads slowly is still reading; only output it could be
        // reading, left wholly unread, drops a client.
        if client.has_writable_output() && client.written.get() == written {
            client.disconnect();
            return false;
        }
    }
}

/// Lets every task that is already ready run once before this one continues. Unlike monoio's
/// `yield_now` (which requeues the task at the front), waking ourselves requeues at the back.
async fn yield_to_ready_tasks() {
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

fn dispatch(shard: &Shard, client: &Rc<ClientShared>, args: Args, raw: Option<&[u8]>) -> Flow {
    let class = classify(&args);
    if !client.authed.get() && !matches!(class.kind, Kind::Auth | Kind::Hello | Kind::Quit) {
        client.push_local(|o| o.extend_from_slice(b"-NOAUTH Authentication required.\r\n"));
        return Flow::Next;
    }
    #[cfg(debug_assertions)]
    crate::fault::maybe_panic(&args);
    match class.kind {
        Kind::Get if shard.cache_on => get(shard, client, args, raw),
        Kind::Mget if shard.cache_on => mget(shard, client, args, raw),
        Kind::Get | Kind::Mget | Kind::Read => forward(shard, client, args, raw, class.shape),
        Kind::Write(keys) => {
            if let Some(flow) = not_admitted(shard, client, 1) {
                return flow;
            }
            if shard.cache_on {
                invalidate(shard, &args, keys);
            }
            forward(shard, client, args, raw, class.shape)
        }
        Kind::Flush => {
            if let Some(flow) = not_admitted(shard, client, 1) {
                return flow;
            }
            shard.flush_cache();
            forward(shard, client, args, raw, class.shape)
        }
        Kind::Ping => {
            client.push_local(|o| match args.len() {
                1 => o.extend_from_slice(b"+PONG\r\n"),
                _ => put_bulk(o, args.get(1)),
            });
            Flow::Next
        }
        Kind::Echo => {
            client.push_local(|o| put_bulk(o, args.get(1)));
            Flow::Next
        }
        Kind::Quit => {
            client.push_local(|o| o.extend_from_slice(b"+OK\r\n"));
            Flow::Quit
        }
        Kind::Auth => {
            client.push_local(|o| crate::auth::auth(shard, client, &args, o));
            Flow::Next
        }
        Kind::Hello => {
            client.push_local(|o| crate::auth::hello(shard, client, &args, o));
            Flow::Next
        }
        Kind::Select => {
            client.push_local(|o| select(shard, &args, o));
            Flow::Next
        }
        Kind::Refused(why) => {
            let name = String::from_utf8_lossy(args.get(0)).to_lowercase();
            let msg = format!("ERR command '{name}' is not supported by redis-proxy ({why})");
            client.push_local(|o| put_error(o, msg.as_bytes()));
            Flow::Next
        }
    }
}

/// `SELECT db`, with redis-server's checks and errors; only the proxy's own db is accepted.
fn select(shard: &Shard, args: &Args, o: &mut BytesMut) {
    if args.len() != 2 {
        return o.extend_from_slice(b"-ERR wrong number of arguments for 'select' command\r\n");
    }
    match crate::command::redis_int(args.get(1)) {
        Some(n) if i32::try_from(n).is_err() => {
            o.extend_from_slice(b"-ERR value is not an integer or out of range\r\n")
        }
        None => o.extend_from_slice(b"-ERR value is not an integer or out of range\r\n"),
        Some(n) if n < 0 => o.extend_from_slice(b"-ERR DB index is out of range\r\n"),
        Some(n) if n == shard.cfg.redis.db as i64 => o.extend_from_slice(b"+OK\r\n"),
        Some(_) => {
            let msg = format!(
                "ERR command 'select' is not supported by redis-proxy (it holds per-connection \
                 server state; only SELECT {} is accepted)",
                shard.cfg.redis.db
            );
            put_error(o, msg.as_bytes());
        }
    }
}

/// `Some(flow)` if `n` requests cannot be queued to the backend now.
#[inline]
fn not_admitted(shard: &Shard, client: &ClientShared, n: usize) -> Option<Flow> {
    match shard.backend.admit(n) {
        Admit::Yes => None,
        Admit::Full => Some(Flow::Wait(n)),
        Admit::Down => {
            client.push_local(|o| shard.backend.put_down_error(o));
            Some(Flow::Next)
        }
    }
}

fn invalidate(shard: &Shard, args: &Args, keys: Keys) {
    match keys {
        Keys::Script => {
            if let Some(range) = script_keys(args) {
                for i in range {
                    shard.invalidate(args.get(i));
                }
            }
        }
        k => {
            for i in write_keys(k, args.len()) {
                shard.invalidate(args.get(i));
            }
        }
    }
}

fn forward(
    shard: &Shard,
    client: &Rc<ClientShared>,
    args: Args,
    raw: Option<&[u8]>,
    shape: Shape,
) -> Flow {
    if let Some(flow) = not_admitted(shard, client, 1) {
        return flow;
    }
    let seq = client.push_pending();
    let w = Waiter::Reply {
        client: client.clone(),
        seq,
        shape,
    };
    shard.backend.send_request(raw, &args, w);
    Flow::Next
}

fn get(shard: &Shard, client: &Rc<ClientShared>, args: Args, raw: Option<&[u8]>) -> Flow {
    let key = args.get(1);
    if let Some(reply) = shard.cache.borrow_mut().get(key, shard.now()) {
        client.push_local(|o| o.extend_from_slice(reply));
        return Flow::Next;
    }
    match shard
        .inflight
        .borrow_mut()
        .join(key, client, || client.push_pending())
    {
        Join::Joined => return Flow::Next,
        Join::Value(v) => {
            client.push_local(|o| o.extend_from_slice(&v));
            return Flow::Next;
        }
        Join::Start => {}
    }
    if let Some(flow) = not_admitted(shard, client, 2) {
        return flow;
    }
    let seq = client.push_pending();
    let f = shard
        .inflight
        .borrow_mut()
        .start(key, client.clone(), seq, shard.now());
    shard
        .backend
        .send_request(raw, &args, Waiter::Get(f.clone()));
    shard
        .backend
        .send_args([&b"PTTL"[..], key].into_iter(), Waiter::Ttl(f));
    Flow::Next
}

/// MGET is atomic in Redis, so the proxy answers with a combination of values that existed:
/// all keys from the cache (which mirrors Redis as of the last invalidation applied), or, on any
/// miss, one backend MGET of all the keys. Never hits mixed with values fetched later.
fn mget(shard: &Shard, client: &Rc<ClientShared>, args: Args, raw: Option<&[u8]>) -> Flow {
    let now = shard.now();
    let mut cache = shard.cache.borrow_mut();
    if !args.iter().skip(1).all(|k| cache.contains(k, now)) {
        drop(cache);
        return forward(shard, client, args, raw, Shape::Plain);
    }
    client.push_local(|o| {
        put_header(o, b'*', args.len() as i64 - 1);
        for key in args.iter().skip(1) {
            // Checked just above, and nothing has run since.
            o.extend_from_slice(cache.get(key, now).unwrap_or(b"$-1\r\n"));
        }
    });
    Flow::Next
}
