//! OpenAI's Chat Completions wire format, spoken by OpenAI, OpenAI-compatible servers (vLLM,
//! Ollama, Groq, Mistral, DeepSeek, Together, OpenRouter: by base URL) and Azure OpenAI
//! (deployment in the path, `api-key` header). The body passes through with `model` set to the
//! target's; nothing else of the client's request chooses where it goes.

use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::chain::{Chunk, Limits, Operation, Reply};
use crate::error::ProviderError;
use crate::exchange::{self, Translate};
use crate::sse::{self, Batch, Event};
use crate::target::{ProviderKind, Target};
use crate::usage;

const OPENAI_BASE: &str = "https://api.openai.com/v1";
const AZURE_API_VERSION: &str = "2024-10-21";

fn endpoint(kind: ProviderKind, target: &Target, path: &str) -> Result<String, ProviderError> {
    let base = target
        .base_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned());
    match (kind, base) {
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
    kind: ProviderKind,
    target: &Target,
    body: &Map<String, Value>,
    operation: Operation,
    limits: &Limits,
) -> Result<Reply, ProviderError> {
    if kind == ProviderKind::OpenAi
        && let Operation::Chat { stream, .. } = operation
        && let Some(original) = body
            .get(crate::responses::NATIVE)
            .and_then(|native| native.get("body"))
    {
        return crate::openai_responses::call(http, target, body, original, stream, limits).await;
    }
    // A legacy Completions client's own request, as it came (its prompt raw, not a chat turn).
    let native_completion = match operation {
        Operation::Chat { stream, .. } => body
            .get(crate::completions::NATIVE)
            .and_then(|native| native.get("body"))
            .map(|original| {
                crate::completions::native_request(original, body, &target.model, stream)
            }),
        Operation::Embeddings => None,
    };
    let (path, payload) = match (native_completion, operation) {
        (Some(native), _) => ("completions", serde_json::to_vec(&native?)),
        (None, Operation::Embeddings) => (
            "embeddings",
            serde_json::to_vec(&WithModel::new(kind, target, body)),
        ),
        (None, Operation::Chat { .. }) => (
            "chat/completions",
            serde_json::to_vec(&WithModel::new(kind, target, body)),
        ),
    };
    let payload = payload.map_err(|_| ProviderError::InvalidResponse)?;
    let url = endpoint(kind, target, path)?;
    let key = target.api_key.expose_secret();
    let request = http
        .post(url)
        .header("content-type", "application/json")
        .body(payload);
    let request = match kind {
        ProviderKind::Azure => request.header("api-key", key),
        _ => request.bearer_auth(key),
    };
    let response = exchange::send(request, key, limits).await?;
    let status = response.status();
    if let Operation::Chat {
        stream: true,
        client_usage,
    } = operation
    {
        let passthrough = Passthrough { client_usage };
        return exchange::stream(response, limits, passthrough).await;
    }
    let body = exchange::body(response, limits).await?;
    let embeddings = matches!(operation, Operation::Embeddings);
    let usage = usage::openai_answer(&body, embeddings).ok_or(ProviderError::InvalidResponse)?;
    Ok(Reply::Json {
        status: status.as_u16(),
        body,
        usage,
    })
}

/// An OpenAI stream passed on as it comes: runs of ordinary events whole and untouched; the
/// usage chunk read (and dropped when only the gateway asked for it); `[DONE]` kept for the
/// gateway to write after its own closing chunks.
struct Passthrough {
    client_usage: bool,
}

/// Whether an event needs a look: the end marker, or a chunk that may carry usage.
fn special(event: &Event) -> bool {
    event.is_done() || event.data.as_deref().is_some_and(sse::may_carry_usage)
}

impl Translate for Passthrough {
    fn batch(&mut self, batch: Batch, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        // The common case, looked at once for the whole run: content, passed on untouched.
        if !sse::may_be_done(&batch.bytes) && !sse::may_carry_usage(&batch.bytes) {
            out.push(Chunk::Events(batch.bytes));
            return Ok(());
        }
        batch.events().try_for_each(|e| self.event(e, out))
    }

    fn event(&mut self, event: Event, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        if event.is_done() {
            out.push(Chunk::Done);
            return Ok(());
        }
        if let Some(data) = event.data.as_deref().filter(|_| special(&event)) {
            #[derive(serde::Deserialize)]
            struct UsageChunk {
                #[serde(default)]
                choices: Vec<serde::de::IgnoredAny>,
            }
            if let Some(usage) = usage::openai_chat(data) {
                let shape: Option<UsageChunk> = serde_json::from_slice(data).ok();
                let carries_answer = shape.is_some_and(|c| !c.choices.is_empty());
                if carries_answer || self.client_usage {
                    out.push(Chunk::Events(event.raw));
                }
                out.push(Chunk::Usage(usage));
                return Ok(());
            }
        }
        out.push(Chunk::Events(event.raw));
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Chunk>) {}
}

/// The client's body with `model` replaced (and the output bound under the name the server
/// reads), serialised without copying the body.
struct WithModel<'a> {
    model: &'a str,
    body: &'a Map<String, Value>,
    bound_as_max_tokens: bool,
}

impl<'a> WithModel<'a> {
    fn new(kind: ProviderKind, target: &'a Target, body: &'a Map<String, Value>) -> Self {
        Self {
            model: &target.model,
            body,
            // Compatible servers (vLLM, llama.cpp, Ollama) read the older name of the bound.
            bound_as_max_tokens: kind == ProviderKind::OpenAiCompatible,
        }
    }
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.body.len() + 1))?;
        map.serialize_entry("model", self.model)?;
        for (key, value) in self.body.iter().filter(|(key, _)| key.as_str() != "model") {
            match key.as_str() {
                "max_completion_tokens" if self.bound_as_max_tokens => {
                    map.serialize_entry("max_tokens", value)?;
                }
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}
