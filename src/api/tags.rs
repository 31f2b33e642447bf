//! `/tags`: create (private with an owner, public or corporate), list, read, delete (refused while
//! the tag is someone's contact sync tag). `PUT/GET/DELETE /tags/by-external-id/{external_id}`
//! mirror a CRM's tags under its own ids (SPEC 6.4); an owner may be named by the CRM's id of the
//! user (`owner_external_id`).

use super::error::{ApiError, ApiResult};
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
use crmsync_schema::{AnyConnection, StoreError, StoreResult};
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
    /// The owner of a private tag, by the CRM's id of the user.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    owner_external_id: Option<String>,
    /// The CRM's id of the tag (1 to 255 characters, unique).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
}

impl CreateTag {
    fn check(&self) -> ApiResult<()> {
        validate::required_text("name", &self.name, SHORT_TEXT)?;
        validate::line("name", &self.name)?;
        for (field, x) in [
            ("owner_external_id", &self.owner_external_id),
            ("external_id", &self.external_id),
        ] {
            if let Some(x) = x {
                super::upsert::check_external_id(field, x)?;
            }
        }
        if self.owner_user_id.is_some() && self.owner_external_id.is_some() {
            return Err(ApiError::invalid(
                "give at most one of owner_user_id and owner_external_id",
            ));
        }
        Ok(())
    }

    /// The tag as the store takes it, its owner resolved.
    fn resolve(&self, c: &mut AnyConnection, external_id: Option<String>) -> StoreResult<NewTag> {
        let owner = match &self.owner_external_id {
            Some(x) => Some(
                crmsync_schema::users::user_by_external_id(c, x)?
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "owner_external_id: no user has external id {x:?}; create it first (PUT /users/by-external-id/...)"
                        ))
                    })?
                    .id,
            ),
            None => self.owner_user_id,
        };
        Ok(NewTag {
            external_id,
            name: self.name.clone(),
            visibility: self.visibility,
            owner_user_id: owner,
        })
    }
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
    body.check()?;
    let now = st.now();
    let tag = st
        .write_async(move |c| {
            let new = body.resolve(c, body.external_id.clone())?;
            store::create_tag(c, &new, now)
        })
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
    st.write_async(move |c| store::delete_tag(c, id, crmsync_schema::changes::Origin::Api, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /tags/by-external-id/{external_id}`: creates the tag, or replaces its name, visibility
/// and owner (a contact sync tag keeps its visibility and owner).
#[utoipa::path(
    put, path = "/tags/by-external-id/{external_id}", tag = "integration",
    operation_id = "tags_put_by_external_id",
    summary = "Create or replace a tag under the CRM's id (idempotent)",
    params(("external_id" = String, Path, description = "the CRM's id of the tag")),
    request_body = CreateTag,
    responses(
        (status = 201, description = "created", body = super::openapi::TagDoc),
        (status = 200, description = "replaced, or already as sent (nothing written)", body = super::openapi::TagDoc),
        (status = 409, description = "the owner has a private tag of that name, or the tag is a sync tag whose owner would change (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
    JsonBody(body): JsonBody<CreateTag>,
) -> ApiResult<(StatusCode, Json<Tag>)> {
    super::upsert::put_external_id(&external_id, body.external_id.as_deref())?;
    body.check()?;
    let now = st.now();
    let (created, tag) = st
        .write_async(move |c| {
            let new = body.resolve(c, Some(external_id.clone()))?;
            match store::tag_by_external_id(c, &external_id)? {
                None => Ok((true, store::create_tag(c, &new, now)?)),
                Some(cur)
                    if (&cur.name, cur.visibility, cur.owner_user_id)
                        == (&new.name, new.visibility, new.owner_user_id) =>
                {
                    Ok((false, cur))
                }
                Some(cur) => Ok((false, store::replace_tag(c, cur.id, &new)?)),
            }
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(tag)))
}

/// `GET /tags/by-external-id/{external_id}`.
#[utoipa::path(
    get, path = "/tags/by-external-id/{external_id}", tag = "integration",
    operation_id = "tags_get_by_external_id",
    summary = "Read a tag by the CRM's id",
    params(("external_id" = String, Path, description = "the CRM's id of the tag")),
    responses(
        (status = 200, description = "the tag", body = super::openapi::TagDoc),
        (status = 404, description = "no tag has this external id (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
) -> ApiResult<Json<Tag>> {
    super::upsert::path_external_id(&external_id)?;
    let x = external_id.clone();
    st.read_async(move |c| store::tag_by_external_id(c, &x))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no tag has external id {external_id:?}")))
}

/// `DELETE /tags/by-external-id/{external_id}`: as `DELETE /tags/{id}` (its contacts are
/// untagged; refused while it is someone's contact sync tag).
#[utoipa::path(
    delete, path = "/tags/by-external-id/{external_id}", tag = "integration",
    operation_id = "tags_delete_by_external_id",
    summary = "Delete a tag by the CRM's id",
    params(("external_id" = String, Path, description = "the CRM's id of the tag")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no tag has this external id (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the tag is someone's contact sync tag (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_by_external_id(
    State(st): State<AppState>,
    ApiPath(external_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    super::upsert::path_external_id(&external_id)?;
    let now = st.now();
    st.write_async(move |c| {
        let tag = store::tag_by_external_id(c, &external_id)?.ok_or_else(|| {
            super::upsert::unknown_external_id("tag with external id", &external_id)
        })?;
        store::delete_tag(c, tag.id, crmsync_schema::changes::Origin::Api, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
