//! Byte-exact replies: a connection that reads whole RESP2/RESP3 frames (as raw bytes, framed
//! by redis-protocol's decoder), to compare what the proxy sends with what redis-server sends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

pub fn encode<T: AsRef<[u8]>>(args: &[T]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend(a);
        out.extend(b"\r\n");
    }
    out
}

impl Wire {
    pub fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn send<T: AsRef<[u8]>>(&mut self, args: &[T]) {
        self.stream.write_all(&encode(args)).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next whole frame, as bytes.
    pub fn frame(&mut self) -> Vec<u8> {
        self.try_frame().unwrap_or_else(|e| {
            panic!(
                "reading a frame: {e}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    pub fn try_frame(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(n) = frame_len(&self.buf, 0) {
                return Ok(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed; unread {:?}", String::from_utf8_lossy(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and returns its reply as text (for messages).
    pub fn cmd<T: AsRef<[u8]>>(&mut self, args: &[T]) -> String {
        self.send(args);
        String::from_utf8_lossy(&self.frame()).into_owned()
    }

    /// Whether the peer closed within `t`.
    pub fn closed_within(&mut self, t: Duration) -> bool {
        self.set_read_timeout(t);
        let mut b = [0u8; 1024];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// End of the RESP2/RESP3 frame starting at `at`, if complete. Written for tests: RESP2's
/// nulls (`$-1`, `*-1`) are not RESP3 frames, so redis-protocol's decoders take one protocol
/// each; this reads the union, as a client of either protocol must.
pub fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    let eol = at + 1 + buf.get(at + 1..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[at + 1..eol]).ok()?;
    let next = eol + 2;
    match buf[at] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(next),
        b'$' | b'!' | b'=' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(next);
            }
            let end = next + n as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = line.parse().ok()?;
            let items = match buf[at] {
                b'%' => 2 * n,
                b'|' => 2 * n + 1,
                _ => n,
            };
            let mut p = next;
            for _ in 0..items.max(0) {
                p = frame_len(buf, p)?;
            }
            Some(p)
        }
        t => panic!("not RESP: type byte {t:?}"),
    }
}
