//! `/users`: create (201), list (paginated), read, change (PATCH). E-mails and aliases are
//! validated and stored normalized; time zones must be IANA names. `PUT/GET
//! /users/by-external-id/{external_id}` mirror a CRM's users under its own ids (SPEC 6.4); users
//! are never deleted (their activities, tags and sync history stay theirs).

use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody, PatchBody};
use super::page::{self, Page};
use super::validate::{self, Check, SHORT_TEXT};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use crmsync_engine::ids::UserId;
use crmsync_engine::model::User;
use crmsync_schema::users::{self as store, NewUser, UserPatch};
use serde::Deserialize;
use utoipa::ToSchema;

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The user's e-mail address (unique).
    #[schema(format = Email, max_length = 320, example = "ann@example.com")]
    email: String,
    #[schema(min_length = 1, max_length = 1000, example = "Ann Able")]
    display_name: String,
    /// The Google account to sync with (default: `email`); one Google account serves one user.
    #[serde(default)]
    #[schema(format = Email, max_length = 320)]
    google_alias: Option<String>,
    /// IANA time zone name (default `UTC`).
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::TimeZone>)]
    time_zone: Option<String>,
    /// The CRM's id of the user (1 to 255 characters, unique).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
}

/// The fields to change (at least one; `null` is refused).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, min_length = 1, max_length = 1000)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, format = Email, max_length = 320)]
    google_alias: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, value_type = Option<super::openapi::TimeZone>)]
    time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

fn check_patch(p: &PatchUser) -> Check {
    if let Some(n) = &p.display_name {
        validate::required_text("display_name", n, SHORT_TEXT)?;
        validate::line("display_name", n)?;
    }
    if let Some(a) = &p.google_alias {
        validate::email("google_alias", a)?;
    }
    if let Some(tz) = &p.time_zone {
        validate::time_zone("time_zone", tz)?;
    }
    Ok(())
}

fn check_create(body: &CreateUser) -> ApiResult<()> {
    validate::email("email", &body.email)?;
    check_patch(&PatchUser {
        display_name: Some(body.display_name.clone()),
        google_alias: body.google_alias.clone(),
        time_zone: body.time_zone.clone(),
    })?;
    if let Some(x) = &body.external_id {
        super::upsert::check_external_id("external_id", x)?;
    }
    Ok(())
}

/// `POST /users`.
#[utoipa::path(
    post, path = "/users", tag = "users",
    operation_id = "users_create",
    summary = "Create a user",
    request_body = CreateUser,
    responses(
        (status = 201, description = "created", body = super::openapi::UserDoc),
        (status = 409, description = "the e-mail or the Google alias is taken (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    check_create(&body)?;
    let now = st.now();
    let new = NewUser {
        external_id: body.external_id,
        email: body.email,
        display_name: body.display_name,
        google_alias: body.google_alias,
        time_zone: body.time_zone,
    };
    let user = st
        .write_async(move |c| store::create_user(c, &new, now))
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /users`.
#[utoipa::path(
    get, path = "/users", tag = "users",
    operation_id = "users_list",
    summary = "List users",
    params(super::openapi::PageParams),
    responses((status = 200, description = "a page of users, by id", body = super::openapi::UserPage))
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<UserId>(q.cursor.as_deref())?;
    let users = st
        .read_async(move |c| store::list_users(c, after, limit))
        .await?;
    Ok(Json(Page::new(users, limit, |u| u.id.to_string())))
}

/// `GET /users/{id}`.
#[utoipa::path(
    get, path = "/users/{id}", tag = "users",
    operation_id = "users_get_one",
    summary = "Read a user",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the user", body = super::openapi::UserDoc),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(st.read_async(move |c| store::get_user(c, id)).await?))
}

/// `PATCH /users/{id}`.
#[utoipa::path(
    patch, path = "/users/{id}", tag = "users",
    operation_id = "users_update",
    summary = "Change a user",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    request_body = PatchUser,
    responses(
        (status = 200, description = "the changed user", body = super::openapi::UserDoc),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the Google alias is taken (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<UserId>,
    PatchBody(body): PatchBody<PatchUser>,
) -> ApiResult<Json<User>> {
    check_patch(&body)?;
    let now = st.now();
    let patch = UserPatch {
        display_name: body.display_name,
        google_alias: body.google_alias,
        time_zone: body.time_zone,
        ..UserPatch::default()
    };
    Ok(Json(
        st.write_async(move |c| store::update_user(c, id, &patch, now))
            .await?,
    ))
}

/// `PUT /users/by-external-id/{external_id}`: creates the user, or replaces its e-mail, name,
/// Google alias and time zone. A user the admin made before the CRM named it (same e-mail, no
/// external id yet) is adopted: it takes the external id, no second user is made.
#[utoipa::path(
    put, path = "/users/by-external-id/{external_id}", tag = "integration",
    operation_id = "users_put_by_external_id",
    summary = "Create or replace a user under the CRM's id (idempotent)",
    params(("external_id" = String, Path, description = "the CRM's id of the user")),
    request_body = CreateUser,
    responses(
        (status = 201, description = "created", body = super::openapi::UserDoc),
        (status = 200, description = "replaced or adopted, or already as sent (nothing written)", body = super::openapi::UserDoc),
        (status = 409, description = "the e-mail or Google alias belongs to another user, or the e-mail's user has another external id (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    super::upsert::put_external_id(&external_id, body.external_id.as_deref())?;
    check_create(&body)?;
    let now = st.now();
    let (created, user) = st
        .write_async(move |c| {
            let existing = match store::user_by_external_id(c, &external_id)? {
                Some(u) => Some(u),
                None => match store::user_by_email(c, &body.email)? {
                    Some(u) if u.external_id.is_none() => Some(u),
                    Some(u) => {
                        return Err(crmsync_schema::StoreError::Conflict(format!(
                        "the user with e-mail {} has external id {:?}; give it a new e-mail first",
                        u.email,
                        u.external_id.unwrap_or_default()
                    )))
                    }
                    None => None,
                },
            };
            let Some(current) = existing else {
                let new = NewUser {
                    external_id: Some(external_id),
                    email: body.email,
                    display_name: body.display_name,
                    google_alias: body.google_alias,
                    time_zone: body.time_zone,
                };
                return Ok((true, store::create_user(c, &new, now)?));
            };
            let patch = UserPatch {
                display_name: Some(body.display_name),
                google_alias: Some(body.google_alias.unwrap_or_else(|| body.email.clone())),
                time_zone: Some(body.time_zone.unwrap_or_else(|| "UTC".into())),
                email: Some(body.email),
                external_id: Some(Some(external_id)),
            };
            if store::patch_changes_nothing(&current, &patch) {
                return Ok((false, current));
            }
            Ok((false, store::update_user(c, current.id, &patch, now)?))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user)))
}

/// `GET /users/by-external-id/{external_id}`.
#[utoipa::path(
    get, path = "/users/by-external-id/{external_id}", tag = "integration",
    operation_id = "users_get_by_external_id",
    summary = "Read a user by the CRM's id",
    params(("external_id" = String, Path, description = "the CRM's id of the user")),
    responses(
        (status = 200, description = "the user", body = super::openapi::UserDoc),
        (status = 404, description = "no user has this external id (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
) -> ApiResult<Json<User>> {
    super::upsert::path_external_id(&external_id)?;
    let x = external_id.clone();
    st.read_async(move |c| store::user_by_external_id(c, &x))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user has external id {external_id:?}")))
}
