//! The answer a client gets, and the settle it ends in. A whole body settles at once; a stream
//! when it ends, breaks, or its client leaves. Usage is what the provider reported; when it
//! reported none, the request settles at its reservation, marked estimated (AV-2), and a
//! client that asked for a usage chunk gets the gateway's own count, marked as such. The log
//! says how a stream ended: complete, `upstream_error`, or `client_disconnected`.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use portcullis_core::money::{Pricing, Usage};
use portcullis_providers::{Chunk, ProviderError, StreamTranslation};
use serde_json::json;

use crate::error::ApiError;
use crate::logs::{self, Draft, End, RequestLogs};
use crate::spend::{Outcome, Reservation};

/// A stream's text is assembled for its log up to this size.
const MAX_TRANSCRIPT: usize = 1 << 20;

/// What settles a served request.
pub(super) struct Settle {
    pub reservation: Reservation,
    pub request_id: String,
    pub alias: String,
    pub target: String,
    /// The served target's rates; `None`: served unpriced.
    pub pricing: Option<Pricing>,
    pub draft: Draft,
    pub logs: RequestLogs,
    /// The request's span: a stream settles after its handler returned.
    pub span: tracing::Span,
}

impl Settle {
    /// Settles to `usage`, or at the reservation when it is unknown, and finishes the log.
    pub fn finish(
        self,
        usage: Option<Usage>,
        status: u16,
        error_code: Option<&'static str>,
        response: Option<logs::Response>,
    ) {
        let org = tracing::field::display(self.draft.org());
        let span = tracing::info_span!(parent: &self.span, "budget.settle", org_id = org);
        let (usage, cost) = span.in_scope(|| match usage {
            Some(usage) => {
                let cost = self.pricing.map(|p| p.cost(&usage));
                let outcome = Outcome {
                    request_id: self.request_id.clone(),
                    model: self.alias.clone(),
                    target: self.target.clone(),
                    usage,
                    cost,
                    estimated: false,
                };
                self.reservation.settle(outcome);
                (usage, cost)
            }
            None => {
                let estimate = self.reservation.estimate;
                let priced = self.pricing.is_some();
                let cost = self.reservation.settle_at_estimate(
                    self.request_id.clone(),
                    self.alias.clone(),
                    self.target.clone(),
                    priced,
                );
                (estimate, priced.then_some(cost))
            }
        });
        let end = End {
            status,
            error_code,
            target: Some(self.target),
            usage: Some(usage),
            cost_micro_usd: cost,
            response,
        };
        tracing::info_span!(parent: &self.span, "request_log", org_id = org)
            .in_scope(|| self.draft.finish(&self.logs, end));
    }
}

/// How a stream is written to the client.
pub(super) enum Wire {
    /// OpenAI's chunks, passed on.
    OpenAi,
    /// Another format's events (Anthropic's Messages, OpenAI's Responses), translated from
    /// OpenAI's chunks.
    Translated(Box<dyn StreamTranslation>),
}

/// Counts what a stream's events hold, when the gateway may have to report its own usage or
/// log the answer's text: every byte of content, reasoning and tool-call arguments is at
/// least one token of output.
#[derive(Debug, Default)]
struct Tally {
    decoder: Option<portcullis_providers::EventSplitter>,
    output_bytes: i64,
    transcript: Option<String>,
}

impl Tally {
    fn new(count: bool, transcribe: bool) -> Self {
        Self {
            decoder: (count || transcribe).then(portcullis_providers::EventSplitter::default),
            output_bytes: 0,
            transcript: transcribe.then(String::new),
        }
    }

