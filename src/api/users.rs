//! `/users`: create (201), list (paginated), read, change (PATCH). E-mails and aliases are
//! validated and stored normalized; time zones must be IANA names.

use super::error::ApiResult;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    display_name: String,
    #[serde(default)]
    google_alias: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, deserialize_with = "non_null")]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    google_alias: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
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

/// `POST /users`.
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    validate::email("email", &body.email)?;
    check_patch(&PatchUser {
        display_name: Some(body.display_name.clone()),
        google_alias: body.google_alias.clone(),
        time_zone: body.time_zone.clone(),
    })?;
    let now = st.now();
    let new = NewUser {
        email: body.email,
        display_name: body.display_name,
        google_alias: body.google_alias,
        time_zone: body.time_zone,
    };
    let user = st
        .run(move |s| s.write(|c| store::create_user(c, &new, now)))
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /users`.
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<UserId>(q.cursor.as_deref())?;
    let users = st
        .run(move |s| s.read(|c| store::list_users(c, after, limit)))
        .await?;
    Ok(Json(Page::new(users, limit, |u| u.id.to_string())))
}

/// `GET /users/{id}`.
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        st.run(move |s| s.read(|c| store::get_user(c, id))).await?,
    ))
}

/// `PATCH /users/{id}`.
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
    };
    Ok(Json(
        st.run(move |s| s.write(|c| store::update_user(c, id, &patch, now)))
            .await?,
    ))
}
