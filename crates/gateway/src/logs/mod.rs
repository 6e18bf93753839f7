//! Request logs (RM-1, RM-2, RM-3): what each data-plane request did, recorded off the request
//! path by a bounded batching writer (`writer.rs`), with its content at logging level `content`
//! only, redacted before it is written when the org redacts PII; and the retention job that
//! removes content past each org's retention.
//!
//! A `Draft` is opened when the request's org is known and finished once, when the request
//! ends: at once for a refusal or a whole body, when a stream ends or its client leaves.

mod writer;

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use portcullis_core::money::Usage;
use portcullis_core::privacy::LoggingLevel;
use portcullis_core::{KeyId, OrgId};
use portcullis_providers::Native;
use portcullis_storage::Db;
use portcullis_storage::dataplane::LiveKey;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::background::Background;

pub use writer::{LogMetrics, RequestLogs};

/// The longest end-user id kept (longer ones are refused on the data plane).
pub const MAX_END_USER: usize = 512;

/// At most `max` bytes of `text`, cut on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Larger requests are logged as a note of their size, not their content: what waits in the
/// queue stays small.
pub const MAX_QUEUED_REQUEST: usize = 1 << 20;

/// How request logging behaves in this process.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Entries waiting for the writer; past it new entries are dropped and counted.
    pub queue_capacity: usize,
    /// Most entries in one transaction.
    pub batch_size: usize,
    /// How long the writer waits for more entries to share a transaction.
    pub linger: Duration,
    /// How often the retention job looks for content past its org's retention.
    pub retention_interval: Duration,
    /// Each side of a request's content is cut here (and marked truncated).
    pub max_content_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_size: 500,
            linger: Duration::from_millis(100),
            retention_interval: Duration::from_secs(600),
            max_content_bytes: 256 * 1024,
        }
    }
}

/// The data-plane endpoint a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
    Messages,
    Responses,
    Completions,
    /// `/v1/messages/count_tokens`: no answer, but the request may leave for a provider.
    CountTokens,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::Responses => "responses",
            Endpoint::Completions => "completions",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// What the guardrail did to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailRecord {
    /// `off`, `passed`, `redacted` or `blocked`.
    pub action: &'static str,
    /// Kinds found (names, never values).
    pub kinds: Vec<String>,
}

/// A request being logged: what is known before the upstream answers.
#[derive(Debug)]
pub struct Draft {
    log_id: Uuid,
    created_at: DateTime<Utc>,
    started: Instant,
    org_id: OrgId,
    key_id: KeyId,
    team_id: Option<Uuid>,
    /// The org's logging level was `content` when the request came in.
    logs_content: bool,
    /// The org redacts PII in what is written.
    redacting: bool,
    request_id: String,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    end_user: Option<String>,
    guardrail: GuardrailRecord,
    /// The request as it left for the provider; kept only at logging level `content`.
    request: Option<Map<String, Value>>,
    /// The size of what `request` holds, for the writer's memory budget.
    bytes: usize,
}

/// How a request ended.
#[derive(Debug, Default)]
pub struct End {
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub target: Option<String>,
    pub usage: Option<Usage>,
    pub cost_micro_usd: Option<i64>,
    /// The answer: a whole body, or a stream's assembled text.
    pub response: Option<Response>,
}

impl End {
    /// A request refused or failed before an answer: its status and code.
    pub fn refused(error: &crate::ApiError) -> Self {
        Self {
            status: error.status().as_u16(),
            error_code: Some(error.code()),
            ..Self::default()
        }
    }
}

#[derive(Debug)]
pub enum Response {
    Body(Bytes),
    Text(String),
}

impl Draft {
    pub fn open(
        key: &LiveKey,
        endpoint: Endpoint,
        model: &str,
        stream: bool,
        request: &Map<String, Value>,
    ) -> Self {
        Self {
            log_id: Uuid::now_v7(),
            created_at: Utc::now(),
            started: Instant::now(),
            org_id: key.org_id,
            key_id: key.key_id,
            team_id: key.team_id,
            logs_content: key.privacy.logging_level == LoggingLevel::Content,
            redacting: key.privacy.pii_redaction,
            request_id: crate::request_id::current().unwrap_or_default(),
            endpoint,
            model: bounded(model, 256),
            stream,
            end_user: request
                .get("user")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(|u| bounded(u, MAX_END_USER)),
            guardrail: GuardrailRecord {
                action: "off",
                kinds: Vec::new(),
            },
            request: None,
            bytes: 0,
        }
    }

    pub fn org(&self) -> OrgId {
        self.org_id
    }

    pub fn logs_content(&self) -> bool {
        self.logs_content
    }

    pub fn guardrail(&mut self, record: GuardrailRecord) {
        self.guardrail = record;
    }

    /// Keeps the request as sent, if its content is logged and it is small enough to queue
    /// (`body_len`: the client's body, a bound on the request's size).
    /// `native`: the serving provider took the client's own request in this format (it rides
    /// along in the chat request), so that is what was sent, and what is kept.
    pub fn sent(
        &mut self,
        mut request: Map<String, Value>,
        body_len: usize,
        native: Option<Native>,
    ) {
        if !self.logs_content() {
            return;
        }
        // The log keeps the request once: the one the serving target received.
        let carried = Native::carried_by(&request);
        let original = carried.and_then(|format| request.remove(format.key()));
        if native.is_some()
            && native == carried
            && let Some(Value::Object(mut original)) = original
            && let Some(Value::Object(body)) = original.remove("body")
        {
            request = body;
        }
        self.bytes = body_len;
        self.request = Some(if body_len <= MAX_QUEUED_REQUEST {
            request
        } else {
            let mut omitted = Map::new();
            omitted.insert(
                "omitted".into(),
                Value::String(format!(
                    "a request of {body_len} bytes; content over {MAX_QUEUED_REQUEST} bytes is not logged"
                )),
            );
            self.bytes = 0;
            omitted
        });
    }

    /// Roughly what this entry holds in memory while it waits for the writer.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes
    }

    pub fn finish(self, logs: &RequestLogs, end: End) {
        logs.record(self, end);
    }
}

/// Removes content past each org's retention, in one process at a time, for as long as the
/// process runs.
pub fn spawn_retention(background: &Background, db: Db, interval: Duration) {
    background.spawn_loop(async move {
        loop {
            tokio::time::sleep(interval).await;
            match portcullis_storage::logs::expire_content(&db).await {
                Ok(Some(removed)) if removed > 0 => {
                    tracing::info!(removed, "content past retention removed");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "content retention failed; will retry"),
            }
        }
    });
}
