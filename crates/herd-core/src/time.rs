//! Calendar dates, instants, time-zone offsets and daily windows, with strict parsers.
//!
//! Herd needs only a small, exact subset of civil time: UTC instants with second precision,
//! dates, fixed offsets like `+09:00`, and `HH:MM-HH:MM` maintenance windows.
//! Keeping it here (instead of a general time library) lets the planner stay pure and
//! lets every parser say precisely what is wrong with its input.
//! Nothing here reads a clock: "now" is always an argument.

use std::fmt;

const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar date (proleptic Gregorian), stored as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

/// An instant in UTC with second precision, stored as seconds since the Unix epoch.
///
/// Sub-second digits in the input are accepted and truncated toward the past,
/// so that `2000-11-12T00:00:00.9Z` is still "on" 2000-11-12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A fixed offset from UTC, in minutes east (for `+09:00`, 540).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TzOffset(i32);

/// A daily window in local time, `HH:MM-HH:MM`; the end is exclusive.
/// A window whose end is earlier than its start crosses midnight (`22:00-02:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DailyWindow {
    start_minute: u16,
    end_minute: u16,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Reads exactly `width` ASCII digits at `at`, or says what it expected.
fn digits(text: &str, at: usize, width: usize, what: &str) -> Result<u32, String> {
    let part = text
        .get(at..at + width)
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
    match part {
        Some(p) => Ok(p.parse().expect("ASCII digits parse")),
        None => Err(format!(
            "expected {width} digits for the {what} at character {}",
            at + 1
        )),
    }
}

fn expect_byte(text: &str, at: usize, byte: u8, what: &str) -> Result<(), String> {
    if text.as_bytes().get(at) == Some(&byte) {
        Ok(())
    } else {
        Err(format!(
            "expected '{}' {what} at character {}",
            byte as char,
            at + 1
        ))
    }
}

/// Parses `YYYY-MM-DD` at the start of `text`, returning the day count.
fn parse_date_prefix(text: &str) -> Result<i64, String> {
    let year = digits(text, 0, 4, "year")?;
    expect_byte(text, 4, b'-', "after the year")?;
    let month = digits(text, 5, 2, "month")?;
    expect_byte(text, 7, b'-', "after the month")?;
    let day = digits(text, 8, 2, "day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not between 01 and 12"));
    }
    let year = i64::from(year);
    let last = days_in_month(year, month);
    if day < 1 || day > last {
        return Err(format!("day {day} does not exist in {year:04}-{month:02}"));
    }
    Ok(days_from_civil(year, month, day))
}

fn parse_hh_mm(text: &str, at: usize) -> Result<u16, String> {
    let hour = digits(text, at, 2, "hour")?;
    expect_byte(text, at + 2, b':', "between hours and minutes")?;
    let minute = digits(text, at + 3, 2, "minute")?;
    if hour > 23 {
        return Err(format!("hour {hour} is not between 00 and 23"));
    }
    if minute > 59 {
        return Err(format!("minute {minute} is not between 00 and 59"));
    }
    Ok((hour * 60 + minute) as u16)
}

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, String> {
        if text.len() != 10 {
            return Err(format!("{text:?} is not a date of the form YYYY-MM-DD"));
        }
        let days = parse_date_prefix(text)
            .map_err(|why| format!("{text:?} is not a valid date: {why}"))?;
        Ok(Date(days as i32))
    }

    pub fn from_days_since_epoch(days: i32) -> Date {
        Date(days)
    }

    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    /// The instant this date starts, in UTC.
    pub fn start(self) -> Timestamp {
        Timestamp(i64::from(self.0) * SECONDS_PER_DAY)
    }

    /// Whole days from `self` to `later` (negative if `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        i64::from(later.0) - i64::from(self.0)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(i64::from(self.0));
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Timestamp {
    /// Parses an RFC 3339 instant: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    /// A lowercase `t`/`z` or a space between date and time is accepted, as RFC 3339 allows.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        Self::parse_inner(text).map_err(|why| format!("{text:?} is not an RFC 3339 time: {why}"))
    }

    fn parse_inner(text: &str) -> Result<Timestamp, String> {
        if !text.is_ascii() {
            return Err("it contains non-ASCII characters".into());
        }
        let days = parse_date_prefix(text)?;
        match text.as_bytes().get(10) {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err("expected 'T' between the date and the time at character 11".into()),
        }
        let hour = digits(text, 11, 2, "hour")?;
        expect_byte(text, 13, b':', "after the hour")?;
        let minute = digits(text, 14, 2, "minute")?;
        expect_byte(text, 16, b':', "after the minute")?;
        let second = digits(text, 17, 2, "second")?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err(format!(
                "{hour:02}:{minute:02}:{second:02} is not a time of day"
            ));
        }
        // A leap second is read as the last second of its minute.
        let second = second.min(59);
        let mut at = 19;
        if text.as_bytes().get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while text.as_bytes().get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return Err(format!(
                    "expected digits after '.' at character {}",
                    start + 1
                ));
            }
        }
        let offset = match &text[at..] {
            "Z" | "z" => 0,
            rest => TzOffset::parse(rest)
                .map_err(|_| {
                    format!(
                        "expected 'Z' or an offset like +09:00 at character {}, found {rest:?}",
                        at + 1
                    )
                })?
                .minutes(),
        };
        let seconds = days * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second)
            - i64::from(offset) * 60;
        Ok(Timestamp(seconds))
    }

    pub fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0
    }

    /// The UTC date this instant falls on.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(SECONDS_PER_DAY) as i32)
    }

    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0 + seconds)
    }

    /// This instant as RFC 3339 text in the given offset (`Z` for UTC).
    pub fn display_in(self, offset: TzOffset) -> impl fmt::Display {
        LocalTime { at: self, offset }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        LocalTime {
            at: *self,
            offset: TzOffset(0),
        }
        .fmt(f)
    }
}

