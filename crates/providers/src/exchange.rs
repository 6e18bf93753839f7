//! What every adapter does with an HTTP exchange: send within the attempt's time, turn an
//! error status into a scrubbed `ProviderError`, read a whole body within its bound, or turn a
//! stream of server-sent events into [`Chunk`]s through one decoder, committing only once the
//! first chunk of the answer exists, and holding the rest to an idle time and a total time.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use portcullis_core::money::Usage;
use serde_json::Value;
use tokio::time::Instant;

use crate::chain::{Chunk, Limits, Reply};
use crate::error::{ProviderError, scrub};
use crate::sse::{Batch, Decoder, Event};

/// Turns a provider's events into OpenAI chunks, usage and the end.
pub(crate) trait Translate: Send + 'static {
    /// What one upstream event becomes; an error event of the provider is its `Err`.
    fn event(&mut self, event: Event, out: &mut Vec<Chunk>) -> Result<(), ProviderError>;

    /// What a run of events that arrived together becomes: each in turn, unless an adapter
    /// can pass the run on whole.
    fn batch(&mut self, batch: Batch, out: &mut Vec<Chunk>) -> Result<(), ProviderError> {
        batch.events().try_for_each(|e| self.event(e, out))
    }

    /// The upstream's stream ended: whatever closes the answer, and [`Chunk::Done`] if it
    /// ended as its provider ends a complete answer.
    fn finish(&mut self, out: &mut Vec<Chunk>);
}

/// The output bound the gateway wrote into a chat request (`max_completion_tokens`, or the
/// older `max_tokens`), which a client's own request sent natively must carry instead of its
/// own; without one nothing is sent.
pub(crate) fn native_bound(chat: &serde_json::Map<String, Value>) -> Result<u64, ProviderError> {
    chat.get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64)
        .ok_or_else(|| ProviderError::Unsupported("a request without an output bound".into()))
}

