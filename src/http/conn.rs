//! One HTTP connection: the reader parses requests and dispatches each as a RESP `GET` (or
//! answers it itself: errors, auth); the writer sends the responses in request order.

use super::parse::{leading_blank, parse, Body, Method, Parsed, Request};
use super::respond::{put_reply, put_text, Connection, Shape, Status};
use super::route::key_of;
use crate::client::{linger, wait_for_room, yield_to_ready_tasks};
use crate::dispatch::{dispatch, Flow, Session};
use crate::replies::ClientShared;
use crate::resp::request::{RequestScanner, Scan};
use crate::resp::write::put_command;
use crate::shard::Shard;
use crate::socket::{ReadHalf, WriteHalf};
use bytes::{Buf, BytesMut};
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::client::{KEEP_BUF, READ_CHUNK};

/// How the writer turns the next reply bytes into a response: the reader records one per
/// request, in order, before its reply can arrive.
enum Meta {
    /// A response the proxy wrote itself, this many bytes, sent as is.
    Local(usize),
    /// A GET's RESP reply, to translate.
    Reply(Shape),
}

type Metas = Rc<RefCell<VecDeque<Meta>>>;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut r, w, sock) = crate::socket::split(stream);
    let client = Rc::new(ClientShared::new(shard.live().client_output_limit));
    client.set_socket(sock);
    client.last_active.set(shard.now());
    // Every request carries its own credentials (Bearer); the RESP-level check is moot.
    client.authed.set(true);
    let _slot = shard.client_connected(&client);
    let metas = Metas::default();
    let writer = monoio::spawn(write_loop(client.clone(), metas.clone(), w));
    let mut conn = Conn {
        session: Session::new(shard.cfg.redis.db),
        shard: shard.clone(),
        client: client.clone(),
        metas,
        key: Vec::new(),
        cmd: BytesMut::new(),
        scanner: RequestScanner::new(),
    };
    conn.read_loop(&mut r).await;
    conn.session.end(&shard);
    client.close();
    writer.await;
    if !client.is_dead() {
        linger(&mut r).await;
    }
}

struct Conn {
    shard: Rc<Shard>,
    client: Rc<ClientShared>,
    session: Session,
    metas: Metas,
    /// The decoded key of the request at hand.
    key: Vec<u8>,
    /// Its RESP `GET`.
    cmd: BytesMut,
    scanner: RequestScanner,
}

