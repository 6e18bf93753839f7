//! A target: one provider, one model, one key. What the gateway resolves a route into.

use secrecy::SecretString;
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Mock,
}

impl ProviderKind {
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
    pub provider: ProviderKind,
    pub base_url: Option<Url>,
    pub api_key: SecretString,
    /// The upstream's model name.
    pub model: String,
    pub weight: u32,
}
