//! Shared helpers for the integration tests: a real `redis-server` per test,
//! the proxy binary in front of it, and a small raw RESP2 client.
#![allow(dead_code)]

pub mod clients;
pub mod cluster;

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Default read timeout of a [`Raw`] client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Picks a currently free loopback port (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local_addr")
        .port()
}

fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Polls `child` until it exits or `timeout` elapses.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("try_wait: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a RESP `PING` and returns the first reply line, if any (readiness probe).
fn ping_line(port: u16) -> Option<Vec<u8>> {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") && line.len() < 4096 {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(line)
}

/// True if the server at `port` answers PING with +PONG.
fn ping_ok(port: u16) -> bool {
    ping_line(port).as_deref() == Some(b"+PONG\r\n")
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

/// A real `redis-server` child process on its own loopback port.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a fresh redis-server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start) with extra redis-server arguments
    /// (e.g. `["--requirepass", "pw"]`); they are kept for `restart`.
    pub fn start_with(extra: &[&str]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let mut srv = RedisServer {
                port,
                child: None,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            if srv.try_spawn() {
                return srv;
            }
        }
        panic!("could not start redis-server (tried 5 ports)");
    }

    /// Starts a redis-server on a given port (e.g. one a proxy already points at).
    pub fn start_on_port(port: u16) -> Self {
        let mut srv = RedisServer {
            port,
            child: None,
            extra: Vec::new(),
        };
        srv.restart();
        srv
    }

    fn spawn_child(port: u16, extra: &[String]) -> Child {
        // A directory of its own: a dump.rdb lying in the working directory would otherwise
        // be loaded at start.
        let dir = std::env::temp_dir().join(format!("redis-proxy-tests-{port}"));
        let _ = std::fs::create_dir_all(&dir);
        Command::new("redis-server")
            .arg("--dir")
            .arg(&dir)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed and on PATH?)")
    }

    /// Spawns on `self.port`; true once it answers PING within 5s.
    fn try_spawn(&mut self) -> bool {
        let mut child = Self::spawn_child(self.port, &self.extra);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited early, e.g. port taken
            }
            if let Some(line) = ping_line(self.port) {
                if line == b"+PONG\r\n" || line.starts_with(b"-NOAUTH") {
                    self.child = Some(child);
                    return true;
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server not running").id()
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills (if running) and starts a new, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.try_spawn() {
            assert!(
                Instant::now() < deadline,
                "could not restart redis-server on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOP: the server keeps its sockets but stops processing.
    pub fn stop(&self) {
        send_signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`stop`](Self::stop).
    pub fn cont(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// A direct raw connection to this redis-server (bypassing the proxy),
    /// authenticated if the server was started with `--requirepass`.
    pub fn connect(&self) -> Raw {
        let mut c = Raw::connect(self.port);
        if let Some(i) = self.extra.iter().position(|a| a == "--requirepass") {
            let pw = &self.extra[i + 1];
            assert_eq!(
                c.cmd(&["AUTH", pw.as_str()]),
                Reply::ok(),
                "AUTH to redis-server"
            );
        }
        c
    }

    /// Runs one command on a fresh direct connection.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.connect().cmd(args)
    }

    /// The value of `field` in `INFO <section>`, if present.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let info = match self.cmd(&["INFO", section]) {
            Reply::Bulk(Some(b)) => String::from_utf8(b).expect("INFO is utf-8"),
            other => panic!("INFO {section}: unexpected reply {other:?}"),
        };
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
    }

    /// Client connections to this server, not counting the one that asks.
    pub fn other_clients(&self) -> u64 {
        let n: u64 = self
            .info("clients", "connected_clients")
            .expect("connected_clients in INFO clients")
            .parse()
            .expect("connected_clients:N");
        n - 1
    }

    /// `calls=` of `cmdstat_<name>` from `INFO commandstats` (0 if absent).
    pub fn cmdstat_calls(&self, name: &str) -> u64 {
        let Some(stats) = self.info(
            "commandstats",
            &format!("cmdstat_{}", name.to_ascii_lowercase()),
        ) else {
            return 0;
        };
        stats
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .expect("calls= in cmdstat")
            .parse()
            .expect("calls=N")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL works on a SIGSTOPped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// the proxy binary
// ---------------------------------------------------------------------------

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The `redis-proxy` binary under test.
pub struct Proxy {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proxy {
    /// Starts the proxy in front of `127.0.0.1:redis_port` with extra CLI args.
    pub fn start(redis_port: u16, extra: &[&str]) -> Self {
        Self::start_env(redis_port, extra, &[])
    }

    /// Like [`start`](Self::start) with extra environment variables.
    pub fn start_env(redis_port: u16, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(&format!("127.0.0.1:{redis_port}"), extra, env)
    }

    /// Starts the proxy with `--redis <redis>` verbatim (e.g. a `redis://` URL).
    pub fn start_with(redis: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["--redis".to_string(), redis.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch(&args, env, true)
    }

    /// Starts the proxy configured only through the environment: the listen
    /// address goes in `REDIS_PROXY_LISTEN`, everything else is up to `env`.
    pub fn start_env_only(env: &[(&str, &str)]) -> Self {
        Self::launch(&[], env, false)
    }

    fn command(args: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_redis-proxy"));
        // Only what the test asks for: no REDIS_PROXY_* settings, driver
        // overrides or log filter leaking in from the caller's environment.
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("REDIS_PROXY_") || name.starts_with("MONOIO_") || name == "RUST_LOG"
            {
                cmd.env_remove(&var);
            }
        }
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn launch(args: &[String], env: &[(&str, &str)], listen_flag: bool) -> Self {
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
            let log = std::env::temp_dir().join(format!(
                "redis-proxy-test-{}-{}-{}.log",
                std::process::id(),
                port,
                seq
            ));
            let log_file = std::fs::File::create(&log).expect("create proxy log file");
            let listen = format!("127.0.0.1:{port}");
            let mut all_args = Vec::new();
            let mut all_env: Vec<(String, String)> = Vec::new();
            if listen_flag {
                all_args.extend(["--listen".to_string(), listen]);
            } else {
                all_env.push(("REDIS_PROXY_LISTEN".into(), listen));
            }
            all_args.extend(args.iter().cloned());
            all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let child = Self::command(&all_args, &all_env)
                .stderr(Stdio::from(log_file))
                .spawn()
                .expect("spawn redis-proxy");
            let mut proxy = Proxy {
                port,
                child: Some(child),
                log,
                exit: None,
            };
            if proxy.wait_ready(Duration::from_secs(10)) {
                return proxy;
            }
            last_log = proxy.log_contents();
            // Drop kills it and removes the log; try another port.
        }
        panic!("redis-proxy did not become ready (args {args:?}, env {env:?}); last stderr:\n{last_log}");
    }

    /// Runs the binary with exactly `args`/`env` (no --listen added) and
    /// waits up to `timeout` for it to exit: (status, stderr). Panics (after
    /// killing it) if it keeps running.
    pub fn run_to_exit(
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> (ExitStatus, String) {
        let (status, _, stderr) = Self::run_capture(args, env, timeout);
        (status, stderr)
    }

    /// Like [`run_to_exit`](Self::run_to_exit), keeping stdout too: (status, stdout, stderr).
    pub fn run_capture(
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> (ExitStatus, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut child = Self::command(&args, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redis-proxy");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        match wait_timeout(&mut child, timeout) {
            Some(status) => (status, out.join().unwrap(), err.join().unwrap()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-proxy {args:?} still running after {timeout:?}");
            }
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                    self.child = None;
                    return false;
                }
            }
            // +PONG, or -NOAUTH when the proxy requires a password.
            if let Some(line) = ping_line(self.port) {
                if line == b"+PONG\r\n" || line.starts_with(b"-NOAUTH") {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy not running").id()
    }

    /// A new raw client connection to the proxy.
    pub fn connect(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// Waits for the process to exit; `None` on timeout (process left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        let child = self.child.as_mut().expect("proxy not running");
        let status = wait_timeout(child, timeout)?;
        self.exit = Some(status);
        self.child = None;
        Some(status)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if wait_timeout(&mut child, Duration::from_secs(3)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            let log = self.log_contents();
            if !log.trim().is_empty() {
                eprintln!(
                    "---- redis-proxy (port {}) stderr ----\n{}\n---- end ----",
                    self.port, log
                );
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------
// RESP2
// ---------------------------------------------------------------------------

/// A RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }
    pub fn pong() -> Reply {
        Reply::Simple("PONG".into())
    }
    pub fn nil() -> Reply {
        Reply::Bulk(None)
    }
    pub fn bulk(b: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Some(b.as_ref().to_vec()))
    }
    pub fn array_of_bulks<T: AsRef<[u8]>>(items: &[T]) -> Reply {
        Reply::Array(Some(items.iter().map(Reply::bulk).collect()))
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
    /// The error text (without the leading `-`), if this is an error.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
    /// Bulk payload as UTF-8 (lossy); panics if not a non-nil bulk.
    pub fn as_str(&self) -> String {
        match self {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Simple(s) => s.clone(),
            other => panic!("expected a bulk string, got {other:?}"),
        }
    }
    pub fn as_int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

fn fmt_bytes(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const MAX: usize = 200;
    let shown = &b[..b.len().min(MAX)];
    write!(f, "\"{}\"", shown.escape_ascii())?;
    if b.len() > MAX {
        write!(f, "...({} bytes)", b.len())?;
    }
    Ok(())
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => fmt_bytes(b, f),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<T: AsRef<[u8]>>(args: &[T]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a reply back to RESP2 bytes (handy for byte-exact comparisons).
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    fn go(r: &Reply, out: &mut Vec<u8>) {
        match r {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for i in items {
                    go(i, out);
                }
            }
        }
    }
    go(r, &mut out);
    out
}

/// A raw RESP client over a blocking `TcpStream` with an input buffer, so
/// pipelined replies can be read one at a time.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    /// (local, peer) ports, kept for after the connection is gone.
    ports: (u16, u16),
}

fn proto_err(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().expect("local_addr").port();
        Raw {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            ports: (local, port),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Bytes written on this connection that the peer process has not read yet (in this
    /// socket's send queue or the peer's receive queue); 0 once it took everything sent.
    /// 0 too once the connection is gone. The peer must be on this machine.
    pub fn unread_by_peer(&self) -> u64 {
        let (local, peer) = self.ports;
        let (unacked, _) = tcp_queues(local, peer).unwrap_or_default();
        let (_, unread) = tcp_queues(peer, local).unwrap_or_default();
        unacked + unread
    }

    /// A second handle on the socket, e.g. to write from another thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone TcpStream")
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Writes raw bytes, returning the error instead of panicking.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one command (RESP array) without reading the reply.
    pub fn send_cmd<T: AsRef<[u8]>>(&mut self, args: &[T]) {
        let bytes = encode(args);
        self.send(&bytes);
    }

    /// Sends one command and reads its reply.
    pub fn cmd<T: AsRef<[u8]>>(&mut self, args: &[T]) -> Reply {
        self.send_cmd(args);
        self.read_reply()
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer. Ok(0) on EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let t = self.stream.read_timeout().ok().flatten();
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("read timed out after {t:?}"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn fill_or_eof(&mut self) -> io::Result<()> {
        match self.fill()? {
            0 => Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed by peer",
            )),
            _ => Ok(()),
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    pub fn try_read_line_raw(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            self.fill_or_eof()?;
        }
    }

    /// Reads one CRLF-terminated line as a string (without the CRLF); panics on error.
    pub fn read_line_raw(&mut self) -> String {
        let line = self
            .try_read_line_raw()
            .unwrap_or_else(|e| panic!("reading a line: {e}"));
        String::from_utf8_lossy(&line).into_owned()
    }

    fn read_exact_buf(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            self.fill_or_eof()?;
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn parse_len(line: &[u8]) -> io::Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                proto_err(format!(
                    "bad length/integer {:?}",
                    line.escape_ascii().to_string()
                ))
            })
    }

    /// Reads and parses exactly one RESP2 reply.
    pub fn try_read_reply(&mut self) -> io::Result<Reply> {
        let line = self.try_read_line_raw()?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(proto_err("empty reply line".into()));
        };
        let text = || String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => Ok(Reply::Int(Self::parse_len(rest)?)),
            b'$' => {
                let n = Self::parse_len(rest)?;
                if n == -1 {
                    return Ok(Reply::Bulk(None));
                }
                if n < 0 {
                    return Err(proto_err(format!("bad bulk length {n}")));
                }
                let data = self.read_exact_buf(n as usize + 2)?;
                if &data[n as usize..] != b"\r\n" {
                    return Err(proto_err("bulk string not followed by CRLF".into()));
                }
                Ok(Reply::Bulk(Some(data[..n as usize].to_vec())))
            }
            b'*' => {
                let n = Self::parse_len(rest)?;
                if n == -1 {
                    return Ok(Reply::Array(None));
                }
                if n < 0 {
                    return Err(proto_err(format!("bad array length {n}")));
                }
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(self.try_read_reply()?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(proto_err(format!(
                "not a RESP2 reply type byte {:?} in line {:?}",
                other as char,
                line.escape_ascii().to_string()
            ))),
        }
    }

    /// Reads one reply; panics (with context) on timeout, EOF or bad protocol.
    pub fn read_reply(&mut self) -> Reply {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e} ({:?})", e.kind()))
    }

    /// Bytes already received but not consumed yet.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads until EOF (or connection reset) within `timeout`; panics if the
    /// peer keeps the connection open. Returns any unconsumed bytes.
    pub fn expect_closed_within(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "connection still open after {timeout:?} (unread: {:?})",
                self.pending_bytes().escape_ascii().to_string()
            );
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.fill() {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    break
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => panic!("waiting for close: {e}"),
            }
        }
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let rest = self.pending_bytes().to_vec();
        self.pos = self.buf.len();
        rest
    }

    /// [`expect_closed_within`](Self::expect_closed_within) with a 3s timeout.
    pub fn expect_closed(&mut self) -> Vec<u8> {
        self.expect_closed_within(Duration::from_secs(3))
    }
}

/// Asserts that `r` is an error whose text starts with `prefix`.
#[track_caller]
pub fn assert_err_prefix(r: &Reply, prefix: &str) {
    match r {
        Reply::Error(e) if e.starts_with(prefix) => {}
        other => panic!("expected an error starting with {prefix:?}, got {other:?}"),
    }
}

/// The established IPv4 TCP sockets on this machine (from /proc/net/tcp), as (local port,
/// remote port, sent but not yet acknowledged bytes, received but not yet read bytes).
fn established_sockets() -> Vec<(u16, u16, u64, u64)> {
    const ESTABLISHED: &str = "01";
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[3] != ESTABLISHED {
                return None;
            }
            let (tx, rx) = f[4].split_once(':')?;
            Some((
                port_of(f[1])?,
                port_of(f[2])?,
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        })
        .collect()
}

/// Kernel queues of the established IPv4 TCP socket `local_port` -> `remote_port`: (sent but
/// not yet acknowledged, received but not yet read) bytes; `None` once it is no longer
/// established.
pub fn tcp_queues(local_port: u16, remote_port: u16) -> Option<(u64, u64)> {
    established_sockets()
        .into_iter()
        .find(|&(l, r, _, _)| l == local_port && r == remote_port)
        .map(|(_, _, tx, rx)| (tx, rx))
}

/// Bytes received but not yet read on all established connections of a server listening on
/// `port` (e.g. requests a frozen redis-server has not taken).
pub fn unread_at(port: u16) -> u64 {
    established_sockets()
        .into_iter()
        .filter(|&(l, _, _, _)| l == port)
        .map(|(_, _, _, rx)| rx)
        .sum()
}

/// Polls `f` every 20ms until it returns true or `timeout` elapses.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Tiny deterministic PRNG (xorshift64*) so tests need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A file in the temp dir (a config file, a password file), removed on drop.
pub struct TempFile {
    path: PathBuf,
}

static TEMP_SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "redis-proxy-test-{}-{seq}-{name}",
            std::process::id()
        ));
        let f = TempFile { path };
        f.write(contents);
        f
    }

    /// Replaces the contents in one step (write aside, rename), so a reader never sees half.
    pub fn write(&self, contents: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, contents).expect("write temp file");
        std::fs::rename(&tmp, &self.path).expect("rename temp file");
    }

    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Proxy {
    /// Waits until the log has a line containing `needle`, or panics with the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let mut log = String::new();
        let found = wait_until(timeout, || {
            log = self.log_contents();
            log.contains(needle)
        });
        assert!(
            found,
            "no log line with {needle:?} within {timeout:?}; log:\n{log}"
        );
        log
    }
}
