//! A shard's accept loop on its own SO_REUSEPORT listener, shared by the protocols the proxy
//! speaks (RESP, HTTP): each gives its per-connection task and how it turns a client away.
//! Stops accepting at shutdown.

use crate::shard::Shard;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use monoio::net::{ListenerOpts, TcpListener};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// RESP clients over --max-clients hear why, as from redis-server.
pub const RESP_REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

/// Tells a client over --max-clients why it is turned away.
async fn refuse(mut stream: TcpStream, refusal: &'static [u8]) {
    let _ = stream.write_all(refusal).await;
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

/// Accepts until shutdown, serving each connection with `serve`. Every protocol's clients
/// count against the one --max-clients.
pub async fn accept_loop<F, Fut>(
    shard: Rc<Shard>,
    listener: TcpListener,
    refusal: &'static [u8],
    serve: F,
) where
    F: Fn(Rc<Shard>, TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        // Cancelling a pending accept may leak the fd of a connection accepted at that instant
        // (monoio-rs/monoio#318); that only happens here, at shutdown, just before exit.
        monoio::select! {
            res = listener.accept() => match res {
                Ok((stream, _)) => {
                    shard.refresh_live();
                    let n = shard.connections.fetch_add(1, Ordering::Relaxed);
                    let max = shard.live().max_clients;
                    if n >= max {
                        shard.connections.fetch_sub(1, Ordering::Relaxed);
                        shard.stats.rejected_max_clients.add(1);
                        crate::log::limit_hit(
                            "max-clients",
                            format_args!("{max} clients connected; refusing new ones"),
                        );
                        monoio::spawn(refuse(stream, refusal));
                    } else {
                        shard.stats.accepted.add(1);
                        monoio::spawn(serve(shard.clone(), stream));
                    }
                }
                Err(e) => {
                    tracing::warn!("shard {}: accept failed: {e}", shard.id);
                    // EMFILE and friends: back off instead of spinning.
                    monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shard.stopped() => break,
        }
    }
}
