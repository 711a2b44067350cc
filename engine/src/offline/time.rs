//! The `--from`/`--to` arguments: RFC 3339 (through jiff) or ns since the Unix epoch,
//! and the range they make.

use std::fmt;

use jiff::Timestamp;

/// Why a time argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "{flag}: {value:?} is not RFC 3339 (2026-11-26T02:10:00Z, 2026-11-26T04:10:00.5+02:00) \
         or ns since the epoch: {reason}"
    )]
    Unparsable {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--from {from} is not before --to {to}: the range [from, to) is empty")]
    Empty { from: String, to: String },
}

/// Parses RFC 3339 with an offset (`Z`, `+02:00`; fractional seconds up to ns), or an
/// integer of ns since the Unix epoch. Returns ns since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i128, String> {
    if let Ok(ns) = s.parse::<i128>() {
        return Timestamp::from_nanosecond(ns)
            .map(|_| ns)
            .map_err(|e| e.to_string());
    }
    s.parse::<Timestamp>()
        .map(|t| t.as_nanosecond())
        .map_err(|e| e.to_string())
}

/// A wall-clock range `[from, to)` in ns since the Unix epoch; `None`: unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from_unix_ns: Option<i128>,
    pub to_unix_ns: Option<i128>,
}

/// Shows a time argument as given, and as RFC 3339 when given as ns.
struct Shown<'a>(&'a str, i128);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.parse::<i128>().is_ok() {
            write!(f, "{} ({})", self.0, crate::output::time::Rfc3339(self.1))
        } else {
            f.write_str(self.0)
        }
    }
}

impl TimeRange {
    /// The range of `--from` and `--to` as given on the command line; an error names the
    /// argument and what was wrong, or both bounds when from is not before to.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, TimeError> {
        let one = |flag: &'static str, v: Option<&str>| {
            v.map(|v| {
                parse_time(v).map_err(|reason| TimeError::Unparsable {
                    flag,
                    value: v.to_string(),
                    reason,
                })
            })
            .transpose()
        };
        let range = TimeRange {
            from_unix_ns: one("--from", from)?,
            to_unix_ns: one("--to", to)?,
        };
        if let (Some(f), Some(t), Some(fs), Some(ts)) =
            (range.from_unix_ns, range.to_unix_ns, from, to)
            && f >= t
        {
            return Err(TimeError::Empty {
                from: Shown(fs, f).to_string(),
                to: Shown(ts, t).to_string(),
            });
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let t = parse_time("2026-11-26T12:34:56.123456789Z").unwrap();
        assert_eq!(
            crate::output::time::Rfc3339(t).to_string(),
            "2026-11-26T12:34:56.123456789Z"
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2026-11-26T14:34:56.5+02:00"),
            parse_time("2026-11-26T12:34:56.5Z")
        );
        assert_eq!(parse_time("12345"), Ok(12345));
        assert_eq!(parse_time("-5"), Ok(-5));
    }

    #[test]
    fn bad_dates_are_refused_without_panicking() {
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-+1-26T00:00:00Z",
            "2026-11-26T12:00:00+0é00",
            "2026-11-26T12:00:00é",
            "é2026-11-26T12:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T12:00:00",
            "yesterday",
            "",
            "99999999999999999999999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_empty_range_names_both_ends() {
        let e = TimeRange::parse(Some("2026-11-26T12:00:00Z"), Some("2026-11-26T11:00:00Z"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--from 2026-11-26T12:00:00Z is not before --to 2026-11-26T11:00:00Z: \
             the range [from, to) is empty"
        );
        assert_eq!(
            TimeRange::parse(Some("5"), Some("5"))
                .unwrap_err()
                .to_string(),
            "--from 5 (1970-01-01T00:00:00.000000005Z) is not before \
             --to 5 (1970-01-01T00:00:00.000000005Z): the range [from, to) is empty"
        );
        assert_eq!(
            TimeRange::parse(Some("5"), Some("6")),
            Ok(TimeRange {
                from_unix_ns: Some(5),
                to_unix_ns: Some(6)
            })
        );
        let e = TimeRange::parse(None, Some("2026-02-31T00:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--to: \"2026-02-31T00:00:00Z\" is not RFC 3339"),
            "{e}"
        );
    }
}
