//! The provider trait: what the chain asks of an upstream API. Every built-in adapter
//! implements it, and so may a service that embeds this crate for an upstream of its own; a
//! [`Target`] carries the one that serves it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use portcullis_core::net::Destinations;

use crate::chain::{Limits, Operation, Reply};
use crate::error::ProviderError;
use crate::target::{ProviderKind, Target};
use crate::{anthropic_api, gemini, mock, openai};

/// A client format that some providers take as the client sent it. A request translated
/// from it to chat carries the client's own under [`Native::key`]; the chain removes that copy
/// for every provider that does not speak the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// Anthropic's Messages ([`crate::anthropic::NATIVE`]): Anthropic's own API.
    Messages,
    /// OpenAI's Responses ([`crate::responses::NATIVE`]): OpenAI's own API.
    Responses,
    /// OpenAI's legacy Completions ([`crate::completions::NATIVE`]): OpenAI's API, Azure's
    /// and the OpenAI-compatible servers'.
    Completions,
}

impl Native {
    /// Every native format.
    pub const ALL: [Native; 3] = [Native::Messages, Native::Responses, Native::Completions];

    /// The field of the chat request that carries the client's own request.
    pub fn key(self) -> &'static str {
        match self {
            Native::Messages => crate::anthropic::NATIVE,
            Native::Responses => crate::responses::NATIVE,
            Native::Completions => crate::completions::NATIVE,
        }
    }

    /// The native format a chat request carries, if any.
    pub fn carried_by(body: &Map<String, Value>) -> Option<Native> {
        Native::ALL.into_iter().find(|n| body.contains_key(n.key()))
    }
}

/// One upstream API. Bodies come in OpenAI's chat (or embeddings) shape, with `model` already
/// the target's concern; replies go back in that shape, usage included. Dyn-compatible: the
/// chain holds `Arc<dyn Provider>`.
///
/// The built-in adapters send only where the operator's egress rules allow (`Egress`: the
/// resolver and a check of every base URL that names an address). An adapter of your own
/// sends wherever it chooses: keeping provider keys where they belong is then its concern.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Provider: Send + Sync {
    /// A short name for logs (`openai`, `anthropic`, ...): no secret in it.
    fn name(&self) -> &'static str;

    /// Whether it takes a client's own request in `format` as it came (and answers in that
    /// format); a provider that does not never sees that copy.
    fn speaks(&self, format: Native) -> bool {
        let _ = format;
        false
    }

    /// A whole chat answer ([`Reply::Json`]).
    async fn complete(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Reply, ProviderError>;

    /// A chat answer as a stream ([`Reply::Stream`]), its usage as [`crate::Chunk::Usage`];
    /// `client_usage`: the client asked for OpenAI's usage chunk too.
    async fn stream(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        client_usage: bool,
        limits: &Limits,
    ) -> Result<Reply, ProviderError>;

    /// Embeddings ([`Reply::Json`]); an API without them answers
    /// [`ProviderError::Unsupported`].
    async fn embed(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Reply, ProviderError>;

    /// The input tokens of a Messages request (Anthropic's shape) as this API counts them
    /// for the target's model; `None` where it has no count.
    async fn count_tokens(
        &self,
        target: &Target,
        request: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Option<u64>, ProviderError> {
        let _ = (target, request, limits);
        Ok(None)
    }
}

/// What a built-in adapter calls through: the pooled client and where it may go.
#[derive(Debug)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// Checked again for every base URL that names an address, before it is called.
    pub(crate) destinations: Arc<Destinations>,
}

impl Http {
    /// A base URL that names an address (or `localhost`) is checked before each call: the
    /// resolver sees only host names.
    fn check(&self, target: &Target) -> Result<(), ProviderError> {
        let Some(url) = &target.base_url else {
            return Ok(());
        };
        let named = url
            .host_str()
            .zip(url.port_or_known_default())
            .and_then(|(host, port)| portcullis_core::net::named_address(host, port));
        match named {
            Some(addr) => self
                .destinations
                .check(addr)
                .map_err(|_| ProviderError::Refused),
            None => Ok(()),
        }
    }
}

/// A built-in adapter: which wire format, over the shared client.
struct BuiltIn {
    kind: ProviderKind,
    /// `None` for `mock`, which has no network.
    http: Option<Arc<Http>>,
}

impl BuiltIn {
    async fn call(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        operation: Operation,
        limits: &Limits,
    ) -> Result<Reply, ProviderError> {
        let Some(http) = &self.http else {
            return mock::call(target, body, operation, limits).await;
        };
        http.check(target)?;
        let client = &http.client;
        match self.kind {
            ProviderKind::Anthropic => {
                anthropic_api::call(client, target, body, operation, limits).await
            }
            ProviderKind::Gemini => gemini::call(client, target, body, operation, limits).await,
            kind => openai::call(client, kind, target, body, operation, limits).await,
        }
    }
}

#[async_trait]
impl Provider for BuiltIn {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn speaks(&self, format: Native) -> bool {
        match format {
            Native::Messages => self.kind == ProviderKind::Anthropic,
            Native::Responses => self.kind == ProviderKind::OpenAi,
            Native::Completions => matches!(
                self.kind,
                ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Azure
            ),
        }
    }

    async fn complete(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Reply, ProviderError> {
        let chat = Operation::Chat {
            stream: false,
            client_usage: false,
        };
        self.call(target, body, chat, limits).await
    }

    async fn stream(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        client_usage: bool,
        limits: &Limits,
    ) -> Result<Reply, ProviderError> {
        let chat = Operation::Chat {
            stream: true,
            client_usage,
        };
        self.call(target, body, chat, limits).await
    }

    async fn embed(
        &self,
        target: &Target,
        body: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Reply, ProviderError> {
        self.call(target, body, Operation::Embeddings, limits).await
    }

    async fn count_tokens(
        &self,
        target: &Target,
        request: &Map<String, Value>,
        limits: &Limits,
    ) -> Result<Option<u64>, ProviderError> {
        match &self.http {
            Some(http) if self.kind == ProviderKind::Anthropic => {
                http.check(target)?;
                anthropic_api::count_tokens(&http.client, target, request, limits).await
            }
            _ => Ok(None),
        }
    }
}

/// The built-in adapter of `kind`; `mock` ignores `http`.
pub(crate) fn built_in(kind: ProviderKind, http: &Arc<Http>) -> Arc<dyn Provider> {
    Arc::new(BuiltIn {
        kind,
        http: (kind != ProviderKind::Mock).then(|| Arc::clone(http)),
    })
}
