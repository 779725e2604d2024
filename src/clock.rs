//! The one clock module: the process clock for deadlines measured inside this process, and Unix
//! time for what is stored or signed (token expiry, revocations, account timestamps).

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds on the process clock (monotonic, starts near 0): ejection deadlines, idle
/// times, body stalls. Cheap enough for the request path; never compared across processes.
pub fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch (the unit of a token's `iat` and `exp`); 0 if the system clock
/// reads before 1970.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, as the stores keep timestamps.
pub fn unix_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-22T15:04:05.123Z`), as the control plane's
/// answers and the CLI print stored times; empty for a time `time` cannot represent.
pub fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn the_process_clock_never_runs_backwards() {
        let (a, b) = (now_ms(), now_ms());
        assert!(b >= a);
    }

    #[test]
    fn unix_seconds_and_milliseconds_agree() {
        let (secs, millis) = (unix_secs(), unix_millis());
        assert!(secs > 1_600_000_000, "system clock reads {secs}");
        assert!((millis / 1000 - secs as i64).abs() <= 1);
    }
}
