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
use utoipa::ToSchema;

/// A new tag.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    #[schema(min_length = 1, max_length = 1000, example = "Clients")]
    name: String,
    #[schema(value_type = super::openapi::TagVisibilityDoc)]
    visibility: TagVisibility,
    /// The owner of a private tag (required for `private`, refused otherwise).
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    owner_user_id: Option<UserId>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `POST /tags`.
#[utoipa::path(
    post, path = "/tags", tag = "tags",
    operation_id = "tags_create",
    summary = "Create a tag",
    request_body = CreateTag,
    responses(
        (status = 201, description = "created", body = super::openapi::TagDoc),
        (status = 409, description = "the owner has a private tag of that name (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
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
        .write_async(move |c| store::create_tag(c, &new, now))
        .await?;
    Ok((StatusCode::CREATED, Json(tag)))
}

/// `GET /tags`.
#[utoipa::path(
    get, path = "/tags", tag = "tags",
    operation_id = "tags_list",
    summary = "List tags",
    params(super::openapi::PageParams),
    responses((status = 200, description = "a page of tags, by id", body = super::openapi::TagPage))
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Tag>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<TagId>(q.cursor.as_deref())?;
    let tags = st
        .read_async(move |c| store::list_tags(c, after, limit))
        .await?;
    Ok(Json(Page::new(tags, limit, |t| t.id.to_string())))
}

/// `GET /tags/{id}`.
#[utoipa::path(
    get, path = "/tags/{id}", tag = "tags",
    operation_id = "tags_get_one",
    summary = "Read a tag",
    params(("id" = uuid::Uuid, Path, description = "the tag's id")),
    responses(
        (status = 200, description = "the tag", body = super::openapi::TagDoc),
        (status = 404, description = "no such tag (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<TagId>,
) -> ApiResult<Json<Tag>> {
    Ok(Json(st.read_async(move |c| store::get_tag(c, id)).await?))
}

/// `DELETE /tags/{id}`.
#[utoipa::path(
    delete, path = "/tags/{id}", tag = "tags",
    operation_id = "tags_delete",
    summary = "Delete a tag",
    params(("id" = uuid::Uuid, Path, description = "the tag's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such tag (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the tag is a user's contact sync tag (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<TagId>,
) -> ApiResult<StatusCode> {
    let now = st.now();
    st.write_async(move |c| store::delete_tag(c, id, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
