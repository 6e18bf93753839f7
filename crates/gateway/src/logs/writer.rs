//! The request-log writer: a bounded queue drained by one task that redacts (where the org
//! redacts PII) and writes batches, one transaction each. Request logs are evidence, not
//! money: when PostgreSQL is slow or down, the batch in hand is retried with backoff while the
//! queue fills, and past its capacity new entries are dropped and counted
//! (`portcullis_request_logs_dropped_total`), never blocking a request and never silently.
//! The ledger has its own, unbounded writer (`spend/writer.rs`) and loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_policy::pii::{Detector, Placeholders, redact, redact_json};
use portcullis_storage::logs::{self as store, NewContent, NewLog};
use portcullis_storage::{Db, StorageError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Draft, End, LogOptions, Response};
use crate::background::Background;

/// The writer's counters, exported on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct LogMetrics {
    pub queued: Gauge,
    pub written: Counter,
    pub dropped: Counter,
    pub failed_batches: Counter,
}

impl LogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "portcullis_request_log_queue_depth",
            "Request logs waiting for the writer",
            self.queued.clone(),
        );
        registry.register(
            "portcullis_request_logs_written",
            "Request logs written to PostgreSQL",
            self.written.clone(),
        );
        registry.register(
            "portcullis_request_logs_dropped",
            "Request logs dropped because the writer's queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "portcullis_request_log_failed_batches",
            "Request-log batches that PostgreSQL refused or could not take (retried)",
            self.failed_batches.clone(),
        );
    }
}

#[derive(Debug)]
enum Message {
    Entry(Box<(Draft, End)>),
    /// Answers once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle every request logs through; cheap to share.
#[derive(Debug, Clone)]
pub struct RequestLogs {
    tx: mpsc::Sender<Message>,
    metrics: LogMetrics,
    /// Bytes of content waiting in the queue: past `MAX_QUEUED_BYTES` entries are dropped (and
    /// counted), whatever the queue's length.
    queued_bytes: Arc<AtomicUsize>,
}

/// What the queue may hold in content, in all.
const MAX_QUEUED_BYTES: usize = 64 << 20;
/// A batch stops growing at this much content.
const MAX_BATCH_BYTES: usize = 32 << 20;

impl RequestLogs {
    /// Starts the writer task: call within a Tokio runtime.
    pub fn start(
        db: Db,
        detector: Arc<Detector>,
        options: LogOptions,
        background: &Background,
    ) -> Self {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let metrics = LogMetrics::default();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        background.spawn(run(
            db,
            detector,
            options,
            rx,
            metrics.clone(),
            Arc::clone(&queued_bytes),
            background.stopping(),
        ));
        Self {
            tx,
            metrics,
            queued_bytes,
        }
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    pub(super) fn record(&self, draft: Draft, end: End) {
        let bytes = entry_bytes(&draft, &end);
        if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_QUEUED_BYTES {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.metrics.dropped.inc();
            return;
        }
        match self.tx.try_send(Message::Entry(Box::new((draft, end)))) {
            Ok(()) => {
                self.metrics.queued.inc();
            }
            Err(_) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.metrics.dropped.inc();
            }
        }
    }

