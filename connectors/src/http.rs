//! The HTTP layer under both clients: the shared TLS connector, the per-account hyper client,
//! form posts to the token endpoint, and [`Caller::run`], which performs one logical API call
//! through a client-crate builder with rate limiting, retries, tracing and metrics.
//!
//! The client crates report a failed response as `Error::BadRequest(json)` without the HTTP
//! status; a capturing [`Delegate`] records the status, the `Retry-After` header and whether
//! the request was actually sent (`pre_request`), which is what decides if a non-idempotent
//! write may be repeated. The crates' own retry loop is never used (the delegate always aborts).

use crate::auth::TokenProvider;
use crate::error::{ErrorKind, GoogleError};
use crate::metrics::{export, MetricsRecorder};
use crate::rate_limit::RateLimiter;
use crate::retry::{parse_retry_after, Idempotency, RetryHint, RetryPolicy};
use google_apis_common::{Delegate, Retry};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// The connector every client uses: https (native roots) or plain http (emulator).
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
/// The hyper client type the hubs take.
pub(crate) type ApiClient = hyper_util::client::legacy::Client<Connector, google_apis_common::Body>;

static CONNECTOR: OnceLock<Connector> = OnceLock::new();

/// The process-wide connector (loading the native root certificates once). The connection
/// pools live in the per-account clients, so nothing here is tied to a runtime.
pub(crate) fn connector() -> Result<Connector, GoogleError> {
    if let Some(c) = CONNECTOR.get() {
        return Ok(c.clone());
    }
    let provider = rustls::crypto::ring::default_provider();
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no native root certificates could be loaded; https to Google will fail (plain http to an emulator still works)");
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| {
                    GoogleError::local(
                        ErrorKind::Transient,
                        "connect",
                        format!("could not configure TLS: {e}"),
                    )
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let c = builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(CONNECTOR.get_or_init(|| c).clone())
}

/// A hyper client over `connector` (one per account: its own connection pool).
pub(crate) fn api_client(connector: Connector) -> ApiClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// POSTs an `application/x-www-form-urlencoded` body; returns the status and the JSON body
/// (None when it is not JSON). Transport failures and timeouts are `Transient`.
pub(crate) async fn post_form(
    client: &ApiClient,
    uri: &str,
    pairs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, Option<Value>), GoogleError> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let request = hyper::Request::post(uri)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(hyper::header::USER_AGENT, "crmsync")
        .body(google_apis_common::to_body(Some(body)))
        .map_err(|e| {
            GoogleError::local(
                ErrorKind::BadRequest,
                crate::auth::TOKEN_METHOD,
                format!("invalid token endpoint {uri:?}: {e}"),
            )
        })?;
    let transient =
        |msg: String| GoogleError::local(ErrorKind::Transient, crate::auth::TOKEN_METHOD, msg);
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => {
            return Err(transient(format!(
                "no answer from the token endpoint within {timeout:?}"
            )))
        }
        Ok(Err(e)) => {
            return Err(transient(format!(
                "could not reach the token endpoint {uri}: {e}"
            )))
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    let bytes = match tokio::time::timeout(timeout, response.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Err(transient(format!(
                "the token endpoint's answer was cut off: {e}"
            )))
        }
        Err(_) => {
            return Err(transient(format!(
                "the token endpoint's answer did not finish within {timeout:?}"
            )))
        }
    };
    Ok((status, serde_json::from_slice(&bytes).ok()))
}

/// The `User-Agent` the client crates send (requests built here look the same to Google).
pub(crate) const CLIENT_USER_AGENT: &str = "google-api-rust-client/7.0.0";

/// What [`raw_request`] sends: method, full URL (with `alt=json` and the other query
/// parameters), extra headers, and an optional JSON body.
pub(crate) struct RawRequest<'a> {
    pub method: hyper::Method,
    pub url: &'a str,
    pub headers: &'a [(hyper::header::HeaderName, &'a str)],
    pub body: Option<&'a [u8]>,
}

