//! The admin endpoint (`--admin ADDR`): a small blocking HTTP/1.1 server on a std thread of
//! its own, so scrapes and probes never run on (or wait for) a shard. One request per
//! connection, one connection at a time: a scraper or a probe every few seconds needs no
//! more, and a client that stalls is cut by the socket timeouts.

use super::metrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `addr`: done before the shards start, so that a port in use stops the process at
/// once and probes connect from the start (they are answered once `serve` runs).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves `listener` on a thread named `admin`; returns the bound address.
pub fn serve(listener: TcpListener) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => answer(s),
                    // EMFILE and friends: don't spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (status, kind, body) = loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break respond(req.method.unwrap_or(""), req.path.unwrap_or(""))
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => break (431, TEXT, "request head too large\n".into()),
            Err(e) => break (400, TEXT, format!("bad request: {e}\n")),
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Status, content type and body for a request.
fn respond(method: &str, target: &str) -> (u16, &'static str, String) {
    let path = target.split('?').next().unwrap_or("");
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return (
            404,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        );
    }
    if method != "GET" {
        return (405, TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => (200, metrics::CONTENT_TYPE, metrics::render()),
        "/healthz" => (200, TEXT, "ok\n".into()),
        _ => match metrics::readiness() {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(why) => (503, TEXT, why),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::respond;

    #[test]
    fn routes() {
        assert_eq!(respond("GET", "/healthz").0, 200);
        assert_eq!(respond("GET", "/healthz?x=1").0, 200);
        assert_eq!(respond("GET", "/nope").0, 404);
        assert_eq!(respond("POST", "/metrics").0, 405);
    }
}
