//! OpenAI's Chat Completions wire format, spoken by OpenAI, OpenAI-compatible servers (vLLM,
//! Ollama, Groq, Mistral, DeepSeek, Together, OpenRouter: by base URL) and Azure OpenAI
//! (deployment in the path, `api-key` header). The body passes through with `model` set to the
//! target's; nothing else of the client's request chooses where it goes.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::chain::{Operation, Reply};
use crate::error::ProviderError;
use crate::exchange;
use crate::target::{ProviderKind, Target};

const OPENAI_BASE: &str = "https://api.openai.com/v1";
const AZURE_API_VERSION: &str = "2024-10-21";

fn endpoint(target: &Target, operation: Operation) -> Result<String, ProviderError> {
    let path = match operation {
        Operation::Chat { .. } => "chat/completions",
        Operation::Embeddings => "embeddings",
    };
    let base = target
        .base_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned());
    match (target.provider, base) {
        (ProviderKind::OpenAi, base) => {
            Ok(format!("{}/{path}", base.as_deref().unwrap_or(OPENAI_BASE)))
        }
        (ProviderKind::OpenAiCompatible, Some(base)) => Ok(format!("{base}/{path}")),
        (ProviderKind::Azure, Some(base)) => Ok(format!(
            "{base}/openai/deployments/{}/{path}?api-version={AZURE_API_VERSION}",
            target.model
        )),
        _ => Err(ProviderError::Unsupported(
            "the credential has no base URL".into(),
        )),
    }
}

pub(crate) async fn call(
    http: &reqwest::Client,
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
    timeout: Duration,
) -> Result<Reply, ProviderError> {
    let stream = operation == Operation::Chat { stream: true };
    let url = endpoint(target, operation)?;
    let payload = serde_json::to_vec(&WithModel {
        model: &target.model,
        body,
    })
    .map_err(|_| ProviderError::InvalidResponse)?;
    let key = target.api_key.expose_secret();
    let request = http
        .post(url)
        .header("content-type", "application/json")
        .body(payload);
    let request = match target.provider {
        ProviderKind::Azure => request.header("api-key", key),
        _ => request.bearer_auth(key),
    };
    let response = exchange::send(request, key, timeout).await?;
    let status = response.status();
    if stream {
        let mut chunks = response.bytes_stream();
        let first = tokio::time::timeout(timeout, chunks.next())
            .await
            .map_err(|_| ProviderError::Timeout)?
            .ok_or(ProviderError::InvalidResponse)?
            .map_err(|e| ProviderError::from_reqwest(&e))?;
        let rest = chunks.map_err(|e| ProviderError::from_reqwest(&e)).boxed();
        return Ok(Reply::Stream { first, rest });
    }
    let body = exchange::body(response, timeout).await?;
    Ok(Reply::Json {
        status: status.as_u16(),
        body,
    })
}

/// The client's body with `model` replaced, serialised without copying the body.
struct WithModel<'a> {
    model: &'a str,
    body: &'a Map<String, Value>,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.body.len() + 1))?;
        map.serialize_entry("model", self.model)?;
        for (key, value) in self.body.iter().filter(|(key, _)| key.as_str() != "model") {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
