//! OpenAI's legacy Completions API (`POST /v1/completions`) translated to and from Chat
//! Completions, so that its clients reach any route: one prompt as the user's turn, its text
//! back as the completion, the stream chunk by chunk. What only a raw completion model can do
//! (`echo`, `suffix`, `logprobs`, `best_of`, token-id prompts, several prompts at once) is
//! refused with a reason rather than answered differently.

use bytes::Bytes;
use portcullis_core::money::Usage;
use serde_json::{Map, Value, json};

use crate::error::ProviderError;
use crate::sse::Decoder;
use crate::translate::StreamTranslation;

/// Why a Completions request cannot be translated: the caller's mistake, a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPrompt(pub String);

/// The field of a chat request translated from Completions that carries the client's own
/// request: an OpenAI, OpenAI-compatible or Azure target is sent that one (the prompt raw, for
/// the completion and base models such servers host; model, output bound and streaming set by
/// the gateway) and answers in the Completions format, passed through under the alias. Every
/// other target never sees it (the chain removes it), and the guardrail walks it with the rest.
pub const NATIVE: &str = "portcullis_native_completions";

/// Keeps `original` inside `chat`, under [`NATIVE`].
pub fn keep_native(chat: &mut Map<String, Value>, original: &Map<String, Value>) {
    chat.insert(NATIVE.into(), json!({ "body": original }));
}

