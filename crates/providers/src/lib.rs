//! Portcullis providers: upstream adapters (OpenAI and OpenAI-compatible servers, Azure
//! OpenAI, Anthropic, Google Gemini, and `mock`), streaming, and a fallback chain with retries and circuit
//! breakers.
//!
//! **Architecture Invariant:** knows nothing of PostgreSQL or axum, so that other Rust services
//! can embed a provider client with fallback. Only this crate names `reqwest`.
//!
//! **Architecture Invariant:** a request body never chooses where a provider key is sent: the
//! URL comes from the target (an operator's credential), and redirects are not followed.

#![warn(missing_docs)]

pub mod anthropic;
mod anthropic_api;
mod breaker;
mod chain;
pub mod completions;
mod error;
mod exchange;
mod gemini;
mod mock;
mod openai;
mod openai_responses;
mod provider;
pub mod responses;
mod sse;
mod target;
pub mod tokens;
mod translate;
pub mod usage;

pub use breaker::Breakers;
pub use chain::{
    Attempts, ChainFailure, Chunk, Egress, HOPS_HEADER, Limits, MAX_HOPS, Operation, Reply, Served,
    Unbudgeted, Upstreams, serve, serve_chat, weighted_first, weighted_index,
};
pub use error::ProviderError;
pub use exchange::wants_usage;
#[cfg(any(test, feature = "mock"))]
pub use provider::MockProvider;
pub use provider::{Native, Provider};
pub use sse::EventSplitter;
pub use target::{ProviderKind, Target};
pub use translate::StreamTranslation;
