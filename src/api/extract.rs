//! Extractors that turn every rejection into an [`ApiError`] JSON response: `JsonBody`
//! (application/json request bodies), `PatchBody` (the same, for PATCH: at least one field),
//! `ApiPath` and `ApiQuery`, and the `non_null` field helper.
//!
//! Request bodies are strict: the body must be a JSON **object** (serde's derive would otherwise
//! read a JSON array as a struct's fields in order); a type mismatch, unknown or missing field
//! answers 422 `invalid_body` with the path of the field (`emails[0].kind: unknown variant ...`);
//! malformed JSON answers 400 `invalid_json`; a wrong content type 415; an oversized body 413.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A JSON request body: an object deserialized into `T`.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = object_body(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// The body of a PATCH: like [`JsonBody`], and an empty object `{}` (nothing to change) is
/// refused with 422 instead of becoming a write that changes nothing but `modified_at`.
pub struct PatchBody<T>(pub T);

impl<T, S> FromRequest<S> for PatchBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = object_body(req, state).await?;
        let value: T = parse(&bytes)?;
        // Every PATCH field is optional and unknown fields are refused, so the body names no
        // field exactly when it is an empty object.
        let no_field = bytes
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .eq(b"{}".iter());
        if no_field {
            return Err(ApiError::invalid(
                "body: nothing to change: the object names no field; send the fields to change",
            ));
        }
        Ok(PatchBody(value))
    }
}

/// `Content-Type: application/json` (or `application/*+json`, with any parameters).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((ty, sub)) => {
            ty.eq_ignore_ascii_case("application")
                && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
        }
        None => false,
    }
}

/// The raw body, checked to be JSON whose top level is an object.
async fn object_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !json_content_type(req.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON; send `Content-Type: application/json`",
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "payload_too_large",
                format!("{}; the limit is 256 KiB", r.body_text()),
            )
        } else {
            ApiError::new(status, "bad_request", r.body_text())
        }
    })?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(bytes),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body is empty; send a JSON object",
        )),
        Some(_) => {
            // Malformed JSON stays a 400; well-formed JSON that is not an object is a 422.
            let kind = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Err(e) => return Err(syntax_error(&e)),
                Ok(v) => match v {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Null => "null",
                    serde_json::Value::Object(_) => "an object",
                },
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("body: the request body must be a JSON object, not {kind}"),
            ))
        }
    }
}

fn syntax_error(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("the request body is not valid JSON: {e}"),
    )
}

/// Deserializes `T` from the body; errors name the field's path.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        if e.inner().is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        } else {
            syntax_error(e.inner())
        }
    })?;
    // Trailing characters after the object.
    de.end().map_err(|e| syntax_error(&e))?;
    Ok(value)
}

/// For an optional field that must not be `null`: with `#[serde(default, deserialize_with =
/// "non_null")]` an absent field is `None`, a value is `Some`, and `null` is refused (instead of
/// being silently read as "absent").
pub fn non_null<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(
            "null is not allowed here: leave the field out to keep its value",
        )),
    }
}

/// Path parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
