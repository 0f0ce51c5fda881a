//! Pub/sub through the proxy: confirmations, subscribed mode and messages byte for byte as
//! redis-server sends them (RESP2 and RESP3), fan-out with one subscription per shard at Redis,
//! counts in the proxy's clients' terms, confirmations that wait for Redis, restoring after a
//! reconnect, a subscriber that does not read, keyspace notifications.
mod common;
#[path = "common/frames.rs"]
mod frames;

use common::{wait_until, Proxy, RedisServer};
use frames::Wire;
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `script` straight at Redis and through the proxy (after `hello`, whose reply is not
/// compared) and compares every reply byte for byte.
fn same_replies(redis: &RedisServer, proxy: &Proxy, hello: Option<&[&str]>, script: &[&[&str]]) {
    let mut direct = Wire::connect(redis.port());
    let mut through = Wire::connect(proxy.port());
    if let Some(h) = hello {
        direct.send(h);
        through.send(h);
        direct.frame();
        through.frame();
    }
    for args in script {
        direct.send(args);
        through.send(args);
        // A command may answer with several frames (one per channel); read as many as Redis sent.
        let n = match args[0].to_ascii_uppercase().as_str() {
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
            | "SUNSUBSCRIBE" => (args.len() - 1).max(1),
            _ => 1,
        };
        for _ in 0..n {
            let want = direct.frame();
            let got = through.frame();
            assert_eq!(text(&got), text(&want), "{args:?} after {hello:?}");
        }
    }
}

const MODE: &[&[&str]] = &[
    &["UNSUBSCRIBE"],
    &["PUNSUBSCRIBE"],
    &["SUNSUBSCRIBE"],
    &["UNSUBSCRIBE", "never"],
    &["SUBSCRIBE", "a", "b", "a"],
    &["SSUBSCRIBE", "s1"],
    &["PSUBSCRIBE", "p*", "q?"],
    &["GET", "x"],
    &["CLIENT", "GETNAME"],
    &["PING"],
    &["PING", "hello"],
    &["SUBSCRIBE"],
    &["UNSUBSCRIBE", "a", "zz"],
    &["PUNSUBSCRIBE", "q?"],
    &["UNSUBSCRIBE", "b"],
    &["PUNSUBSCRIBE", "p*"],
    // Only a shard channel left: still in subscribed mode (RESP2).
    &["SET", "x", "1"],
    &["SUNSUBSCRIBE", "s1"],
    &["GET", "x"],
    &["SUBSCRIBE", "c"],
    &["RESET"],
    &["GET", "x"],
];

#[test]
fn confirmations_and_subscribed_mode_as_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    same_replies(&redis, &proxy, None, MODE);
    same_replies(&redis, &proxy, Some(&["HELLO", "3"]), MODE);
}

/// A subscriber straight on Redis and one through the proxy get the same bytes for every
/// message, in each protocol.
#[test]
fn messages_byte_for_byte() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    for hello in [None, Some(&["HELLO", "3"][..])] {
        let mut subs: Vec<Wire> = [redis.port(), proxy.port()]
            .into_iter()
            .map(Wire::connect)
            .collect();
        for s in subs.iter_mut() {
            if let Some(h) = hello {
                s.send(h);
                s.frame();
            }
            s.send(&["SUBSCRIBE", "news", "bin\r\nary"]);
            s.frame();
            s.frame();
            s.send(&["PSUBSCRIBE", "n*"]);
            s.frame();
            s.send(&["SSUBSCRIBE", "shardy"]);
            s.frame();
        }
        let mut publisher = Wire::connect(proxy.port());
        let payload = "x\r\n\u{0}y".repeat(1000);
        let published: &[&[&str]] = &[
            &["PUBLISH", "news", "hello"],
            &["PUBLISH", "bin\r\nary", &payload],
            &["PUBLISH", "nothing-here", "x"],
            &["SPUBLISH", "shardy", "s"],
        ];
        for p in published {
            publisher.cmd(p);
        }
        // message + pmessage for news, message for bin, pmessage for nothing-here, smessage.
        for _ in 0..5 {
            let want = subs[0].frame();
            let got = subs[1].frame();
            assert_eq!(text(&got), text(&want), "{hello:?}");
        }
    }
}

