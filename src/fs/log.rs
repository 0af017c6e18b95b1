//! Event log: one line per event on stderr, `2025-01-31T12:00:00.123Z trustfs: <event>`.
//!
//! Kept dependency-free on purpose (no logger crate needed for a handful of event kinds); each
//! line is written with a single `write` so lines from concurrent threads do not interleave.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write one event line to stderr.
pub fn event(msg: std::fmt::Arguments<'_>) {
    let line = format!("{} trustfs: {}\n", timestamp(SystemTime::now()), msg);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Log one event line: `log_event!("denied {path}")`.
#[macro_export]
macro_rules! log_event {
    ($($arg:tt)*) => {
        $crate::fs::log::event(format_args!($($arg)*))
    };
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_999);
        assert_eq!(timestamp(t), "2024-02-29T23:59:59.999Z");
    }
}
