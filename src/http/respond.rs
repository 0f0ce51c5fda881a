//! HTTP responses without I/O: the proxy's own (errors, refusals) and the translation of a
//! GET's RESP2 reply (a bulk string, a null, an error) into a response.

use crate::resp::frame::frame_len;
use bytes::BytesMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    UriTooLong,
    HeaderTooLarge,
    BadGateway,
    Unavailable,
}

impl Status {
    pub fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::Unauthorized => b"HTTP/1.1 401 Unauthorized\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::Conflict => b"HTTP/1.1 409 Conflict\r\n",
            Status::UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            Status::HeaderTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::BadGateway => b"HTTP/1.1 502 Bad Gateway\r\n",
            Status::Unavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
        }
    }
}

/// What a response says of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1's default: it stays open.
    Default,
    /// `Connection: close`: the proxy closes it after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked for it.
    KeepAlive,
}

/// Sent to an HTTP client over --max-clients, before closing.
pub const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 30\r\nConnection: close\r\n\r\nmax number of clients reached\n";

/// How one response is to be written.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// HEAD: headers only, with the length the body would have.
    pub head: bool,
    pub conn: Connection,
}

/// A response: status line, headers (`extra` are whole lines), body unless HEAD.
pub fn put(
    out: &mut BytesMut,
    status: Status,
    shape: Shape,
    content_type: &[u8],
    extra: &[&[u8]],
    body: &[u8],
) {
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(&super::date::current());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in extra {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(match shape.conn {
        Connection::Default => b"",
        Connection::Close => b"Connection: close\r\n",
        Connection::KeepAlive => b"Connection: keep-alive\r\n",
    });
    out.extend_from_slice(b"\r\n");
    if !shape.head {
        out.extend_from_slice(body);
    }
}

/// A response whose body is a line of text (errors).
pub fn put_text(out: &mut BytesMut, status: Status, shape: Shape, extra: &[&[u8]], msg: &[u8]) {
    let mut body = Vec::with_capacity(msg.len() + 1);
    body.extend_from_slice(msg);
    body.push(b'\n');
    put(
        out,
        status,
        shape,
        b"text/plain; charset=utf-8",
        extra,
        &body,
    );
}

/// Translates the RESP2 reply at the start of `input` (a GET's: the value, a null, an error)
/// into a response; returns the reply's length, or `None` if `input` holds no whole reply.
pub fn put_reply(out: &mut BytesMut, input: &[u8], shape: Shape) -> Option<usize> {
    let info = frame_len(input).ok()??;
    let frame = &input[..info.len];
    let line_end = frame.iter().position(|&b| b == b'\r')?;
    match frame[0] {
        b'$' if &frame[..line_end] == b"$-1" => {
            put(out, Status::NotFound, shape, b"", &[], b"");
        }
        b'$' => {
            let value = &frame[line_end + 2..frame.len() - 2];
            put(
                out,
                Status::Ok,
                shape,
                b"application/octet-stream",
                &[],
                value,
            );
        }
        b'-' => {
            let msg = &frame[1..line_end];
            put_text(out, error_status(msg), shape, &[], msg);
        }
        _ => put_text(
            out,
            Status::BadGateway,
            shape,
            &[],
            b"unexpected reply from Redis",
        ),
    }
    Some(info.len)
}

/// WRONGTYPE is the client's mistake about the key (409); the backend being unreachable,
/// timing out, loading, or busy with a script is temporary (503); anything else Redis says
/// is an upstream error (502).
fn error_status(msg: &[u8]) -> Status {
    let temporary: [&[u8]; 5] = [
        b"ERR backend ",
        b"BUSY ",
        b"LOADING ",
        b"MASTERDOWN ",
        b"TRYAGAIN ",
    ];
    if msg.starts_with(b"WRONGTYPE ") {
        Status::Conflict
    } else if temporary.iter().any(|p| msg.starts_with(p)) {
        Status::Unavailable
    } else {
        Status::BadGateway
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Shape = Shape {
        head: false,
        conn: Connection::Default,
    };

    fn reply(frame: &[u8], shape: Shape) -> String {
        let mut out = BytesMut::new();
        assert_eq!(put_reply(&mut out, frame, shape), Some(frame.len()));
        let text = String::from_utf8_lossy(&out).into_owned();
        let (line, rest) = text.split_once("\r\n").unwrap();
        let (date, rest) = rest.split_once("\r\n").unwrap();
        assert!(
            date.starts_with("Date: ") && date.ends_with(" GMT"),
            "{date}"
        );
        format!("{line}\r\n{rest}")
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply(b"$3\r\na\r\n\r\n", KEEP),
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\na\r\n"
        );
        let head = Shape {
            head: true,
            conn: Connection::Close,
        };
        assert_eq!(
            reply(b"$3\r\nabc\r\n", head),
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        assert!(reply(b"$-1\r\n", KEEP).starts_with("HTTP/1.1 404 "));
        let wrong = reply(b"-WRONGTYPE Operation against a key\r\n", KEEP);
        assert!(wrong.starts_with("HTTP/1.1 409 "), "{wrong}");
        assert!(wrong.ends_with("\r\n\r\nWRONGTYPE Operation against a key\n"));
        assert!(reply(b"-ERR backend unavailable: refused\r\n", KEEP).starts_with("HTTP/1.1 503 "));
        assert!(reply(b"-NOPERM no\r\n", KEEP).starts_with("HTTP/1.1 502 "));
        assert!(reply(b":1\r\n", KEEP).starts_with("HTTP/1.1 502 "));
    }

    #[test]
    fn partial_reply_is_not_translated() {
        let mut out = BytesMut::new();
        assert_eq!(put_reply(&mut out, b"$3\r\nab", KEEP), None);
    }

    #[test]
    fn refusal_length_is_right() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