/// N clients on a channel cost Redis one subscription per shard; replies that count
/// subscribers count the proxy's clients, as redis-server would count them.
#[test]
fn fan_out_subscribes_once_per_shard() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut subs: Vec<Wire> = (0..20).map(|_| Wire::connect(proxy.port())).collect();
    for s in subs.iter_mut() {
        assert!(s.cmd(&["SUBSCRIBE", "fan"]).contains("subscribe"));
    }
    let mut direct = Wire::connect(redis.port());
    let at_redis = direct.cmd(&["PUBSUB", "NUMSUB", "fan"]);
    assert!(
        at_redis.ends_with(":1\r\n") || at_redis.ends_with(":2\r\n"),
        "Redis sees one subscription per shard: {at_redis:?}"
    );
    let mut c = Wire::connect(proxy.port());
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "fan"]),
        "*2\r\n$3\r\nfan\r\n:20\r\n"
    );
    assert_eq!(c.cmd(&["PUBLISH", "fan", "m"]), ":20\r\n");
    // A direct subscriber counts too.
    let mut d = Wire::connect(redis.port());
    d.cmd(&["SUBSCRIBE", "fan"]);
    assert_eq!(c.cmd(&["PUBLISH", "fan", "m2"]), ":21\r\n");
    for s in subs.iter_mut() {
        assert!(s.frame().ends_with(b"$1\r\nm\r\n"));
        assert!(s.frame().ends_with(b"$2\r\nm2\r\n"));
    }
    // The last subscriber of a shard leaving drops the shard's subscription at Redis.
    for s in subs.iter_mut() {
        s.cmd(&["UNSUBSCRIBE", "fan"]);
    }
    assert!(wait_until(Duration::from_secs(5), || {
        direct.cmd(&["PUBSUB", "NUMSUB", "fan"]).ends_with(":1\r\n")
    }));
    assert_eq!(c.cmd(&["PUBLISH", "fan", "m3"]), ":1\r\n");
}

/// A confirmation means Redis holds the subscription: it does not come while Redis is frozen.
#[test]
fn confirmation_waits_for_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut warm = Wire::connect(proxy.port());
    warm.cmd(&["SUBSCRIBE", "warm"]); // the subscriber connection is up
    let mut s = Wire::connect(proxy.port());
    redis.stop();
    s.send(&["SUBSCRIBE", "fresh"]);
    s.set_read_timeout(Duration::from_millis(300));
    let early = s.try_frame();
    redis.cont();
    assert!(
        early.is_err(),
        "confirmed before Redis subscribed: {early:?}"
    );
    s.set_read_timeout(Duration::from_secs(10));
    assert_eq!(
        text(&s.frame()),
        "*3\r\n$9\r\nsubscribe\r\n$5\r\nfresh\r\n:1\r\n"
    );
    let mut direct = Wire::connect(redis.port());
    assert_eq!(direct.cmd(&["PUBLISH", "fresh", "now"]), ":1\r\n");
    assert!(s.frame().ends_with(b"$3\r\nnow\r\n"));
}

/// A client's PUBLISH after its own SUBSCRIBE reaches Redis after the subscription: a RESP3
/// client hears its own message.
#[test]
fn own_message_after_pipelined_subscribe() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    for round in 0..20 {
        let mut c = Wire::connect(proxy.port());
        c.cmd(&["HELLO", "3"]);
        let ch = format!("own{round}");
        let mut batch = frames::encode(&["SUBSCRIBE", &ch]);
        batch.extend(frames::encode(&["PUBLISH", &ch, "me"]));
        c.send_raw(&batch);
        let mut got: Vec<String> = (0..3).map(|_| text(&c.frame())).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ":1\r\n".to_string(),
                format!(
                    ">3\r\n$7\r\nmessage\r\n${}\r\n{ch}\r\n$2\r\nme\r\n",
                    ch.len()
                ),
                format!(">3\r\n$9\r\nsubscribe\r\n${}\r\n{ch}\r\n:1\r\n", ch.len()),
            ]
        );
    }
}

/// Redis restarted: every subscription with listeners is restored, none without.
#[test]
fn subscriptions_restored_after_reconnect() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &["--threads", "1"]);
    let mut s = Wire::connect(proxy.port());
    s.cmd(&["SUBSCRIBE", "keep", "drop"]);
    s.frame();
    s.cmd(&["PSUBSCRIBE", "pat.*"]);
    s.cmd(&["SSUBSCRIBE", "sh"]);
    s.cmd(&["UNSUBSCRIBE", "drop"]);
    redis.restart();
    let mut direct = Wire::connect(redis.port());
    assert!(
        wait_until(Duration::from_secs(10), || {
            direct
                .cmd(&["PUBSUB", "NUMSUB", "keep"])
                .ends_with(":1\r\n")
                && direct.cmd(&["PUBSUB", "NUMPAT"]) == ":1\r\n"
                && direct
                    .cmd(&["PUBSUB", "SHARDNUMSUB", "sh"])
                    .ends_with(":1\r\n")
        }),
        "subscriptions not restored"
    );
    assert_eq!(
        direct.cmd(&["PUBSUB", "NUMSUB", "drop"]),
        "*2\r\n$4\r\ndrop\r\n:0\r\n"
    );
    direct.cmd(&["PUBLISH", "keep", "k"]);
    direct.cmd(&["PUBLISH", "pat.x", "p"]);
    direct.cmd(&["SPUBLISH", "sh", "s"]);
    assert!(s.frame().ends_with(b"$4\r\nkeep\r\n$1\r\nk\r\n"));
    assert!(s.frame().ends_with(b"$5\r\npat.x\r\n$1\r\np\r\n"));
    assert!(s.frame().ends_with(b"$2\r\nsh\r\n$1\r\ns\r\n"));
    // And the proxy's client is still in a sane state.
    assert_eq!(
        s.cmd(&["UNSUBSCRIBE", "keep"]),
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nkeep\r\n:1\r\n"
    );
}

