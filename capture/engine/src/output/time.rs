//! UTC timestamps without a calendar dependency.

use std::fmt;

/// `2026-11-23T15:04:05.123456Z` (microseconds, as the capture tools our
/// users know print them).
pub fn format_ts(ns: u64) -> String {
    Ts(ns).to_string()
}

/// A timestamp displayed as [`format_ts`] writes it, for formatting into a
/// buffer without a string of its own.
#[derive(Clone, Copy)]
pub struct Ts(pub u64);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian): days
/// since 1970-01-01 to (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    #[test]
    fn known_instants() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000Z");
        // `date -u -d @1700000000.123456789 +%FT%T.%6N` = 2023-11-14T22:13:20.123456
        assert_eq!(
            format_ts(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
        // Leap day.
        assert_eq!(
            format_ts(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
