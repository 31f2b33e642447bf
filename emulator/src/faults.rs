//! Fault injection. A [`FaultRule`] matches requests by discovery method id (with a trailing
//! `*` wildcard), optionally by user and HTTP method, and then delays the request, fails it
//! with a Google error in that API's envelope, carries it out and *then* fails it ("applied
//! but response lost"), or drops the connection without a response (`status: 0`).
//!
//! `match` syntax (string form): whitespace-separated terms, the first a method pattern, the
//! others `user=EMAIL`, `http=METHOD` and `body=TEXT` (the request body contains TEXT, to fail
//! the calls that carry one particular record), e.g.
//! `"people.people.batchCreateContacts user=a@x.com"`, `"calendar.events.* http=PATCH"`,
//! `"people.people.createContact body=bad@example.org"`, `"*"`. The object form `{"method": …,
//! "user": …, "http_method": …, "body": …}` is equivalent.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// What a rule matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultMatch {
    /// Discovery method id or a prefix ending in `*` (`calendar.events.*`, `*`).
    pub method: String,
    /// Only requests whose access token belongs to this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only this HTTP method (`GET`, `POST`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// Only requests whose body contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl FaultMatch {
    /// Parses the string form (see the module docs).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = s.split_whitespace();
        let method = terms
            .next()
            .ok_or_else(|| {
                "empty match: give a method id such as calendar.events.insert or *".to_string()
            })?
            .to_string();
        let mut m = FaultMatch {
            method,
            ..Default::default()
        };
        for t in terms {
            if let Some(u) = t.strip_prefix("user=") {
                m.user = Some(u.to_ascii_lowercase());
            } else if let Some(h) = t.strip_prefix("http=") {
                m.http_method = Some(h.to_ascii_uppercase());
            } else if let Some(b) = t.strip_prefix("body=") {
                m.body = Some(b.to_string());
            } else {
                return Err(format!(
                    "unknown match term {t:?}: expected user=EMAIL, http=METHOD or body=TEXT"
                ));
            }
        }
        Ok(m)
    }

    pub fn matches(
        &self,
        method_id: &str,
        user: Option<&str>,
        http_method: &str,
        body: &[u8],
    ) -> bool {
        let method_ok = if self.method == "*" {
            true
        } else if let Some(prefix) = self.method.strip_suffix('*') {
            method_id.starts_with(prefix)
        } else {
            self.method == method_id
        };
        method_ok
            && self
                .user
                .as_deref()
                .is_none_or(|u| user.is_some_and(|x| x.eq_ignore_ascii_case(u)))
            && self
                .http_method
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(http_method))
            && self
                .body
                .as_deref()
                .is_none_or(|b| !b.is_empty() && body.windows(b.len()).any(|w| w == b.as_bytes()))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MatchRepr {
    Text(String),
    Object(FaultMatch),
}

fn de_match<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FaultMatch, D::Error> {
    match MatchRepr::deserialize(d)? {
        MatchRepr::Text(s) => FaultMatch::parse(&s).map_err(serde::de::Error::custom),
        MatchRepr::Object(o) => Ok(o),
    }
}

/// One fault rule, as posted to `POST /_emulator/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(rename = "match", deserialize_with = "de_match")]
    pub matcher: FaultMatch,
    /// HTTP status to answer with; `0` drops the connection without a response; absent =
    /// no error (a pure `delay_ms` rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Calendar `errors[0].reason` / People ErrorInfo reason (or canonical status name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Error message (defaults to Google's wording for the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many matching requests this rule affects; absent = every one until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Carry the request out first, then lose the response (error status or dropped connection).
    #[serde(default)]
    pub applied: bool,
    /// Delay before the request is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl FaultRule {
    /// A rule failing `method` `times` times with `status`.
    pub fn error(method: &str, status: u16, times: u64) -> Self {
        FaultRule {
            matcher: FaultMatch {
                method: method.to_string(),
                ..Default::default()
            },
            status: Some(status),
            reason: None,
            message: None,
            times: Some(times),
            applied: false,
            delay_ms: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn for_user(mut self, user: &str) -> Self {
        self.matcher.user = Some(user.to_ascii_lowercase());
        self
    }

    /// Only requests whose body contains `text` (one record's calls).
    pub fn body_contains(mut self, text: &str) -> Self {
        self.matcher.body = Some(text.to_string());
        self
    }

    pub fn applied(mut self) -> Self {
        self.applied = true;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }
}

/// The fault rules in force, each with its remaining count.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<(FaultRule, Option<u64>)>>,
}

