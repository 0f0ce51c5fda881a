//! CLIENT and RESET for the proxy's own clients, in redis-server's formats.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::Duration;

fn id_of(w: &mut Wire) -> u64 {
    let r = w.cmd(&["CLIENT", "ID"]);
    r.trim_start_matches(':').trim().parse().unwrap()
}

#[test]
fn id_name_info_list() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut a = Wire::connect(proxy.port());
    a.cmd(&["DBSIZE"]); // the backend connection is up
    let mut others: Vec<Wire> = (0..5).map(|_| Wire::connect(proxy.port())).collect();
    let id = id_of(&mut a);
    let ids: Vec<u64> = others.iter_mut().map(id_of).collect();
    assert!(!ids.contains(&id));
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "worker-1"]), "+OK\r\n");
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), "$8\r\nworker-1\r\n");
    assert_eq!(
        a.cmd(&["CLIENT", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    let info = a.cmd(&["CLIENT", "INFO"]);
    assert!(info.contains(&format!("id={id} ")), "{info}");
    assert!(
        info.contains(" name=worker-1 ") && info.contains(" db=0 "),
        "{info}"
    );
    assert!(
        info.contains(" cmd=client|info ") && info.contains(" resp=2"),
        "{info}"
    );
    // Every client of the proxy, whichever shard it is on, with its name.
    let list = others[0].cmd(&["CLIENT", "LIST"]);
    assert_eq!(list.matches("id=").count(), 6, "{list}");
    assert!(list.contains("name=worker-1"), "{list}");
    for i in &ids {
        assert!(list.contains(&format!("id={i} ")), "{list}");
    }
    let one = others[0].cmd(&["CLIENT", "LIST", "ID", &id.to_string()]);
    assert_eq!(one.matches("id=").count(), 1, "{one}");
    // HELLO reports the same id; RESP3 clients get CLIENT INFO as a verbatim string.
    assert!(a.cmd(&["HELLO", "3"]).contains(&format!("id\r\n:{id}\r\n")));
    assert!(a.cmd(&["CLIENT", "INFO"]).starts_with("="));
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), "$8\r\nworker-1\r\n");
    // HELLO's SETNAME names the client too.
    a.cmd(&["HELLO", "2", "SETNAME", "renamed"]);
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), "$7\r\nrenamed\r\n");
}

#[test]
fn errors_as_redis_server() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = Wire::connect(proxy.port());
    let mut d = Wire::connect(redis.port());
    p.cmd(&["DBSIZE"]);
    for args in [
        &["CLIENT", "NOSUCH"][..],
        &["CLIENT"],
        &["CLIENT", "SETNAME"],
        &["CLIENT", "GETNAME", "x"],
        &["CLIENT", "SETINFO", "LIB-NAME", "x"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "REPLY", "MAYBE"],
        &["CLIENT", "NO-EVICT", "maybe"],
        &["CLIENT", "UNBLOCK", "9999999"],
    ] {
        assert_eq!(p.cmd(args), d.cmd(args), "{args:?}");
    }
    // Forwarded (server-wide).
    assert_eq!(p.cmd(&["CLIENT", "PAUSE", "10", "WRITE"]), "+OK\r\n");
    assert_eq!(p.cmd(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
}

#[test]
fn kill_by_id_and_address() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut admin = Wire::connect(proxy.port());
    let mut victim = Wire::connect(proxy.port());
    let id = id_of(&mut victim);
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":1\r\n"
    );
    assert!(
        victim.closed_within(Duration::from_secs(5)),
        "killed client still open"
    );
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":0\r\n"
    );
    let mut victim = Wire::connect(proxy.port());
    let info = victim.cmd(&["CLIENT", "INFO"]);
    let addr = info
        .split(' ')
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap()
        .to_string();
    assert_eq!(admin.cmd(&["CLIENT", "KILL", &addr]), "+OK\r\n");
    assert!(victim.closed_within(Duration::from_secs(5)));
    // SKIPME yes by default: a client does not kill itself by filter.
    let me = id_of(&mut admin);
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &me.to_string()]),
        ":0\r\n"
    );
    assert_eq!(admin.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn reply_off_on_skip() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = Wire::connect(proxy.port());
    p.send(&["CLIENT", "REPLY", "OFF"]);
    p.send(&["SET", "a", "1"]);
    p.send(&["GET", "a"]);
    p.send(&["INCR", "n"]);
    assert_eq!(p.cmd(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
    p.send(&["CLIENT", "REPLY", "SKIP"]);
    p.send(&["INCR", "n"]);
    assert_eq!(p.cmd(&["INCR", "n"]), ":3\r\n");
    assert_eq!(p.cmd(&["GET", "a"]), "$1\r\n1\r\n");
}

#[test]
fn reset_returns_to_a_fresh_connection() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut p = Wire::connect(proxy.port());
    p.cmd(&["HELLO", "3"]);
    p.cmd(&["SELECT", "2"]);
    p.cmd(&["CLIENT", "SETNAME", "n"]);
    p.cmd(&["WATCH", "w"]);
    p.cmd(&["MULTI"]);
    p.cmd(&["SET", "x", "1"]);
    assert_eq!(p.cmd(&["RESET"]), "+RESET\r\n");
    assert_eq!(p.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(p.cmd(&["GET", "nothing"]), "$-1\r\n", "back to RESP2");
    assert_eq!(p.cmd(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert!(p.cmd(&["CLIENT", "INFO"]).contains(" db=0 "));
    assert_eq!(p.cmd(&["EXISTS", "x"]), ":0\r\n");
}

fn blocked_clients(redis: &RedisServer) -> usize {
    let info = Wire::connect(redis.port()).cmd(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn unblock_and_kill_a_blocked_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut admin = Wire::connect(proxy.port());
    for (how, want) in [
        ("TIMEOUT", "*-1\r\n"),
        (
            "ERROR",
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        let mut b = Wire::connect(proxy.port());
        let id = id_of(&mut b);
        b.send(&["BLPOP", "never", "0"]);
        assert!(wait_until(Duration::from_secs(5), || blocked_clients(
            &redis
        ) == 1));
        assert_eq!(
            admin.cmd(&["CLIENT", "UNBLOCK", &id.to_string(), how]),
            ":1\r\n"
        );
        assert_eq!(String::from_utf8_lossy(&b.frame()), want);
        assert_eq!(admin.cmd(&["CLIENT", "UNBLOCK", &id.to_string()]), ":0\r\n");
    }
    let mut b = Wire::connect(proxy.port());
    let id = id_of(&mut b);
    b.send(&["BLPOP", "never", "0"]);
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 1));
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":1\r\n"
    );
    assert!(b.closed_within(Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &redis
    ) == 0));
}
