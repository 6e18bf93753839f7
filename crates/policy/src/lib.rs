//! Portcullis policy: the decisions that follow from roles and settings. The RBAC matrix is
//! here as data, with the rule for where provider keys may be sent (`egress`), prices and the
//! worst case a request reserves (`spend`), the detection and redaction of personal data
//! and secrets (`pii`), and prompt templates (`prompt`).
//!
//! **Architecture Invariant:** no I/O and no async code, so that other services can embed the
//! rules without a database or a runtime.

#![warn(missing_docs)]

pub mod egress;
pub mod pii;
pub mod prompt;
pub mod rbac;
pub mod spend;
