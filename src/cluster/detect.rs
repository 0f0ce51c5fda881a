//! At start-up, before the shards: is the backend a Redis Cluster (`--cluster auto`), and what
//! is its slot map? One blocking round trip to the first seed node that answers.

use super::slots::Topology;
use crate::config::{ClusterMode, Config};
use crate::resp::frame::frame_len;
use crate::resp::write::put_command;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

/// What the shards start with in cluster mode.
pub struct Start {
    pub topology: Topology,
    /// The node that gave the map (where its empty endpoints point).
    pub asked: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    /// The shards' shared connection goes here: the master of the lowest slot, else a seed.
    pub home: SocketAddr,
}

/// `Ok(None)`: one server, not a cluster.
pub fn detect(cfg: &Config) -> Result<Option<Start>, String> {
    if cfg.cluster == ClusterMode::Off {
        return Ok(None);
    }
    let mut seeds = Vec::new();
    for (host, port) in &cfg.redis.seeds {
        match (host.as_str(), *port).to_socket_addrs() {
            Ok(mut a) => seeds.extend(a.next()),
            Err(e) => tracing::warn!("cannot resolve seed node {host}: {e}"),
        }
    }
    if seeds.is_empty() {
        return Err("no seed node of --redis resolves to an address".into());
    }
    let mut last_error = String::new();
    for &addr in &seeds {
        match ask(cfg, addr) {
            Ok(reply) => {
                if let Some(topology) = Topology::parse(&reply) {
                    let home = topology
                        .ranges
                        .iter()
                        .min_by_key(|r| r.start)
                        .and_then(|r| super::topology::resolve(&r.master.host, r.master.port, addr))
                        .unwrap_or(addr);
                    return Ok(Some(Start {
                        topology,
                        asked: addr,
                        seeds,
                        home,
                    }));
                }
                let text = String::from_utf8_lossy(&reply).trim_end().to_string();
                if cfg.cluster == ClusterMode::On {
                    return Err(format!(
                        "--cluster on, but {addr} answers CLUSTER SLOTS with {text}"
                    ));
                }
                if seeds.len() > 1 {
                    return Err(format!(
                        "--redis names several nodes, but {addr} is not a cluster node ({text})"
                    ));
                }
                if !text.contains("cluster support disabled") {
                    tracing::warn!("{addr} answers CLUSTER SLOTS with {text}: assuming one Redis server (--cluster auto)");
                }
                return Ok(None);
            }
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    // No seed answers: a single server may just not be up yet (the proxy starts anyway and
    // reconnects); a list of seeds, or --cluster on, means a cluster whose map comes later.
    if cfg.cluster == ClusterMode::Auto && seeds.len() == 1 {
        tracing::warn!("cannot reach {last_error}; assuming one Redis server (--cluster auto)");
        return Ok(None);
    }
    tracing::warn!(
        "no seed node answers ({last_error}); the slot map will be loaded when one does"
    );
    Ok(Some(Start {
        topology: Topology::default(),
        asked: seeds[0],
        home: seeds[0],
        seeds,
    }))
}

/// AUTH if configured, then CLUSTER SLOTS: the raw reply.
fn ask(cfg: &Config, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(cfg.connect_timeout * 2))
        .map_err(|e| e.to_string())?;
    let mut out = bytes::BytesMut::new();
    if let Some(pass) = &cfg.redis.password {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &cfg.redis.user {
            auth.push(user.as_bytes());
        }
        auth.push(pass.as_bytes());
        put_command(&mut out, auth.into_iter());
    }
    put_command(&mut out, [&b"CLUSTER"[..], b"SLOTS"].into_iter());
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let want = if cfg.redis.password.is_some() { 2 } else { 1 };
    let mut chunk = [0u8; 16 * 1024];
    while replies.len() < want {
        match frame_len(&buf) {
            Ok(Some(info)) => {
                replies.push(buf.drain(..info.len).collect::<Vec<u8>>());
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("protocol error: {}", e.0)),
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if want == 2 && !replies[0].starts_with(b"+") {
        let text = String::from_utf8_lossy(&replies[0]).trim_end().to_string();
        return Err(format!("authentication failed: {text}"));
    }
    Ok(replies.pop().unwrap_or_default())
}