    fn see(&mut self, events: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Chunk {
            #[serde(default)]
            choices: Vec<Choice>,
            /// A target's own event (a client's request went natively): Anthropic's blocks,
            /// or a Responses event's text.
            delta: Option<EventDelta>,
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum EventDelta {
            /// OpenAI's Responses: text, reasoning summary or call arguments, by `type`.
            Text(String),
            Anthropic(AnthropicDelta),
        }
        #[derive(serde::Deserialize)]
        struct AnthropicDelta {
            text: Option<String>,
            thinking: Option<String>,
            partial_json: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Choice {
            delta: Option<Delta>,
        }
        #[derive(serde::Deserialize)]
        struct Delta {
            content: Option<String>,
            reasoning_content: Option<String>,
            refusal: Option<String>,
            #[serde(default)]
            tool_calls: Vec<ToolCall>,
        }
        #[derive(serde::Deserialize)]
        struct ToolCall {
            function: Option<Function>,
        }
        #[derive(serde::Deserialize)]
        struct Function {
            arguments: Option<String>,
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        for data in decoder.data_of(events) {
            let Ok(chunk) = serde_json::from_slice::<Chunk>(&data) else {
                continue;
            };
            if let Some(EventDelta::Text(text)) = &chunk.delta {
                self.output_bytes += i64::try_from(text.len()).unwrap_or(i64::MAX);
                if chunk.kind.as_deref() == Some("response.output_text.delta")
                    && let Some(transcript) = self.transcript.as_mut()
                    && transcript.len() < MAX_TRANSCRIPT
                {
                    transcript.push_str(text);
                }
            }
            if let Some(EventDelta::Anthropic(delta)) = &chunk.delta {
                let texts = [&delta.text, &delta.thinking, &delta.partial_json];
                for text in texts.into_iter().flatten() {
                    self.output_bytes += i64::try_from(text.len()).unwrap_or(i64::MAX);
                }
                if let (Some(transcript), Some(text)) = (self.transcript.as_mut(), &delta.text)
                    && transcript.len() < MAX_TRANSCRIPT
                {
                    transcript.push_str(text);
                }
            }
            for delta in chunk.choices.into_iter().filter_map(|c| c.delta) {
                let texts = [&delta.content, &delta.reasoning_content, &delta.refusal];
                let arguments = delta
                    .tool_calls
                    .iter()
                    .filter_map(|c| c.function.as_ref()?.arguments.as_ref());
                for text in texts.into_iter().flatten().chain(arguments) {
                    self.output_bytes += i64::try_from(text.len()).unwrap_or(i64::MAX);
                }
                if let (Some(transcript), Some(text)) = (self.transcript.as_mut(), &delta.content)
                    && transcript.len() < MAX_TRANSCRIPT
                {
                    transcript.push_str(text);
                }
            }
        }
    }
}

/// Rides along a stream; settles when it is dropped: at its end, when it breaks, or when the
/// client leaves.
struct StreamWatch {
    settle: Option<Settle>,
    tally: Tally,
    usage: Option<Usage>,
    done: bool,
    broken: bool,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        let Some(settle) = self.settle.take() else {
            return;
        };
        let error = if self.done {
            None
        } else if self.broken {
            Some("upstream_error")
        } else {
            Some("client_disconnected")
        };
        let response = self.tally.transcript.take().map(logs::Response::Text);
        settle.finish(self.usage, 200, error, response);
    }
}

/// The event that ends a stream the upstream broke: never a retry, the client already has part
/// of an answer.
fn error_event(wire: &Wire) -> Bytes {
    match wire {
        Wire::OpenAi => {
            let event = json!({"error": {"type": "server_error", "code": "upstream_error",
                                         "message": "the upstream stream broke"}});
            Bytes::from(format!("data: {event}\n\n"))
        }
        Wire::Translated(translator) => translator.error_event(),
    }
}

/// The stream the client reads, settling (through its watch) when it ends or is dropped.
struct Writer {
    rest: BoxStream<'static, Result<Chunk, ProviderError>>,
    wire: Wire,
    watch: StreamWatch,
    /// The client asked for a usage chunk.
    client_usage: bool,
    alias: String,
    ended: bool,
}

impl Writer {
    /// What goes to the client for the next chunk of the upstream (empty bytes are skipped).
    fn write(&mut self, chunk: Result<Chunk, ProviderError>) -> Bytes {
        match chunk {
            Ok(Chunk::Events(events)) => {
                self.watch.tally.see(&events);
                match &mut self.wire {
                    Wire::OpenAi => events,
                    Wire::Translated(translator) => match translator.push(&events) {
                        Ok(out) => Bytes::from(out.concat()),
                        Err(error) => self.broke(&error),
                    },
                }
            }
            Ok(Chunk::Usage(usage)) => {
                self.watch.usage = Some(usage);
                if let Wire::Translated(translator) = &mut self.wire {
                    translator.usage(&usage);
                }
                Bytes::new()
            }
            Ok(Chunk::Done) => {
                self.watch.done = true;
                self.ended = true;
                self.closing()
            }
            Err(error) => self.broke(&error),
        }
    }

    fn broke(&mut self, error: &ProviderError) -> Bytes {
        tracing::warn!(error = %error.summary(), "upstream stream broke");
        self.watch.broken = true;
        self.ended = true;
        error_event(&self.wire)
    }

    /// The end of a complete answer: the gateway's own usage chunk if the client asked for
    /// one and the upstream sent none, then the end marker.
    fn closing(&mut self) -> Bytes {
        match &mut self.wire {
            Wire::Translated(translator) => Bytes::from(translator.finish().concat()),
            Wire::OpenAi => {
                let mut out = String::new();
                if self.client_usage && self.watch.usage.is_none() {
                    let input = self
                        .watch
                        .settle
                        .as_ref()
                        .map_or(0, |s| s.reservation.estimate.input_tokens);
                    let output = self.watch.tally.output_bytes;
                    let chunk = json!({"id": "chatcmpl-portcullis", "object": "chat.completion.chunk",
                        "created": 0, "model": self.alias, "choices": [],
                        "usage": {"prompt_tokens": input, "completion_tokens": output,
                                  "total_tokens": input + output},
                        "portcullis_usage": "estimated by the gateway: the upstream reported none"});
                    out.push_str(&format!("data: {chunk}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                Bytes::from(out)
            }
        }
    }
}

/// A stream's response: its first events at once, the rest as they come.
pub(super) fn stream(
    first: Bytes,
    rest: BoxStream<'static, Result<Chunk, ProviderError>>,
    mut wire: Wire,
    settle: Settle,
    client_usage: bool,
) -> Result<Response, ApiError> {
    let logs_content = settle.draft.logs_content();
    let alias = settle.alias.clone();
    let mut tally = Tally::new(client_usage, logs_content);
    tally.see(&first);
    let first = match &mut wire {
        Wire::OpenAi => first,
        Wire::Translated(translator) => Bytes::from(
            translator
                .push(&first)
                .map_err(|_| ApiError::Upstream {
                    status: axum::http::StatusCode::BAD_GATEWAY,
                    code: "upstream_error",
                })?
                .concat(),
        ),
    };
    let writer = Writer {
        rest,
        wire,
        watch: StreamWatch {
            settle: Some(settle),
            tally,
            usage: None,
            done: false,
            broken: false,
        },
        client_usage,
        alias,
        ended: false,
    };
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(first) });
    let tail = futures_util::stream::unfold(writer, |mut writer| async move {
        loop {
            if writer.ended {
                return None;
            }
            let bytes = match writer.rest.next().await {
                Some(chunk) => writer.write(chunk),
                // Ended without saying the answer was complete: cut short.
                None => writer.broke(&ProviderError::InvalidResponse),
            };
            if !bytes.is_empty() {
                return Some((Ok::<_, Infallible>(bytes), writer));
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(head.chain(tail)))
        .map_err(ApiError::internal)
}

/// A whole JSON answer.
pub(super) fn json(status: u16, body: Bytes) -> Result<Response, ApiError> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(ApiError::internal)
}

/// The headers that say who served a request, and how many attempts it took.
pub(super) fn served_by(response: &mut Response, target: &str, attempts: u32) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(target) {
        headers.insert("x-portcullis-target", value);
    }
    headers.insert("x-portcullis-attempts", HeaderValue::from(attempts));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RM-1 and AV-2: a stream's text is transcribed and counted whichever format the target
    /// answered in: chat chunks, Anthropic's own events, OpenAI's own Responses events.
    #[test]
    fn rm_1_the_transcript_and_the_count_read_every_format_a_target_streams() {
        let streams = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
            concat!(
                "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"delta\":\"think\"}\n\n",
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\"}\n\n"
            ),
        ];
        for (n, events) in streams.into_iter().enumerate() {
            let mut tally = Tally::new(true, true);
            tally.see(events.as_bytes());
            assert_eq!(tally.transcript.as_deref(), Some("Hello"), "stream {n}");
            assert!(
                tally.output_bytes >= 5,
                "stream {n}: {}",
                tally.output_bytes
            );
        }
    }
}
