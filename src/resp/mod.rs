//! RESP wire formats, with no I/O: the request scanner (RESP and inline), backend reply framing,
//! RESP3 -> RESP2 conversion, and reply encoding.

pub mod convert;
pub mod frame;
pub mod request;
pub mod write;