impl Faults {
    pub fn set(&self, rules: Vec<FaultRule>) {
        let mut r = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        *r = rules
            .into_iter()
            .map(|rule| {
                let left = rule.times;
                (rule, left)
            })
            .collect();
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Takes the first rule matching the request (consuming one of its `times`).
    pub fn take(
        &self,
        method_id: &str,
        user: Option<&str>,
        http_method: &str,
        body: &[u8],
    ) -> Option<FaultRule> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.is_empty() {
            return None;
        }
        let idx = rules.iter().position(|(rule, left)| {
            left.is_none_or(|n| n > 0) && rule.matcher.matches(method_id, user, http_method, body)
        })?;
        let (rule, left) = &mut rules[idx];
        if let Some(n) = left.as_mut() {
            *n -= 1;
        }
        let out = rule.clone();
        if *left == Some(0) {
            rules.remove(idx);
        }
        Some(out)
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(r, left)| {
                let mut r = r.clone();
                r.times = *left;
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_the_string_form() {
        let m = FaultMatch::parse("calendar.events.* user=Alice@Example.com http=patch").unwrap();
        assert!(m.matches(
            "calendar.events.patch",
            Some("alice@example.com"),
            "PATCH",
            b""
        ));
        assert!(!m.matches(
            "calendar.events.patch",
            Some("bob@example.com"),
            "PATCH",
            b""
        ));
        assert!(!m.matches(
            "calendar.events.patch",
            Some("alice@example.com"),
            "GET",
            b""
        ));
        assert!(!m.matches("people.people.get", Some("alice@example.com"), "PATCH", b""));
        assert!(FaultMatch::parse("*")
            .unwrap()
            .matches("people.people.get", None, "GET", b""));
        let b = FaultMatch::parse("people.people.createContact body=bad@x.test").unwrap();
        assert!(b.matches(
            "people.people.createContact",
            None,
            "POST",
            br#"{"v":"bad@x.test"}"#
        ));
        assert!(!b.matches(
            "people.people.createContact",
            None,
            "POST",
            br#"{"v":"ok@x.test"}"#
        ));
        assert!(!b.matches("people.people.createContact", None, "POST", b""));
        assert!(FaultMatch::parse("x owner=y").is_err());
        assert!(FaultMatch::parse("  ").is_err());
    }

    #[test]
    fn rules_count_down_and_disappear() {
        let f = Faults::default();
        f.set(vec![
            FaultRule::error("people.*", 500, 2),
            FaultRule::error("*", 503, 1),
        ]);
        assert_eq!(
            f.take("people.people.get", None, "GET", b"")
                .and_then(|r| r.status),
            Some(500)
        );
        assert_eq!(
            f.take("people.people.get", None, "GET", b"")
                .and_then(|r| r.status),
            Some(500)
        );
        assert_eq!(
            f.take("people.people.get", None, "GET", b"")
                .and_then(|r| r.status),
            Some(503)
        );
        assert!(f.take("people.people.get", None, "GET", b"").is_none());
        let json: FaultRule = serde_json::from_str(
            r#"{"match": {"method": "calendar.events.list"}, "status": 0, "applied": true}"#,
        )
        .unwrap();
        assert_eq!(json.status, Some(0));
        assert!(json.applied && json.times.is_none());
    }
}
