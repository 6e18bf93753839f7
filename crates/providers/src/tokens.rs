//! Token counts with the model's own tokenizer, where one is published (OpenAI's encodings):
//! what a chat request's input comes to, as OpenAI counts chat messages (a few tokens of
//! framing per message, and the reply's priming).

use serde_json::{Map, Value};

/// Tokens each message adds around its content, and the reply's priming (OpenAI's counting).
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// The input tokens of `chat` (OpenAI's shape) for `model`, if the model's tokenizer is
/// known: every text of its messages, their names and tool calls, and its tool definitions.
/// Images are not counted. CPU work of the order of the text's size: run it off the async
/// workers for large requests.
pub fn count_chat(model: &str, chat: &Map<String, Value>) -> Option<u64> {
    let tokenizer = tiktoken_rs::tokenizer::get_tokenizer(model)?;
    let bpe = tiktoken_rs::bpe_for_tokenizer(tokenizer).ok()?;
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
    let mut total = REPLY_PRIMING;
    for message in chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        total += PER_MESSAGE;
        match &message["content"] {
            Value::String(text) => total += count(text),
            Value::Array(parts) => {
                for part in parts {
                    if let Some(text) = part["text"].as_str() {
                        total += count(text);
                    }
                }
            }
            _ => {}
        }
        if let Some(name) = message["name"].as_str() {
            total += count(name) + 1;
        }
        if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
            total += count(&calls.to_string());
        }
    }
    if let Some(tools) = chat.get("tools").filter(|t| !t.is_null()) {
        total += count(&tools.to_string());
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_openai_model_is_counted_with_its_encoding_and_others_are_not() {
        let chat = json!({"messages": [{"role": "user", "content": "hello world"}]});
        let chat = chat.as_object().unwrap();
        // "hello world" is two tokens in o200k_base; three of framing, three of priming.
        assert_eq!(count_chat("gpt-4o-mini", chat), Some(8));
        assert_eq!(count_chat("claude-sonnet-4-5", chat), None);
        assert_eq!(count_chat("mock-1", chat), None);
        let longer = json!({"messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]}],
            "tools": [{"type": "function", "function": {"name": "ls", "parameters": {}}}]});
        let longer = count_chat("gpt-4o-mini", longer.as_object().unwrap()).unwrap();
        assert!(longer > 8 + 3 + 3, "{longer}");
    }
}
