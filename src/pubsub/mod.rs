//! Pub/sub with fan-out. Each shard has one subscriber connection to Redis (RESP3, so every
//! confirmation and message arrives as a push), opened on the first subscription. A channel,
//! pattern or shard channel is subscribed at Redis once per shard, when its first local
//! subscriber arrives, and dropped when its last one leaves; each message is copied to the
//! shard's subscribers in their own protocol.
//!
//! - [`hub`]: the shard's side: what is subscribed at Redis, who listens, confirmations,
//!   restoring every subscription when the connection comes back.
//! - [`session`]: the client's side: (P|S)(UN)SUBSCRIBE with the client's own counts, RESP2's
//!   subscribed mode, PING in it.
//! - [`counts`]: how many subscribers each name has across shards, so that PUBLISH and
//!   PUBSUB NUMSUB count clients, not the proxy's connections.

pub mod counts;
pub mod glob;
pub mod hub;
pub mod session;

/// The three kinds of subscription, each with its own names (and, for shard channels, its own
/// count in replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Channel,
    Pattern,
    Shard,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Channel, Class::Pattern, Class::Shard];

    pub fn idx(self) -> usize {
        self as usize
    }

    /// The event name of its confirmations, as Redis sends them.
    pub fn event(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Class::Channel, true) => b"subscribe",
            (Class::Pattern, true) => b"psubscribe",
            (Class::Shard, true) => b"ssubscribe",
            (Class::Channel, false) => b"unsubscribe",
            (Class::Pattern, false) => b"punsubscribe",
            (Class::Shard, false) => b"sunsubscribe",
        }
    }

    /// The command the proxy sends Redis.
    pub fn command(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Class::Channel, true) => b"SUBSCRIBE",
            (Class::Pattern, true) => b"PSUBSCRIBE",
            (Class::Shard, true) => b"SSUBSCRIBE",
            (Class::Channel, false) => b"UNSUBSCRIBE",
            (Class::Pattern, false) => b"PUNSUBSCRIBE",
            (Class::Shard, false) => b"SUNSUBSCRIBE",
        }
    }

    /// The class of a message or confirmation push, by its event name.
    pub fn of_event(event: &[u8]) -> Option<(Class, Event)> {
        Some(match event {
            b"message" => (Class::Channel, Event::Message),
            b"pmessage" => (Class::Pattern, Event::Message),
            b"smessage" => (Class::Shard, Event::Message),
            b"subscribe" => (Class::Channel, Event::Subscribed),
            b"psubscribe" => (Class::Pattern, Event::Subscribed),
            b"ssubscribe" => (Class::Shard, Event::Subscribed),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Message,
    Subscribed,
}