/// A subscriber that reads nothing is cut off at --client-output-limit; one that reads gets
/// every message.
#[test]
fn subscriber_that_does_not_read_is_cut_off() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(
        redis.port(),
        &["--threads", "1", "--client-output-limit", "1048576"],
    );
    let mut lazy = Wire::connect(proxy.port());
    lazy.cmd(&["SUBSCRIBE", "flood"]);
    let mut reader = Wire::connect(proxy.port());
    reader.cmd(&["SUBSCRIBE", "flood"]);
    // The reader takes each batch before the next is published: it never falls 1 MiB behind.
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = taken.clone();
    let reading = std::thread::spawn(move || {
        for i in 0..8000 {
            let f = reader.frame();
            assert!(
                f.ends_with(format!("{}\r\n", "z".repeat(1024)).as_bytes()),
                "message {i}"
            );
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut publisher = Wire::connect(redis.port());
    let payload = "z".repeat(1024);
    for batch in 1..=80 {
        for _ in 0..100 {
            publisher.cmd(&["PUBLISH", "flood", &payload]);
        }
        assert!(
            wait_until(Duration::from_secs(20), || taken
                .load(std::sync::atomic::Ordering::SeqCst)
                >= batch * 100),
            "the reading subscriber fell behind at batch {batch}"
        );
    }
    reading
        .join()
        .expect("the reading subscriber got every message");
    assert!(
        lazy.closed_within(Duration::from_secs(10)),
        "the subscriber that did not read was not cut off"
    );
}

#[test]
fn keyspace_notifications() {
    let redis = RedisServer::start();
    redis.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let proxy = Proxy::start(redis.port(), &["--threads", "2"]);
    let mut s = Wire::connect(proxy.port());
    s.cmd(&["PSUBSCRIBE", "__keyspace@0__:*"]);
    let mut c = Wire::connect(proxy.port());
    assert_eq!(c.cmd(&["SET", "watched", "1"]), "+OK\r\n");
    assert_eq!(
        text(&s.frame()),
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$22\r\n__keyspace@0__:watched\r\n$3\r\nset\r\n"
    );
}

/// Subscribing inside MULTI is refused with a clear error (Redis would subscribe the
/// connection the transaction runs on, which the proxy shares).
#[test]
fn subscribe_inside_multi_is_refused() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port(), &[]);
    let mut c = Wire::connect(proxy.port());
    c.cmd(&["MULTI"]);
    assert!(c
        .cmd(&["SUBSCRIBE", "x"])
        .starts_with("-ERR command 'subscribe' inside MULTI"));
    assert!(c.cmd(&["EXEC"]).starts_with("-EXECABORT"));
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
}

/// Found in review: the proxy's Redis user may not use every channel (Redis 7 gives a new ACL
/// user `resetchannels`). Redis refuses the shard's SUBSCRIBE with -NOPERM; that error had no
/// waiter on the subscriber connection, which was then dropped and reconnected over and over,
/// while the client was told it was subscribed.
#[test]
fn a_refused_subscription_is_refused_not_confirmed() {
    let redis = RedisServer::start();
    let mut admin = Wire::connect(redis.port());
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "px", "on", ">pw", "~*", "+@all", "&ok:*"]),
        "+OK\r\n"
    );
    let url = format!("redis://px:pw@127.0.0.1:{}", redis.port());
    let proxy = Proxy::start_with(&url, &["--threads", "1"], &[]);
    let mut good = Wire::connect(proxy.port());
    assert_eq!(
        good.cmd(&["SUBSCRIBE", "ok:1"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nok:1\r\n:1\r\n"
    );
    let mut bad = Wire::connect(proxy.port());
    let got = bad.cmd(&["SUBSCRIBE", "nope"]);
    assert!(
        got.starts_with("-NOPERM"),
        "Redis refuses the channel: {got:?}"
    );
    // Not subscribed, so not in subscribed mode; and the other subscription is still there.
    assert_eq!(bad.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(admin.cmd(&["PUBLISH", "ok:1", "still"]), ":1\r\n");
    assert!(good.frame().ends_with(b"$5\r\nstill\r\n"));
    assert!(
        !proxy.log_contents().contains("subscriber: lost connection"),
        "{}",
        proxy.log_contents()
    );
}