    /// Waits until everything queued so far is written (or `deadline` passes).
    pub async fn flush(&self, deadline: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(deadline, self.tx.send(Message::Flush(done))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(deadline, wait).await, Ok(Ok(())))
    }
}

fn entry_bytes(draft: &Draft, end: &End) -> usize {
    let response = match &end.response {
        Some(Response::Body(bytes)) => bytes.len(),
        Some(Response::Text(text)) => text.len(),
        None => 0,
    };
    draft.queued_bytes() + response
}

async fn run(
    db: Db,
    detector: Arc<Detector>,
    options: LogOptions,
    mut rx: mpsc::Receiver<Message>,
    metrics: LogMetrics,
    queued_bytes: Arc<AtomicUsize>,
    stopping: CancellationToken,
) {
    // Once shutdown begins the queue takes nothing more; what it holds is still written.
    while let Some(first) = crate::background::next_or_drain(&mut rx, &stopping).await {
        let mut batch_bytes = 0;
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        // Entries that arrive within the linger share one transaction: at low rates a
        // transaction per request would cost PostgreSQL and this process more than the rest
        // of the request path. A flush ends the wait.
        let deadline = tokio::time::Instant::now() + options.linger;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Entry(entry) => {
                    metrics.queued.dec();
                    let (draft, end) = *entry;
                    let bytes = entry_bytes(&draft, &end);
                    queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    batch_bytes += bytes;
                    batch.push((draft, end));
                }
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() >= options.batch_size
                || batch_bytes >= MAX_BATCH_BYTES
                || !flushes.is_empty()
            {
                None
            } else {
                match rx.try_recv() {
                    Ok(message) => Some(message),
                    Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                }
            };
        }
        // Redaction is CPU work on up to megabytes: off the async workers.
        let (detector, options) = (Arc::clone(&detector), options.clone());
        let count = batch.len();
        let rows = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(draft, end)| to_row(&detector, &options, draft, end))
                .collect::<Vec<NewLog>>()
        })
        .await;
        match rows {
            Ok(rows) => write(&db, rows, &metrics).await,
            Err(error) => {
                // Only a panic in redaction gets here: those rows are lost, and counted.
                metrics.dropped.inc_by(u64::try_from(count).unwrap_or(0));
                tracing::error!(%error, "request logs could not be prepared");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes a batch: retried with backoff while PostgreSQL is unreachable; refused for what it
/// holds (a row PostgreSQL rejects), it is written row by row and a rejected row is dropped
/// and counted, so that one bad row never holds up the others.
async fn write(db: &Db, mut batch: Vec<NewLog>, metrics: &LogMetrics) {
    let mut backoff = Duration::from_millis(50);
    while !batch.is_empty() {
        match store::write(db, &batch).await {
            Ok(_) => {
                metrics.written.inc_by(batch.len() as u64);
                return;
            }
            Err(StorageError::Unavailable(error)) => {
                metrics.failed_batches.inc();
                tracing::warn!(%error, pending = batch.len(), "cannot write request logs; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) if batch.len() == 1 => {
                metrics.failed_batches.inc();
                metrics.dropped.inc();
                tracing::error!(%error, "a request log was refused by the database and dropped");
                return;
            }
            Err(_) => {
                metrics.failed_batches.inc();
                let rows = std::mem::take(&mut batch);
                let mut rows = rows.into_iter();
                while let Some(row) = rows.next() {
                    match store::write(db, std::slice::from_ref(&row)).await {
                        Ok(_) => {
                            metrics.written.inc();
                        }
                        Err(StorageError::Unavailable(_)) => {
                            // Unreachable again: back to retrying what is left, whole.
                            batch.push(row);
                            batch.extend(rows);
                            break;
                        }
                        Err(error) => {
                            metrics.dropped.inc();
                            tracing::error!(%error, "a request log was refused by the database and dropped");
                        }
                    }
                }
            }
        }
    }
}

/// PostgreSQL's text holds no NUL character: a prompt may (RM-1 keeps its row all the same).
fn pg_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    true
}

fn redact_text(detector: &Detector, text: &str, names: &mut Placeholders) -> String {
    redact(text, &detector.find(text), names)
}

/// The row to write. Redaction happens here, before anything reaches PostgreSQL, on values
/// rather than on serialised JSON (where an escape could glue a number to a letter).
fn to_row(detector: &Detector, options: &LogOptions, draft: Draft, end: End) -> NewLog {
    let org = draft.org_id;
    let level = if draft.logs_content() {
        "content"
    } else {
        "metadata"
    };
    let redacting = draft.redacting;
    let mut names = Placeholders::default();
    let end_user_digest = draft
        .end_user
        .as_deref()
        .map(|user| store::end_user_digest(org, user));
    let end_user = match (&draft.end_user, redacting) {
        (Some(user), true) => Some(redact_text(detector, user, &mut names)),
        (user, _) => user.clone(),
    };
    // The alias is the client's text too: an unknown one is logged as sent.
    let model = pg_text(if redacting {
        redact_text(detector, &draft.model, &mut names)
    } else {
        draft.model
    });
    let end_user = end_user.map(pg_text);
    let content = draft.request.map(|request| {
        let mut request = Value::Object(request);
        let response = end.response.map(|response| match response {
            Response::Body(bytes) => serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
            Response::Text(text) => Value::String(text),
        });
        let mut response = response;
        if redacting {
            redact_json(detector, &mut request, &mut names);
            if let Some(response) = response.as_mut() {
                redact_json(detector, response, &mut names);
            }
        }
        // JSON escapes a NUL; the text of a stream does not.
        let mut request = request.to_string();
        let mut response = response.map(|r| match r {
            Value::String(text) => pg_text(text),
            other => other.to_string(),
        });
        let truncated = cut(&mut request, options.max_content_bytes)
            | response
                .as_mut()
                .is_some_and(|r| cut(r, options.max_content_bytes));
        NewContent {
            request,
            response,
            truncated,
        }
    });
    let latency = draft.started.elapsed().as_millis();
    NewLog {
        log_id: draft.log_id,
        org_id: org,
        created_at: draft.created_at,
        // A client's own `x-request-id` could be shaped like a card or an SSN.
        request_id: pg_text(if redacting {
            redact_text(detector, &draft.request_id, &mut names)
        } else {
            draft.request_id
        }),
        key_id: draft.key_id,
        team_id: draft.team_id,
        end_user,
        end_user_digest,
        endpoint: draft.endpoint.as_str(),
        model,
        target: end.target,
        stream: draft.stream,
        status: i16::try_from(end.status).unwrap_or(i16::MAX),
        error_code: end.error_code.map(str::to_owned),
        input_tokens: end.usage.map(|u| u.input_tokens),
        output_tokens: end.usage.map(|u| u.output_tokens),
        cost_micro_usd: end.cost_micro_usd,
        latency_ms: i32::try_from(latency).unwrap_or(i32::MAX),
        guardrail: draft.guardrail.action,
        pii_types: draft.guardrail.kinds,
        logging_level: level,
        redacted: redacting,
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_characters_whole() {
        let mut text = "ab€cd".to_owned();
        assert!(cut(&mut text, 4));
        assert_eq!(text, "ab");
        let mut short = "abc".to_owned();
        assert!(!cut(&mut short, 4));
    }

    #[test]
    fn redaction_reaches_every_string_of_a_value() {
        let detector = Detector::new().unwrap();
        let mut value = serde_json::json!({"messages": [{"role": "user",
            "content": [{"type": "text", "text": "Card:\n4111 1111 1111 1111"}]}],
            "user": "ana@example.com"});
        redact_json(&detector, &mut value, &mut Placeholders::default());
        let text = value.to_string();
        assert!(!text.contains("4111"), "{text}");
        assert!(!text.contains("ana@example.com"), "{text}");
        assert!(text.contains("[PAYMENT_CARD_1]"), "{text}");
    }
}
