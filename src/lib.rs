//! redis-proxy: a Redis-compatible, thread-per-core caching proxy.
//!
//! Clients speak RESP2 (or inline commands) to the proxy as if it were Redis. GETs are served
//! from a per-shard LRU/TTL cache; everything else is pipelined to Redis over one connection per
//! shard. The cache stays coherent through Redis's CLIENT TRACKING: that connection speaks RESP3,
//! so invalidation pushes arrive in order with the replies they concern.
//!
//! # Module map
//!
//! - [`config`]: the command line (clap, with `REDIS_PROXY_*` env fallbacks) and its validation.
//! - [`shard`]: one pinned thread + monoio runtime (io_uring, epoll fallback) per core; owns
//!   the shard's cache, in-flight fetches and backend connection; shutdown sequence.
//! - [`listener`]: the shard's SO_REUSEPORT accept loop.
//! - [`client`]: per-connection reader (scan, classify, dispatch) and writer (ordered replies,
//!   one write per batch).
//! - [`replies`]: a client's reply slots, completed out of order, sent in order.
//! - [`command`]: the dispatch table: cacheable read, write + keys, refused, local.
//! - [`auth`]: `AUTH` and `HELLO` answered by the proxy (--requirepass).
//! - [`resp`]: wire formats without I/O: request scanner, reply framing, RESP3 -> RESP2, encoding.
//! - [`cache`]: the LRU/TTL store (slab + hashbrown index), with bounded-work expiry sweeps.
//! - [`fetch`]: cache fills in flight: single flight, and poisoning by writes/invalidations.
//! - [`backend`]: the pipelined connection, its handshake (HELLO 3, AUTH, SELECT, CLIENT
//!   TRACKING), invalidation pushes, reconnection with backoff.
//! - [`log`](mod@log): stderr logging.
//! - [`socket`]: a stream's owned halves, and a handle that shuts it down only while they live.
//! - [`fault`]: debug-build fault injection, to test the panic policy (abort).
//!
//! Deliberately missing: Redis Cluster, per-client connection state (MULTI, SUBSCRIBE, SELECT,
//! blocking commands are refused with an error), RESP3 towards clients, an HTTP front-end.

pub mod auth;
pub mod backend;
pub mod cache;
pub mod client;
pub mod client_cmd;
pub mod command;
pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod fault;
pub mod fetch;
pub mod listener;
pub mod log;
pub mod monitor;
pub mod multi;
pub mod pool;
pub mod registry;
pub mod replies;
pub mod resp;
pub mod shard;
pub mod socket;
