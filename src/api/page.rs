//! List pagination: `?limit=` (1 to 500, default 100) and an opaque keyset `?cursor=`; answers
//! `{"items": [...], "next_cursor": "..." | null}`.

use super::error::ApiError;
use serde::Serialize;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page; when it is full, `cursor_of` the last item continues the list.
    pub fn new(items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = if items.len() == limit {
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// The page size asked for, checked.
pub fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// Parses a cursor made by this API.
pub fn cursor<T: std::str::FromStr>(raw: Option<&str>) -> Result<Option<T>, ApiError> {
    raw.map(|c| {
        c.parse::<T>().map_err(|_| {
            ApiError::bad_request("cursor is not valid: pass next_cursor from the previous page")
        })
    })
    .transpose()
}
