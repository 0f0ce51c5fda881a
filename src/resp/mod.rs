//! RESP wire formats, with no I/O: the request scanner (RESP and inline), backend reply framing,
//! RESP3 -> RESP2 conversion, one cursor over framed replies, and reply encoding.

pub mod convert;
pub mod cursor;
pub mod encode;
pub mod frame;
pub mod request;
pub mod write;
