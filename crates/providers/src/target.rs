//! A target: one provider, one model, one key. What the gateway resolves a route into.

use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

pub use portcullis_core::provider::ProviderKind;

use crate::provider::Provider;

/// One upstream to try.
#[derive(Clone)]
pub struct Target {
    /// A stable label for logs, metrics and `x-portcullis-target`: no secret in it.
    pub label: String,
    /// Its circuit breaker's key. Labels repeat across tenants (two orgs may name a credential
    /// alike); this names the tenant, credential and model, so that one tenant's failures
    /// never open another's circuit.
    pub circuit: String,
    /// The adapter of the API it speaks ([`crate::Upstreams::provider`] for the built-in
    /// ones).
    pub provider: Arc<dyn Provider>,
    /// The credential's base URL; `None` for the provider's public endpoint.
    pub base_url: Option<Url>,
    /// The provider key, sent only to this target and never logged.
    pub api_key: SecretString,
    /// The upstream's model name.
    pub model: String,
    /// Its share of the first place among its route's targets (`weighted_first`); 0 counts as 1.
    pub weight: u32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .field("provider", &self.provider.name())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}
