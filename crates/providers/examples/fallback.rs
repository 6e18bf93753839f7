//! Calling a chain of providers with fallback from `portcullis-providers`, outside the
//! gateway: the first target fails (the `mock` provider's `mock-error-500` model), the chain
//! falls back to the second, and its circuit breakers remember the failure. Swap the targets
//! for your own (`ProviderKind::OpenAi`, `Anthropic`, `Gemini`, ... with a base URL and key), or
//! serve one with an adapter of your own: anything that implements `Provider`.
//!
//! ```bash
//! cargo run -p portcullis-providers --example fallback
//! ```

use std::time::Duration;

use portcullis_providers::{Breakers, Egress, ProviderKind, Reply, Target, Upstreams, serve_chat};
use serde_json::json;

fn mock(upstreams: &Upstreams, label: &str, model: &str) -> Target {
    Target {
        label: label.to_owned(),
        // A circuit per tenant, credential and model; one service may use the label.
        circuit: format!("example/{label}/{model}"),
        // Built-in adapters come from `Upstreams`; any `Arc<dyn Provider>` of your own works.
        provider: upstreams.provider(ProviderKind::Mock),
        base_url: None,
        api_key: "no key for the mock".to_owned().into(),
        model: model.to_owned(),
        weight: 1,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One pooled client for every upstream, with the default egress rules (no private
    // networks, no metadata addresses, no proxy from the environment).
    let upstreams = Upstreams::new(
        Duration::from_secs(5),
        Breakers::new(3, Duration::from_secs(30)),
        &Egress::default(),
    )?;
    let targets = [
        mock(&upstreams, "primary", "mock-error-500"),
        mock(&upstreams, "secondary", "mock-1"),
    ];
    let request = json!({"model": "any", "messages": [{"role": "user", "content": "Hello"}]});
    let request = request.as_object().cloned().unwrap_or_default();
    let served = serve_chat(
        &upstreams,
        &targets,
        &request,
        false,
        Duration::from_secs(10),
    )
    .await
    .map_err(|failure| format!("every target failed: {failure:?}"))?;
    eprintln!(
        "served by {} after {} attempt(s)",
        served.target, served.attempts
    );
    if let Reply::Json { body, usage, .. } = served.reply {
        eprintln!("usage: {usage:?}");
        #[allow(clippy::print_stdout, reason = "an example's output")]
        {
            println!("{}", String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}
