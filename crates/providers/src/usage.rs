//! What each provider reports a request used, read in full: cached and cache-written prompt
//! tokens, reasoning, audio. Parsed from JSON, whatever its spacing or field order, never
//! matched as bytes (AV-2). Each provider's totals become [`Usage`], whose parts are included
//! in its totals.

use portcullis_core::money::Usage;
use serde::Deserialize;

/// OpenAI's `usage` (Chat Completions, embeddings; also what OpenAI-compatible servers send).
#[derive(Debug, Default, Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
    /// The Responses API's names for the same.
    #[serde(default)]
    input_tokens: Option<i64>,
    #[serde(default)]
    output_tokens: Option<i64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<i64>,
    #[serde(default)]
    audio_tokens: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<i64>,
    #[serde(default)]
    audio_tokens: Option<i64>,
}

fn count(value: Option<i64>) -> i64 {
    value.unwrap_or(0).max(0)
}

impl From<OpenAiUsage> for Usage {
    fn from(raw: OpenAiUsage) -> Self {
        let prompt = raw.prompt_tokens_details.unwrap_or_default();
        let completion = raw.completion_tokens_details.unwrap_or_default();
        Usage {
            input_tokens: count(raw.prompt_tokens.or(raw.input_tokens)),
            cached_input_tokens: count(prompt.cached_tokens),
            audio_input_tokens: count(prompt.audio_tokens),
            output_tokens: count(raw.completion_tokens.or(raw.output_tokens)),
            reasoning_tokens: count(completion.reasoning_tokens),
            audio_output_tokens: count(completion.audio_tokens),
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<OpenAiUsage>,
}

/// A whole OpenAI-shaped body, read once for its shape and its usage.
#[derive(Deserialize)]
struct OpenAiAnswer {
    usage: Option<OpenAiUsage>,
    choices: Option<serde::de::IgnoredAny>,
    data: Option<serde::de::IgnoredAny>,
}

/// A whole OpenAI-shaped body as its endpoint promises it: complete JSON holding `choices`
/// (chat) or `data` (embeddings), with its usage as [`openai_chat`] and the OpenAI adapter read it.
/// `None` when it is not such an answer (an HTML page, cut short, an error object under 200).
pub fn openai_answer(document: &[u8], embeddings: bool) -> Option<Option<Usage>> {
    let answer = serde_json::from_slice::<OpenAiAnswer>(document).ok()?;
    let counted = if embeddings {
        answer.data?;
        prompt_counted
    } else {
        answer.choices?;
        chat_counted
    };
    Some(answer.usage.filter(counted).map(Usage::from))
}

/// Embeddings count only the prompt.
fn prompt_counted(usage: &OpenAiUsage) -> bool {
    usage.prompt_tokens.or(usage.input_tokens).is_some()
}

fn chat_counted(usage: &OpenAiUsage) -> bool {
    prompt_counted(usage) && usage.completion_tokens.or(usage.output_tokens).is_some()
}

/// The `usage` of an OpenAI-shaped chat answer (a whole body, or one stream chunk): `None`
/// when it has none (or `usage` is null, as in every chunk but the last), or leaves out either
/// count. A usage without its counts is unknown, never zero: the request then settles at its
/// reservation.
pub fn openai_chat(document: &[u8]) -> Option<Usage> {
    let usage = serde_json::from_slice::<WithUsage>(document).ok()?.usage?;
    chat_counted(&usage).then(|| usage.into())
}

/// The `usage` of a Responses object (a whole answer, or the `response` of a stream's last
/// event), on the terms of [`openai_chat`].
pub(crate) fn responses(response: &serde_json::Value) -> Option<Usage> {
    let usage = OpenAiUsage::deserialize(response.get("usage")?).ok()?;
    chat_counted(&usage).then(|| usage.into())
}

/// Anthropic's `usage`: `input_tokens` counts only the prompt tokens neither read from nor
/// written to the cache, so the total is the sum of the three.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<i64>,
    #[serde(default)]
    output_tokens: Option<i64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<i64>,
    #[serde(default)]
    cache_read_input_tokens: Option<i64>,
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<i64>,
}

impl AnthropicUsage {
    /// The usage, if it gives both counts; without them it is unknown, never zero.
    pub(crate) fn counted(&self) -> Option<Usage> {
        (self.input_tokens.is_some() && self.output_tokens.is_some()).then(|| self.usage())
    }

    pub(crate) fn usage(&self) -> Usage {
        let written = count(self.cache_creation_input_tokens);
        let read = count(self.cache_read_input_tokens);
        Usage {
            input_tokens: count(self.input_tokens) + written + read,
            cached_input_tokens: read,
            cache_write_tokens: written,
            cache_write_long_tokens: count(
                self.cache_creation
                    .as_ref()
                    .and_then(|c| c.ephemeral_1h_input_tokens),
            ),
            // Thinking is billed as output and counted in `output_tokens`.
            output_tokens: count(self.output_tokens),
            ..Usage::default()
        }
    }

