//! Keeping a connection up: connect with a time limit, handshake, serve until the connection
//! fails, then (for a shared connection) reconnect with capped backoff. A dedicated connection
//! is opened once and retired when it fails.

use super::handshake::{open, Opened, HELLO_CLOSED};
use super::io::{reader, writer, Ended};
use super::{Conn, Sink, Status};
use std::rc::Rc;
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Short enough that service returns well within a second of Redis coming back.
const BACKOFF_MAX: Duration = Duration::from_millis(400);

/// Runs until the connection is closed (`close`): keeps it up, reconnecting with backoff.
pub async fn supervise<W: 'static, S: Sink<W> + 'static>(conn: Rc<Conn<W>>, sink: Rc<S>) {
    let mut backoff = BACKOFF_MIN;
    let mut was_up = true; // log the first failure
    let mut connected_before = false;
    let mut hello = true;
    loop {
        if conn.status() == Status::Closed {
            return;
        }
        conn.st.borrow_mut().status = Status::Connecting;
        let p = &conn.params;
        let attempt = monoio::time::timeout(p.connect_timeout, connect(&conn, &mut hello)).await;
        let failure = match attempt {
            Ok(Ok(opened)) => {
                backoff = BACKOFF_MIN;
                let ended = serve(&conn, &sink, opened, connected_before).await;
                connected_before = true;
                was_up = true;
                match ended {
                    Ended::Failed(why) => {
                        tracing::warn!("{}: lost connection to Redis: {why}", p.label);
                        Some(("connection lost", why))
                    }
                    // Already marked down, with its cause (a timeout, or closed): keep that
                    // cause for the errors clients get until the connection is back.
                    Ended::Reset => None,
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => format!(
                        "connecting to {} timed out after {:?}",
                        p.addr, p.connect_timeout
                    ),
                };
                if was_up {
                    tracing::warn!("{}: Redis unavailable: {why}; retrying", p.label);
                    was_up = false;
                }
                Some(("unavailable", why))
            }
        };
        if let Some((what, why)) = failure {
            down(&conn, &*sink, what, why);
        }
        if conn.status() == Status::Closed {
            return;
        }
        monoio::time::sleep(backoff).await;
        if !was_up {
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Opens a dedicated connection once; it is retired (status `Closed`) when it fails.
pub async fn run_dedicated<W: 'static, S: Sink<W> + 'static>(conn: Rc<Conn<W>>, sink: Rc<S>) {
    let p = &conn.params;
    let mut hello = true;
    let why = match monoio::time::timeout(p.connect_timeout, connect(&conn, &mut hello)).await {
        Ok(Ok(opened)) => match serve(&conn, &sink, opened, false).await {
            Ended::Failed(why) => why,
            Ended::Reset => return retire(&conn, &*sink),
        },
        Ok(Err(e)) => e,
        Err(_) => format!(
            "connecting to {} timed out after {:?}",
            p.addr, p.connect_timeout
        ),
    };
    down(&conn, &*sink, "unavailable", why);
    retire(&conn, &*sink);
}

fn retire<W, S: Sink<W>>(conn: &Conn<W>, sink: &S) {
    let msg = format!("ERR backend unavailable: {}", conn.st.borrow().last_error);
    conn.st.borrow_mut().status = Status::Closed;
    fail_all(conn, sink, &msg);
}

async fn connect<W>(conn: &Conn<W>, hello: &mut bool) -> Result<Opened, String> {
    match open(&conn.params, *hello).await {
        Err(e) if *hello && e == HELLO_CLOSED => {
            tracing::warn!("{}: the backend closed the connection on HELLO 3: RESP2 only, caching with TTL only",
                conn.params.label
            );
            *hello = false;
            open(&conn.params, false).await
        }
        other => other,
    }
}

/// Marks the connection down and answers everything waiting with `-ERR backend <what>: <why>`.
pub fn down<W, S: Sink<W>>(conn: &Conn<W>, sink: &S, what: &str, why: String) {
    let msg = format!("ERR backend {what}: {why}");
    {
        let mut st = conn.st.borrow_mut();
        if st.status != Status::Closed {
            st.status = Status::Down;
        }
        st.generation += 1;
        st.last_error = why;
        st.blocking = None;
        st.busy = None;
        std::mem::take(&mut st.sock).shutdown();
    }
    conn.flush(); // the writer of the dead connection sees the new generation and exits
                  // What the cache holds stays served while Redis is away (hits are the point of a cache);
                  // it is dropped when the connection is back (`serve`), since invalidations were missed.
    fail_all(conn, sink, &msg);
    sink.disconnected(&conn.params);
}

/// Retires a connection for good: no reconnect; what waits gets an error.
pub fn close<W, S: Sink<W>>(conn: &Conn<W>, sink: &S, why: &str) {
    if conn.status() == Status::Closed {
        return;
    }
    conn.st.borrow_mut().status = Status::Closed;
    down(conn, sink, "closed", why.to_string());
}

/// Answers every waiter with an error: the connection is lost (or could not be made).
fn fail_all<W, S: Sink<W>>(conn: &Conn<W>, sink: &S, msg: &str) {
    let waiters = {
        let mut st = conn.st.borrow_mut();
        st.out.clear();
        st.timing.reset();
        if let Some(j) = &mut st.journal {
            *j = Default::default();
        }
        std::mem::take(&mut st.waiters)
    };
    for w in waiters {
        sink.fail(w, msg);
    }
    conn.wake_space();
}

async fn serve<W: 'static, S: Sink<W> + 'static>(
    conn: &Rc<Conn<W>>,
    sink: &Rc<S>,
    o: Opened,
    reconnect: bool,
) -> Ended {
    let (r, w, sock) = crate::socket::split(o.stream);
    if o.server.tracking && reconnect {
        // Invalidations may have been missed while disconnected, and a restarted Redis may
        // hold nothing of what is cached: start from an empty cache. (On a first connection
        // nothing was cached through it, and what was queued runs on it, tracked.)
        sink.tracking_reset();
    }
    let generation = {
        let mut st = conn.st.borrow_mut();
        st.status = Status::Up;
        st.generation += 1;
        st.reconnects += reconnect as u64;
        st.sock = sock;
        st.progress = sink.now();
        st.server = o.server.clone();
        st.generation
    };
    conn.redis_id
        .store(o.server.id, std::sync::atomic::Ordering::Relaxed);
    sink.connected(&conn.params);
    if conn.params.log_connects {
        tracing::info!(
            "{}: {} Redis at {} ({}, invalidation: {})",
            conn.params.label,
            if reconnect {
                "reconnected to"
            } else {
                "connected to"
            },
            conn.params.addr,
            if o.server.resp3 { "RESP3" } else { "RESP2" },
            if o.server.tracking {
                "CLIENT TRACKING"
            } else {
                "none"
            }
        );
    }
    monoio::spawn(writer(conn.clone(), w, generation));
    conn.flush();
    reader(conn, &**sink, r, o.leftover, generation).await
}

/// Called every tick: a request that waited longer than `timeout` for Redis means Redis is
/// frozen or hung; fail what waits and reset the connection. A blocking command counts from
/// the end of its own timeout.
pub fn check_timeout<W, S: Sink<W>>(conn: &Conn<W>, sink: &S, now: u32, timeout: Duration) {
    let limit = timeout.as_millis().min(u32::MAX as u128) as u32;
    let stalled = {
        let mut st = conn.st.borrow_mut();
        let blocked = match st.blocking {
            Some(None) => true,
            Some(Some(until)) => !crate::cache::reached(now, until),
            None => false,
        };
        if st.waiters.is_empty() || st.status != Status::Up || blocked || st.probing {
            st.progress = now;
            false
        } else {
            now.wrapping_sub(st.progress) > limit
        }
    };
    if stalled {
        let why = format!("Redis did not reply within {timeout:?}");
        tracing::warn!("{}: {why}; resetting the connection", conn.params.label);
        conn.st.borrow_mut().timeouts += 1;
        down(conn, sink, "timeout", why);
    }
}
