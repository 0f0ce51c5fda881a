//! The HTTP/1.1 front-end (`--http ADDR`): `GET /<key>` and `GET /get?key=<key>` answered from
//! the shard's cache, exactly as a RESP `GET`.
//!
//! Each request becomes a RESP `GET` handed to the same dispatch as a RESP client's, so hits,
//! single flight, poisoning by writes and invalidations, the db of `--redis`, admission and
//! backpressure are the RESP path's own, not a copy. Replies land in the connection's ordered
//! reply slots (`replies.rs`) as RESP2; the writer turns each into an HTTP response in request
//! order, so a hit pipelined behind a miss waits for it.
//!
//! - [`parse`]: framing and parsing a request head (httparse), limits.
//! - [`route`]: request target -> key (percent-decoding).
//! - [`respond`]: status lines, the proxy's own responses, RESP reply -> response; [`date`]:
//!   the `Date` header.
//! - `conn`: the connection's reader and writer tasks.

mod conn;
pub mod date;
pub mod parse;
pub mod respond;
pub mod route;

pub use conn::serve;
