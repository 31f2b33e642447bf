//! Input validation shared by the handlers: e-mail syntax (`email_address`), IANA time zones
//! (chrono-tz), cron expressions (`cron`), text lengths. Every check runs before any write; a
//! failure is an [`Invalid`] that becomes a 422 (or a rolled-back store call).

use super::error::ApiError;
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

/// A cron expression the scheduler understands (the `cron` crate: seconds first).
pub fn cron_expression(expr: &str) -> Check {
    cron::Schedule::from_str(expr).map(|_| ()).map_err(|e| {
        Invalid(format!(
            "cron: {expr:?} is not a valid cron expression ({e}); use six or seven fields with seconds \
             first, e.g. \"0 */15 * * * *\""
        ))
    })
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
