//! `GET /changes`: the change feed a CRM follows (SPEC 6.4): every committed change to a contact
//! or activity exactly once, in commit order, with its origin (`sync`: the engine brought it
//! from Google; `api`: written through this API) and the run that made it. `GET /changes/head`:
//! the cursor of the newest change, where a CRM starts following after a full resynchronization.

use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use crmsync_schema::changes::{self as store, Change, Filter, OriginName, RecordKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most changes one page may hold.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The last cursor you have seen (`next_cursor` of the previous page); absent: from the
    /// oldest change kept (at least 30 days are kept).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<i64>,
    /// Page size, 1 to 1,000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `sync` (changes the engine made from Google), `api`, or `any` (default).
    #[param(value_type = Option<String>, pattern = "^(sync|api|any)$")]
    origin: Option<String>,
    /// A comma-separated list of `contacts`, `activities` (default both).
    #[param(value_type = Option<String>, example = "contacts,activities")]
    kinds: Option<String>,
}

/// One change, as the feed and webhooks show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeDoc {
    #[schema(format = Int64)]
    pub cursor: i64,
    /// `contact` or `activity`.
    #[schema(pattern = "^(contact|activity)$")]
    pub kind: String,
    #[schema(value_type = uuid::Uuid)]
    pub id: String,
    pub external_id: Option<String>,
    /// `created`, `updated`, `deleted`, `tagged` or `untagged`.
    #[schema(pattern = "^(created|updated|deleted|tagged|untagged)$")]
    pub action: String,
    /// `sync` or `api`.
    #[schema(pattern = "^(sync|api)$")]
    pub origin: String,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub user_id: Option<String>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub run_id: Option<String>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub tag_id: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangePage {
    #[schema(value_type = Vec<ChangeDoc>)]
    pub changes: Vec<Change>,
    /// Pass as `after` to read on. When the page is not full it is the newest committed cursor
    /// (changes filtered out are passed over, never missed).
    #[schema(format = Int64)]
    pub next_cursor: i64,
    /// More changes are ready now: read again at once.
    pub has_more: bool,
}

/// Where the feed ends now.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedHead {
    /// The newest committed cursor (0 when there is no change yet).
    #[schema(format = Int64)]
    pub cursor: i64,
}

fn filter(q: &FeedQuery) -> Result<Filter, ApiError> {
    let origin = match q.origin.as_deref() {
        None | Some("any") => None,
        Some("sync") => Some(OriginName::Sync),
        Some("api") => Some(OriginName::Api),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "origin must be sync, api or any, not {other:?}"
            )))
        }
    };
    let mut kinds = Vec::new();
    for k in q.kinds.iter().flat_map(|k| k.split(',')) {
        kinds.push(match k.trim() {
            "contacts" => RecordKind::Contact,
            "activities" => RecordKind::Activity,
            other => {
                return Err(ApiError::bad_request(format!(
                "kinds is a comma-separated list of contacts and activities; {other:?} is neither"
            )))
            }
        });
    }
    Ok(Filter { origin, kinds })
}

/// `GET /changes`.
#[utoipa::path(
    get, path = "/changes", tag = "integration",
    operation_id = "changes_list",
    summary = "Read the change feed after a cursor",
    params(FeedQuery),
    responses(
        (status = 200, description = "the next changes, in commit order", body = ChangePage),
        (status = 410, description = "changes after this cursor were pruned (`cursor_expired`): resynchronize in full", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> ApiResult<Json<ChangePage>> {
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {n}"
            )))
        }
    };
    if q.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request(
            "after is a cursor from this feed (0 or more)",
        ));
    }
    let filter = filter(&q)?;
    let asked = q.after;
    // `None`: the cursor is behind what was pruned.
    let page = st
        .read_async(move |c| {
            let pruned = store::pruned_through(c)?;
            if asked.is_some_and(|a| a < pruned) {
                return Ok(None);
            }
            store::changes_after(c, asked.unwrap_or(pruned), &filter, limit).map(Some)
        })
        .await?;
    let Some(page) = page else {
        let after = asked.unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::GONE,
            "cursor_expired",
            format!(
                "the changes after cursor {after} were pruned (the feed keeps 30 days); \
                 resynchronize in full: take GET /changes/head, read every contact and activity \
                 (GET /contacts, GET /activities), then follow the feed from that head"
            ),
        ));
    };
    Ok(Json(ChangePage {
        changes: page.changes,
        next_cursor: page.next_cursor,
        has_more: page.has_more,
    }))
}

/// `GET /changes/head`.
#[utoipa::path(
    get, path = "/changes/head", tag = "integration",
    operation_id = "changes_head",
    summary = "The cursor of the newest change",
    responses((status = 200, description = "where the feed ends now", body = FeedHead))
)]
pub async fn head(State(st): State<AppState>) -> ApiResult<Json<FeedHead>> {
    let cursor = st.read_async(store::head).await?;
    Ok(Json(FeedHead { cursor }))
}
