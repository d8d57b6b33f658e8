//! A child row's `last_updated` as a number when that loses nothing.
//!
//! At 100k VMs with children the snapshot holds a million rows, and their `last_updated` texts
//! (`2026-12-06T10:00:00.123456Z`, 27 bytes each) were over half of the rows' text. `apply`'s
//! stale check compares that text with NetBox's, so it must come back byte for byte: only the
//! exact form NetBox writes (UTC, six fraction digits, `Z`) is kept as microseconds since the
//! Unix epoch, checked by formatting it back; any other text is kept as it is.

use std::fmt;

/// Length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const LEN: usize = 27;
const MICROS_PER_DAY: u64 = 86_400 * 1_000_000;

/// `text` as microseconds since the Unix epoch, when it is in NetBox's form and formatting the
/// number gives `text` back; `None` otherwise.
pub fn parse(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != LEN {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        b[from..to].iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, micro) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let micros = days * MICROS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micro;
    // The separators were not looked at above: the text comes back only if they were NetBox's.
    (write(micros) == *b).then_some(micros)
}

/// `micros` since the Unix epoch in NetBox's form.
fn write(micros: u64) -> [u8; LEN] {
    let (days, in_day) = (micros / MICROS_PER_DAY, micros % MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (secs, micro) = (in_day / 1_000_000, in_day % 1_000_000);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    put(20, 6, micro);
    out
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date from 1970 on (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of `days` since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A child's `last_updated` as the snapshot gives it back: NetBox's text, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastUpdated<'a> {
    /// Microseconds since the Unix epoch ([`parse`] took the text).
    Micros(u64),
    /// A text in any other form.
    Text(&'a str),
}

impl fmt::Display for LastUpdated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastUpdated::Micros(micros) => {
                // `write` makes ASCII digits and separators only.
                let text = write(*micros);
                f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
            LastUpdated::Text(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netbox_texts_come_back_exactly() {
        for text in [
            "1970-01-01T00:00:00.000000Z",
            "2026-12-06T10:00:00.123456Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T12:34:56.000001Z",
            "2100-03-01T00:00:00.500000Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let micros = parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(LastUpdated::Micros(micros).to_string(), text);
        }
        assert_eq!(
            parse("1970-01-02T00:00:00.000001Z"),
            Some(MICROS_PER_DAY + 1)
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // 1970 to 2370: every month length and leap rule, each day once.
        let mut last = None;
        for days in 0..146_097 {
            let micros = days * MICROS_PER_DAY + 37_230_000_123;
            let text = LastUpdated::Micros(micros).to_string();
            assert_eq!(parse(&text), Some(micros), "{text}");
            assert!(
                last < Some(text.clone()),
                "{text} sorts after the day before"
            );
            last = Some(text);
        }
    }

    #[test]
    fn other_forms_stay_text() {
        for text in [
            "",
            "2026-12-06T10:00:00Z",
            "2026-12-06T10:00:00.123Z",
            "2026-12-06T10:00:00.123456+00:00",
            "2026-12-06 10:00:00.123456Z",
            "2026-12-06T10:00:00.123456z",
            "2026-12-06T10:00:00,123456Z",
            "2026-13-06T10:00:00.123456Z",
            "2026-02-29T10:00:00.123456Z",
            "2026-04-31T10:00:00.123456Z",
            "2026-12-00T10:00:00.123456Z",
            "2026-12-06T24:00:00.123456Z",
            "2026-12-06T10:60:00.123456Z",
            "2026-12-06T10:00:60.123456Z",
            "1969-12-31T23:59:59.999999Z",
            "2026-12-06T10:00:00.12345ÿ",
            "+026-12-06T10:00:00.123456Z",
            "2026-12-06T10:00:0a.123456Z",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
