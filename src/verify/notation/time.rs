//! Instants as nanoseconds since the Unix epoch, and the two text forms signatures carry
//! them in: RFC 3339 (JWS signed attributes) and ASN.1 GeneralizedTime with fractional
//! seconds (RFC 3161 TSTInfo.genTime, which the `der` crate does not accept).
#![deny(clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z (negative before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(i128);

/// Why a time string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid time")]
pub struct TimeError(pub String);

// === impl Moment ===

impl Moment {
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(i128::from(seconds) * NANOS_PER_SECOND)
    }

    /// The whole second `since_epoch` after the Unix epoch falls in, as an X.509 or
    /// ASN.1 time (which the `der` crate gives as a duration since the epoch) states it.
    pub fn from_unix_duration(since_epoch: std::time::Duration) -> Self {
        Self::from_unix_seconds(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX))
    }

    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(after.as_nanos() as i128),
            Err(before) => Self(-(before.duration().as_nanos() as i128)),
        }
    }

    /// The same instant as a `SystemTime` (saturating at what one can hold).
    pub fn to_system_time(self) -> SystemTime {
        let nanos = |n: i128| u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX);
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_nanos(nanos(self.0))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_nanos(nanos(self.0)))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// Parses RFC 3339 `date-time`, with `Z` or a numeric offset and optional fraction.
    ///
    /// # Errors
    ///
    /// The string is not RFC 3339 or names an impossible date.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let err = || TimeError(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() < 20 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return Err(err());
        }
        if !matches!(bytes.get(10), Some(b'T' | b't'))
            || bytes.get(13) != Some(&b':')
            || bytes.get(16) != Some(&b':')
        {
            return Err(err());
        }
        let year = digits(text, 0, 4).ok_or_else(err)?;
        let month = digits(text, 5, 2).ok_or_else(err)?;
        let day = digits(text, 8, 2).ok_or_else(err)?;
        let hour = digits(text, 11, 2).ok_or_else(err)?;
        let minute = digits(text, 14, 2).ok_or_else(err)?;
        let second = digits(text, 17, 2).ok_or_else(err)?;
        let rest = text.get(19..).ok_or_else(err)?;
        let (nanos, rest) = fraction(rest).ok_or_else(err)?;
        let offset_seconds = match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let oh = digits(rest, 1, 2).ok_or_else(err)?;
                let om = digits(rest, 4, 2).ok_or_else(err)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let offset = i64::from(oh * 3600 + om * 60);
                if *sign == b'+' {
                    offset
                } else {
                    -offset
                }
            }
            _ => return Err(err()),
        };
        let seconds = civil_seconds(year, month, day, hour, minute, second).ok_or_else(err)?;
        Ok(Self(
            i128::from(seconds - offset_seconds) * NANOS_PER_SECOND + nanos,
        ))
    }

    /// Parses an ASN.1 GeneralizedTime in the UTC form RFC 3161 2.4.2 requires:
    /// `YYYYMMDDhhmmss[.s...]Z`.
    ///
    /// # Errors
    ///
    /// The content is not that form or names an impossible date.
    pub fn parse_generalized_time(text: &str) -> Result<Self, TimeError> {
        let err = || TimeError(text.to_owned());
        let year = digits(text, 0, 4).ok_or_else(err)?;
        let month = digits(text, 4, 2).ok_or_else(err)?;
        let day = digits(text, 6, 2).ok_or_else(err)?;
        let hour = digits(text, 8, 2).ok_or_else(err)?;
        let minute = digits(text, 10, 2).ok_or_else(err)?;
        let second = digits(text, 12, 2).ok_or_else(err)?;
        let rest = text.get(14..).ok_or_else(err)?;
        let (nanos, rest) = fraction(rest).ok_or_else(err)?;
        if rest != "Z" {
            return Err(err());
        }
        let seconds = civil_seconds(year, month, day, hour, minute, second).ok_or_else(err)?;
        Ok(Self(i128::from(seconds) * NANOS_PER_SECOND + nanos))
    }

    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration.as_nanos() as i128))
    }

    pub fn minus(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration.as_nanos() as i128))
    }

    /// Seconds since the epoch, rounded down.
    pub fn unix_seconds(self) -> i128 {
        self.0.div_euclid(NANOS_PER_SECOND)
    }
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.unix_seconds();
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

fn digits(text: &str, start: usize, len: usize) -> Option<u32> {
    let part = text.get(start..start + len)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// An optional `.digits` fraction: nanoseconds (digits past the ninth are dropped) and
/// what follows it.
fn fraction(rest: &str) -> Option<(i128, &str)> {
    let Some(after_dot) = rest.strip_prefix('.') else {
        return Some((0, rest));
    };
    let count = after_dot.bytes().take_while(u8::is_ascii_digit).count();
    if count == 0 {
        return None;
    }
    let (fraction, rest) = after_dot.split_at_checked(count)?;
    let mut nanos: i128 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        if i < 9 {
            nanos = nanos * 10 + i128::from(b - b'0');
        }
    }
    for _ in count..9 {
        nanos *= 10;
    }
    Some((nanos, rest))
}

/// Seconds since the epoch of a proleptic Gregorian date and time, if it exists. A
/// leap second (`60`) is accepted and counted as the next second.
fn civil_seconds(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let utc = Moment::parse_rfc3339("2024-06-18T06:29:33Z").unwrap();
        let offset = Moment::parse_rfc3339("2024-06-18T14:29:33+08:00").unwrap();
        assert_eq!(utc, offset);
        assert_eq!(utc.unix_seconds(), 1_718_692_173);
        let fractional = Moment::parse_rfc3339("2024-06-18T06:29:33.5Z").unwrap();
        assert_eq!(fractional, utc.plus(Duration::from_millis(500)));
        assert_eq!(utc.to_string(), "2024-06-18T06:29:33Z");
        for bad in [
            "2024-06-18 06:29:33Z",
            "2024-02-30T00:00:00Z",
            "2024-06-18T06:29:33",
            "2024-06-18T06:29:33+0800",
            "2024-06-18T06:29:33.Z",
            "",
        ] {
            assert!(Moment::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generalized_time_with_fraction() {
        let t = Moment::parse_generalized_time("20250121091746.641Z").unwrap();
        assert_eq!(
            t,
            Moment::parse_rfc3339("2025-01-21T09:17:46.641Z").unwrap()
        );
        assert!(Moment::parse_generalized_time("20250121091746+0100").is_err());
        assert!(Moment::parse_generalized_time("20250121091746").is_err());
    }

    #[test]
    fn dates_before_the_epoch() {
        let t = Moment::parse_rfc3339("1969-12-31T23:59:59Z").unwrap();
        assert_eq!(t.unix_seconds(), -1);
        assert_eq!(t.to_string(), "1969-12-31T23:59:59Z");
    }
}
