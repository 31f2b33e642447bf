//! The API front door for `/calendar/v3/…` and `/v1/…`: classifies each request into its
//! discovery method id, then applies fault rules, the bearer-token and scope checks, the
//! per-user quota, runs the handler, and records stats, the request log and (optionally)
//! the response body. Handlers are synchronous functions over [`Req`] returning [`Reply`].

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Response, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;

use crate::auth::{scope_allows, Grant};
use crate::discovery;
use crate::errors::{insufficient_scope, unauthenticated, Api, ApiError};
use crate::faults::FaultRule;
use crate::state::{Emulator, UserState};
use crate::stats::RequestRecord;
use crate::{calendar, people};

/// Maximum request body accepted.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// A classified API call.
#[derive(Debug, Clone)]
pub struct Route {
    pub api: Api,
    pub method: &'static str,
    /// Percent-decoded path parameters, in path order.
    pub params: Vec<String>,
}

/// Parsed query string (repeated keys kept).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query {
            pairs: q
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// A boolean parameter (`true`/`false`); anything else is a 400 in `api`'s envelope.
    pub fn bool(&self, key: &str, api: Api) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true") | Some("True") | Some("1") => Ok(Some(true)),
            Some("false") | Some("False") | Some("0") => Ok(Some(false)),
            Some(v) => Err(bad_param(api, key, v)),
        }
    }

    /// An integer parameter.
    pub fn int(&self, key: &str, api: Api) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| bad_param(api, key, v)),
        }
    }

    /// Fingerprint of every parameter except those listed (and the global ones).
    pub fn fingerprint(&self, except: &[&str]) -> u64 {
        const GLOBAL: &[&str] = &[
            "alt",
            "fields",
            "key",
            "oauth_token",
            "access_token",
            "prettyPrint",
            "quotaUser",
            "userIp",
            "$.xgafv",
            "callback",
            "upload_protocol",
            "uploadType",
        ];
        let parts: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| !GLOBAL.contains(&k.as_str()) && !except.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        crate::sync_tokens::fingerprint(parts.iter().map(String::as_str))
    }
}

fn bad_param(api: Api, key: &str, value: &str) -> ApiError {
    match api {
        Api::Calendar => ApiError::new(
            400,
            "invalidParameter",
            format!(
                "Invalid value '{value}'. Values must match the following regular expression: '.*'"
            ),
        )
        .location("parameter", key),
        Api::People => ApiError::invalid_argument(format!("Invalid value at '{key}', \"{value}\"")),
    }
}

/// Everything a handler needs.
pub struct Req<'a> {
    pub emu: &'a Emulator,
    pub user: Arc<UserState>,
    pub route: &'a Route,
    pub query: Query,
    pub body: Bytes,
    pub headers: &'a HeaderMap,
    pub now: DateTime<Utc>,
}

impl Req<'_> {
    pub fn param(&self, i: usize) -> &str {
        self.route.params.get(i).map(String::as_str).unwrap_or("")
    }

    /// The JSON body as an object (400 `parseError` / INVALID_ARGUMENT otherwise).
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        let parse_err = || match self.route.api {
            Api::Calendar => ApiError::new(400, "parseError", "Parse Error"),
            Api::People => {
                ApiError::invalid_argument("Invalid JSON payload received. Expected an object.")
            }
        };
        if self.body.is_empty() {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(parse_err()),
        }
    }

    pub fn if_match(&self) -> Option<&str> {
        self.headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
    }
}

/// A handler's successful result.
#[derive(Debug)]
pub enum Reply {
    Json(Value),
    /// 204 with no body (Calendar deletes, channels.stop).
    Empty,
    /// 304 for a matching `If-None-Match`.
    NotModified,
}

