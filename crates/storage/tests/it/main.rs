//! Storage integration tests: each test gets a fresh database and works as the runtime role.
//! Control tests are named after their control (`ac_3_...`, `au_3_...`, `cf_2_...`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails by panicking"
)]

mod audit_chain;
mod catalog;
mod fixtures;
mod privacy;
mod secrets_at_rest;
mod spend;
mod tenancy;
