//! Record versions for optimistic concurrency (SPEC 6.4): a contact's or activity's `version`
//! (its change sequence number, which grows on every change) goes out as a strong `ETag`
//! (`"42"`), and `If-Match` on PATCH, PUT and DELETE is checked inside the write transaction,
//! after the record is locked: a stale version answers 412 `precondition_failed` and nothing is
//! written.

use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use crmsync_schema::StoreError;

/// The `If-Match` precondition of a request (`None`: the client sent none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfMatch(Option<Precondition>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Precondition {
    /// `*`: the record must exist.
    Any,
    /// One of these versions.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Parses an `If-Match` value: `*`, or a comma-separated list of strong ETags (`"42"`).
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        if value == "*" {
            return Ok(IfMatch(Some(Precondition::Any)));
        }
        let bad = || {
            ApiError::bad_request(format!(
                "If-Match {value:?} is not an ETag of this API: send the record's ETag header (or \
                 its version in quotes), e.g. If-Match: \"42\""
            ))
        };
        let mut versions = Vec::new();
        for tag in value.split(',') {
            let tag = tag.trim();
            let inner = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(bad)?;
            versions.push(inner.parse::<i64>().map_err(|_| bad())?);
        }
        if versions.is_empty() {
            return Err(bad());
        }
        Ok(IfMatch(Some(Precondition::Versions(versions))))
    }

    /// Whether the client sent a precondition.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Checks the precondition against the record's current version (`None`: no such record).
    pub fn check(&self, what: &str, current: Option<i64>) -> Result<(), StoreError> {
        match (&self.0, current) {
            (None, _) | (Some(Precondition::Any), Some(_)) => Ok(()),
            (Some(_), None) => Err(StoreError::Stale(format!(
                "If-Match: the {what} does not exist (any more); read it again before you write"
            ))),
            (Some(Precondition::Versions(v)), Some(cur)) if v.contains(&cur) => Ok(()),
            (Some(Precondition::Versions(_)), Some(cur)) => Err(StoreError::Stale(format!(
                "If-Match: the {what} changed since you read it (now version {cur}); read it \
                 again, apply your change to what it is now, and send that with If-Match: \"{cur}\""
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter().peekable();
        if values.peek().is_none() {
            return Ok(IfMatch::default());
        }
        let joined = values
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::bad_request("If-Match is not ASCII"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        IfMatch::parse(&joined)
    }
}

/// The `ETag` of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A response body sent with its record's `ETag`.
pub struct Versioned<T> {
    pub version: i64,
    pub body: T,
}

impl<T: IntoResponse> IntoResponse for Versioned<T> {
    fn into_response(self) -> Response {
        let mut response = self.body.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(self.version)) {
            response.headers_mut().insert(header::ETAG, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_parses_etags_and_star_and_refuses_the_rest() {
        assert_eq!(
            IfMatch::parse("\"7\", \"9\"").ok(),
            Some(IfMatch(Some(Precondition::Versions(vec![7, 9]))))
        );
        assert!(IfMatch::parse("*").is_ok_and(|m| m.check("contact", Some(1)).is_ok()));
        for bad in ["7", "W/\"7\"", "\"x\"", "", "\"7"] {
            assert!(IfMatch::parse(bad).is_err(), "{bad}");
        }
        let m = IfMatch::parse("\"7\"").unwrap_or_default();
        assert!(m.check("contact", Some(7)).is_ok());
        assert!(matches!(
            m.check("contact", Some(8)),
            Err(StoreError::Stale(_))
        ));
        assert!(matches!(
            m.check("contact", None),
            Err(StoreError::Stale(_))
        ));
        assert!(IfMatch::default().check("contact", None).is_ok());
    }
}