/// The client's request as sent: `original` with the target's model, the chat request's bound
/// as `max_tokens`, `stream` as asked, and the usage chunk asked for when streaming (the
/// gateway bills by it; the client sees it only if it asked).
pub(crate) fn native_request(
    original: &Value,
    chat: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Value, ProviderError> {
    let bound = crate::exchange::native_bound(chat)?;
    let mut request = original.clone();
    request["model"] = json!(model);
    request["max_tokens"] = json!(bound);
    request["stream"] = json!(stream);
    if stream {
        request["stream_options"] = json!({"include_usage": true});
    } else if let Some(object) = request.as_object_mut() {
        object.remove("stream_options");
    }
    Ok(request)
}

/// A Completions request as a Chat Completions request (same `model` alias).
pub fn request_to_chat(request: &Map<String, Value>) -> Result<Map<String, Value>, BadPrompt> {
    let bad = |m: &str| BadPrompt(m.to_owned());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required"))?;
    let prompt = match request.get("prompt") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::Array(_)) => {
            return Err(bad(
                "`prompt` is one string here: several prompts, or token ids, need a raw completion model",
            ));
        }
        _ => return Err(bad("`prompt` is required: a string")),
    };
    for field in ["echo", "suffix", "logprobs", "best_of"] {
        let set = request
            .get(field)
            .is_some_and(|v| !v.is_null() && v != &json!(false) && v != &json!(1));
        if set {
            return Err(BadPrompt(format!(
                "`{field}` needs a raw completion model, which this route's providers are not"
            )));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    for field in [
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        // It changes the price: the chat copy, which the gateway prices, carries it too.
        "service_tier",
    ] {
        if let Some(value) = request.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion_usage(usage: &Usage) -> Value {
    json!({"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
           "total_tokens": usage.input_tokens + usage.output_tokens})
}

/// A chat completion as a text completion with id `id`, for the model alias `alias`.
pub fn response_from_chat(
    body: &[u8],
    id: &str,
    alias: &str,
    usage: Option<&Usage>,
) -> Option<Bytes> {
    let mut reply: Value = serde_json::from_slice(body).ok()?;
    // The target answered the client's own request in the client's own format.
    if reply["object"] == "text_completion" {
        reply["model"] = json!(alias);
        return Some(Bytes::from(reply.to_string()));
    }
    let choices: Vec<Value> = reply["choices"]
        .as_array()?
        .iter()
        .enumerate()
        .map(|(n, choice)| {
            json!({"text": choice["message"]["content"].as_str().unwrap_or_default(),
                   "index": choice["index"].as_u64().unwrap_or(n as u64), "logprobs": null,
                   "finish_reason": choice["finish_reason"]})
        })
        .collect();
    let usage = usage
        .copied()
        .or_else(|| crate::usage::openai_chat(body))
        .unwrap_or_default();
    let completion = json!({"id": id, "object": "text_completion", "created": unix_now(),
        "model": alias, "choices": choices, "usage": completion_usage(&usage)});
    Some(Bytes::from(completion.to_string()))
}

/// Turns a chat stream into text-completion chunks, then `[DONE]` (with a usage chunk first
/// when the client asked for one).
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    alias: String,
    decoder: Decoder,
    include_usage: bool,
    usage: Option<Usage>,
    finished: bool,
    /// The target answered in the Completions format itself: its chunks pass on.
    native: bool,
}

impl StreamTranslator {
    /// A translator for completion `id` of `alias`; `include_usage` when the client's
    /// `stream_options` asked for usage.
    pub fn new(id: &str, alias: &str, include_usage: bool) -> Self {
        Self {
            id: id.to_owned(),
            alias: alias.to_owned(),
            decoder: Decoder::default(),
            include_usage,
            usage: None,
            finished: false,
            native: false,
        }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut chunk = json!({"id": self.id, "object": "text_completion", "created": unix_now(),
                               "model": self.alias, "choices": choices});
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    fn on_data(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if data == "[DONE]" {
            self.finish_into(out);
            return;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        // The target's own chunks (the client's request went natively): under the alias, and
        // the usage chunk only if the client asked for it.
        if chunk["object"] == "text_completion" {
            self.native = true;
            let usage_only =
                chunk["choices"].as_array().is_some_and(Vec::is_empty) && !chunk["usage"].is_null();
            if !usage_only || self.include_usage {
                chunk["model"] = json!(self.alias);
                out.push(Bytes::from(format!("data: {chunk}\n\n")));
            }
            return;
        }
        for (n, choice) in chunk["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let text = choice["delta"]["content"].as_str().unwrap_or_default();
            let finish = &choice["finish_reason"];
            if text.is_empty() && finish.is_null() {
                continue;
            }
            let index = choice["index"].as_u64().unwrap_or(n as u64);
            out.push(self.chunk(
                json!([{"text": text, "index": index, "logprobs": null, "finish_reason": finish}]),
                None,
            ));
        }
    }

    fn finish_into(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.include_usage
            && !self.native
            && let Some(usage) = self.usage
        {
            out.push(self.chunk(json!([]), Some(completion_usage(&usage))));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

impl StreamTranslation for StreamTranslator {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ProviderError> {
        let mut out = Vec::new();
        for data in crate::translate::event_data(&mut self.decoder, chunk)? {
            self.on_data(&data, &mut out);
        }
        Ok(out)
    }

    fn usage(&mut self, usage: &Usage) {
        self.usage = Some(*usage);
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    fn error_event(&self) -> Bytes {
        let event = json!({"error": {"type": "server_error", "code": "upstream_error",
                                     "message": "the upstream stream broke"}});
        Bytes::from(format!("data: {event}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_prompt_becomes_the_users_turn_and_raw_model_features_are_refused() {
        let chat = request_to_chat(&map(json!({"model": "m", "prompt": ["Say this is a test"],
            "max_tokens": 7, "temperature": 0, "stream": true, "stop": "\n"})))
        .unwrap();
        assert_eq!(
            Value::Object(chat.clone())["messages"],
            json!([{"role": "user", "content": "Say this is a test"}])
        );
        assert_eq!(chat["max_tokens"], 7);
        assert_eq!(chat["stop"], "\n");
        assert_eq!(chat["stream_options"]["include_usage"], true);
        for bad in [
            json!({"model": "m", "prompt": ["a", "b"]}),
            json!({"model": "m", "prompt": [[1, 2, 3]]}),
            json!({"model": "m"}),
            json!({"model": "m", "prompt": "x", "echo": true}),
            json!({"model": "m", "prompt": "x", "logprobs": 2}),
            json!({"model": "m", "prompt": "x", "suffix": "end"}),
        ] {
            assert!(request_to_chat(&map(bad.clone())).is_err(), "{bad}");
        }
        // What clients send by default is no raw-model feature.
        assert!(
            request_to_chat(&map(
                json!({"model": "m", "prompt": "x", "echo": false, "best_of": 1, "logprobs": null})
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_chat_answer_and_stream_become_a_completion() {
        let reply = json!({"choices": [{"index": 0, "message": {"content": "This is a test."},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 5}});
        let completion: Value = serde_json::from_slice(
            &response_from_chat(reply.to_string().as_bytes(), "cmpl-1", "house", None).unwrap(),
        )
        .unwrap();
        assert_eq!(completion["object"], "text_completion");
        assert_eq!(completion["choices"][0]["text"], "This is a test.");
        assert_eq!(completion["usage"]["total_tokens"], 10);

        let upstream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"This is\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" a test.\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        for (include_usage, chunks) in [(false, 3), (true, 4)] {
            let mut translator = StreamTranslator::new("cmpl-1", "house", include_usage);
            translator.usage(&Usage::totals(5, 5));
            let mut out = Vec::new();
            for piece in upstream.as_bytes().chunks(11) {
                out.extend(translator.push(piece).unwrap());
            }
            out.extend(translator.finish());
            let text: String = out
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let datas: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            assert_eq!(datas.len(), chunks, "{text}");
            assert_eq!(datas.last(), Some(&"[DONE]"));
            assert!(text.contains("\"text\":\"This is\""), "{text}");
            assert_eq!(
                text.contains("\"total_tokens\":10"),
                include_usage,
                "{text}"
            );
        }
    }
}
