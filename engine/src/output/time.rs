//! Wall-clock times as text: RFC 3339 in UTC with nanoseconds,
//! `2026-11-26T12:00:00.123456789Z`, through `jiff`.
//!
//! Wall-clock times are `i128` ns since the Unix epoch (a `u64` record timestamp plus its
//! segment's `i64` offset never overflows an `i128`). jiff covers the years -9999 to 9999;
//! a time outside that range is written as the nearest end of the range and reported as
//! out of range, so the writers can flag it instead of dropping the record. (A `u64`
//! timestamp plus an `i64` offset spans roughly the years 1677 to 2847, well inside.)

use jiff::Timestamp;

/// A wall-clock time as a jiff timestamp: `(time, true)` when `wall_ns` is in jiff's
/// range, else `(nearest end of the range, false)`.
pub fn timestamp(wall_ns: i128) -> (Timestamp, bool) {
    match Timestamp::from_nanosecond(wall_ns) {
        Ok(t) => (t, true),
        Err(_) if wall_ns < 0 => (Timestamp::MIN, false),
        Err(_) => (Timestamp::MAX, false),
    }
}

/// Whether `wall_ns` can be written as a date (see [`timestamp`]).
pub fn in_range(wall_ns: i128) -> bool {
    timestamp(wall_ns).1
}

/// Displays a wall-clock time (ns since the Unix epoch) as RFC 3339 in UTC with nine
/// fractional digits. Out of range it shows the nearest end of the range (callers that
/// must say so check [`in_range`]).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub i128);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.9}", timestamp(self.0).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds_in_utc() {
        assert_eq!(
            Rfc3339(1_700_000_000_123_456_789).to_string(),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(Rfc3339(-1).to_string(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn every_u64_timestamp_with_any_offset_is_in_range() {
        for (ts, off) in [
            (u64::MAX, i64::MAX),
            (u64::MAX, i64::MIN),
            (0, i64::MIN),
            (0, i64::MAX),
        ] {
            let wall = ts as i128 + off as i128;
            assert!(in_range(wall), "{ts} + {off}");
        }
        assert_eq!(
            Rfc3339(u64::MAX as i128).to_string(),
            "2554-07-21T23:34:33.709551615Z"
        );
    }

    #[test]
    fn out_of_range_saturates_and_says_so() {
        let (t, ok) = timestamp(i128::MAX);
        assert!(!ok);
        assert_eq!(t, Timestamp::MAX);
        let (t, ok) = timestamp(i128::MIN);
        assert!(!ok);
        assert_eq!(t, Timestamp::MIN);
        assert_eq!(
            Rfc3339(i128::MAX).to_string(),
            "9999-12-30T22:00:00.999999999Z"
        );
    }
}
