//! Integration tests of `crmsync-connectors` against the real emulator, in process, through the
//! real client crates over HTTP. One emulator per test.

mod auth;
mod calendar;
mod common;
mod people;
mod retry;
