//! Portcullis HTTP surface: the routers of the data plane, admin plane and auth, and the
//! middleware every request passes through.
//!
//! **Architecture Invariant:** only this crate names `axum`. [`ApiError`] is the only
//! `IntoResponse` error: every failure reaches a client as the JSON envelope of API.md.
//!
//! Request extensions (untyped, so documented here):
//! - [`RequestId`]: set by the outermost layer ([`request_id::layer`]) on every request.

mod error;
mod health;
pub mod request_id;
mod router;
mod server;

pub use error::ApiError;
pub use request_id::RequestId;
pub use router::{AppState, router};
pub use server::serve;
