//! `/tags`: create (private with an owner, public or corporate), list, read, delete (refused while
//! the tag is someone's contact sync tag).

use super::error::ApiResult;
use super::extract::{ApiPath, ApiQuery, JsonBody};
use super::page::{self, Page};
use super::validate::{self, SHORT_TEXT};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use crmsync_engine::ids::{TagId, UserId};
use crmsync_engine::model::{Tag, TagVisibility};
use crmsync_schema::tags::{self as store, NewTag};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    name: String,
    visibility: TagVisibility,
    #[serde(default)]
    owner_user_id: Option<UserId>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `POST /tags`.
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateTag>,
) -> ApiResult<(StatusCode, Json<Tag>)> {
    validate::required_text("name", &body.name, SHORT_TEXT)?;
    validate::line("name", &body.name)?;
    let now = st.now();
    let new = NewTag {
        name: body.name,
        visibility: body.visibility,
        owner_user_id: body.owner_user_id,
    };
    let tag = st
        .run(move |s| s.write(|c| store::create_tag(c, &new, now)))
        .await?;
    Ok((StatusCode::CREATED, Json(tag)))
}

/// `GET /tags`.
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Tag>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<TagId>(q.cursor.as_deref())?;
    let tags = st
        .run(move |s| s.read(|c| store::list_tags(c, after, limit)))
        .await?;
    Ok(Json(Page::new(tags, limit, |t| t.id.to_string())))
}

/// `GET /tags/{id}`.
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<TagId>,
) -> ApiResult<Json<Tag>> {
    Ok(Json(
        st.run(move |s| s.read(|c| store::get_tag(c, id))).await?,
    ))
}

/// `DELETE /tags/{id}`.
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<TagId>,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.run(move |s| s.write(|c| store::delete_tag(c, id, now)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
