//! Portcullis HTTP surface: the routers of the data plane, admin plane and auth, and the
//! middleware every request passes through.
//!
//! **Architecture Invariant:** only this crate names `axum`. [`ApiError`] is the only
//! `IntoResponse` error: every failure reaches a client as the JSON envelope of API.md.
//!
//! **Architecture Invariant:** every admin route is declared in `admin::table` with its access
//! rule and wrapped in `guard::guard`; no handler compares roles, they ask `policy::rbac`.
//!
//! Request extensions (untyped, so documented here):
//! - [`RequestId`]: set by the outermost layer ([`request_id::layer`]) on every request.
//! - [`guard::OrgCaller`]: set by the guard on org-scoped admin routes.
//! - [`guard::PlatformCaller`]: set by the guard on platform admin routes.

pub mod admin;
pub mod authn;
mod background;
mod browser;
mod caller;
pub mod console;
pub mod dataplane;
mod denials;
mod error;
pub mod guard;
mod guardrail;
pub mod headers;
mod health;
mod json;
pub mod logs;
mod metrics;
pub mod openapi;
pub mod request_id;
mod router;
mod server;
mod source;
pub mod spend;
mod state;
pub mod throttle;
pub mod tls;
mod workers;

pub use background::Background;
pub use error::ApiError;
pub use portcullis_providers::Egress;
pub use request_id::RequestId;
pub use router::router;
pub use server::{ServeOptions, serve, serve_metrics};
pub use state::{AppState, AppStateBuilder, StartError, State};
