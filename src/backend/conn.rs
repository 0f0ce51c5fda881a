//! Connecting to Redis: connect with a time limit, handshake (HELLO 3 + AUTH, SELECT, CLIENT
//! TRACKING), serve until the connection fails, then reconnect with capped backoff.

use super::io::{fail_all, reader, writer, Ended};
use super::Status;
use crate::config::Invalidation;
use crate::resp::frame::frame_len;
use crate::resp::write::put_command;
use crate::shard::Shard;
use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Short enough that service returns well within a second of Redis coming back.
const BACKOFF_MAX: Duration = Duration::from_millis(400);

struct Session {
    stream: TcpStream,
    leftover: BytesMut,
    resp3: bool,
    tracking: bool,
}

/// Runs for the life of the shard: keeps one backend connection up.
pub async fn supervise(shard: Rc<Shard>) {
    let mut backoff = BACKOFF_MIN;
    let mut was_up = true; // log the first failure
    let mut connected_before = false;
    loop {
        if shard.stopping() {
            return;
        }
        shard.backend.st.borrow_mut().status = Status::Connecting;
        let attempt = monoio::time::timeout(shard.cfg.connect_timeout, connect_any(&shard)).await;
        let (what, why) = match attempt {
            Ok(Ok(session)) => {
                backoff = BACKOFF_MIN;
                let ended = serve(&shard, session, connected_before).await;
                connected_before = true;
                was_up = true;
                match ended {
                    Ended::Failed(why) => {
                        crate::log!(warn, "shard {}: lost connection to Redis: {why}", shard.id);
                        (Some("connection lost"), why)
                    }
                    // Already marked down, with its cause (a backend timeout): keep that cause
                    // for the errors clients get until the connection is back.
                    Ended::Reset => (None, String::new()),
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => format!(
                        "connecting to {} timed out after {:?}",
                        shard.redis_addr, shard.cfg.connect_timeout
                    ),
                };
                if was_up {
                    crate::log!(
                        warn,
                        "shard {}: Redis unavailable: {why}; retrying",
                        shard.id
                    );
                    was_up = false;
                }
                (Some("unavailable"), why)
            }
        };
        if let Some(what) = what {
            down(&shard, what, why);
        }
        if !shard.stopping() {
            monoio::time::sleep(backoff).await;
        }
        if !was_up {
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Marks the backend down and answers everything waiting with `-ERR backend <what>: <why>`.
pub(crate) fn down(shard: &Shard, what: &str, why: String) {
    let msg = format!("ERR backend {what}: {why}");
    {
        let mut st = shard.backend.st.borrow_mut();
        st.status = Status::Down;
        st.generation += 1;
        st.last_error = why;
        std::mem::take(&mut st.sock).shutdown();
    }
    shard.backend.flush(); // the writer of the dead connection sees the new generation and exits
    fail_all(shard, &msg);
}

async fn serve(shard: &Rc<Shard>, s: Session, reconnect: bool) -> Ended {
    // Invalidations may have been missed while disconnected, and a restarted Redis may hold
    // nothing of what is cached: start from an empty cache.
    shard.flush_cache();
    let (r, w, sock) = crate::socket::split(s.stream);
    let generation = {
        let mut st = shard.backend.st.borrow_mut();
        st.status = Status::Up;
        st.generation += 1;
        st.resp3 = s.resp3;
        st.tracking = s.tracking;
        st.sock = sock;
        st.progress = shard.now();
        st.generation
    };
    crate::log!(
        info,
        "shard {}: {} Redis at {} ({}, invalidation: {})",
        shard.id,
        if reconnect {
            "reconnected to"
        } else {
            "connected to"
        },
        shard.redis_addr,
        if s.resp3 { "RESP3" } else { "RESP2" },
        if s.tracking {
            "CLIENT TRACKING"
        } else {
            "TTL only"
        }
    );
    monoio::spawn(writer(shard.clone(), w, generation));
    shard.backend.flush();
    reader(shard, r, s.leftover, generation).await
}

/// Called every tick: a request that waited longer than --backend-timeout for Redis means
/// Redis is frozen or hung; fail what waits and reset the connection.
pub fn check_timeout(shard: &Shard, now: u32) {
    let timeout = shard.cfg.backend_timeout.as_millis().min(u32::MAX as u128) as u32;
    let stalled = {
        let mut st = shard.backend.st.borrow_mut();
        if st.waiters.is_empty() || st.status != Status::Up {
            st.progress = now;
            false
        } else {
            now.wrapping_sub(st.progress) > timeout
        }
    };
    if stalled {
        let why = format!("Redis did not reply within {:?}", shard.cfg.backend_timeout);
        crate::log!(warn, "shard {}: {why}; resetting the connection", shard.id);
        down(shard, "timeout", why);
    }
}

/// Some RESP2-only middlemen (twemproxy) close the connection on `HELLO` instead of answering
/// with an error: then connect again without it.
async fn connect_any(shard: &Shard) -> Result<Session, String> {
    // Without a cache there is nothing to invalidate: a plain RESP2 connection spares Redis the
    // tracking table (measured: a third of Redis's CPU per GET) and the proxy the conversion.
    let tracking = shard.cfg.invalidation == Invalidation::Tracking && shard.cache_on;
    match connect(shard, tracking).await {
        Err(e) if tracking && e == HELLO_CLOSED => {
            crate::log!(
                warn,
                "shard {}: the backend closed the connection on HELLO 3: caching with TTL only, no invalidation",
                shard.id
            );
            connect(shard, false).await
        }
        other => other,
    }
}

const HELLO_CLOSED: &str = "the backend closed the connection on HELLO";
const CLOSED: &str = "Redis closed the connection during the handshake";

async fn connect(shard: &Shard, hello: bool) -> Result<Session, String> {
    let addr = shard.redis_addr;
    let mut stream = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let target = &shard.cfg.redis;
    let user = target.user.as_deref().unwrap_or("default");
    let mut resp3 = false;
    let mut tracking = false;

    if hello {
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(pass) = &target.password {
            hello.extend([&b"AUTH"[..], user.as_bytes(), pass.as_bytes()]);
        }
        let reply = roundtrip(&mut stream, &mut buf, &hello)
            .await
            .map_err(|e| {
                if e == CLOSED {
                    HELLO_CLOSED.to_string()
                } else {
                    e
                }
            })?;
        if reply.starts_with(b"%") || reply.starts_with(b"*") {
            resp3 = true;
        } else if is_auth_error(&reply) {
            return Err(format!("authentication failed: {}", error_text(&reply)));
        } else {
            crate::log!(
                warn,
                "shard {}: Redis refused HELLO 3 ({}): caching with TTL only, no invalidation",
                shard.id,
                error_text(&reply)
            );
        }
    }
    if !resp3 {
        if let Some(pass) = &target.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if target.user.is_some() {
                auth.push(user.as_bytes());
            }
            auth.push(pass.as_bytes());
            let reply = roundtrip(&mut stream, &mut buf, &auth).await?;
            if !reply.starts_with(b"+") {
                return Err(format!("authentication failed: {}", error_text(&reply)));
            }
        }
    }
    if target.db != 0 {
        let db = target.db.to_string();
        let reply = roundtrip(&mut stream, &mut buf, &[b"SELECT", db.as_bytes()]).await?;
        if !reply.starts_with(b"+") {
            return Err(format!("SELECT {db} failed: {}", error_text(&reply)));
        }
    }
    if resp3 {
        let reply = roundtrip(&mut stream, &mut buf, &[b"CLIENT", b"TRACKING", b"ON"]).await?;
        if reply.starts_with(b"+") {
            tracking = true;
        } else {
            crate::log!(
                warn,
                "shard {}: Redis refused CLIENT TRACKING ({}): caching with TTL only",
                shard.id,
                error_text(&reply)
            );
        }
    }
    Ok(Session {
        stream,
        leftover: buf,
        resp3,
        tracking,
    })
}

fn is_auth_error(reply: &[u8]) -> bool {
    reply.starts_with(b"-WRONGPASS")
        || reply.starts_with(b"-NOAUTH")
        || reply.starts_with(b"-ERR invalid password")
        || reply.starts_with(b"-ERR AUTH")
        || reply.starts_with(b"-NOPERM")
}

fn error_text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply);
    s.trim_start_matches(['-', '!']).trim_end().to_string()
}

/// Sends one command and reads its reply (skipping any push) during the handshake.
async fn roundtrip(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    args: &[&[u8]],
) -> Result<Vec<u8>, String> {
    let mut cmd = BytesMut::new();
    put_command(&mut cmd, args.iter().copied());
    let (res, _) = stream.write_all(cmd).await;
    res.map_err(|e| format!("write to Redis: {e}"))?;
    loop {
        match frame_len(buf) {
            Ok(Some(info)) => {
                let frame = buf.split_to(info.len);
                if !info.push {
                    return Ok(frame.to_vec());
                }
            }
            Ok(None) => {
                buf.reserve(16 * 1024);
                let len = buf.len();
                let owned = std::mem::take(buf);
                let (res, slice) = stream
                    .read(monoio::buf::IoBufMut::slice_mut(owned, len..))
                    .await;
                *buf = slice.into_inner();
                match res {
                    Ok(0) => return Err(CLOSED.into()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read from Redis: {e}")),
                }
            }
            Err(e) => return Err(format!("protocol error from Redis: {}", e.0)),
        }
    }
}
