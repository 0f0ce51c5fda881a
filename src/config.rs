//! Configuration: one documented struct (its doc comments are `--help`), parsed by clap from
//! flags, `REDIS_PROXY_*` variables and the `--config` file ([`layers`]), checked by
//! `validate`; [`effective`] prints it with secrets masked; [`live`] holds what SIGHUP changes.

pub mod effective;
pub mod layers;
pub mod live;

pub use layers::{load, LoadError, Loaded};

use clap::{Parser, ValueEnum};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Longest --expire: the shard clock is a wrapping u32 of milliseconds (see `cache::reached`).
pub const MAX_EXPIRE: Duration = Duration::from_secs(20 * 24 * 3600);

#[derive(Parser, Clone)]
#[command(
    name = "redis-proxy",
    version,
    about = "A Redis-compatible caching proxy: GETs served from a per-core LRU/TTL cache kept \
             coherent with Redis's CLIENT TRACKING; everything else pipelined to Redis.",
    after_help = "Every option can also be set from the environment as REDIS_PROXY_<NAME>, \
                  e.g. REDIS_PROXY_CAPACITY=100000, and in the --config file as a key of the \
                  option's name, e.g. capacity = 100000. Precedence: flags, then environment, \
                  then file, then defaults."
)]
pub struct Config {
    /// TOML file of settings: each option below is a key of the same name (`capacity = 100000`,
    /// `expire = "2m"`). SIGHUP re-reads it.
    #[arg(long, env = "REDIS_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Check the configuration, print the effective settings (secrets masked) and exit 0; or
    /// print the error and exit 2.
    #[arg(long)]
    pub check_config: bool,

    /// Log verbosity. Given as a flag, variable or file key, it wins over RUST_LOG; otherwise
    /// RUST_LOG (full filter syntax) applies when set; otherwise `info`.
    #[arg(long, env = "REDIS_PROXY_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log line format on stderr: `text`, or `json` (one object per line).
    #[arg(long, env = "REDIS_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// --log-level came from a flag, a variable or the file (not its default).
    #[arg(skip)]
    pub log_level_explicit: bool,

    /// Address to accept RESP clients on (one SO_REUSEPORT listener per thread).
    #[arg(long, env = "REDIS_PROXY_LISTEN", default_value = "127.0.0.1:6380")]
    pub listen: String,

    /// Also serve cached GETs over HTTP/1.1 on this address (`GET /<key>`, `GET /get?key=<key>`);
    /// off unless given. One SO_REUSEPORT listener per thread, same cache as RESP clients.
    #[arg(long, value_name = "ADDR", env = "REDIS_PROXY_HTTP")]
    pub http: Option<String>,

    /// Backing Redis: `host:port` or `redis://[user:password@]host:port[/db]`. Credentials and db
    /// are applied on every backend connection (HELLO AUTH / AUTH, SELECT). For a Redis Cluster,
    /// a comma-separated list of seed nodes: `redis://[user:password@]h1:7000,h2:7000`.
    // Parsed in `prepare`, not by clap: clap's error would echo the value, password included.
    #[arg(
        long = "redis",
        value_name = "ADDR",
        env = "REDIS_PROXY_REDIS",
        hide_env_values = true,
        default_value = "127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// `--redis`, parsed.
    #[arg(skip)]
    pub redis: RedisTarget,

    /// Redis Cluster mode: `auto` asks the first reachable seed node (`CLUSTER SLOTS`) and
    /// uses cluster mode if it is a cluster node; `on` requires a cluster; `off` treats the
    /// backend as one server.
    #[arg(long, env = "REDIS_PROXY_CLUSTER", value_enum, default_value_t = ClusterMode::Auto)]
    pub cluster: ClusterMode,

    /// Cluster mode: how often the slot map is reloaded. It is also reloaded after a
    /// `-MOVED` and when a node connection fails, at most a few times per second.
    #[arg(long, env = "REDIS_PROXY_SLOTS_RELOAD_INTERVAL", default_value = "3s", value_parser = humantime::parse_duration)]
    pub slots_reload_interval: Duration,

