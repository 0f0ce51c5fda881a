//! The `Date` header every response carries (RFC 9110 §6.6.1: an origin server with a clock
//! must send it), in IMF-fixdate form, formatted once per second per thread.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub type Date = [u8; 29];

thread_local! {
    static CACHED: Cell<(u64, Date)> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// Reads the clock (once per batch of requests or responses, not per response) and
/// reformats the date when the second has changed.
pub fn refresh() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        if c.get().0 != secs {
            c.set((secs, format(secs)));
        }
    });
}

/// The date as of the last `refresh` on this thread.
pub fn current() -> Date {
    CACHED.with(|c| {
        if c.get().0 == u64::MAX {
            refresh();
        }
        c.get().1
    })
}

/// Formats seconds since the Unix epoch (civil date from days: H. Hinnant's algorithm).
pub fn format(secs: u64) -> Date {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let tod = secs % 86400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut Date, at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day as u64);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    let year = year.clamp(0, 9999) as u64;
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, tod / 3600);
    two(&mut out, 20, tod / 60 % 60);
    two(&mut out, 23, tod % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let f = |s| String::from_utf8(format(s).to_vec()).unwrap();
        assert_eq!(f(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(f(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(f(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(f(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(f(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }
}