/// Sends the request; a non-success status becomes `ProviderError::Status` with the
/// provider's `error.message`, scrubbed of `key`.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    key: &str,
    limits: &Limits,
) -> Result<reqwest::Response, ProviderError> {
    let timeout = limits.attempt;
    let request = request.header(crate::chain::HOPS_HEADER, limits.hops.saturating_add(1));
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

/// A whole successful body turned into OpenAI's shape, with its usage, by `translate`.
pub(crate) async fn translated_json(
    response: reqwest::Response,
    limits: &Limits,
    translate: impl FnOnce(&[u8]) -> Option<(Bytes, Option<Usage>)>,
) -> Result<Reply, ProviderError> {
    let bytes = body(response, limits).await?;
    let (body, usage) = translate(&bytes).ok_or(ProviderError::InvalidResponse)?;
    Ok(Reply::Json {
        status: 200,
        body,
        usage,
    })
}

/// A body in an encoding the gateway did not ask for (it asks for none) cannot be read as
/// the endpoint's answer, whatever its status says.
fn plain(response: &reqwest::Response) -> Result<(), ProviderError> {
    match response.headers().get(reqwest::header::CONTENT_ENCODING) {
        Some(encoding) if encoding != "identity" => Err(ProviderError::InvalidResponse),
        _ => Ok(()),
    }
}

/// The whole body of a successful response, within the attempt's time and the body bound.
pub(crate) async fn body(
    response: reqwest::Response,
    limits: &Limits,
) -> Result<Bytes, ProviderError> {
    plain(&response)?;
    if response
        .content_length()
        .is_some_and(|n| n > limits.max_body as u64)
    {
        return Err(ProviderError::TooLarge);
    }
    let read = async {
        let mut out = bytes::BytesMut::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| ProviderError::from_reqwest(&e))?;
            if out.len() + chunk.len() > limits.max_body {
                return Err(ProviderError::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    };
    tokio::time::timeout(limits.attempt, read)
        .await
        .map_err(|_| ProviderError::Timeout)?
}

/// A stream of events turned into chunks by `translator`. The first chunk of the answer is
/// awaited within the attempt's time, so that a stream failing before it still falls back to
/// the next target; after it, each piece must come within the idle time and the whole within
/// the total time, or the stream ends with a timeout.
pub(crate) async fn stream(
    response: reqwest::Response,
    limits: &Limits,
    translator: impl Translate,
) -> Result<Reply, ProviderError> {
    plain(&response)?;
    // A JSON error or an HTML page under 200 is not a stream of events.
    let events = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if !events {
        return Err(ProviderError::InvalidResponse);
    }
    let pieces = response
        .bytes_stream()
        .map(|piece| piece.map_err(|e| ProviderError::from_reqwest(&e)))
        .boxed();
    stream_of(pieces, limits, translator).await
}

/// [`stream`] over any source of bytes (the mock provider's, tests').
pub(crate) async fn stream_of(
    pieces: BoxStream<'static, Result<Bytes, ProviderError>>,
    limits: &Limits,
    translator: impl Translate,
) -> Result<Reply, ProviderError> {
    let mut flow = Flow {
        pieces,
        decoder: Decoder::default(),
        translator,
        pending: VecDeque::new(),
        deadline: Instant::now() + limits.total,
        idle: limits.idle,
        ended: false,
    };
    let first_by = Instant::now() + limits.attempt;
    let first = loop {
        if let Some(at) = flow
            .pending
            .iter()
            .position(|c| matches!(c, Chunk::Events(_) | Chunk::Done))
        {
            match flow.pending.remove(at) {
                Some(Chunk::Events(bytes)) => break bytes,
                // Done before any answer: an empty one.
                Some(done) => {
                    flow.pending.push_front(done);
                    break Bytes::new();
                }
                None => {}
            }
        }
        if flow.ended {
            return Err(ProviderError::InvalidResponse);
        }
        let wait = first_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, flow.pieces.next()).await {
            Err(_) => return Err(ProviderError::Timeout),
            Ok(piece) => flow.take(piece)?,
        }
    };
    let rest = futures_util::stream::unfold(flow, |mut flow| async move {
        loop {
            if let Some(chunk) = flow.pending.pop_front() {
                return Some((Ok(chunk), flow));
            }
            if flow.ended {
                return None;
            }
            let left = flow.deadline.saturating_duration_since(Instant::now());
            let piece = match tokio::time::timeout(flow.idle.min(left), flow.pieces.next()).await {
                Ok(piece) => piece,
                Err(_) => {
                    flow.ended = true;
                    return Some((Err(ProviderError::Timeout), flow));
                }
            };
            if let Err(error) = flow.take(piece) {
                flow.ended = true;
                return Some((Err(error), flow));
            }
        }
    })
    .boxed();
    Ok(Reply::Stream { first, rest })
}

/// A stream being read: the upstream's pieces, what they became and was not yet passed on.
struct Flow<T> {
    pieces: BoxStream<'static, Result<Bytes, ProviderError>>,
    decoder: Decoder,
    translator: T,
    pending: VecDeque<Chunk>,
    deadline: Instant,
    idle: Duration,
    ended: bool,
}

impl<T: Translate> Flow<T> {
    /// Takes the next piece (or the end) into `pending`.
    fn take(&mut self, piece: Option<Result<Bytes, ProviderError>>) -> Result<(), ProviderError> {
        let mut out = Vec::new();
        match piece {
            None => {
                self.ended = true;
                // Bytes after the last complete event: the answer was cut short.
                if !self.decoder.leftover() {
                    self.translator.finish(&mut out);
                }
            }
            Some(piece) => {
                if let Some(batch) = self.decoder.push(&piece?)? {
                    self.translator.batch(batch, &mut out)?;
                }
            }
        }
        self.pending.extend(out);
        Ok(())
    }
}