/// An instant shown in a fixed offset.
struct LocalTime {
    at: Timestamp,
    offset: TzOffset,
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.at.0 + i64::from(self.offset.0) * 60;
        let (y, m, d) = civil_from_days(local.div_euclid(SECONDS_PER_DAY));
        let secs = local.rem_euclid(SECONDS_PER_DAY);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if self.offset.0 == 0 {
            f.write_str("Z")
        } else {
            self.offset.fmt(f)
        }
    }
}

impl TzOffset {
    pub const UTC: TzOffset = TzOffset(0);

    /// Parses `+HH:MM` or `-HH:MM` (also `Z` for UTC); at most ±23:59.
    pub fn parse(text: &str) -> Result<TzOffset, String> {
        if text == "Z" {
            return Ok(TzOffset(0));
        }
        let sign = match text.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(format!("{text:?} is not an offset like +09:00 or -05:30")),
        };
        if text.len() != 6 {
            return Err(format!("{text:?} is not an offset like +09:00 or -05:30"));
        }
        let minutes =
            parse_hh_mm(text, 1).map_err(|why| format!("{text:?} is not a valid offset: {why}"))?;
        Ok(TzOffset(sign * i32::from(minutes)))
    }

    pub fn minutes(self) -> i32 {
        self.0
    }
}

impl fmt::Display for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

impl DailyWindow {
    /// Parses `HH:MM-HH:MM`. A window that starts and ends at the same minute is rejected:
    /// it is ambiguous between "never" and "always".
    pub fn parse(text: &str) -> Result<DailyWindow, String> {
        let bad = |why: String| format!("{text:?} is not a window like 01:00-05:00: {why}");
        if text.len() != 11 || !text.is_ascii() {
            return Err(bad("expected exactly HH:MM-HH:MM".into()));
        }
        let start_minute = parse_hh_mm(text, 0).map_err(bad)?;
        expect_byte(text, 5, b'-', "between start and end").map_err(bad)?;
        let end_minute = parse_hh_mm(text, 6).map_err(bad)?;
        if start_minute == end_minute {
            return Err(bad("start and end are the same minute".into()));
        }
        Ok(DailyWindow {
            start_minute,
            end_minute,
        })
    }

    pub fn crosses_midnight(self) -> bool {
        self.end_minute < self.start_minute
    }

    /// Whether `at` (seen in `offset`) falls inside the window.
    pub fn contains(self, at: Timestamp, offset: TzOffset) -> bool {
        let minute = Self::local_second_of_day(at, offset) / 60;
        let (start, end) = (i64::from(self.start_minute), i64::from(self.end_minute));
        if self.crosses_midnight() {
            minute >= start || minute < end
        } else {
            minute >= start && minute < end
        }
    }

    /// The first window start at or after `at`, or `None` if `at` is inside the window already.
    pub fn next_start(self, at: Timestamp, offset: TzOffset) -> Option<Timestamp> {
        if self.contains(at, offset) {
            return None;
        }
        let second_of_day = Self::local_second_of_day(at, offset);
        let start = i64::from(self.start_minute) * 60;
        let wait = if second_of_day <= start {
            start - second_of_day
        } else {
            SECONDS_PER_DAY - second_of_day + start
        };
        Some(at.plus_seconds(wait))
    }

