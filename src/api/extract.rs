//! Extractors that turn every rejection into an [`ApiError`] JSON response: `JsonBody`
//! (application/json request bodies), `ApiPath` and `ApiQuery`.

use super::error::ApiError;
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

/// A JSON request body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Path parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
