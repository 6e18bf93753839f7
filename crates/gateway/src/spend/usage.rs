//! What a response used, for its settle: the `usage` object of an OpenAI-shaped body, or of
//! the closing chunk of a stream. A stream the client leaves early has no usage chunk; its
//! output is then bounded by the bytes of content that reached the client (a token is never
//! less than a byte).

use bytes::{Bytes, BytesMut};
use portcullis_core::money::Usage;
use serde::Deserialize;

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: i64,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Self {
        Self {
            input_tokens: raw.prompt_tokens,
            output_tokens: raw.completion_tokens,
            cached_input_tokens: raw.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        }
    }
}

/// The `usage` of a whole chat completion or embeddings body.
pub fn usage_from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body)
        .ok()?
        .usage
        .map(Usage::from)
}

/// Watches a stream of OpenAI chunks go by: keeps the usage chunk's figures, counts content
/// bytes, and drops the usage chunk when only the gateway asked for it (`strip`).
#[derive(Debug, Default)]
pub struct UsageTap {
    /// An incomplete line carried to the next piece.
    partial: BytesMut,
    usage: Option<Usage>,
    content_bytes: i64,
    strip: bool,
    /// The line after a stripped event is its blank terminator: dropped with it.
    skip_blank: bool,
    /// The answer's text, assembled from the chunks, when the request's content is logged.
    transcript: Option<String>,
}

const USAGE_KEY: &[u8] = b"\"usage\":{";
/// A stream's text is assembled for its log up to this size.
const MAX_TRANSCRIPT: usize = 1 << 20;
const CONTENT_KEY: &[u8] = b"\"content\":\"";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes of every `"content":"..."` string in a line (escapes counted as written: an upper
/// bound either way).
fn content_len(line: &[u8]) -> i64 {
    let mut total = 0;
    let mut rest = line;
    while let Some(at) = find(rest, CONTENT_KEY) {
        rest = &rest[at + CONTENT_KEY.len()..];
        let mut escaped = false;
        let mut len = rest.len();
        for (i, b) in rest.iter().enumerate() {
            match b {
                b'\\' if !escaped => escaped = true,
                b'"' if !escaped => {
                    len = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        total += i64::try_from(len).unwrap_or(i64::MAX);
        rest = &rest[len..];
    }
    total
}

impl UsageTap {
    /// `strip`: the client did not ask for the usage chunk; the gateway did, to settle.
    /// `transcribe`: assemble the answer's text for the request log (every chunk is then
    /// parsed, which content logging alone pays for).
    pub fn new(strip: bool, transcribe: bool) -> Self {
        Self {
            strip,
            transcript: transcribe.then(String::new),
            ..Self::default()
        }
    }

    /// The answer's text so far, if it was being assembled.
    pub fn take_transcript(&mut self) -> Option<String> {
        self.transcript.take()
    }

    fn transcribe(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Chunk {
            #[serde(default)]
            choices: Vec<Choice>,
        }
        #[derive(Deserialize)]
        struct Choice {
            delta: Option<Delta>,
        }
        #[derive(Deserialize)]
        struct Delta {
            content: Option<String>,
        }
        let Some(transcript) = self.transcript.as_mut() else {
            return;
        };
        if let Ok(chunk) = serde_json::from_slice::<Chunk>(data.trim_ascii()) {
            for delta in chunk.choices.into_iter().filter_map(|c| c.delta) {
                // The log keeps at most this much of an answer: no need to hold more.
                if transcript.len() < MAX_TRANSCRIPT {
                    transcript.push_str(delta.content.as_deref().unwrap_or_default());
                }
            }
        }
    }

    /// Looks at one piece of the stream; returns what goes on to the client.
    pub fn push(&mut self, piece: Bytes) -> Bytes {
        let whole_lines = self.partial.is_empty() && piece.ends_with(b"\n");
        if whole_lines
            && !self.skip_blank
            && self.transcript.is_none()
            && find(&piece, USAGE_KEY).is_none()
        {
            // The common case: whole content events, passed on without a copy.
            self.content_bytes += content_len(&piece);
            return piece;
        }
        self.partial.extend_from_slice(&piece);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Bytes::new();
        };
        let lines = self.partial.split_to(end + 1).freeze();
        let mut out = BytesMut::with_capacity(lines.len());
        for line in lines.split_inclusive(|b| *b == b'\n') {
            if self.keep(line) {
                out.extend_from_slice(line);
            }
        }
        out.freeze()
    }

    /// Reads one whole line; false if it is dropped.
    fn keep(&mut self, line: &[u8]) -> bool {
        let text = line.trim_ascii();
        if self.skip_blank && text.is_empty() {
            self.skip_blank = false;
            return false;
        }
        self.skip_blank = false;
        let Some(data) = text.strip_prefix(b"data:") else {
            return true;
        };
        self.transcribe(data);
        if find(data, USAGE_KEY).is_none() {
            self.content_bytes += content_len(data);
            return true;
        }
        #[derive(Deserialize)]
        struct Chunk {
            usage: Option<RawUsage>,
            #[serde(default)]
            choices: Vec<serde_json::Value>,
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data.trim_ascii()) else {
            return true;
        };
        self.content_bytes += content_len(data);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
            if self.strip && chunk.choices.is_empty() {
                self.skip_blank = true;
                return false;
            }
        }
        true
    }

    /// The usage the provider reported, or `None` (the stream ended early or carried none).
    pub fn reported(&self) -> Option<Usage> {
        self.usage
    }

    /// Bytes of content that went by: an upper bound on the output tokens produced.
    pub fn content_bytes(&self) -> i64 {
        self.content_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\\\"lo\"}}]}\n\n";
    const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n";

    #[test]
    fn the_usage_chunk_is_read_and_dropped_when_only_the_gateway_asked() {
        let mut tap = UsageTap::new(true, false);
        let mut out = Vec::new();
        for piece in [CONTENT, USAGE, "data: [DONE]\n\n"] {
            out.extend_from_slice(&tap.push(Bytes::from(piece)));
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("{CONTENT}data: [DONE]\n\n"));
        assert_eq!(
            tap.reported(),
            Some(Usage {
                input_tokens: 7,
                output_tokens: 3,
                cached_input_tokens: 2
            })
        );
        assert_eq!(tap.content_bytes(), 7);
    }

    #[test]
    fn events_split_anywhere_are_reassembled_and_kept_when_the_client_asked() {
        let mut tap = UsageTap::new(false, true);
        let whole = format!("{CONTENT}{USAGE}data: [DONE]\n\n");
        let mut out = Vec::new();
        for piece in whole.as_bytes().chunks(5) {
            out.extend_from_slice(&tap.push(Bytes::copy_from_slice(piece)));
        }
        assert_eq!(String::from_utf8(out).unwrap(), whole);
        assert_eq!(tap.reported().map(|u| u.input_tokens), Some(7));
        assert_eq!(tap.take_transcript().as_deref(), Some("Hel\"lo"));
    }

    #[test]
    fn a_whole_body_gives_its_usage() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":8}}"#;
        assert_eq!(
            usage_from_json(body),
            Some(Usage {
                input_tokens: 5,
                output_tokens: 8,
                cached_input_tokens: 0
            })
        );
        assert_eq!(usage_from_json(b"{\"id\":\"x\"}"), None);
        assert_eq!(usage_from_json(b"not json"), None);
    }
}
