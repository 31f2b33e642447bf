//! Integration tests of `crmsync-connectors` against the real emulator, in process, through the
//! real client crates over HTTP. One emulator per test.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod calendar;
mod common;
mod people;
mod retry;
