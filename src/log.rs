//! Event log: one line per event on stderr, `2025-01-31T12:00:00.123Z trustfs: <event>`.
//!
//! Kept dependency-free on purpose (no logger crate needed for a handful of event kinds); each
//! line is written with a single `write` so lines from concurrent threads do not interleave.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::schema::UtcTime;

/// Write one event line to stderr.
pub fn event(msg: std::fmt::Arguments<'_>) {
    let line = format!("{} trustfs: {}\n", timestamp(SystemTime::now()), msg);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Log one event line: `log_event!("denied {path}")`.
#[macro_export]
macro_rules! log_event {
    ($($arg:tt)*) => {
        $crate::log::event(format_args!($($arg)*))
    };
}

/// RFC 3339 UTC timestamp with milliseconds (the calendar arithmetic is `schema::UtcTime`'s).
pub fn timestamp(t: SystemTime) -> String {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_millis();
    let secs = UtcTime::from_system(t).to_string();
    format!("{}.{millis:03}Z", secs.trim_end_matches('Z'))
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