    fn local_second_of_day(at: Timestamp, offset: TzOffset) -> i64 {
        (at.0 + i64::from(offset.0) * 60).rem_euclid(SECONDS_PER_DAY)
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start_minute, self.end_minute);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_across_leap_years_and_eras() {
        for text in [
            "1970-01-01",
            "2000-02-29",
            "1900-03-01",
            "2000-11-10",
            "2400-12-31",
            "1600-01-01",
        ] {
            assert_eq!(Date::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Date::parse("1970-01-02").unwrap().days_since_epoch(), 1);
    }

    #[test]
    fn bad_dates_say_what_is_wrong() {
        assert!(
            Date::parse("1900-02-29")
                .unwrap_err()
                .contains("day 29 does not exist in 1900-02")
        );
        assert!(Date::parse("2000-13-01").unwrap_err().contains("month 13"));
        assert!(Date::parse("2000-1-01").unwrap_err().contains("YYYY-MM-DD"));
        assert!(
            Date::parse("2000/11/10")
                .unwrap_err()
                .contains("expected '-'")
        );
        assert!(Date::parse("２０００-11-1").is_err());
    }

    #[test]
    fn timestamps_parse_offsets_and_fractions() {
        let utc = Timestamp::parse("2000-11-12T00:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2000-11-12T09:00:00+09:00").unwrap(), utc);
        assert_eq!(Timestamp::parse("2000-11-11T19:00:00-05:00").unwrap(), utc);
        assert_eq!(Timestamp::parse("2000-11-12T00:00:00.999Z").unwrap(), utc);
        assert_eq!(utc.to_string(), "2000-11-12T00:00:00Z");
        assert_eq!(
            utc.display_in(TzOffset::parse("+09:00").unwrap())
                .to_string(),
            "2000-11-12T09:00:00+09:00"
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59Z")
                .unwrap()
                .unix_seconds(),
            -1
        );
    }

    #[test]
    fn bad_timestamps_say_what_is_wrong() {
        for (text, why) in [
            ("2000-11-12", "expected 'T'"),
            ("2000-11-12T25:00:00Z", "not a time of day"),
            ("2000-11-12T00:00:00", "expected 'Z' or an offset"),
            ("2000-11-12T00:00:00+9:00", "expected 'Z' or an offset"),
            ("2000-11-12T00:00:00.Z", "expected digits after '.'"),
            ("2000-11-31T00:00:00Z", "day 31 does not exist"),
        ] {
            let err = Timestamp::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn windows_inside_outside_and_across_midnight() {
        let utc = TzOffset::UTC;
        let at = |t: &str| Timestamp::parse(t).unwrap();
        let night = DailyWindow::parse("01:00-05:00").unwrap();
        assert!(night.contains(at("2000-11-12T01:00:00Z"), utc));
        assert!(!night.contains(at("2000-11-12T05:00:00Z"), utc));
        assert_eq!(
            night.next_start(at("2000-11-12T00:30:00Z"), utc),
            Some(at("2000-11-12T01:00:00Z"))
        );
        assert_eq!(
            night.next_start(at("2000-11-12T06:00:00Z"), utc),
            Some(at("2000-11-13T01:00:00Z"))
        );
        assert_eq!(night.next_start(at("2000-11-12T03:00:00Z"), utc), None);

        let late = DailyWindow::parse("22:00-02:00").unwrap();
        assert!(late.crosses_midnight());
        assert!(late.contains(at("2000-11-12T23:30:00Z"), utc));
        assert!(late.contains(at("2000-11-12T01:59:59Z"), utc));
        assert!(!late.contains(at("2000-11-12T02:00:00Z"), utc));
        assert_eq!(
            late.next_start(at("2000-11-12T12:00:00Z"), utc),
            Some(at("2000-11-12T22:00:00Z"))
        );

        // 01:00-05:00 in Tokyo is 16:00-20:00 UTC the day before.
        let tokyo = TzOffset::parse("+09:00").unwrap();
        assert!(night.contains(at("2000-11-11T17:00:00Z"), tokyo));
        assert_eq!(
            night.next_start(at("2000-11-11T21:00:00Z"), tokyo),
            Some(at("2000-11-12T16:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_and_offsets_say_what_is_wrong() {
        assert!(
            DailyWindow::parse("01:00-01:00")
                .unwrap_err()
                .contains("same minute")
        );
        assert!(
            DailyWindow::parse("1:00-5:00")
                .unwrap_err()
                .contains("HH:MM-HH:MM")
        );
        assert!(
            DailyWindow::parse("01:00-24:00")
                .unwrap_err()
                .contains("hour 24")
        );
        assert!(
            DailyWindow::parse("01:60-02:00")
                .unwrap_err()
                .contains("minute 60")
        );
        assert!(
            TzOffset::parse("09:00")
                .unwrap_err()
                .contains("not an offset")
        );
        assert!(TzOffset::parse("+24:00").unwrap_err().contains("hour 24"));
        assert_eq!(TzOffset::parse("-05:30").unwrap().to_string(), "-05:30");
    }
}