impl Conn {
    async fn read_loop(&mut self, r: &mut ReadHalf) {
        // SIGHUP-changeable settings apply from a connection's start, as for RESP clients.
        let limit = self.shard.live().max_request_bytes;
        let pause_at = self.client.output_limit() / 2;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // Bytes of the head at hand already searched for its end.
        let mut scanned = 0;
        // Bytes of a request body still to drop (the proxy takes no bodies).
        let mut skip = 0u64;
        loop {
            if !wait_for_room(&self.client, pause_at).await || self.shard.stopping() {
                return;
            }
            buf.reserve(READ_CHUNK);
            let len = buf.len();
            let (res, slice) = r
                .half
                .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
                .await;
            buf = slice.into_inner();
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
            let now = self.shard.update_clock();
            let batch_start = crate::observe::clock::last_us();
            let mut requests = 0u64; // for the metrics: see `stats::end_batch`
            self.client.last_active.set(now);
            super::date::refresh();
            self.shard.check_swaps();
            if self.shard.cache_on {
                // As for RESP clients: apply an invalidation that arrived with this read first.
                yield_to_ready_tasks().await;
            }
            let mut consumed = 0;
            let mut quit = false;
            loop {
                if skip > 0 {
                    let n = skip.min((buf.len() - consumed) as u64);
                    consumed += n as usize;
                    skip -= n;
                    if skip > 0 {
                        break;
                    }
                }
                if scanned == 0 {
                    consumed += leading_blank(&buf[consumed..]);
                }
                match parse(&buf[consumed..], &mut scanned, limit) {
                    Parsed::Partial => break,
                    Parsed::Reject(status, msg) => {
                        requests += 1;
                        let shape = Shape {
                            head: false,
                            conn: Connection::Close,
                        };
                        self.local(status, shape, &[], msg.as_bytes());
                        quit = true;
                        break;
                    }
                    Parsed::Request(req) => {
                        requests += 1;
                        scanned = 0;
                        consumed += req.len;
                        // A body too large to skip, or one without a length: answer, then close.
                        let body = match req.body {
                            Body::Length(n) if n <= limit as u64 => Some(n),
                            _ => None,
                        };
                        let close = body.is_none() || !req.keep_alive;
                        let shape = Shape {
                            head: req.method == Method::Head,
                            conn: match (close, req.http10) {
                                (true, _) => Connection::Close,
                                (false, true) => Connection::KeepAlive,
                                (false, false) => Connection::Default,
                            },
                        };
                        self.handle(&req, shape).await;
                        skip = body.unwrap_or(0);
                        if close {
                            quit = true;
                            break;
                        }
                        // Hits answered within one read can outgrow the output limit: pause
                        // mid-batch until the client has taken some, as RESP clients do.
                        if self.client.backlog().0 >= pause_at {
                            self.shard.flush_shared();
                            self.client.wake_writer();
                            if !wait_for_room(&self.client, pause_at).await {
                                return;
                            }
                        }
                    }
                }
            }
            buf.advance(consumed);
            self.shard.flush_shared();
            crate::observe::stats::end_batch(&self.shard.stats, batch_start, requests);
            self.client.wake_writer();
            if quit {
                return;
            }
            if buf.is_empty() && buf.capacity() > KEEP_BUF {
                buf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
    }

    async fn handle(&mut self, req: &Request<'_>, shape: Shape) {
        if req.method == Method::Other {
            let allow: &[&[u8]] = &[b"Allow: GET, HEAD\r\n"];
            return self.local(Status::MethodNotAllowed, shape, allow, b"use GET or HEAD");
        }
        // Checked against the password as of now: a SIGHUP rotation applies to the next request.
        if let Some(pass) = &self.shard.live().requirepass {
            if !bearer_ok(req.authorization, pass.as_bytes()) {
                let challenge: &[&[u8]] = &[b"WWW-Authenticate: Bearer realm=\"redis-proxy\"\r\n"];
                let msg = b"missing or wrong Authorization: Bearer <password>";
                return self.local(Status::Unauthorized, shape, challenge, msg);
            }
        }
        // RFC 9112 §3.2: a server must reject an HTTP/1.1 request without Host.
        if !req.http10 && !req.has_host {
            return self.local(Status::BadRequest, shape, &[], b"missing Host header");
        }
        if let Err(msg) = key_of(req.target, &mut self.key) {
            return self.local(Status::BadRequest, shape, &[], msg.as_bytes());
        }
        self.get(shape).await
    }

    /// The key's value through the RESP dispatch: a hit, a fetch joined or started.
    async fn get(&mut self, shape: Shape) {
        self.cmd.clear();
        put_command(&mut self.cmd, [&b"GET"[..], &self.key].into_iter());
        let len = match self.scanner.scan(&self.cmd) {
            Scan::Command { len, .. } => len,
            // Only a key past RESP's 512 MB bulk limit gets here.
            _ => return self.local(Status::UriTooLong, shape, &[], b"key too long"),
        };
        self.metas.borrow_mut().push_back(Meta::Reply(shape));
        let cmd = &self.cmd[..len];
        loop {
            let args = self.scanner.args(cmd);
            match dispatch(
                &self.shard,
                &self.client,
                &mut self.session,
                args,
                Some(cmd),
            ) {
                Flow::Wait(conn, n) => {
                    // Redis's in-flight limit: backpressure, as for RESP clients.
                    conn.flush();
                    conn.wait_space(n).await;
                }
                Flow::Drain => {
                    self.shard.flush_shared();
                    self.client.wait_backlog_below(usize::MAX, 1).await;
                }
                Flow::Next | Flow::Quit | Flow::DrainAfter => return,
            }
        }
    }

    /// Queues a response of the proxy's own, in order with the replies awaited before it.
    fn local(&self, status: Status, shape: Shape, extra: &[&[u8]], msg: &[u8]) {
        // Every response of the proxy's own is a refusal of the request.
        crate::observe::stats::count(crate::observe::stats::Class::Error);
        let mut out = BytesMut::new();
        put_text(&mut out, status, shape, extra, msg);
        self.metas.borrow_mut().push_back(Meta::Local(out.len()));
        self.client.push_local(|o| o.extend_from_slice(&out));
    }
}

/// `Authorization: Bearer <password>` (scheme case-insensitive, RFC 6750).
fn bearer_ok(header: Option<&[u8]>, pass: &[u8]) -> bool {
    let Some(h) = header else { return false };
    if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"Bearer ") {
        return false;
    }
    crate::auth::same(h[7..].trim_ascii(), pass)
}

async fn write_loop(client: Rc<ClientShared>, metas: Metas, mut w: WriteHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while client.next_batch(&mut buf).await {
        super::date::refresh();
        let ok = translate(&buf, &mut metas.borrow_mut(), &mut out);
        buf.clear();
        if !ok {
            // Replies and requests out of step: a bug; end the connection rather than answer
            // a request with another's response.
            tracing::error!("http: replies out of step with requests; closing");
            client.disconnect();
            return;
        }
        match crate::client::send_batch(&client, &mut w, out).await {
            Some(o) => out = o,
            None => return,
        }
        if buf.capacity() > KEEP_BUF {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        client.wake_reader();
    }
}

/// Turns a batch of finished replies (whole ones, in request order) into responses.
fn translate(input: &[u8], metas: &mut VecDeque<Meta>, out: &mut BytesMut) -> bool {
    let mut pos = 0;
    while pos < input.len() {
        let Some(meta) = metas.pop_front() else {
            return false;
        };
        let used = match meta {
            Meta::Local(n) => {
                let Some(bytes) = input.get(pos..pos + n) else {
                    return false;
                };
                out.extend_from_slice(bytes);
                n
            }
            Meta::Reply(shape) => match put_reply(out, &input[pos..], shape) {
                Some(n) => n,
                None => return false,
            },
        };
        pos += used;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        assert!(bearer_ok(Some(b"Bearer pw"), b"pw"));
        assert!(bearer_ok(Some(b"bearer  pw "), b"pw"));
        assert!(!bearer_ok(Some(b"Bearer pw2"), b"pw"));
        assert!(!bearer_ok(Some(b"Basic cHc="), b"pw"));
        assert!(!bearer_ok(Some(b"Bearer"), b"pw"));
        assert!(!bearer_ok(None, b"pw"));
    }

    #[test]
    fn translation_follows_the_requests() {
        let keep = Shape {
            head: false,
            conn: Connection::Default,
        };
        let mut metas: VecDeque<Meta> = [Meta::Reply(keep), Meta::Local(3), Meta::Reply(keep)]
            .into_iter()
            .collect();
        let mut out = BytesMut::new();
        assert!(translate(b"$1\r\na\r\nxyz$-1\r\n", &mut metas, &mut out));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("\r\n\r\naxyzHTTP/1.1 404 Not Found\r\n"),
            "{text}"
        );
        assert!(metas.is_empty());
        assert!(
            !translate(b"$1\r\na\r\n", &mut metas, &mut out),
            "no request"
        );
    }
}