fn pct_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Maps an HTTP method and path to a discovery method id and its path parameters.
pub fn classify(method: &Method, path: &str) -> Option<Route> {
    if let Some(rest) = path.strip_prefix("/calendar/v3/") {
        let seg: Vec<String> = rest.split('/').map(pct_decode).collect();
        let s: Vec<&str> = seg.iter().map(String::as_str).collect();
        let m = method.as_str();
        let id: &'static str = match (m, s.as_slice()) {
            ("GET", ["calendars", _, "events"]) => "calendar.events.list",
            ("POST", ["calendars", _, "events"]) => "calendar.events.insert",
            ("POST", ["calendars", _, "events", "watch"]) => "calendar.events.watch",
            ("GET", ["calendars", _, "events", _, "instances"]) => "calendar.events.instances",
            ("GET", ["calendars", _, "events", _]) => "calendar.events.get",
            ("PUT", ["calendars", _, "events", _]) => "calendar.events.update",
            ("PATCH", ["calendars", _, "events", _]) => "calendar.events.patch",
            ("DELETE", ["calendars", _, "events", _]) => "calendar.events.delete",
            ("GET", ["users", "me", "calendarList", _]) => "calendar.calendarList.get",
            ("POST", ["channels", "stop"]) => "calendar.channels.stop",
            _ => return None,
        };
        let params = match s.as_slice() {
            ["calendars", cal, "events", ev, ..] if *ev != "watch" => {
                vec![cal.to_string(), ev.to_string()]
            }
            ["calendars", cal, ..] => vec![cal.to_string()],
            ["users", "me", "calendarList", cal] => vec![cal.to_string()],
            _ => vec![],
        };
        return Some(Route {
            api: Api::Calendar,
            method: id,
            params,
        });
    }
    let rest = path.strip_prefix("/v1/")?;
    let m = method.as_str();
    let decoded = pct_decode(rest);
    let seg: Vec<&str> = decoded.split('/').collect();
    let (id, params): (&'static str, Vec<String>) = match (m, seg.as_slice()) {
        ("POST", ["people:createContact"]) => ("people.people.createContact", vec![]),
        ("POST", ["people:batchCreateContacts"]) => ("people.people.batchCreateContacts", vec![]),
        ("POST", ["people:batchUpdateContacts"]) => ("people.people.batchUpdateContacts", vec![]),
        ("POST", ["people:batchDeleteContacts"]) => ("people.people.batchDeleteContacts", vec![]),
        ("GET", ["people:batchGet"]) => ("people.people.getBatchGet", vec![]),
        ("GET", ["people", p, "connections"]) => {
            ("people.people.connections.list", vec![p.to_string()])
        }
        ("PATCH", ["people", p]) if p.ends_with(":updateContact") => (
            "people.people.updateContact",
            vec![p.trim_end_matches(":updateContact").to_string()],
        ),
        ("DELETE", ["people", p]) if p.ends_with(":deleteContact") => (
            "people.people.deleteContact",
            vec![p.trim_end_matches(":deleteContact").to_string()],
        ),
        ("GET", ["people", p]) if !p.contains(':') => ("people.people.get", vec![p.to_string()]),
        ("GET", ["contactGroups"]) => ("people.contactGroups.list", vec![]),
        ("POST", ["contactGroups"]) => ("people.contactGroups.create", vec![]),
        ("GET", ["contactGroups:batchGet"]) => ("people.contactGroups.batchGet", vec![]),
        ("GET", ["contactGroups", g]) => ("people.contactGroups.get", vec![g.to_string()]),
        ("PUT", ["contactGroups", g]) => ("people.contactGroups.update", vec![g.to_string()]),
        ("DELETE", ["contactGroups", g]) => ("people.contactGroups.delete", vec![g.to_string()]),
        ("POST", ["contactGroups", g, "members:modify"]) => {
            ("people.contactGroups.members.modify", vec![g.to_string()])
        }
        _ => return None,
    };
    Some(Route {
        api: Api::People,
        method: id,
        params,
    })
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A response that never completes: headers promise a body, then the connection is cut.
fn dropped_connection() -> Response<Body> {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "emulator fault: connection dropped",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .header(header::CONTENT_LENGTH, "1024")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn fault_error(api: Api, rule: &FaultRule, status: u16) -> ApiError {
    let (domain, default_reason, default_msg) = ApiError::calendar_default(status);
    match api {
        Api::Calendar => {
            let mut e = ApiError::new(
                status,
                rule.reason.as_deref().unwrap_or(default_reason),
                rule.message
                    .clone()
                    .unwrap_or_else(|| default_msg.to_string()),
            );
            let reason = rule.reason.as_deref().unwrap_or(default_reason);
            e = e.domain(
                if matches!(
                    reason,
                    "rateLimitExceeded"
                        | "userRateLimitExceeded"
                        | "quotaExceeded"
                        | "dailyLimitExceeded"
                ) {
                    "usageLimits"
                } else {
                    domain
                },
            );
            e
        }
        Api::People => {
            let canonical = ApiError::canonical_status(status);
            let reason = rule.reason.clone();
            let is_status_name = reason.as_deref().is_some_and(|r| {
                r.chars().all(|c| c.is_ascii_uppercase() || c == '_') && ApiError::is_canonical(r)
            });
            let message = rule.message.clone().unwrap_or_else(|| match status {
                429 => "Resource has been exhausted (e.g. check quota).".to_string(),
                500 => "Internal error encountered.".to_string(),
                503 => "The service is currently unavailable.".to_string(),
                _ => default_msg.to_string(),
            });
            if is_status_name {
                ApiError::new(status, "", message).status(reason.as_deref().unwrap_or(canonical))
            } else {
                let mut e = ApiError::new(status, reason.as_deref().unwrap_or(""), message)
                    .status(canonical);
                if reason.is_some() {
                    e = e.domain("googleapis.com");
                }
                e
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The axum fallback handler for all Google API paths.
pub async fn handle(
    axum::extract::State(emu): axum::extract::State<Emulator>,
    req: axum::extract::Request,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let url = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let http_method = parts.method.as_str().to_string();
    let inner = emu.inner();

    let Some(route) = classify(&parts.method, &path) else {
        let api = if path.starts_with("/calendar/") {
            Api::Calendar
        } else {
            Api::People
        };
        let err = match api {
            Api::Calendar => ApiError::cal_not_found(),
            Api::People => ApiError::new(404, "", "Method not found.").status("NOT_FOUND"),
        };
        let body = err.body(api);
        inner.obs.record_request(RequestRecord {
            method: "unknown".into(),
            http_method,
            url,
            status: 404,
            user: None,
        });
        return json_response(404, &body);
    };
    let api = route.api;
    let now = inner.clock.now();
    let token = inner.auth.check_token(bearer(&parts.headers), now);
    let user_email = token.as_ref().ok().map(|t| t.user.clone());

    let finish = |status: u16, body: Option<&Value>| {
        inner.obs.record_request(RequestRecord {
            method: route.method.to_string(),
            http_method: http_method.clone(),
            url: url.clone(),
            status,
            user: user_email.clone(),
        });
        if let Some(b) = body {
            if inner.obs.is_recording() {
                inner.obs.record_response(route.method, status, b);
            }
        }
    };

    // The body (fault rules may match on it).
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = match api {
                Api::Calendar => ApiError::new(413, "uploadTooLarge", "Request Entity Too Large"),
                Api::People => {
                    ApiError::invalid_argument("Request payload size exceeds the limit.")
                }
            };
            let body = e.body(api);
            finish(e.code, Some(&body));
            return json_response(e.code, &body);
        }
    };

    // 1. Faults.
    let fault = inner
        .faults
        .take(route.method, user_email.as_deref(), &http_method, &body);
    if let Some(rule) = &fault {
        if let Some(ms) = rule.delay_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if !rule.applied {
            if let Some(status) = rule.status {
                tracing::debug!(method = route.method, status, "fault injected");
                if status == 0 {
                    finish(0, None);
                    return dropped_connection();
                }
                let body = fault_error(api, rule, status).body(api);
                finish(status, Some(&body));
                return json_response(status, &body);
            }
        }
    }

    // 2. Authentication and scopes.
    let token = match token {
        Ok(t) => t,
        Err(why) => {
            tracing::debug!(method = route.method, ?why, "unauthenticated request");
            let body = unauthenticated(
                api,
                why == crate::auth::TokenCheck::Missing,
                why == crate::auth::TokenCheck::Expired,
            )
            .body(api);
            finish(401, Some(&body));
            return json_response(401, &body);
        }
    };
    if !scope_allows(&token.scopes, discovery::scopes_for(route.method)) {
        let body = insufficient_scope(api, route.method).body(api);
        finish(403, Some(&body));
        return json_response(403, &body);
    }
    let Some(user) = emu.user(&token.user) else {
        let err = match api {
            Api::Calendar => ApiError::cal_not_found(),
            Api::People => ApiError::new(403, "", "The caller does not have permission")
                .status("PERMISSION_DENIED"),
        };
        let body = err.body(api);
        finish(err.code, Some(&body));
        return json_response(err.code, &body);
    };

    // 3. Quota.
    let quotas = inner
        .quotas
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Google charges the impersonating service account unless quotaUser names the user.
    let quota_user = parts
        .uri
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "quotaUser")
                .map(|(_, v)| v.into_owned())
        })
        .or_else(|| {
            parts
                .headers
                .get("x-goog-quota-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let quota_key = match (&quota_user, &token.grant) {
        (Some(q), _) => format!("q:{q}"),
        (None, Grant::Delegation { client_id }) => format!("sa:{client_id}"),
        (None, _) => format!("u:{}", token.user),
    };
    if let Err(e) = emu.quota_bucket(&quota_key).check(api, &quotas, now) {
        let body = e.body(api);
        finish(e.code, Some(&body));
        return json_response(e.code, &body);
    }

    // 4. The handler.
    let req = Req {
        emu: &emu,
        user,
        route: &route,
        query: Query::parse(parts.uri.query()),
        body,
        headers: &parts.headers,
        now,
    };
    let result = match api {
        Api::Calendar => calendar::dispatch(&req),
        Api::People => people::dispatch(&req),
    };

    // 5. "Applied but response lost".
    if let Some(rule) = &fault {
        if rule.applied {
            if let Some(status) = rule.status {
                tracing::debug!(
                    method = route.method,
                    status,
                    "applied fault: response replaced"
                );
                if status == 0 {
                    finish(0, None);
                    return dropped_connection();
                }
                let body = fault_error(api, rule, status).body(api);
                finish(status, Some(&body));
                return json_response(status, &body);
            }
        }
    }

    match result {
        Ok(Reply::Json(v)) => {
            finish(200, Some(&v));
            json_response(200, &v)
        }
        Ok(Reply::NotModified) => {
            finish(304, None);
            Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .unwrap_or_else(|_| Response::new(Body::empty()))
        }
        Ok(Reply::Empty) => {
            finish(204, None);
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .unwrap_or_else(|_| Response::new(Body::empty()))
        }
        Err(e) => {
            let body = e.body(api);
            finish(e.code, Some(&body));
            json_response(e.code, &body)
        }
    }
}
