//! MONITOR on a connection of its own: the proxy opens one to Redis for the client, sends
//! MONITOR, and copies every line Redis streams to the client until either side leaves.
//! (The lines show what reaches Redis, the proxy's own commands included: a cache fill is a
//! GET and a PTTL; hits never appear, since they never reach Redis.)

use crate::backend::handshake::open;
use crate::replies::ClientShared;
use crate::resp::frame::FrameScanner;
use crate::resp::write::{put_command, put_error};
use crate::shard::Shard;
use crate::socket::Handle;
use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use std::cell::RefCell;
use std::rc::Rc;

/// The monitor connection's socket, once open: shutting it down ends the monitoring.
pub type Monitor = Rc<RefCell<Handle>>;

/// Starts monitoring for `client`, whose reply to MONITOR is slot `seq`.
pub fn start(shard: &Rc<Shard>, client: &Rc<ClientShared>, seq: u64, db: u32) -> Monitor {
    let handle: Monitor = Rc::default();
    let tx = handle.clone();
    let label = format!("shard {} monitor for client {}", shard.id, client.id);
    let params = shard.params(db, false, label);
    let client = client.clone();
    monoio::spawn(async move {
        let opened = monoio::time::timeout(params.connect_timeout, open(&params, true)).await;
        let o = match opened {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return fail(&client, seq, &e),
            Err(_) => return fail(&client, seq, "connecting to Redis timed out"),
        };
        let (mut r, mut w, sock) = crate::socket::split(o.stream);
        *tx.borrow_mut() = sock;
        if client.is_closed() {
            return; // left while we connected
        }
        let mut cmd = BytesMut::new();
        put_command(&mut cmd, [&b"MONITOR"[..]].into_iter());
        if w.half.write_all(cmd).await.0.is_err() {
            return fail(&client, seq, "write to Redis failed");
        }
        let mut buf = o.leftover;
        let mut first = true;
        let mut scanner = FrameScanner::default();
        loop {
            while let Ok(Some(info)) = scanner.scan(&buf) {
                let frame = &buf[..info.len];
                if std::mem::take(&mut first) {
                    client.complete(seq, |out| out.extend_from_slice(frame));
                } else if !info.push {
                    client.push_local(|out| out.extend_from_slice(frame));
                    client.wake_writer();
                }
                buf.advance(info.len);
            }
            if client.is_closed() {
                break;
            }
            buf.reserve(16 * 1024);
            let len = buf.len();
            let (res, b) = r
                .half
                .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
                .await;
            buf = b.into_inner();
            if !matches!(res, Ok(n) if n > 0) {
                break;
            }
        }
        if first {
            fail(&client, seq, "Redis closed the MONITOR connection");
        }
    });
    handle
}

fn fail(client: &ClientShared, seq: u64, why: &str) {
    let msg = format!("ERR backend unavailable: {why}");
    client.complete(seq, |out| put_error(out, msg.as_bytes()));
}