    /// Cluster mode: where reads (cache misses included) go. `master`; `replica` (a replica
    /// of the key's slot, the master only if the slot has none); `prefer-replica` (a replica
    /// while its connection is up, else the master). Writes always go to masters. Reads from
    /// replicas may lag behind writes by the replication delay.
    #[arg(long, env = "REDIS_PROXY_READ_FROM", value_enum, default_value_t = ReadFrom::Master)]
    pub read_from: ReadFrom,

    /// Most keys cached by the whole proxy, split evenly across threads; 0 turns the cache off.
    #[arg(long, env = "REDIS_PROXY_CAPACITY", default_value_t = 10_000)]
    pub capacity: usize,

    /// Longest a cached entry lives (e.g. 500ms, 2m, 1h). A key's own TTL in Redis, when
    /// shorter, bounds it too.
    #[arg(long, env = "REDIS_PROXY_EXPIRE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub expire: Duration,

    /// Number of shards: one pinned thread each, with its own listener, cache and backend
    /// connection. Default: one per CPU.
    #[arg(long, env = "REDIS_PROXY_THREADS")]
    pub threads: Option<usize>,

    /// Most requests in flight to Redis per shard; beyond it clients wait (backpressure).
    #[arg(long, env = "REDIS_PROXY_REDIS_OPS_LIMIT", default_value_t = 4096)]
    pub redis_ops_limit: usize,

    /// Time allowed to connect (and authenticate) to Redis before requests get an error.
    #[arg(long, env = "REDIS_PROXY_CONNECT_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// How the cache learns of writes made straight to Redis: `tracking` uses Redis's
    /// server-assisted client-side caching (RESP3 push invalidations); `off` relies on
    /// --expire and on the proxy's own writes only.
    #[arg(long, env = "REDIS_PROXY_INVALIDATION", value_enum, default_value_t = Invalidation::Tracking)]
    pub invalidation: Invalidation,

    /// Longest a request may wait for Redis's reply. Past it, every request waiting on that
    /// shard's connection gets an error and the connection is reset (a frozen or hung Redis).
    #[arg(long, env = "REDIS_PROXY_BACKEND_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub backend_timeout: Duration,

    /// Most client connections at once; past it a new client gets
    /// `-ERR max number of clients reached` and is closed.
    #[arg(long, env = "REDIS_PROXY_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,

    /// Largest unprocessed input one client may buffer (a single command included); past it
    /// the client gets a protocol error and is closed.
    #[arg(long, env = "REDIS_PROXY_MAX_REQUEST_BYTES", default_value_t = 1 << 30)]
    pub max_request_bytes: usize,

    /// Most reply bytes a client may leave unread. At half of it the proxy stops reading the
    /// client's requests; past it, or after 2 s at half without reading anything, the client is
    /// disconnected.
    #[arg(long, env = "REDIS_PROXY_CLIENT_OUTPUT_LIMIT", default_value_t = 256 << 20)]
    pub client_output_limit: usize,

    /// Dedicated backend connections each shard keeps open and idle, so that pinning a client
    /// (WATCH, a blocking command) costs no connect.
    #[arg(
        long,
        env = "REDIS_PROXY_BACKEND_IDLE_CONNECTIONS",
        default_value_t = 2
    )]
    pub backend_idle_connections: usize,

    /// Most dedicated backend connections in use per shard (clients in WATCH or blocked);
    /// past it such a command gets `-ERR max pinned connections reached`.
    #[arg(long, env = "REDIS_PROXY_MAX_PINNED", default_value_t = 256)]
    pub max_pinned: usize,

    /// Most keys remembered for the proxy's CLIENT TRACKING clients, split across threads (as
    /// redis-server's tracking-table-max-keys): past it, a key is forgotten and the clients
    /// that read it are sent its invalidation.
    #[arg(
        long,
        env = "REDIS_PROXY_TRACKING_TABLE_MAX_KEYS",
        default_value_t = 1_000_000
    )]
    pub tracking_table_max_keys: usize,

    /// Close client connections that send nothing for this long (0 = never).
    #[arg(long, env = "REDIS_PROXY_CLIENT_IDLE_TIMEOUT", default_value = "0s", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,

    /// Require clients to AUTH with this password (as redis-server's requirepass). Prefer
    /// --requirepass-file: a command line is visible to every local user.
    #[arg(long, env = "REDIS_PROXY_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// Read the client password from this file (trailing newline ignored).
    #[arg(
        long,
        env = "REDIS_PROXY_REQUIREPASS_FILE",
        conflicts_with = "requirepass"
    )]
    pub requirepass_file: Option<std::path::PathBuf>,

    /// Serve /metrics, /healthz and /readyz over HTTP on this address (off unless given).
    #[arg(long, env = "REDIS_PROXY_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

