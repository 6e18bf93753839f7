//! A target: one provider, one model, one key. What the gateway resolves a route into.

use secrecy::SecretString;
use url::Url;

/// Which API a target speaks, and so which adapter calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI, at its public endpoint unless the credential names a base URL.
    OpenAi,
    /// Any server that speaks OpenAI's API, at the credential's base URL, which it needs.
    OpenAiCompatible,
    /// Azure OpenAI: the base URL names the resource and the model its deployment.
    Azure,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
    /// The built-in `mock` provider: no network, and the model name chooses its behaviour.
    Mock,
}

impl ProviderKind {
    /// The kind a credential's stored provider name stands for; `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "openai" => Self::OpenAi,
            "openai_compatible" => Self::OpenAiCompatible,
            "azure" => Self::Azure,
            "anthropic" => Self::Anthropic,
            "gemini" => Self::Gemini,
            "mock" => Self::Mock,
            _ => return None,
        })
    }
}

/// One upstream to try.
#[derive(Debug, Clone)]
pub struct Target {
    /// A stable label for logs, metrics and `x-portcullis-target`: no secret in it.
    pub label: String,
    /// Its circuit breaker's key. Labels repeat across tenants (two orgs may name a credential
    /// alike); this names the tenant, credential and model, so that one tenant's failures
    /// never open another's circuit.
    pub circuit: String,
    /// The API it speaks.
    pub provider: ProviderKind,
    /// The credential's base URL; `None` for the provider's public endpoint.
    pub base_url: Option<Url>,
    /// The provider key, sent only to this target and never logged.
    pub api_key: SecretString,
    /// The upstream's model name.
    pub model: String,
    /// Its share of the first place among its route's targets (`weighted_first`); 0 counts as 1.
    pub weight: u32,
}
