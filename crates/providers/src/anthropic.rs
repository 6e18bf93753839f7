//! Anthropic's Messages format, translated to and from OpenAI's Chat Completions, so that
//! Anthropic clients (`POST /v1/messages`) reach any route: the request in, the answer out,
//! and the stream event by event. Text, images, tool use and tool results, usage and stop
//! reasons carry over.

use bytes::Bytes;
use portcullis_core::money::Usage;
use serde_json::{Map, Value, json};

use crate::error::ProviderError;
use crate::sse::Decoder;
use crate::translate::StreamTranslation;

/// Why a Messages request cannot be translated: the caller's mistake, a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadMessages(pub String);

fn bad(message: &str) -> BadMessages {
    BadMessages(message.to_owned())
}

/// Text of a `system` field or of a content block list.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The key under which a chat request translated from a Messages request carries the
/// client's own request: an Anthropic target receives that one natively (`cache_control`,
/// thinking, `context_management`, server tools and the `anthropic-beta` header kept), with
/// `model`, `max_tokens` and `stream` set from the chat request as the gateway bounded it.
/// Every other target never sees it (the chain removes it), and the gateway's guardrail walks
/// it with the rest of the request.
pub const NATIVE: &str = "portcullis_native_anthropic";

/// Beta features a client may not turn on through the gateway: they change the price beyond
/// the price table (`context-1m`), reach files of the credential's whole workspace
/// (`files-api`), or have Anthropic call out or run code on the key's account (`mcp-client`,
/// `code-execution`, `computer-use`).
const REFUSED_BETAS: [&str; 5] = [
    "context-1m",
    "files-api",
    "mcp-client",
    "code-execution",
    "computer-use",
];

/// Keeps `original` (and its `anthropic-beta` header, less the betas it may not turn on: the
/// price-changing and reach-widening ones) inside `chat`,
/// under [`NATIVE`].
pub fn keep_native(
    chat: &mut Map<String, Value>,
    original: &Map<String, Value>,
    beta: Option<&str>,
) {
    let mut native = Map::new();
    native.insert("body".into(), Value::Object(original.clone()));
    let betas: Vec<&str> = beta
        .into_iter()
        .flat_map(|b| b.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty() && !REFUSED_BETAS.iter().any(|r| b.starts_with(r)))
        .collect();
    if !betas.is_empty() {
        native.insert("beta".into(), json!(betas.join(",")));
    }
    chat.insert(NATIVE.into(), Value::Object(native));
}

/// An Anthropic request as an OpenAI chat request (same `model` alias).
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, BadMessages> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required"))?;
    let max_tokens = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`max_tokens` is required"))?;
    let input = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array"))?;
    let mut messages = Vec::new();
    if let Some(system) = request.get("system") {
        messages.push(json!({"role": "system", "content": text_of(system)}));
    }
    for message in input {
        let role = message["role"]
            .as_str()
            .ok_or_else(|| bad("each message needs a `role`"))?;
        // Current clients (Claude Code) also put system messages in the list.
        if role == "system" {
            messages.push(json!({"role": "system", "content": text_of(&message["content"])}));
            continue;
        }
        if role != "user" && role != "assistant" {
            return Err(bad(
                "a message's `role` is `user` or `assistant` (or `system`)",
            ));
        }
        match &message["content"] {
            Value::String(text) => messages.push(json!({"role": role, "content": text})),
            Value::Array(blocks) => translate_blocks(role, blocks, &mut messages)?,
            _ => return Err(bad("a message's `content` is a string or a list of blocks")),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ] {
        if let Some(value) = request.get(from) {
            out.insert(to.into(), value.clone());
        }
    }
    if let Some(user) = request.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        // A client tool has a schema. Anthropic's own tools (web search and fetch, code
        // execution, ...) have a `type` and no schema: they are billed apart from tokens and
        // bring in input no bound here covers, so they are refused.
        if let Some(server) = tools.iter().find(|t| t.get("input_schema").is_none()) {
            return Err(BadMessages(format!(
                "Anthropic's server tools (`{}`) are not served here: their use is billed apart \
                 from tokens, which this gateway's budgets cannot bound",
                server["type"].as_str().unwrap_or("(no type)")
            )));
        }
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t["name"], "description": t.get("description").cloned().unwrap_or(Value::Null), "parameters": t["input_schema"]}})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = request.get("tool_choice") {
        let mapped = match choice["type"].as_str() {
            Some("any") => json!("required"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            Some("none") => json!("none"),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), mapped);
    }
    if request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