impl fmt::Debug for Config {
    /// Like the derived form, with the client password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis", &self.redis)
            .field("capacity", &self.capacity)
            .field("expire", &self.expire)
            .field("threads", &self.threads)
            .field("invalidation", &self.invalidation)
            .field("requirepass", &self.requirepass.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadFrom {
    Master,
    Replica,
    PreferReplica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Invalidation {
    Tracking,
    Off,
}

/// Where the backing Redis is and how to log in. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Every node given (`host`/`port` first): seed nodes of a cluster.
    pub seeds: Vec<(String, u16)>,
}

/// `host:port`, `[v6]:port`.
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got '{s}'"))?;
    let port = port.parse().map_err(|_| format!("invalid port in '{s}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("no host in '{s}'"));
    }
    Ok((host.to_string(), port))
}

impl RedisTarget {
    /// Parses one target or a comma-separated list of seed nodes (credentials and db, in the
    /// URL form, apply to all).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, s),
        };
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (Some(auth), hosts),
            None => (None, rest),
        };
        let (hosts, path) = match hosts.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (hosts, None),
        };
        let mut list = hosts.split(',');
        let first = list.next().unwrap_or_default();
        let others: Vec<&str> = list.collect();
        if others.is_empty() {
            return Self::parse_one(s);
        }
        let mut one = String::new();
        if let Some(scheme) = scheme {
            one.push_str(scheme);
            one.push_str("://");
        }
        if let Some(auth) = auth {
            one.push_str(auth);
            one.push('@');
        }
        one.push_str(first);
        if let Some(path) = path {
            one.push('/');
            one.push_str(path);
        }
        let mut t = Self::parse_one(&one)?;
        for h in others {
            let default_port = scheme.is_some().then_some(6379);
            let seed = match (h.rsplit_once(':'), default_port) {
                (Some((_, p)), _) if p.parse::<u16>().is_ok() => host_port(h)?,
                (_, Some(port)) if !h.is_empty() => (h.to_string(), port),
                _ => host_port(h)?,
            };
            t.seeds.push(seed);
        }
        Ok(t)
    }

    fn parse_one(s: &str) -> Result<Self, String> {
        let mut t = Self::parse_single(s)?;
        t.seeds = vec![(t.host.clone(), t.port)];
        Ok(t)
    }

    fn parse_single(s: &str) -> Result<Self, String> {
        if s.contains("://") {
            let url = url::Url::parse(s).map_err(|e| format!("invalid Redis URL: {e}"))?;
            if url.scheme() != "redis" {
                return Err(format!(
                    "unsupported scheme '{}': use redis://",
                    url.scheme()
                ));
            }
            let host = url.host_str().ok_or("Redis URL has no host")?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let decode = |v: &str| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| "Redis URL credentials are not valid UTF-8".to_string())
            };
            let user = (!url.username().is_empty())
                .then(|| decode(url.username()))
                .transpose()?;
            let password = url.password().map(decode).transpose()?;
            let path = url.path().trim_start_matches('/');
            let db = if path.is_empty() {
                0
            } else {
                path.parse()
                    .map_err(|_| format!("invalid db number '{path}'"))?
            };
            Ok(RedisTarget {
                host,
                port: url.port().unwrap_or(6379),
                user,
                password,
                db,
                seeds: Vec::new(),
            })
        } else {
            let (host, port) = host_port(s)?;
            Ok(RedisTarget {
                host,
                port,
                user: None,
                password: None,
                db: 0,
                seeds: Vec::new(),
            })
        }
    }

    /// Resolves the host once, at start-up: name resolution would block a shard's core.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve Redis host '{}': {e}", self.host))?
            .next()
            .ok_or_else(|| format!("Redis host '{}' resolves to no address", self.host))
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}")?;
        }
        if self.password.is_some() {
            write!(f, ":***")?;
        }
        if self.user.is_some() || self.password.is_some() {
            write!(f, "@")?;
        }
        let seeds = if self.seeds.is_empty() {
            vec![(self.host.clone(), self.port)]
        } else {
            self.seeds.clone()
        };
        for (i, (host, port)) in seeds.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            if host.contains(':') {
                write!(f, "[{host}]:{port}")?;
            } else {
                write!(f, "{host}:{port}")?;
            }
        }
        write!(f, "/{}", self.db)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Config {
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Cache capacity of one shard: the total split evenly, rounded up.
    pub fn shard_capacity(&self) -> usize {
        self.capacity.div_ceil(self.threads())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        if self.threads() > 1024 {
            return Err("--threads must be at most 1024".into());
        }
        if self.redis_ops_limit == 0 {
            return Err("--redis-ops-limit must be at least 1".into());
        }
        if self.expire.is_zero() && self.capacity > 0 {
            return Err(
                "--expire must be positive (use --capacity 0 to turn the cache off)".into(),
            );
        }
        if self.expire > MAX_EXPIRE {
            return Err("--expire must be at most 20 days".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("--connect-timeout must be positive".into());
        }
        if self.slots_reload_interval < Duration::from_millis(100) {
            return Err("--slots-reload-interval must be at least 100ms".into());
        }
        if self.backend_timeout.is_zero() {
            return Err("--backend-timeout must be positive".into());
        }
        if self.max_clients == 0 {
            return Err("--max-clients must be at least 1".into());
        }
        if self.max_request_bytes < 1024 {
            return Err("--max-request-bytes must be at least 1024".into());
        }
        if self.client_output_limit < 1024 {
            return Err("--client-output-limit must be at least 1024".into());
        }
        RedisTarget::parse(&self.redis_url)?;
        if self.requirepass.as_deref() == Some("") {
            return Err("--requirepass must not be empty".into());
        }
        self.listen_addr()?;
        self.http_addr()?;
        Ok(())
    }

    /// Parses `--redis` and loads --requirepass-file. Called once at start-up, after parsing.
    pub fn prepare(&mut self) -> Result<(), String> {
        self.redis = RedisTarget::parse(&self.redis_url)?;
        if let Some(path) = &self.requirepass_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --requirepass-file {}: {e}", path.display()))?;
            let pass = text.trim_end_matches(['\r', '\n']).to_string();
            if pass.is_empty() {
                return Err(format!("--requirepass-file {} is empty", path.display()));
            }
            self.requirepass = Some(pass);
        }
        Ok(())
    }

    /// --http, resolved (`None` when HTTP is off).
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, String> {
        let Some(http) = &self.http else {
            return Ok(None);
        };
        let addr = http
            .to_socket_addrs()
            .map_err(|e| format!("invalid --http '{http}': {e}"))?
            .next()
            .ok_or_else(|| format!("--http '{http}' resolves to no address"))?;
        Ok(Some(addr))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen
            .to_socket_addrs()
            .map_err(|e| format!("invalid --listen '{}': {e}", self.listen))?
            .next()
            .ok_or_else(|| format!("--listen '{}' resolves to no address", self.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut c =
            Config::try_parse_from(std::iter::once("redis-proxy").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        c.validate()?;
        c.prepare()?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6380");
        assert_eq!(c.redis.port, 6379);
        assert_eq!(c.capacity, 10_000);
        assert_eq!(c.expire, Duration::from_secs(300));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.invalidation, Invalidation::Tracking);
        assert!(c.threads() >= 1);
        assert_eq!(c.http_addr(), Ok(None), "HTTP is off by default");
    }

    #[test]
    fn durations_and_numbers() {
        let c = parse(&["--expire", "500ms", "--capacity", "0", "--threads", "3"]).unwrap();
        assert_eq!(c.expire, Duration::from_millis(500));
        assert_eq!(c.shard_capacity(), 0);
        let c = parse(&["--expire", "2m", "--capacity", "10", "--threads", "3"]).unwrap();
        assert_eq!(c.expire, Duration::from_secs(120));
        assert_eq!(c.shard_capacity(), 4);
    }

    #[test]
    fn rejections() {
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--expire", "soon"]).is_err());
        assert!(parse(&["--expire", "21days"]).is_err());
        assert!(parse(&["--redis-ops-limit", "0"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--http", "nowhere"]).is_err());
        assert!(parse(&["--redis", "ftp://x:1"]).is_err());
        assert!(parse(&["--redis", "localhost"]).is_err());
        assert!(parse(&["--redis", "redis://h:1/x"]).is_err());
    }

    #[test]
    fn redis_urls() {
        let t = RedisTarget::parse("redis://bob:p%40ss@db.example:6390/3").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("db.example", 6390, 3));
        assert_eq!(t.user.as_deref(), Some("bob"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        let t = RedisTarget::parse("redis://:secret@127.0.0.1").unwrap();
        assert_eq!(
            (t.user.clone(), t.password.as_deref(), t.port),
            (None, Some("secret"), 6379)
        );
        let t = RedisTarget::parse("[::1]:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert_eq!(t.seeds, [("::1".to_string(), 7000)]);
    }

    #[test]
    fn cluster_seed_lists() {
        let t =
            RedisTarget::parse("redis://bob:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.1", 7000));
        assert_eq!(t.password.as_deref(), Some("pw"));
        let seeds: Vec<_> = t.seeds.iter().map(|(h, p)| format!("{h}/{p}")).collect();
        assert_eq!(seeds, ["10.0.0.1/7000", "10.0.0.2/7001", "::1/7002"]);
        assert_eq!(
            t.to_string(),
            "redis://bob:***@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0"
        );
        let t = RedisTarget::parse("127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert_eq!(t.seeds.len(), 2);
        let t = RedisTarget::parse("redis://a.example,b.example:7001").unwrap();
        assert_eq!(t.seeds[0], ("a.example".to_string(), 6379));
        assert_eq!(t.seeds[1], ("b.example".to_string(), 7001));
        assert!(RedisTarget::parse("127.0.0.1:7000,nowhere").is_err());
        assert!(RedisTarget::parse("127.0.0.1:7000,").is_err());
        let c = parse(&[
            "--redis",
            "h:1,h:2",
            "--cluster",
            "on",
            "--read-from",
            "prefer-replica",
        ])
        .unwrap();
        assert_eq!(c.cluster, ClusterMode::On);
        assert_eq!(c.read_from, ReadFrom::PreferReplica);
        assert_eq!(c.slots_reload_interval, Duration::from_secs(3));
        assert!(parse(&["--slots-reload-interval", "10ms"]).is_err());
    }

    #[test]
    fn limits_and_auth() {
        let c = parse(&[
            "--max-clients",
            "5",
            "--client-idle-timeout",
            "10s",
            "--requirepass",
            "pw",
        ])
        .unwrap();
        assert_eq!(c.max_clients, 5);
        assert_eq!(c.client_idle_timeout, Duration::from_secs(10));
        assert!(!format!("{c:?}").contains("pw\""));
        assert!(parse(&["--max-clients", "0"]).is_err());
        assert!(parse(&["--requirepass", ""]).is_err());
        assert!(parse(&["--backend-timeout", "0s"]).is_err());
        assert!(parse(&["--requirepass", "a", "--requirepass-file", "f"]).is_err());
    }

    #[test]
    fn password_file() {
        let path = std::env::temp_dir().join(format!("rp-pass-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = parse(&["--requirepass-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.requirepass.as_deref(), Some("s3cret"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn password_never_displayed() {
        let t = RedisTarget::parse("redis://bob:hunter2@h:1/0").unwrap();
        assert!(!format!("{t} {t:?}").contains("hunter2"));
        for bad in [
            "redis://:hunter2@h:99999",
            "redis://:hunter2@h:1/x",
            "rediss://:hunter2@h:1",
        ] {
            let e = parse(&["--redis", bad]).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