/// One request the client crates cannot express (they have no way to set a request header such
/// as `If-Match`), sent the way their `doit()` sends it: a bearer token from `auth` for `scope`,
/// the crates' `User-Agent`, a JSON body, and the delegate told about the attempt
/// (`pre_request`, `http_error`, `http_failure`). A non-2xx answer with a JSON body becomes
/// `Error::BadRequest(body)`, other failures `Failure`/`HttpError`/`MissingToken`, exactly as
/// the crates report them, so [`Caller::run`] classifies, retries and counts it like any other
/// call. On success returns the response head and body bytes (decode them inside the attempt).
pub(crate) async fn raw_request(
    client: &ApiClient,
    auth: &dyn google_apis_common::GetToken,
    scope: &str,
    dlg: &mut dyn Delegate,
    request: RawRequest<'_>,
) -> google_apis_common::Result<(http::response::Parts, hyper::body::Bytes)> {
    use google_apis_common::Error as E;
    let RawRequest {
        method,
        url,
        headers,
        body,
    } = request;
    use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
    let token = match auth.get_token(&[scope]).await {
        Ok(t) => t,
        Err(e) => match dlg.token(e) {
            Ok(t) => t,
            Err(e) => {
                dlg.finished(false);
                return Err(E::MissingToken(e));
            }
        },
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header(USER_AGENT, CLIENT_USER_AGENT);
    if let Some(t) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    let payload = match body {
        Some(b) => {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_LENGTH, b.len() as u64);
            Some(hyper::body::Bytes::copy_from_slice(b))
        }
        None => None,
    };
    let request = builder
        .body(google_apis_common::to_body(payload))
        .map_err(|e| E::Io(std::io::Error::other(format!("invalid request {url}: {e}"))))?;
    dlg.pre_request();
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(err) => {
            dlg.http_error(&err);
            dlg.finished(false);
            return Err(E::HttpError(err));
        }
    };
    let (parts, body) = response.into_parts();
    let bytes = google_apis_common::to_bytes(body).await.unwrap_or_default();
    if !parts.status.is_success() {
        let error: Result<Value, _> = serde_json::from_str(&google_apis_common::to_string(&bytes));
        let response = google_apis_common::to_response(parts, Some(bytes));
        dlg.http_failure(&response, error.as_ref().ok());
        dlg.finished(false);
        return Err(match error {
            Ok(value) => E::BadRequest(value),
            Err(_) => E::Failure(response),
        });
    }
    dlg.finished(true);
    Ok((parts, bytes))
}

/// What the delegate saw during one attempt.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// The request went out (`pre_request` was called).
    pub sent: bool,
    /// The HTTP status of an error response.
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The transport error was a connect failure (nothing reached the server).
    pub connect_error: bool,
}

/// A [`Delegate`] that records what happened and never lets the crate retry by itself.
pub(crate) struct CaptureDelegate(Arc<Mutex<Captured>>);

impl CaptureDelegate {
    fn with<R>(&self, f: impl FnOnce(&mut Captured) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl Delegate for CaptureDelegate {
    fn pre_request(&mut self) {
        self.with(|c| c.sent = true);
    }

    fn http_error(&mut self, err: &hyper_util::client::legacy::Error) -> Retry {
        let connect = err.is_connect();
        self.with(|c| c.connect_error = connect);
        Retry::Abort
    }

    fn http_failure(
        &mut self,
        response: &google_apis_common::Response,
        _err: Option<&Value>,
    ) -> Retry {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        self.with(|c| {
            c.status = Some(status);
            c.retry_after = retry_after;
        });
        Retry::Abort
    }
}

/// Which API a caller talks to (selects People's minute-window behaviour on 429).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Calendar,
    People,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Calendar => "calendar",
            Api::People => "people",
        }
    }
}

/// How a failed attempt may be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureClass {
    /// Nothing reached Google (token fetch failed transiently, connect error): always retryable.
    NotSent,
    /// Rejected before processing by a rate limit: always retryable.
    RateLimited,
    /// Reached Google and failed in a way that may or may not have been applied.
    MaybeApplied,
    /// HTTP 401: refresh the token once.
    Unauthorized,
    /// Retrying will not help.
    Final,
}

