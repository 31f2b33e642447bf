//! Integration tests of the emulator, driven through the real client crates
//! (`google-calendar3`, `google-people1`, `yup-oauth2`) over HTTP; control-plane calls use
//! reqwest. Every test environment records all JSON responses and, at the end, checks each
//! against the discovery response schema of its method (see `schema.rs`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calendar;
mod common;
mod control;
mod faults;
mod merge;
mod oauth;
mod people;
mod recurrence;
mod schema;
mod series;
