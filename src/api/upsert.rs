//! What the CRM-integration routes share (SPEC 6.4): external ids (the CRM's own ids, 1 to 255
//! characters), the outcome of an idempotent upsert (`created`, `updated`, `unchanged`), and
//! batches: up to 1,000 items parsed one by one (a malformed item is reported, never blocks the
//! others), checked for duplicate external ids, then written in one transaction with a savepoint
//! per item, so an item the database refuses is rolled back alone.

use super::error::ApiError;
use super::validate::{self, Check, Invalid};
use crmsync_schema::{AnyConnection, StoreError, StoreResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// The most items one batch may carry.
pub const MAX_BATCH: usize = 1000;
/// The longest external id, in characters.
pub const MAX_EXTERNAL_ID: usize = 255;

/// Rules on an external id: 1 to 255 characters, no control characters.
pub fn check_external_id(field: &str, id: &str) -> Check {
    let n = id.chars().count();
    if n == 0 || n > MAX_EXTERNAL_ID {
        return Err(Invalid(format!(
            "{field}: an external id has 1 to {MAX_EXTERNAL_ID} characters, not {n}"
        )));
    }
    validate::line(field, id)
}

/// An external id in a path: as [`check_external_id`], refused as a bad path (400).
pub fn path_external_id(id: &str) -> Result<(), ApiError> {
    check_external_id("external_id", id)
        .map_err(|Invalid(m)| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_path", m))
}

/// The external id of a PUT: the path's, which the body may repeat but not contradict.
pub fn put_external_id(path: &str, body: Option<&str>) -> Result<(), ApiError> {
    path_external_id(path)?;
    match body {
        Some(b) if b != path => Err(ApiError::invalid(format!(
            "external_id: the body's {b:?} differs from the path's {path:?}"
        ))),
        _ => Ok(()),
    }
}

/// No live record of `what` has `external_id`: 404 (`what` as in "contact with external id").
pub fn unknown_external_id(what: &'static str, external_id: &str) -> StoreError {
    StoreError::NotFound {
        what,
        id: external_id.to_string(),
    }
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new record was made.
    Created,
    /// The record changed.
    Updated,
    /// The record already was as sent: nothing was written (no new version, no change in the
    /// feed, no webhook).
    Unchanged,
    /// The item was refused (see `error`); nothing was written for it.
    Invalid,
}

impl Outcome {
    /// The status of a single upsert: 201 when created, 200 otherwise.
    pub fn status(self) -> axum::http::StatusCode {
        match self {
            Outcome::Created => axum::http::StatusCode::CREATED,
            _ => axum::http::StatusCode::OK,
        }
    }
}

/// Why a batch item was refused.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ItemError {
    /// The code the single-record route would answer (`validation_failed`, `not_found`, ...).
    pub code: String,
    pub message: String,
}

/// One batch item's result, in item order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// The item's external id (absent when the item had none).
    pub external_id: Option<String>,
    /// The record's crmsync id (absent when invalid).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub id: Option<String>,
    pub status: Outcome,
    /// The record's version after the item (absent when invalid).
    #[schema(format = Int64)]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<ItemError>,
}

impl ItemResult {
    pub fn done(external_id: &str, id: String, status: Outcome, version: i64) -> Self {
        ItemResult {
            external_id: Some(external_id.to_string()),
            id: Some(id),
            status,
            version: Some(version),
            error: None,
        }
    }

    pub fn invalid(external_id: Option<String>, e: ApiError) -> Self {
        ItemResult {
            external_id,
            id: None,
            status: Outcome::Invalid,
            version: None,
            error: Some(ItemError {
                code: e.code.to_string(),
                message: e.message,
            }),
        }
    }
}

/// A batch request: `{items: [...]}`, each item an upsert body with its `external_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 1,000 items, each the upsert body (a JSON object) of one record with its
    /// `external_id`. Each object is checked alone: one that is not a valid body is reported
    /// `invalid` in the results; an item that is not an object makes the request malformed.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 1000)]
    pub items: Vec<serde_json::Value>,
}

/// The answer to a batch: one result per item, in item order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResults {
    pub results: Vec<ItemResult>,
}

/// A parsed batch item: its external id and body, or why it is refused.
pub type Parsed<T> = Result<(String, T), (Option<String>, ApiError)>;

/// Parses each item alone into `T` (as the single-record route would), takes its external id,
/// and refuses every item whose external id occurs more than once in the batch.
pub fn parse_batch<T: DeserializeOwned>(
    body: BatchBody,
    external_id_of: impl Fn(&T) -> Option<&str>,
) -> Result<Vec<Parsed<T>>, ApiError> {
    if body.items.is_empty() || body.items.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "items: a batch has 1 to {MAX_BATCH} items, not {}; split it",
            body.items.len()
        )));
    }
    if let Some(i) = body.items.iter().position(|v| !v.is_object()) {
        return Err(ApiError::invalid(format!(
            "items[{i}]: each item is a JSON object (an upsert body with its external_id)"
        )));
    }
    let mut parsed: Vec<Parsed<T>> = body
        .items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let raw_id = v
                .get("external_id")
                .and_then(|x| x.as_str())
                .map(str::to_string);
            let item: T = serde_json::from_value(v).map_err(|e| {
                (
                    raw_id.clone(),
                    ApiError::new(
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_body",
                        format!("items[{i}]: {e}"),
                    ),
                )
            })?;
            let Some(x) = external_id_of(&item).map(str::to_string) else {
                return Err((
                    None,
                    ApiError::invalid(format!(
                        "items[{i}].external_id: every batch item needs the CRM's external_id"
                    )),
                ));
            };
            check_external_id(&format!("items[{i}].external_id"), &x)
                .map_err(|e| (Some(x.clone()), e.into()))?;
            Ok((x, item))
        })
        .collect();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Ok((x, _)) = p {
            seen.entry(x.clone()).or_default().push(i);
        }
    }
    for (x, at) in seen.into_iter().filter(|(_, at)| at.len() > 1) {
        let list = at
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for i in at {
            parsed[i] = Err((
                Some(x.clone()),
                ApiError::invalid(format!(
                    "external_id {x:?} occurs in items {list} of this batch; send each record once"
                )),
            ));
        }
    }
    Ok(parsed)
}