    /// Later figures of the same message (a stream's `message_delta`) replace earlier ones;
    /// a field it leaves out keeps its value.
    pub(crate) fn merge(&mut self, later: AnthropicUsage) {
        let keep = |now: &mut Option<i64>, later: Option<i64>| {
            if later.is_some() {
                *now = later;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.cache_creation.is_some() {
            self.cache_creation = later.cache_creation;
        }
    }
}

/// Gemini's `usageMetadata`: thinking (`thoughtsTokenCount`) is billed as output beside the
/// answer's `candidatesTokenCount`, and a tool's prompt (`toolUsePromptTokenCount`) as input
/// beside `promptTokenCount`, which includes the cached part.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GeminiUsage {
    #[serde(default)]
    prompt_token_count: Option<i64>,
    #[serde(default)]
    candidates_token_count: Option<i64>,
    #[serde(default)]
    thoughts_token_count: Option<i64>,
    #[serde(default)]
    tool_use_prompt_token_count: Option<i64>,
    #[serde(default)]
    cached_content_token_count: Option<i64>,
    #[serde(default)]
    prompt_tokens_details: Vec<ModalityCount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    #[serde(default)]
    modality: String,
    #[serde(default)]
    token_count: Option<i64>,
}

impl GeminiUsage {
    /// The usage, if it counts the prompt; without it it is unknown, never zero.
    pub(crate) fn counted(&self) -> Option<Usage> {
        self.prompt_token_count.is_some().then(|| self.usage())
    }

    pub(crate) fn usage(&self) -> Usage {
        let thoughts = count(self.thoughts_token_count);
        Usage {
            input_tokens: count(self.prompt_token_count) + count(self.tool_use_prompt_token_count),
            cached_input_tokens: count(self.cached_content_token_count),
            audio_input_tokens: self
                .prompt_tokens_details
                .iter()
                .filter(|m| m.modality == "AUDIO")
                .map(|m| count(m.token_count))
                .sum(),
            output_tokens: count(self.candidates_token_count) + thoughts,
            reasoning_tokens: thoughts,
            ..Usage::default()
        }
    }
}

/// The OpenAI `usage` object that stands for `usage` in a translated answer: `prompt_tokens`
/// and `completion_tokens` are the totals, with the cached and reasoning parts in their
/// details, as OpenAI writes them.
pub(crate) fn openai_json(usage: &Usage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                  "audio_tokens": usage.audio_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens,
                                      "audio_tokens": usage.audio_output_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from the providers' documented answers.
    #[test]
    fn av_2_openai_usage_is_read_in_full_whatever_the_spacing_or_order() {
        let compact = br#"{"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0}}}"#;
        let spaced = br#"{ "usage" : { "completion_tokens_details": { "reasoning_tokens": 192 },
            "completion_tokens" : 300, "prompt_tokens" : 2006,
            "prompt_tokens_details" : { "cached_tokens" : 1920 } } , "id": "x" }"#;
        let expected = Usage {
            input_tokens: 2006,
            cached_input_tokens: 1920,
            output_tokens: 300,
            reasoning_tokens: 192,
            ..Usage::default()
        };
        assert_eq!(openai_chat(compact), Some(expected));
        assert_eq!(openai_chat(spaced), Some(expected));
        assert_eq!(openai_chat(br#"{"usage": null, "choices": []}"#), None);
        assert_eq!(openai_chat(b"not json"), None);
        // Counts left out are unknown, not zero.
        assert_eq!(openai_chat(br#"{"usage": {}}"#), None);
        assert_eq!(openai_chat(br#"{"usage": {"total_tokens": 9}}"#), None);
        assert_eq!(openai_chat(br#"{"usage": {"prompt_tokens": 9}}"#), None);
        let embeddings = br#"{"data": [], "usage": {"prompt_tokens": 9, "total_tokens": 9}}"#;
        assert!(openai_answer(embeddings, true).unwrap().is_some());
        // The Responses API's names.
        let responses = br#"{"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":30}}"#;
        assert_eq!(
            openai_chat(responses),
            Some(Usage {
                input_tokens: 10,
                cached_input_tokens: 4,
                output_tokens: 20,
                reasoning_tokens: 5,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn av_2_anthropic_cache_writes_and_reads_add_to_the_prompt() {
        let raw: AnthropicUsage = serde_json::from_str(
            r#"{"input_tokens": 50, "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 10000, "output_tokens": 503,
                "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500}}"#,
        )
        .unwrap();
        assert_eq!(
            raw.usage(),
            Usage {
                input_tokens: 12_050,
                cached_input_tokens: 10_000,
                cache_write_tokens: 2_000,
                cache_write_long_tokens: 500,
                output_tokens: 503,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn av_2_gemini_thinking_and_tool_prompts_are_counted() {
        let raw: GeminiUsage = serde_json::from_str(
            r#"{"promptTokenCount": 120, "candidatesTokenCount": 40, "thoughtsTokenCount": 800,
                "toolUsePromptTokenCount": 30, "cachedContentTokenCount": 100,
                "totalTokenCount": 990,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100},
                                        {"modality": "AUDIO", "tokenCount": 20}]}"#,
        )
        .unwrap();
        assert_eq!(
            raw.usage(),
            Usage {
                input_tokens: 150,
                cached_input_tokens: 100,
                audio_input_tokens: 20,
                output_tokens: 840,
                reasoning_tokens: 800,
                ..Usage::default()
            }
        );
    }
}
