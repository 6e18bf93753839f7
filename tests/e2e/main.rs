//! End-to-end tests: the real `portcullis` binary, on port 0, over a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails by panicking"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "fake upstreams and clients are spawned tasks that end with the test"
)]

mod agents;
mod billing;
mod cli;
mod console;
mod hardening;
mod isolation;
mod privacy;
mod restart;
mod sdk;
mod serve;
mod spend;
mod support;
mod timing;
mod tls;
mod walkthrough;
