//! Opening a backend connection: connect, then HELLO 3 (with AUTH), SELECT, CLIENT TRACKING.

use super::{Params, ServerInfo};
use crate::resp::cursor::Cursor;
use crate::resp::frame::frame_len;
use crate::resp::write::put_command;
use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

pub struct Opened {
    pub stream: TcpStream,
    /// Bytes read past the handshake's last reply.
    pub leftover: BytesMut,
    pub server: ServerInfo,
}

/// Some RESP2-only middlemen (twemproxy) close the connection on `HELLO` instead of answering
/// with an error.
pub const HELLO_CLOSED: &str = "the backend closed the connection on HELLO";
const CLOSED: &str = "Redis closed the connection during the handshake";

/// Connects and sets the connection up. `hello`: try RESP3 first (a refusal falls back to
/// RESP2 with AUTH, without tracking; see `HELLO_CLOSED` for a middleman that hangs up).
pub async fn open(p: &Params, hello: bool) -> Result<Opened, String> {
    let addr = p.addr;
    let mut stream = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let user = p.user.as_deref().unwrap_or("default");
    let mut server = ServerInfo::default();

    if hello {
        let mut hello: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(pass) = &p.password {
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
            server.resp3 = true;
            read_hello(&reply, &mut server);
        } else if is_auth_error(&reply) {
            return Err(format!("authentication failed: {}", error_text(&reply)));
        } else {
            tracing::warn!(
                "{}: Redis refused HELLO 3 ({}): RESP2 only, caching with TTL only",
                p.label,
                error_text(&reply)
            );
        }
    }
    if !server.resp3 {
        if let Some(pass) = &p.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if p.user.is_some() {
                auth.push(user.as_bytes());
            }
            auth.push(pass.as_bytes());
            let reply = roundtrip(&mut stream, &mut buf, &auth).await?;
            if !reply.starts_with(b"+") {
                return Err(format!("authentication failed: {}", error_text(&reply)));
            }
        }
    }
    if p.db != 0 {
        let db = p.db.to_string();
        let reply = roundtrip(&mut stream, &mut buf, &[b"SELECT", db.as_bytes()]).await?;
        if !reply.starts_with(b"+") {
            return Err(format!("SELECT {db} failed: {}", error_text(&reply)));
        }
    }
    if p.readonly {
        let reply = roundtrip(&mut stream, &mut buf, &[b"READONLY"]).await?;
        if !reply.starts_with(b"+") {
            return Err(format!("READONLY failed: {}", error_text(&reply)));
        }
    }
    if server.resp3 && p.tracking {
        let reply = roundtrip(&mut stream, &mut buf, &[b"CLIENT", b"TRACKING", b"ON"]).await?;
        if reply.starts_with(b"+") {
            server.tracking = true;
        } else {
            tracing::warn!(
                "{}: Redis refused CLIENT TRACKING ({}): caching with TTL only",
                p.label,
                error_text(&reply)
            );
        }
    }
    // Only asked of a real Redis (one that speaks RESP3): a RESP2-only middleman may hang up
    // on commands it does not know.
    if p.commands && server.resp3 {
        let reply = roundtrip(&mut stream, &mut buf, &[b"COMMAND"]).await?;
        if reply.starts_with(b"*") {
            server.commands = Some(reply.into());
        }
        let reply = roundtrip(&mut stream, &mut buf, &[b"CONFIG", b"GET", b"databases"]).await?;
        let mut c = Cursor::new(&reply);
        let map = matches!(reply.first(), Some(b'*' | b'%'));
        if let (true, Some((b'*' | b'%', 1..))) = (map, c.header()) {
            c.bulk();
            server.databases = c
                .bulk()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        }
    }
    Ok(Opened {
        stream,
        leftover: buf,
        server,
    })
}

/// Picks `version` and `id` out of HELLO's map.
fn read_hello(reply: &[u8], server: &mut ServerInfo) {
    let mut c = Cursor::new(reply);
    let Some((_, n)) = c.header() else { return };
    for _ in 0..n.max(0) {
        let key = c.bulk();
        let at = c.pos;
        match (key, c.bulk()) {
            (Some(b"version"), Some(v)) => server.version = String::from_utf8_lossy(v).into(),
            (Some(b"id"), None) => {
                c.pos = at;
                if let Some((b':', id)) = c.header() {
                    server.id = id;
                }
            }
            _ => {}
        }
    }
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
pub(crate) async fn roundtrip(
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
                if frame.starts_with(b"-BUSY") {
                    // A script holds Redis: a connection set up now would miss what Redis
                    // refuses meanwhile (CLIENT TRACKING): try again later.
                    return Err(format!("Redis is busy: {}", error_text(&frame)));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by Redis's suite through a cluster: a connection made while a script ran got
    /// `-BUSY` to CONFIG GET, whose parse took it for an array, and the proxy panicked.
    #[test]
    fn busy_during_the_handshake_fails_it() {
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let busy = b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.\r\n";
            let _ = s.write_all(busy);
            let _ = s.read(&mut b);
        });
        let p = Params {
            addr,
            user: None,
            password: None,
            db: 0,
            tracking: true,
            commands: true,
            connect_timeout: std::time::Duration::from_secs(1),
            label: "test".into(),
            log_connects: false,
            bcast: false,
            readonly: false,
        };
        let got = rt
            .unwrap()
            .block_on(async { open(&p, true).await.map(|_| ()) });
        assert!(
            matches!(&got, Err(e) if e.starts_with("Redis is busy: BUSY")),
            "{got:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn reads_hello() {
        let reply = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:42\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        let mut s = ServerInfo::default();
        read_hello(reply, &mut s);
        assert_eq!((s.version.as_str(), s.id), ("7.0.15", 42));
    }
}
