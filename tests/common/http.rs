//! HTTP clients for the tests: `curl` for single requests, and a raw TCP client that reads
//! pipelined responses one at a time and sees exactly what the proxy sends.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header lines as sent (name, value), names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = std::str::from_utf8(head).expect("response head is ASCII");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "not a status line: {status_line:?}"
    );
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// Runs curl with `args` (URL included) and returns the response, body as bytes.
pub fn curl(args: &[&str]) -> Response {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let (status, headers) = parse_head(&raw[..end]);
    Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// A raw HTTP/1.x connection.
pub struct Http {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    pub fn connect(port: u16) -> Http {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Sends `GET <path>` (HTTP/1.1, with Host) without reading the response.
    pub fn send_get(&mut self, path: &str) {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }

    /// One request, one response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send_get(path);
        self.read(false)
    }

    /// Reads more input; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read response: {e}"),
        }
    }

    /// Reads the next response; `head`: it answers a HEAD (no body whatever the length says).
    pub fn read(&mut self, head: bool) -> Response {
        self.try_read(head)
            .expect("a response, not the end of the connection")
    }

    /// The next response, or `None` if the connection ends first.
    pub fn try_read(&mut self, head: bool) -> Option<Response> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "truncated response {:?}", self.buf);
                return None;
            }
        };
        let (status, headers) = parse_head(&self.buf[..end]);
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().expect("Content-Length"))
            .expect("every response has a Content-Length");
        let len = if head { 0 } else { len };
        while self.buf.len() < end + 4 + len {
            assert!(self.fill(), "connection ended inside a body");
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// Whether the proxy closes the connection within `timeout` (anything more it sends fails
    /// the test).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => panic!("unexpected bytes {:?}", &chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) if Instant::now() < deadline => {}
                Err(_) => return false,
            }
        }
    }
}