/// Everything needed to run calls for one account and one API.
pub(crate) struct Caller {
    pub api: Api,
    /// The one fixed scope every call of this API requests.
    pub scope: &'static str,
    pub user: Arc<str>,
    pub quota_user: Option<String>,
    pub retry: RetryPolicy,
    pub limiter: Option<RateLimiter>,
    pub metrics: Arc<MetricsRecorder>,
    pub auth: TokenProvider,
    pub timeout: Duration,
}

/// Applies what every call carries: the capturing delegate, the one fixed scope (so domain-wide
/// delegation needs only the authorized scopes and one cached token serves all methods), and
/// `quotaUser` when configured.
macro_rules! prepare {
    ($call:expr, $dlg:expr, $caller:expr) => {{
        let call = $call.delegate($dlg).clear_scopes().add_scope($caller.scope);
        match $caller.quota_user.as_deref() {
            Some(q) => call.param("quotaUser", q),
            None => call,
        }
    }};
}
pub(crate) use prepare;

impl Caller {
    /// Runs one logical call. `attempt` builds and sends the request once per attempt with the
    /// given delegate (use [`prepare!`]); it must be repeatable (clone request bodies).
    pub async fn run<T, F, Fut>(
        &self,
        method: &'static str,
        idempotency: Idempotency,
        mut attempt: F,
    ) -> Result<T, GoogleError>
    where
        F: FnMut(CaptureDelegate) -> Fut,
        Fut: Future<Output = google_apis_common::Result<(google_apis_common::Response, T)>>,
    {
        let span = tracing::debug_span!(
            "google_call",
            method,
            user = %self.user,
            attempt = tracing::field::Empty
        );
        /// Leaves the busy interval however the call ends (even if the future is dropped).
        struct InFlight<'a>(&'a MetricsRecorder);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.leave();
            }
        }
        async {
            self.metrics.call();
            self.metrics.enter();
            let _in_flight = InFlight(&self.metrics);
            let mut tries: u32 = 0;
            let mut refreshed = false;
            loop {
                tries += 1;
                tracing::Span::current().record("attempt", tries);
                if let Some(l) = &self.limiter {
                    let waited = l.acquire().await;
                    self.metrics.throttled(waited);
                    export::throttled(self.api.as_str(), waited);
                }
                let captured = Arc::new(Mutex::new(Captured::default()));
                let fut = attempt(CaptureDelegate(captured.clone()));
                let result = tokio::time::timeout(self.timeout, fut).await;
                let cap = std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()));
                if cap.sent {
                    self.metrics.attempt();
                    export::request(
                        method,
                        match &result {
                            Ok(Ok((response, _))) => export::Status::Http(response.status().as_u16()),
                            Ok(Err(_)) => cap.status.map_or(export::Status::Transport, export::Status::Http),
                            Err(_) => export::Status::Timeout,
                        },
                    );
                }
                let (mut error, class) = match result {
                    Ok(Ok((_response, value))) => {
                        export::call(method, true);
                        return Ok(value);
                    }
                    Ok(Err(e)) => self.classify(method, e, &cap),
                    Err(_) => {
                        let e = GoogleError::local(
                            ErrorKind::Transient,
                            method,
                            format!("no response within {:?}", self.timeout),
                        );
                        (e, if cap.sent { FailureClass::MaybeApplied } else { FailureClass::NotSent })
                    }
                };
                error.attempts = tries;
                if error.kind == ErrorKind::RateLimited {
                    self.metrics.rate_limited();
                    export::rate_limited(method);
                }
                let retryable = match class {
                    FailureClass::NotSent | FailureClass::RateLimited => true,
                    FailureClass::MaybeApplied => match idempotency {
                        Idempotency::Idempotent => true,
                        Idempotency::NonIdempotent => {
                            error = indeterminate(error);
                            false
                        }
                    },
                    FailureClass::Unauthorized => {
                        if !refreshed && self.auth.invalidate(&[self.scope]).await {
                            refreshed = true;
                            tracing::info!(method, "access token refused (401); fetching a fresh one");
                            self.metrics.retry(Duration::ZERO);
                            export::retry(method, Duration::ZERO);
                            tries -= 1; // a token refresh does not use up an attempt
                            continue;
                        }
                        false
                    }
                    FailureClass::Final => {
                        if error.kind == ErrorKind::Decode && idempotency == Idempotency::NonIdempotent {
                            error = indeterminate(error);
                        }
                        false
                    }
                };
                if !retryable || tries >= self.retry.max_attempts {
                    self.metrics.failure();
                    export::call(method, false);
                    if error.kind == ErrorKind::Auth || error.is_unauthorized() {
                        error.kind = ErrorKind::Auth;
                        error = self.auth.context().decorate(error, &[self.scope]);
                    }
                    tracing::debug!(method, kind = %error.kind, status = ?error.status, "google call failed");
                    return Err(error);
                }
                let hint = RetryHint {
                    retry_after: cap.retry_after,
                    minute_window: self.api == Api::People && error.status == Some(429),
                };
                let delay = self
                    .retry
                    .delay(tries, &hint, rand::random::<f64>(), SystemTime::now());
                tracing::info!(
                    method,
                    attempt = tries,
                    status = ?error.status,
                    reason = ?error.reason,
                    delay_ms = delay.as_millis() as u64,
                    "retrying google call"
                );
                self.metrics.retry(delay);
                export::retry(method, delay);
                tokio::time::sleep(delay).await;
            }
        }
        .instrument(span)
        .await
    }

    fn classify(
        &self,
        method: &'static str,
        e: google_apis_common::Error,
        cap: &Captured,
    ) -> (GoogleError, FailureClass) {
        use google_apis_common::Error as E;
        let from_status = |err: GoogleError| {
            let class = match err.kind {
                ErrorKind::RateLimited => FailureClass::RateLimited,
                ErrorKind::Transient => FailureClass::MaybeApplied,
                _ if err.is_unauthorized() => FailureClass::Unauthorized,
                _ => FailureClass::Final,
            };
            (err, class)
        };
        match e {
            E::BadRequest(body) => {
                from_status(GoogleError::from_response(method, cap.status, Some(&body)))
            }
            E::Failure(response) => from_status(GoogleError::from_response(
                method,
                Some(response.status().as_u16()),
                None,
            )),
            E::HttpError(err) => {
                let not_sent = !cap.sent || cap.connect_error || err.is_connect();
                let e = GoogleError::local(
                    ErrorKind::Transient,
                    method,
                    format!("transport failure: {}", describe(&err)),
                );
                (
                    e,
                    if not_sent {
                        FailureClass::NotSent
                    } else {
                        FailureClass::MaybeApplied
                    },
                )
            }
            E::Io(err) => (
                GoogleError::local(
                    ErrorKind::Transient,
                    method,
                    format!("reading the response failed: {err}"),
                ),
                FailureClass::MaybeApplied,
            ),
            E::MissingToken(inner) => {
                let mut e = match inner.downcast::<GoogleError>() {
                    Ok(g) => *g,
                    Err(other) => GoogleError::local(
                        ErrorKind::Auth,
                        crate::auth::TOKEN_METHOD,
                        other.to_string(),
                    ),
                };
                let class = match e.kind {
                    ErrorKind::Transient | ErrorKind::RateLimited => FailureClass::NotSent,
                    _ => FailureClass::Final,
                };
                if e.kind == ErrorKind::RateLimited {
                    e.kind = ErrorKind::Transient;
                }
                (e, class)
            }
            // An empty or truncated body: the connection broke while the response was read.
            E::JsonDecodeError(_, err) if err.is_eof() => (
                GoogleError::local(
                    ErrorKind::Transient,
                    method,
                    format!("the response was cut off: {err}"),
                ),
                FailureClass::MaybeApplied,
            ),
            E::JsonDecodeError(body, err) => {
                let snippet: String = body.chars().take(200).collect();
                (
                    GoogleError::local(
                        ErrorKind::Decode,
                        method,
                        format!("{err} in response {snippet:?}"),
                    ),
                    FailureClass::Final,
                )
            }
            other => (
                GoogleError::local(
                    ErrorKind::BadRequest,
                    method,
                    other.to_string().trim_end().to_string(),
                ),
                FailureClass::Final,
            ),
        }
    }
}

fn indeterminate(mut e: GoogleError) -> GoogleError {
    e.message = format!(
        "{} (the request was sent; Google may have applied it)",
        e.message.trim_end()
    );
    e.kind = ErrorKind::Indeterminate;
    e
}

fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut s = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