fn translate_blocks(
    role: &str,
    blocks: &[Value],
    messages: &mut Vec<Value>,
) -> Result<(), BadMessages> {
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => parts.push(image_part(block)?),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            Some("tool_result") => {
                // A result's images go to the user's turn after the results: chat tool messages
                // take text, and the budget counts images where they are parts of a turn.
                let text = tool_result_text(&block["content"], &mut parts)?;
                messages.push(json!({
                    "role": "tool", "tool_call_id": block["tool_use_id"], "content": text,
                }));
            }
            Some("document") if block["source"]["type"] == "text" => {
                parts.push(json!({"type": "text", "text": block["source"]["data"]}));
            }
            // Earlier turns' reasoning is the provider's own; other providers take none.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(BadMessages(format!(
                    "content blocks of type `{}` cannot be sent to this route's providers",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    if parts.is_empty() && tool_calls.is_empty() {
        return Ok(());
    }
    let only_text = parts.iter().all(|p| p["type"] == "text");
    let content = if only_text {
        json!(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    } else {
        Value::Array(parts)
    };
    let mut message = json!({"role": role, "content": content});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    messages.push(message);
    Ok(())
}

/// An image block as a chat image part.
fn image_part(block: &Value) -> Result<Value, BadMessages> {
    let source = &block["source"];
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().unwrap_or("")
        ),
        Some("url") => source["url"].as_str().unwrap_or("").to_owned(),
        _ => return Err(bad("an image's `source` is base64 or url")),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The text of a tool result; its images are added to `parts`. Anything else (documents other
/// than text, search results) is refused: what it would cost upstream cannot be bounded here.
fn tool_result_text(content: &Value, parts: &mut Vec<Value>) -> Result<String, BadMessages> {
    let Value::Array(blocks) = content else {
        return Ok(text_of(content));
    };
    let mut texts = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => texts.push(block["text"].as_str().unwrap_or_default().to_owned()),
            Some("image") => parts.push(image_part(block)?),
            Some("document") if block["source"]["type"] == "text" => {
                texts.push(
                    block["source"]["data"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            other => {
                return Err(BadMessages(format!(
                    "tool results with blocks of type `{}` cannot be sent to this route's providers",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    Ok(texts.join("\n"))
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") => "tool_use",
        _ => "end_turn",
    }
}

fn message_id(openai_id: Option<&str>) -> String {
    format!(
        "msg_{}",
        openai_id
            .unwrap_or("portcullis")
            .trim_start_matches("chatcmpl-")
    )
}

/// Anthropic's `usage` for what was used: `input_tokens` counts the prompt tokens neither read
/// from nor written to the cache, as Anthropic writes it.
fn anthropic_usage(usage: &Usage) -> Value {
    let fresh = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens;
    json!({"input_tokens": fresh.max(0), "output_tokens": usage.output_tokens,
           "cache_creation_input_tokens": usage.cache_write_tokens,
           "cache_read_input_tokens": usage.cached_input_tokens})
}

/// An OpenAI chat completion as an Anthropic message; `alias` is the model the client asked
/// for, `usage` what the upstream reported (else the body's own figures are used).
pub fn response_from_openai(body: &[u8], alias: &str, usage: Option<&Usage>) -> Option<Bytes> {
    let reply: Value = serde_json::from_slice(body).ok()?;
    // An Anthropic target answered the client's own request in the client's own format.
    if reply["type"] == "message" {
        return Some(Bytes::copy_from_slice(body));
    }
    let choice = &reply["choices"][0];
    let mut content = Vec::new();
    if let Some(text) = choice["message"]["content"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in choice["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let input: Value = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_else(|| json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    let message = json!({
        "id": message_id(reply["id"].as_str()), "type": "message", "role": "assistant", "model": alias,
        "content": content, "stop_reason": stop_reason(choice["finish_reason"].as_str()), "stop_sequence": null,
        "usage": anthropic_usage(&usage.copied().or_else(|| crate::usage::openai_chat(body)).unwrap_or_default()),
    });
    Some(Bytes::from(message.to_string()))
}

/// Turns an OpenAI chat stream into Anthropic's event stream, chunk by chunk. Upstream chunks
/// may split events anywhere; the shared decoder reassembles them.
#[derive(Debug)]
pub struct StreamTranslator {
    alias: String,
    decoder: Decoder,
    started: bool,
    /// The index and kind of the content block now open.
    open_block: Option<(usize, bool)>,
    next_index: usize,
    stop: Option<String>,
    usage: Usage,
    finished: bool,
}

fn event(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

impl StreamTranslation for StreamTranslator {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ProviderError> {
        StreamTranslator::push(self, chunk)
    }

    fn usage(&mut self, usage: &Usage) {
        StreamTranslator::usage(self, usage);
    }

    fn finish(&mut self) -> Vec<Bytes> {
        StreamTranslator::finish(self)
    }

    fn error_event(&self) -> Bytes {
        let error = json!({"type": "error", "error": {"type": "api_error",
                                                      "message": "the upstream stream broke"}});
        event("error", &error)
    }
}

impl StreamTranslator {
    /// A translator whose messages name `alias`, the model the client asked for.
    pub fn new(alias: &str) -> Self {
        Self {
            alias: alias.to_owned(),
            decoder: Decoder::default(),
            started: false,
            open_block: None,
            next_index: 0,
            stop: None,
            usage: Usage::default(),
            finished: false,
        }
    }

    /// Anthropic events for the next piece of the upstream stream; an event past the
    /// decoder's bound ends the stream.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ProviderError> {
        let mut out = Vec::new();
        for data in crate::translate::event_data(&mut self.decoder, chunk)? {
            self.on_data(&data, &mut out);
        }
        Ok(out)
    }

    /// What the upstream reported the answer used: it goes into the closing `message_delta`.
    pub fn usage(&mut self, usage: &Usage) {
        self.usage = *usage;
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(event(
                "message_start",
                &json!({"type": "message_start", "message": {
                "id": message_id(id), "type": "message", "role": "assistant", "model": self.alias,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            ));
        }
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open_block.take() {
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn on_data(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if data == "[DONE]" {
            self.finish_into(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        // An Anthropic target's own events (the client's request went natively): as they came.
        if let Some(kind) = chunk["type"].as_str() {
            self.started = true;
            if kind == "message_stop" {
                self.finished = true;
            }
            out.push(event(kind, &chunk));
            return;
        }
        self.start(chunk["id"].as_str(), out);
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if !matches!(self.open_block, Some((_, true))) {
                self.close_block(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open_block = Some((index, true));
                out.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "text", "text": ""}}),
                ));
            }
            let index = self.open_block.map_or(0, |(i, _)| i);
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if call.get("id").is_some_and(|id| !id.is_null()) {
                self.close_block(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open_block = Some((index, false));
                out.push(event("content_block_start", &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}})));
            }
            if let Some(arguments) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                let index = self.open_block.map_or(0, |(i, _)| i);
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                ));
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(Some(finish)).to_owned());
        }
    }

    fn finish_into(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.start(None, out);
        self.close_block(out);
        out.push(event("message_delta", &json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.clone().unwrap_or_else(|| "end_turn".to_owned()), "stop_sequence": null},
            "usage": anthropic_usage(&self.usage)})));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
    }

    /// The closing events, if the upstream ended without `[DONE]`.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_messages_request_becomes_a_chat_request() {
        let request = map(json!({
            "model": "claude", "max_tokens": 100, "system": "Be brief.", "stop_sequences": ["END"],
            "messages": [
                {"role": "user", "content": "What is the weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]}
            ],
            "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "stream": true
        }));
        let chat = Value::Object(request_to_openai(&request).unwrap());
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            chat["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            chat["messages"][3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"})
        );
        assert_eq!(
            chat["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert!(
            request_to_openai(&map(json!({"model": "m", "messages": []}))).is_err(),
            "max_tokens is required"
        );
    }

    /// A Claude Code request, recorded from `claude -p` 2.1.332 (texts cut by
    /// `scripts/trim_fixture.py`); with one of Anthropic's server tools added, it is refused.
    #[test]
    fn claude_codes_request_becomes_a_chat_request() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/claude-code-2.1.332-messages.json"
        ))
        .unwrap();
        let mut request = map(fixture["body"].clone());
        let mut with_server_tool = request.clone();
        with_server_tool["tools"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}));
        let refused = request_to_openai(&with_server_tool).unwrap_err();
        assert!(refused.0.contains("web_search_20250305"), "{refused}");
        request["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "text", "text": "Hello."}]}));
        let chat = Value::Object(request_to_openai(&request).unwrap());
        let roles: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        // The system blocks, the user's turn, the system message Claude Code puts in the list,
        // and the assistant's turn without its thinking.
        assert_eq!(roles, ["system", "user", "system", "assistant"]);
        assert_eq!(chat["messages"][3]["content"], "Hello.");
        let tools = chat["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 4);
        assert_eq!(chat["max_tokens"], 32000);
        assert_eq!(chat["stream"], true);
        for field in [
            "thinking",
            "context_management",
            "output_config",
            "metadata",
        ] {
            assert!(chat.get(field).is_none(), "{field}");
        }
        assert!(chat["user"].is_string(), "metadata.user_id is the end user");
    }

    /// AV-2: what a tool result carries is counted or refused, never dropped from the copy the
    /// budget reads while the native request still sends it.
    #[test]
    fn av_2_a_tool_results_images_are_counted_and_what_cannot_be_bounded_is_refused() {
        let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}});
        let request = map(json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                "content": [{"type": "text", "text": "a screenshot"}, image]}]}]}));
        let chat = Value::Object(request_to_openai(&request).unwrap());
        assert_eq!(chat["messages"][1]["content"], "a screenshot");
        assert_eq!(chat["messages"][2]["role"], "user");
        assert_eq!(chat["messages"][2]["content"][0]["type"], "image_url");
        for block in [
            json!({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}),
            json!({"type": "search_result", "source": "x", "title": "t", "content": []}),
        ] {
            let request = map(json!({"model": "m", "max_tokens": 10, "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [block]}]}]}));
            assert!(request_to_openai(&request).is_err(), "{block}");
        }
    }

    #[test]
    fn av_2_betas_that_change_the_price_or_reach_beyond_the_request_are_not_passed_on() {
        let mut chat = Map::new();
        keep_native(
            &mut chat,
            &Map::new(),
            Some(
                "claude-code-20250219, context-1m-2025-08-07,files-api-2025-04-14,interleaved-thinking-2025-05-14",
            ),
        );
        assert_eq!(
            chat[NATIVE]["beta"],
            "claude-code-20250219,interleaved-thinking-2025-05-14"
        );
        let mut chat = Map::new();
        keep_native(&mut chat, &Map::new(), Some("mcp-client-2025-04-04"));
        assert!(chat[NATIVE].get("beta").is_none());
    }

    #[test]
    fn a_chat_completion_becomes_a_message() {
        let reply = json!({"id": "chatcmpl-9", "choices": [{"message": {"content": "Hi", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 7}});
        let message: Value = serde_json::from_slice(
            &response_from_openai(reply.to_string().as_bytes(), "claude", None).unwrap(),
        )
        .unwrap();
        assert_eq!(message["type"], "message");
        assert_eq!(message["model"], "claude");
        assert_eq!(message["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(message["content"][1]["input"], json!({"city": "Oslo"}));
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(
            message["usage"],
            json!({"input_tokens": 5, "output_tokens": 7,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
    }

    /// An Anthropic target's own events (thinking with its signature included) reach a
    /// Messages client as they came, with no closing events of the translation's own.
    #[test]
    fn an_anthropic_targets_own_events_pass_through() {
        let upstream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\"}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut translator = StreamTranslator::new("claude");
        let mut events = translator.push(upstream.as_bytes()).unwrap();
        events.extend(translator.finish());
        let text: String = events
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "message_stop"
            ]
        );
        assert!(text.contains("\"signature\":\"sig\""), "{text}");
    }

    #[test]
    fn a_chat_stream_becomes_message_events_whatever_the_chunking() {
        let upstream = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 7, 50, upstream.len()] {
            let mut translator = StreamTranslator::new("claude");
            // The adapter reports usage as its own chunk, before the end.
            translator.usage(&Usage::totals(3, 2));
            let mut events = Vec::new();
            for piece in upstream.as_bytes().chunks(split) {
                events.extend(translator.push(piece).unwrap());
            }
            events.extend(translator.finish());
            let text: String = events
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let kinds: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("event: "))
                .collect();
            assert_eq!(
                kinds,
                [
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop"
                ],
                "split {split}"
            );
            assert!(
                text.contains("\"text\":\"Hel\"") && text.contains("\"output_tokens\":2"),
                "{text}"
            );
        }
    }
}
