//! Gateway tests: the in-process router over a fresh database.

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

mod attribution;
mod billing;
mod browser;
mod dataplane;
mod envelope;
mod headers;
mod isolation;
mod log_writer;
mod matrix;
mod membership;
mod mfa;
mod observability;
mod privacy;
mod prompts;
mod secrets;
mod spend;
mod support;
