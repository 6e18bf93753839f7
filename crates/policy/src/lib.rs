//! Portcullis policy: the decisions that follow from roles and settings. The RBAC matrix is
//! here as data; logging and retention rules, PII detection and cost estimation join it as
//! their capabilities land.
//!
//! **Architecture Invariant:** no I/O and no async code, so that other services can embed the
//! rules without a database or a runtime.

pub mod rbac;
