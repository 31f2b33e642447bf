//! Where Google lives: the base URLs of Calendar v3 and People v1 and the OAuth 2.0 token and
//! authorization endpoints. [`GoogleEndpoints::google`] is production;
//! [`GoogleEndpoints::emulator`] points every one of them at one local emulator, which is what
//! `--google-endpoint URL` does.

use crate::error::{ErrorKind, GoogleError};
use serde::{Deserialize, Serialize};

/// The four URLs the connectors talk to. Base URLs end with `/` (the client crates append
/// `calendars/{id}/events` and `v1/...` to them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoogleEndpoints {
    /// Calendar v3 base URL, e.g. `https://www.googleapis.com/calendar/v3/`.
    pub calendar_base: String,
    /// People v1 base URL (without `v1/`), e.g. `https://people.googleapis.com/`.
    pub people_base: String,
    /// OAuth 2.0 token endpoint: service-account JWT grants, code exchange and refresh.
    pub token_uri: String,
    /// OAuth 2.0 authorization endpoint the user's browser is sent to for per-user consent.
    pub auth_uri: String,
}

impl GoogleEndpoints {
    /// Google's production endpoints.
    pub fn google() -> Self {
        GoogleEndpoints {
            calendar_base: "https://www.googleapis.com/calendar/v3/".into(),
            people_base: "https://people.googleapis.com/".into(),
            token_uri: "https://oauth2.googleapis.com/token".into(),
            auth_uri: "https://accounts.google.com/o/oauth2/v2/auth".into(),
        }
    }

    /// Every endpoint on one emulator (`http://127.0.0.1:8089`): Calendar under
    /// `/calendar/v3/`, People under `/v1/`, tokens at `/token`, consent at
    /// `/o/oauth2/v2/auth` (the same paths as Google's).
    pub fn emulator(base_url: &str) -> Self {
        let b = base_url.trim_end_matches('/');
        GoogleEndpoints {
            calendar_base: format!("{b}/calendar/v3/"),
            people_base: format!("{b}/"),
            token_uri: format!("{b}/token"),
            auth_uri: format!("{b}/o/oauth2/v2/auth"),
        }
    }

    /// Checks that every URL parses as http(s) and that base URLs end with `/` (added when
    /// missing). The client crates panic on an unparsable base URL, so this runs before any
    /// hub is built.
    pub fn validated(&self) -> Result<Self, GoogleError> {
        let mut out = self.clone();
        for (name, value, is_base) in [
            ("calendar_base", &mut out.calendar_base, true),
            ("people_base", &mut out.people_base, true),
            ("token_uri", &mut out.token_uri, false),
            ("auth_uri", &mut out.auth_uri, false),
        ] {
            if is_base && !value.ends_with('/') {
                value.push('/');
            }
            let ok = url::Url::parse(value)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(GoogleError::local(
                    ErrorKind::BadRequest,
                    "connect",
                    format!("the Google endpoint {name} = {value:?} is not an http(s) URL"),
                )
                .with_advice("set --google-endpoint to the emulator's base URL (e.g. http://127.0.0.1:8089) or leave it unset for Google"));
            }
        }
        Ok(out)
    }
}

impl Default for GoogleEndpoints {
    fn default() -> Self {
        Self::google()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_endpoints_share_one_base() {
        let e = GoogleEndpoints::emulator("http://127.0.0.1:8089/");
        assert_eq!(e.calendar_base, "http://127.0.0.1:8089/calendar/v3/");
        assert_eq!(e.people_base, "http://127.0.0.1:8089/");
        assert_eq!(e.token_uri, "http://127.0.0.1:8089/token");
        assert!(e.validated().is_ok());
    }

    #[test]
    fn validation_adds_trailing_slash_and_rejects_garbage() {
        let mut e = GoogleEndpoints::google();
        e.people_base = "https://people.googleapis.com".into();
        assert_eq!(
            e.validated().unwrap().people_base,
            "https://people.googleapis.com/"
        );
        e.calendar_base = "not a url".into();
        let err = e.validated().unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(err.to_string().contains("calendar_base"));
    }
}
