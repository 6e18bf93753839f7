//! What every adapter does with an HTTP exchange: send within the attempt's timeout, turn an
//! error status into a scrubbed `ProviderError`, read a whole body, or translate a stream into
//! OpenAI chunks, committing only once the first translated chunk exists.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::chain::Reply;
use crate::error::{ProviderError, scrub};

/// Turns a provider's stream, piece by piece, into OpenAI chunks.
pub(crate) trait Translate: Send + 'static {
    fn push(&mut self, bytes: &[u8]) -> Vec<Bytes>;
    /// What to send when the upstream stream ends (closing chunks, `[DONE]`).
    fn finish(&mut self) -> Vec<Bytes>;
}

/// Sends the request; a non-success status becomes `ProviderError::Status` with the
/// provider's `error.message`, scrubbed of `key`.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    key: &str,
    timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| ProviderError::from_reqwest(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = tokio::time::timeout(timeout, read_bounded(response, MAX_ERROR_BODY))
        .await
        .map_err(|_| ProviderError::Timeout)?;
    Err(ProviderError::Status {
        status: status.as_u16(),
        message: scrub(&error_message(&bytes), key),
    })
}

/// Error bodies are read up to this size: enough for a message, never a flood.
const MAX_ERROR_BODY: usize = 64 * 1024;

async fn read_bounded(response: reqwest::Response, limit: usize) -> Bytes {
    let mut out = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Bytes::from(out)
}

/// `error.message` of an error body (OpenAI, Anthropic and Gemini all use it), or the start
/// of the text.
fn error_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
}

/// Whether a streaming client asked for the closing usage chunk (`stream_options`).
pub fn wants_usage(body: &serde_json::Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A whole successful body turned into OpenAI's shape by `translate`.
pub(crate) async fn translated_json(
    response: reqwest::Response,
    timeout: Duration,
    translate: impl FnOnce(&[u8]) -> Option<Bytes>,
) -> Result<Reply, ProviderError> {
    let bytes = body(response, timeout).await?;
    let body = translate(&bytes).ok_or(ProviderError::InvalidResponse)?;
    Ok(Reply::Json { status: 200, body })
}

/// The whole body of a successful response.
pub(crate) async fn body(
    response: reqwest::Response,
    timeout: Duration,
) -> Result<Bytes, ProviderError> {
    tokio::time::timeout(timeout, response.bytes())
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| ProviderError::from_reqwest(&e))
}

/// A translated stream. The first translated chunk is awaited within `timeout`, so that a
/// stream failing before it still falls back to the next target.
pub(crate) async fn translated_stream(
    response: reqwest::Response,
    timeout: Duration,
    mut translator: impl Translate,
) -> Result<Reply, ProviderError> {
    let mut events = response
        .bytes_stream()
        .map_err(|e| ProviderError::from_reqwest(&e));
    let first = loop {
        let chunk = tokio::time::timeout(timeout, events.next())
            .await
            .map_err(|_| ProviderError::Timeout)?
            .ok_or(ProviderError::InvalidResponse)??;
        let translated = translator.push(&chunk);
        if !translated.is_empty() {
            break Bytes::from(translated.concat());
        }
    };
    let rest = futures_util::stream::unfold(
        (Some(events), translator),
        |(events, mut translator)| async move {
            let mut events = events?;
            match events.next().await {
                Some(chunk) => {
                    let translated = chunk.map(|c| Bytes::from(translator.push(&c).concat()));
                    Some((translated, (Some(events), translator)))
                }
                None => Some((
                    Ok(Bytes::from(translator.finish().concat())),
                    (None, translator),
                )),
            }
        },
    )
    .boxed();
    Ok(Reply::Stream { first, rest })
}
