//! A shard's accept loop on its own SO_REUSEPORT listener. Stops accepting at shutdown.

use crate::shard::Shard;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use monoio::net::{ListenerOpts, TcpListener};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// Tells a client over --max-clients why it is turned away, as redis-server does.
async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(&b"-ERR max number of clients reached\r\n"[..])
        .await;
}

/// Binds this shard's listener. Every shard binds the same address with SO_REUSEPORT; the
/// kernel spreads new connections across them by hash of the client address.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(1024);
    TcpListener::bind_with_config(addr, &opts)
}

pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        // Cancelling a pending accept may leak the fd of a connection accepted at that instant
        // (monoio-rs/monoio#318); that only happens here, at shutdown, just before exit.
        monoio::select! {
            res = listener.accept() => match res {
                Ok((stream, _)) => {
                    let n = shard.connections.fetch_add(1, Ordering::Relaxed);
                    if n >= shard.cfg.max_clients {
                        shard.connections.fetch_sub(1, Ordering::Relaxed);
                        shard.stats.rejected_max_clients.add(1);
                        monoio::spawn(refuse(stream));
                    } else {
                        shard.stats.accepted.add(1);
                        monoio::spawn(crate::client::serve(shard.clone(), stream));
                    }
                }
                Err(e) => {
                    crate::log!(warn, "shard {}: accept failed: {e}", shard.id);
                    // EMFILE and friends: back off instead of spinning.
                    monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shard.stopped() => break,
        }
    }
}
