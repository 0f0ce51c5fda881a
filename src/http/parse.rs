//! Framing and parsing of one HTTP/1.x request head (httparse), without I/O.
//!
//! The end of the head is searched for incrementally, so a head arriving in many reads costs
//! linear time; httparse runs once the head is complete. What the proxy needs of the head
//! (method, target, version, keep-alive, credentials, body length) comes back borrowed.

use super::respond::Status;

/// Most header lines in one request; more gets 431.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else: 405.
    Other,
}

/// What follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length` bytes (0 without the header).
    Length(u64),
    /// `Transfer-Encoding`, or a body announced with `Expect: 100-continue`: the request is
    /// answered, then the connection closed (the proxy takes no bodies, so it does not decode
    /// chunks to find the next request, nor ask for a body it would drop).
    Unframed,
}

#[derive(Debug)]
pub struct Request<'b> {
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub method: Method,
    pub target: &'b [u8],
    pub http10: bool,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    pub authorization: Option<&'b [u8]>,
    pub has_host: bool,
    pub body: Body,
}

#[derive(Debug)]
pub enum Parsed<'b> {
    /// The head is not complete yet.
    Partial,
    Request(Request<'b>),
    /// A response and the end of the connection: the next request cannot be found.
    Reject(Status, &'static str),
}

/// Finds the end of a head in `buf` (the offset after its blank line), resuming from
/// `*scanned` (bytes already searched): a head that arrives in pieces is searched once.
fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    let from = scanned.saturating_sub(3);
    for i in from..buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
    }
    *scanned = buf.len();
    None
}

/// Parses the request at the start of `buf` (leading blank lines already skipped).
/// `scanned` carries the head search over reads; reset it to 0 after each request.
/// `limit`: largest head (--max-request-bytes).
pub fn parse<'b>(buf: &'b [u8], scanned: &mut usize, limit: usize) -> Parsed<'b> {
    let Some(end) = head_end(buf, scanned) else {
        if buf.len() > limit {
            return too_large(buf, limit);
        }
        return Parsed::Partial;
    };
    if end > limit {
        return too_large(buf, limit);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Ok(_) => return Parsed::Reject(Status::BadRequest, "malformed request head"),
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Reject(Status::HeaderTooLarge, "too many header fields")
        }
        Err(e) => return Parsed::Reject(Status::BadRequest, error_text(e)),
    }
    let http10 = req.version == Some(0);
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("").as_bytes();
    let mut out = Request {
        len: end,
        method,
        target,
        http10,
        keep_alive: !http10,
        authorization: None,
        has_host: false,
        body: Body::Length(0),
    };
    let mut length: Option<u64> = None;
    let mut expect = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    out.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    out.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            out.has_host = true;
        } else if name.eq_ignore_ascii_case("authorization") {
            out.authorization = Some(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            expect = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.body = Body::Unframed;
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_length(h.value) else {
                return Parsed::Reject(Status::BadRequest, "invalid Content-Length");
            };
            // Several that disagree: no way to know where the next request starts.
            if length.is_some_and(|l| l != n) {
                return Parsed::Reject(Status::BadRequest, "conflicting Content-Length");
            }
            length = Some(n);
        }
    }
    let length = length.unwrap_or(0);
    // A client that waits for `100 Continue` may never send the body it announced: answered
    // without it, the connection cannot go on.
    if out.body != Body::Unframed && !(expect && length > 0) {
        out.body = Body::Length(length);
    } else {
        out.body = Body::Unframed;
    }
    Parsed::Request(out)
}

/// Over the limit: 414 while the request line itself is not complete, else 431.
fn too_large(buf: &[u8], limit: usize) -> Parsed<'static> {
    if !buf[..limit.min(buf.len())].contains(&b'\n') {
        Parsed::Reject(
            Status::UriTooLong,
            "request line longer than --max-request-bytes",
        )
    } else {
        Parsed::Reject(
            Status::HeaderTooLarge,
            "request head larger than --max-request-bytes",
        )
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        _ => "malformed request head",
    }
}

/// Bytes of blank lines before a request line (RFC 9112 §2.2 asks servers to ignore them).
pub fn leading_blank(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &[u8]) -> Request<'_> {
        match parse(raw, &mut 0, 1 << 20) {
            Parsed::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(req(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n").keep_alive);
        assert!(!req(b"GET /k HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!req(b"GET /k HTTP/1.0\r\n\r\n").keep_alive);
        let r = req(b"GET /k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.keep_alive && r.http10);
        assert!(!req(b"GET /k HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn head_in_pieces_is_searched_once() {
        let full = b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scanned = 0;
        for cut in 1..full.len() {
            assert!(matches!(
                parse(&full[..cut], &mut scanned, 1 << 20),
                Parsed::Partial
            ));
            assert_eq!(scanned, cut);
        }
        assert!(matches!(
            parse(full, &mut scanned, 1 << 20),
            Parsed::Request(_)
        ));
    }

    #[test]
    fn fields() {
        let r = req(b"HEAD /a%20b HTTP/1.1\r\nhost: x\r\nAuthorization: Bearer pw\r\ncontent-length: 5\r\n\r\nhello");
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.target, b"/a%20b");
        assert_eq!(r.authorization, Some(&b"Bearer pw"[..]));
        assert_eq!(r.body, Body::Length(5));
        assert!(r.has_host);
        assert_eq!(req(b"PUT /k HTTP/1.1\r\n\r\n").method, Method::Other);
        let r = req(b"POST /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.body, Body::Unframed);
        let r = req(b"POST /k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(r.body, Body::Unframed);
        let r = req(b"GET /k HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(r.body, Body::Length(0));
    }

    #[test]
    fn rejections() {
        let status = |raw: &[u8], limit| match parse(raw, &mut 0, limit) {
            Parsed::Reject(s, _) => Some(s),
            _ => None,
        };
        assert_eq!(status(b"GARBAGE\r\n\r\n", 1024), Some(Status::BadRequest));
        assert_eq!(
            status(b"GET /k HTTP/2.0\r\n\r\n", 1024),
            Some(Status::BadRequest)
        );
        assert_eq!(
            status(b"GET /k HTTP/1.1\r\nContent-Length: x\r\n\r\n", 1024),
            Some(Status::BadRequest)
        );
        assert_eq!(
            status(
                b"GET /k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                1024
            ),
            Some(Status::BadRequest)
        );
        let long = [b"GET /".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(status(&long, 1024), Some(Status::UriTooLong));
        let mut big = b"GET /k HTTP/1.1\r\nX: ".to_vec();
        big.extend_from_slice(&[b'a'; 2000]);
        assert_eq!(status(&big, 1024), Some(Status::HeaderTooLarge));
        let many: Vec<u8> = [b"GET /k HTTP/1.1\r\n".as_slice()]
            .into_iter()
            .chain(std::iter::repeat_n(b"A: b\r\n".as_slice(), 100))
            .chain([b"\r\n".as_slice()])
            .flatten()
            .copied()
            .collect();
        assert_eq!(status(&many, 1 << 20), Some(Status::HeaderTooLarge));
    }
}