/// Runs one item's writes in a savepoint: when they fail, only they are rolled back (on
/// PostgreSQL a failed statement would otherwise abort the whole batch's transaction).
pub fn in_savepoint<T>(
    c: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    use crmsync_schema::diesel::Connection;
    c.transaction(f)
}

/// The bodies of the items that parsed.
pub fn valid_bodies<T>(items: &[Parsed<T>]) -> impl Iterator<Item = &T> {
    items.iter().filter_map(|p| p.as_ref().ok().map(|(_, t)| t))
}

/// Writes a batch's items in order, each in its own savepoint: `write` gives an item's outcome,
/// record id and version. An item the store refuses (invalid, conflicting, missing reference)
/// is reported and rolled back alone; any other error fails the whole batch.
pub fn write_batch<T>(
    c: &mut AnyConnection,
    items: Vec<Parsed<T>>,
    mut write: impl FnMut(&mut AnyConnection, &str, T) -> StoreResult<(Outcome, String, i64)>,
) -> StoreResult<Vec<ItemResult>> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let (x, body) = match item {
            Ok(ok) => ok,
            Err((x, e)) => {
                results.push(ItemResult::invalid(x, e));
                continue;
            }
        };
        match in_savepoint(c, |c| write(c, &x, body)) {
            Ok((outcome, id, version)) => results.push(ItemResult::done(&x, id, outcome, version)),
            Err(
                e @ (StoreError::Invalid(_)
                | StoreError::Conflict(_)
                | StoreError::Stale(_)
                | StoreError::NotFound { .. }),
            ) => results.push(ItemResult::invalid(Some(x), e.into())),
            Err(e) => return Err(e),
        }
    }
    Ok(results)
}

/// Resolves external ids to crmsync ids with one lookup per kind; unknown ones are named.
pub struct Resolver<Id> {
    found: HashMap<String, Id>,
    what: &'static str,
}

impl<Id: Copy> Resolver<Id> {
    /// Looks every id in `wanted` up with `lookup` (one call for all).
    pub fn load(
        c: &mut AnyConnection,
        what: &'static str,
        wanted: Vec<String>,
        lookup: impl FnOnce(&mut AnyConnection, &[String]) -> StoreResult<Vec<(String, Id)>>,
    ) -> StoreResult<Self> {
        let mut wanted = wanted;
        wanted.sort();
        wanted.dedup();
        let found = if wanted.is_empty() {
            HashMap::new()
        } else {
            lookup(c, &wanted)?.into_iter().collect()
        };
        Ok(Resolver { found, what })
    }

    /// The id of `external_id`, or an `Invalid` naming the field.
    pub fn get(&self, field: &str, external_id: &str) -> StoreResult<Id> {
        self.found.get(external_id).copied().ok_or_else(|| {
            StoreError::Invalid(format!(
                "{field}: no {} has external id {external_id:?}; create it first (PUT /{}s/by-external-id/...)",
                self.what, self.what
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        external_id: Option<String>,
        #[allow(dead_code)]
        n: i64,
    }

    fn batch(items: serde_json::Value) -> BatchBody {
        BatchBody {
            items: items.as_array().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_batch_reports_bad_and_duplicate_items_and_keeps_the_others() {
        let parsed = parse_batch::<Item>(
            batch(serde_json::json!([
                {"external_id": "a", "n": 1},
                {"external_id": "b", "n": "x"},
                {"n": 3},
                {"external_id": "d", "n": 4},
                {"external_id": "d", "n": 5},
                {"external_id": "", "n": 6},
            ])),
            |i| i.external_id.as_deref(),
        )
        .unwrap_or_default();
        let ok: Vec<bool> = parsed.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, false, false, false]);
        assert!(matches!(&parsed[1], Err((Some(x), _)) if x == "b"));
        assert!(matches!(&parsed[4], Err((_, e)) if e.message.contains("items 3, 4")));
    }

    #[test]
    fn oversized_empty_and_non_object_batches_are_refused_whole() {
        assert!(parse_batch::<Item>(
            batch(serde_json::json!([{"external_id": "a", "n": 1}, 7])),
            |i| i.external_id.as_deref()
        )
        .is_err());
        let big = serde_json::Value::Array(vec![serde_json::json!({"n": 1}); MAX_BATCH + 1]);
        assert!(parse_batch::<Item>(batch(big), |i| i.external_id.as_deref()).is_err());
        assert!(
            parse_batch::<Item>(batch(serde_json::json!([])), |i| i.external_id.as_deref())
                .is_err()
        );
    }

    #[test]
    fn external_ids_have_one_to_255_characters_without_controls() {
        assert!(check_external_id("x", "crm-42").is_ok());
        assert!(check_external_id("x", &"é".repeat(255)).is_ok());
        assert!(check_external_id("x", &"a".repeat(256)).is_err());
        assert!(check_external_id("x", "").is_err());
        assert!(check_external_id("x", "a\nb").is_err());
    }
}
