//! Input validation shared by the handlers: e-mail syntax (`email_address`), IANA time zones
//! (chrono-tz), cron expressions (`cron`), text lengths, control characters, instant and date
//! ranges, birthdays. Every check runs before any write; a
//! failure is an [`Invalid`] that becomes a 422 (or a rolled-back store call).

use super::error::ApiError;
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use crmsync_engine::model::Birthday;
use crmsync_schema::StoreError;
use std::str::FromStr;

/// A validation failure with a message for the client.
#[derive(Debug, Clone)]
pub struct Invalid(pub String);

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::invalid(e.0)
    }
}

impl From<Invalid> for StoreError {
    fn from(e: Invalid) -> Self {
        StoreError::Invalid(e.0)
    }
}

pub type Check<T = ()> = Result<T, Invalid>;

/// Maximum length of names, titles and other short text fields.
pub const SHORT_TEXT: usize = 1_000;
/// Maximum length of notes.
pub const LONG_TEXT: usize = 100_000;

/// A syntactically valid e-mail address.
pub fn email(field: &str, address: &str) -> Check {
    if address.len() > 320 || !email_address::EmailAddress::is_valid(address) {
        return Err(Invalid(format!(
            "{field}: {address:?} is not a valid e-mail address"
        )));
    }
    Ok(())
}

/// An IANA time zone name known to chrono-tz.
pub fn time_zone(field: &str, name: &str) -> Check<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).map_err(|_| {
        Invalid(format!(
            "{field}: {name:?} is not an IANA time zone name (for example Europe/Berlin or UTC)"
        ))
    })
}

/// How far ahead a cron expression must fire at least once: a little over four years, so that a
/// yearly Feb 29 schedule is accepted.
pub const CRON_HORIZON_DAYS: i64 = 4 * 366 + 1;

/// A cron expression the scheduler understands (the `cron` crate: seconds first) that fires at
/// least once within [`CRON_HORIZON_DAYS`] of `now` and never twice within 60 seconds.
///
/// The frequency check is exact with three occurrences: every minute that fires fires at each
/// value of the seconds field, so if that field holds two values, two of any three consecutive
/// occurrences fall in the same minute. The `cron` crate stops searching at the year 2100, so an
/// expression that never fires ("0 0 0 30 2 *") ends the search quickly instead of hanging.
pub fn cron_expression(expr: &str, now: DateTime<Utc>) -> Check {
    let schedule = cron::Schedule::from_str(expr).map_err(|e| {
        Invalid(format!(
            "cron: {expr:?} is not a valid cron expression ({e}); use six or seven fields with seconds \
             first, e.g. \"0 */15 * * * *\""
        ))
    })?;
    let next: Vec<DateTime<Utc>> = schedule.after(&now).take(3).collect();
    let horizon = now + chrono::Duration::days(CRON_HORIZON_DAYS);
    match next.first() {
        Some(first) if *first <= horizon => {}
        _ => {
            return Err(Invalid(format!(
                "cron: {expr:?} never fires in the next four years; set a schedule that does, e.g. \
                 \"0 0 * * * *\" (every hour)"
            )))
        }
    }
    if next
        .windows(2)
        .any(|w| w[1] - w[0] < chrono::Duration::seconds(60))
    {
        return Err(Invalid(format!(
            "cron: {expr:?} fires more often than once a minute; give the seconds field a single \
             value, e.g. \"0 */5 * * * *\" (every five minutes)"
        )));
    }
    Ok(())
}

/// The years an instant or a date may have: 1900 to 2999. Anything outside is a typo or a
/// sentinel ("0000-01-01", "9999-12-31") rather than a meeting, and Google refuses or mangles
/// such times.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

/// An instant in [`YEARS`] and not a leap second (`23:59:60`, which chrono keeps as a
/// nanosecond value of a second or more, and which neither the store nor Google represents).
pub fn instant(field: &str, t: &DateTime<Utc>) -> Check {
    if !YEARS.contains(&t.year()) {
        return Err(Invalid(format!(
            "{field}: the year {} is outside {}..={}",
            t.year(),
            YEARS.start(),
            YEARS.end()
        )));
    }
    if t.nanosecond() >= 1_000_000_000 {
        return Err(Invalid(format!(
            "{field}: leap seconds (:60) are not supported; use :59 or the next minute"
        )));
    }
    Ok(())
}

/// A calendar date in [`YEARS`].
pub fn date(field: &str, d: &NaiveDate) -> Check {
    if !YEARS.contains(&d.year()) {
        return Err(Invalid(format!(
            "{field}: the year {} is outside {}..={}",
            d.year(),
            YEARS.start(),
            YEARS.end()
        )));
    }
    Ok(())
}

/// A birthday's year, when it has one, is 1..=9999 (Google's range; the `YYYY-MM-DD` form can
/// only carry these). The month and day are checked when the birthday is parsed; a birthday
/// without a year (`--MM-DD`) is fine.
pub fn birthday(field: &str, b: &Birthday) -> Check {
    match b.year {
        Some(y) if !(1..=9999).contains(&y) => Err(Invalid(format!(
            "{field}: the year {y} is outside 1..=9999; leave the year out (--MM-DD) when it is unknown"
        ))),
        _ => Ok(()),
    }
}

/// Single-line text (names, titles, labels): no control characters at all.
pub fn line(field: &str, value: &str) -> Check {
    match value.chars().position(char::is_control) {
        Some(i) => Err(Invalid(format!(
            "{field}: contains a control character (U+{:04X}) at position {i}; names and titles \
             are a single line of printable text",
            value.chars().nth(i).map_or(0, u32::from)
        ))),
        None => Ok(()),
    }
}

/// Optional single-line text.
pub fn opt_line(field: &str, value: &Option<String>) -> Check {
    value.as_deref().map_or(Ok(()), |v| line(field, v))
}

/// Multi-line text (notes, street addresses): line feeds, carriage returns and tabs are fine,
/// other control characters (NUL, BEL, ESC, ...) are not.
pub fn multiline(field: &str, value: &str) -> Check {
    let bad = |c: &char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
    match value.chars().position(|c| bad(&c)) {
        Some(i) => Err(Invalid(format!(
            "{field}: contains a control character (U+{:04X}) at position {i}; only line breaks \
             and tabs are allowed",
            value.chars().nth(i).map_or(0, u32::from)
        ))),
        None => Ok(()),
    }
}

/// Optional multi-line text.
pub fn opt_multiline(field: &str, value: &Option<String>) -> Check {
    value.as_deref().map_or(Ok(()), |v| multiline(field, v))
}

/// Text no longer than `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Check {
    if value.chars().count() > max {
        return Err(Invalid(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

/// Non-blank text no longer than `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Check {
    if value.trim().is_empty() {
        return Err(Invalid(format!("{field} must not be empty")));
    }
    text(field, value, max)
}

/// Optional text no longer than `max` characters.
pub fn opt_text(field: &str, value: &Option<String>, max: usize) -> Check {
    value.as_deref().map_or(Ok(()), |v| text(field, v, max))
}
