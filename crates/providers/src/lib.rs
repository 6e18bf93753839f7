//! Portcullis providers: upstream adapters (OpenAI-compatible, Anthropic, Gemini, Azure,
//! mock), streaming, fallback and circuit breaking.
//!
//! **Architecture Invariant:** knows nothing of PostgreSQL or axum, so that other Rust services
//! can embed a provider client with fallback. Only this crate names `reqwest`.
//!
//! The adapters arrive with the data plane; this crate holds their place in the dependency
//! graph.
