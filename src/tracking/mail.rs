//! Invalidations for redirect targets served by another shard. The shard that learns of the
//! change posts them here and rings the target shard's doorbell (a socket pair whose read end
//! a task of that shard waits on), so they go out at once, not at the target's next tick.
//! Only used across shards, so a mutex is fine.

use crate::shard::Shard;
use bytes::Bytes;
use monoio::io::AsyncReadRent;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// (shard, target id, keys or all, null in RESP3).
type Mail = (usize, u64, Option<Vec<Bytes>>, bool);
static MAILBOX: Mutex<Vec<Mail>> = Mutex::new(Vec::new());
static MAIL: AtomicBool = AtomicBool::new(false);
/// The write end of each shard's doorbell, by shard id.
static DOORBELLS: Mutex<Vec<Option<UnixStream>>> = Mutex::new(Vec::new());

pub fn post(shard: usize, target: u64, keys: Option<Vec<Bytes>>, null3: bool) {
    MAILBOX
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((shard, target, keys, null3));
    MAIL.store(true, Ordering::Release);
    let bells = DOORBELLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Some(bell)) = bells.get(shard) {
        // Non-blocking: a full pipe already holds a ring the shard has yet to read.
        let _ = (&*bell).write(&[1]);
    }
}

/// Delivers what other shards posted for this shard's clients (a read-mostly flag when there
/// is nothing).
pub fn take(shard: &Shard) {
    if !MAIL.load(Ordering::Relaxed) {
        return;
    }
    let mine: Vec<Mail> = {
        let mut all = MAILBOX.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, rest): (Vec<Mail>, Vec<Mail>) = all.drain(..).partition(|m| m.0 == shard.id);
        *all = rest;
        if all.is_empty() {
            MAIL.store(false, Ordering::Release);
        }
        mine
    };
    for (_, target, keys, null3) in mine {
        if let Some(r) = shard.client_by_id(target) {
            super::table::deliver_to(&r, keys.as_deref(), null3, 0);
        }
    }
}

/// Installs the shard's doorbell and the task that answers it. Without one (the socket pair
/// could not be made), mail still goes out at the shard's next input batch or tick.
pub fn install(shard: &Rc<Shard>) {
    let Ok((bell, door)) = UnixStream::pair() else {
        return;
    };
    if bell.set_nonblocking(true).is_err() || door.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut door) = monoio::net::UnixStream::from_std(door) else {
        return;
    };
    {
        let mut bells = DOORBELLS.lock().unwrap_or_else(|e| e.into_inner());
        if bells.len() <= shard.id {
            bells.resize_with(shard.id + 1, || None);
        }
        bells[shard.id] = Some(bell);
    }
    let shard = shard.clone();
    monoio::spawn(async move {
        let mut buf = vec![0u8; 64];
        loop {
            let (res, b) = door.read(buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
            take(&shard);
        }
    });
}
