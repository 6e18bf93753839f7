//! Request logs (RM-1, RM-2, RM-3): what each data-plane request did, recorded off the request
//! path by a bounded batching writer (`writer.rs`), with its content at logging level `content`
//! only, redacted before it is written when the org redacts PII; and the retention job that
//! removes content past each org's retention.
//!
//! A `Draft` is opened when the request's org is known and finished once, when the request
//! ends: at once for a refusal or a whole body, when a stream ends or its client leaves.

mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use portcullis_core::money::Usage;
use portcullis_policy::pii::Detector;
use portcullis_storage::Db;
use portcullis_storage::dataplane::LiveKey;
use serde_json::{Map, Value};
use uuid::Uuid;

pub use writer::{LogMetrics, RequestLogs};

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
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
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
    key: LiveKey,
    request_id: String,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    end_user: Option<String>,
    guardrail: GuardrailRecord,
    /// The request as it left for the provider; kept only at logging level `content`.
    request: Option<Map<String, Value>>,
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
            key: key.clone(),
            request_id: crate::request_id::current().unwrap_or_default(),
            endpoint,
            model: model.to_owned(),
            stream,
            end_user: request
                .get("user")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            guardrail: GuardrailRecord {
                action: "off",
                kinds: Vec::new(),
            },
            request: None,
        }
    }

    pub fn org(&self) -> portcullis_core::OrgId {
        self.key.org_id
    }

    pub fn logs_content(&self) -> bool {
        self.key.privacy.logging_level == "content"
    }

    pub fn guardrail(&mut self, record: GuardrailRecord) {
        self.guardrail = record;
    }

    /// Keeps the request as sent, if its content is logged.
    pub fn sent(&mut self, request: Map<String, Value>) {
        if self.logs_content() {
            self.request = Some(request);
        }
    }

    pub fn finish(self, logs: &RequestLogs, end: End) {
        logs.record(self, end);
    }
}

/// Removes content past each org's retention, in one process at a time, for as long as the
/// process runs.
pub fn spawn_retention(db: Db, interval: Duration) {
    tokio::spawn(async move {
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

/// The detector, shared by the guardrail and the writer.
pub type SharedDetector = Arc<Detector>;
