//! redis-proxy: a Redis-compatible, thread-per-core caching proxy.
//!
//! Clients speak RESP2, RESP3 (HELLO 3) or inline commands to the proxy as if it were Redis.
//! GETs are served from a per-shard LRU/TTL cache; everything else is pipelined to Redis over
//! the shard's shared connection for the client's db, or, for clients that hold server state or
//! block, over a dedicated connection. The cache stays coherent through Redis's CLIENT TRACKING:
//! the shared connections speak RESP3, so invalidation pushes arrive in order with the replies
//! they concern.
//!
//! # Module map
//!
//! - [`config`]: the settings: flags, `REDIS_PROXY_*` variables, `--config` TOML file (one
//!   generic layer over clap's definitions), validation, the effective view, live settings.
//! - [`reload`]: SIGHUP: re-read the configuration, apply what is live, log what needs a restart.
//! - [`shard`]: one pinned thread + monoio runtime (io_uring, epoll fallback) per core; owns
//!   the shard's cache, in-flight fetches and backend connections; shutdown sequence.
//! - [`listener`]: the shard's SO_REUSEPORT accept loop, shared by RESP and HTTP.
//! - [`http`]: the HTTP/1.1 front-end (`--http`): `GET /<key>` from the same cache, through the
//!   same dispatch as a RESP `GET`; parse, route and respond in files of their own.
//! - [`client`]: per-connection reader (scan, dispatch, waits) and writer (ordered replies,
//!   one write per batch).
//! - [`dispatch`]: the client's session (protocol, db, transaction, pinned or blocked
//!   connection) and what each command does with it.
//! - [`replies`]: a client's reply slots, completed out of order, sent in order.
//! - [`command`]: the dispatch table: cacheable read, write + keys, blocking, refused, local.
//! - [`auth`]: `AUTH` and `HELLO` answered by the proxy (--requirepass, protocol switch).
//! - [`multi`]: MULTI queued by the proxy and sent as one block; EXEC replies; Redis's command
//!   table for queue-time errors.
//! - [`client_cmd`]: `CLIENT` and `RESET` for the proxy's own clients; [`registry`]: every
//!   client of the process, for CLIENT LIST/KILL/UNBLOCK across shards.
//! - [`monitor`]: `MONITOR` on a connection of its own.
//! - [`blocking`]: blocking commands, each on a dedicated connection.
//! - [`pool`]: dedicated backend connections (WATCH, blocking commands), reused only when clean.
//! - [`deliver`]: the shard's sink for backend replies and pushes: relay, fill, invalidate.
//! - [`resp`]: wire formats without I/O: request scanner, reply framing, one cursor, RESP3 ->
//!   RESP2, encoding in the client's protocol.
//! - [`cache`]: the LRU/TTL store (slab + hashbrown index, per db), bounded-work expiry sweeps.
//! - [`fetch`]: cache fills in flight: single flight, and poisoning by writes/invalidations.
//! - [`backend`]: a pipelined connection as a value: handshake (HELLO 3, AUTH, SELECT, CLIENT
//!   TRACKING), reader/writer tasks, supervision (reconnect, backoff, timeouts); replies go to a
//!   sink, so it knows nothing of shards, clients or caches.
//! - [`log`](mod@log): `tracing` to stderr (text or JSON), reloadable filter, rate-limited
//!   "limit hit" lines.
//! - [`observe`]: per-shard counters summed when read; `--admin` HTTP endpoint (/metrics,
//!   /healthz, /readyz) on its own thread; INFO's `# Proxy` section.
//! - [`socket`]: a stream's owned halves, and a handle that shuts it down only while they live.
//! - [`fault`]: debug-build fault injection, to test the panic policy (abort).
//!
//! - [`pubsub`]: (P|S)SUBSCRIBE answered by the proxy, one subscription per shard at Redis,
//!   messages copied to the shard's subscribers; counts in the clients' terms.
//! - [`tracking`]: CLIENT TRACKING for the proxy's own clients, from what the shard learns of
//!   writes (its own, and Redis's invalidation pushes); BCAST through a connection of its own.
//!
//! - [`cluster`]: Redis Cluster behind the proxy: slot map per shard, a connection per node,
//!   MOVED/ASK followed, multi-key commands split, a one-node cluster shown to cluster-aware
//!   clients.
//!
//! Deliberately missing: HTTP writes (the HTTP front-end only reads).

pub mod auth;
pub mod backend;
pub mod blocking;
pub mod cache;
pub mod client;
pub mod client_cmd;
pub mod cluster;
pub mod command;
pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod fault;
pub mod fetch;
pub mod http;
pub mod listener;
pub mod log;
pub mod monitor;
pub mod multi;
pub mod observe;
pub mod pool;
pub mod pubsub;
pub mod registry;
pub mod reload;
pub mod replies;
pub mod resp;
pub mod shard;
pub mod socket;
pub mod tracking;
