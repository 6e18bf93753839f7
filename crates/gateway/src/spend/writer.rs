//! The batching writer of settlements: off the request path, one transaction per batch of
//! whatever queued up within a few milliseconds. A failed batch is
//! kept and retried with backoff until PostgreSQL takes it, so a database restart loses no
//! settled request; settlements are idempotent by entry id, so a batch whose commit was in
//! doubt counts nothing twice. The queue is unbounded on purpose: a settlement is owed money
//! and is never dropped; its depth is exported so that a slow database is seen, not silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::OrgId;
use portcullis_storage::Db;
use portcullis_storage::spend::{self as store, Returned, Settlement};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::background::Background;

/// Most settlements in one transaction.
const MAX_BATCH: usize = 512;
/// How long the writer waits for more settlements to share a transaction.
const LINGER: Duration = Duration::from_millis(10);

#[derive(Debug)]
enum Message {
    Settle(Settlement),
    /// Gives back part of a lease, after every settlement queued before it.
    Return(Returned),
    /// Answers once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Counters of the writer, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub queued: u64,
    pub written: u64,
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    failed_batches: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Handle {
    tx: mpsc::UnboundedSender<Message>,
    counters: Arc<Counters>,
}

impl Handle {
    pub(super) fn spawn(db: Db, background: &Background) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        background.spawn(run(db, rx, Arc::clone(&counters), background.stopping()));
        Self { tx, counters }
    }

    fn send(&self, message: Message) {
        if self.tx.send(message).is_err() {
            // Only after the runtime shut the writer down; nothing can be written any more.
            tracing::error!("spend writer stopped: a settlement was not written");
        }
    }

    pub(super) fn settle(&self, settlement: Settlement) {
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.send(Message::Settle(settlement));
    }

    pub(super) fn return_lease(&self, org: OrgId, lease: Uuid, amount: i64) {
        if amount > 0 {
            self.send(Message::Return(Returned {
                org_id: org,
                lease_id: lease,
                amount,
            }));
        }
    }

    pub(super) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.send(Message::Flush(done));
        let _ = wait.await;
    }

    pub(super) fn stats(&self) -> WriterStats {
        let written = self.counters.written.load(Ordering::Relaxed);
        WriterStats {
            queued: self
                .counters
                .queued
                .load(Ordering::Relaxed)
                .saturating_sub(written),
            written,
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    db: Db,
    mut rx: mpsc::UnboundedReceiver<Message>,
    counters: Arc<Counters>,
    stopping: CancellationToken,
) {
    // Once shutdown begins the queue takes nothing more; what it holds is still written.
    while let Some(first) = crate::background::next_or_drain(&mut rx, &stopping).await {
        let mut settlements = Vec::new();
        let mut returned = Vec::new();
        let mut flushes = Vec::new();
        // Settlements within a few milliseconds share a transaction: at low rates one per
        // request would cost more than the request path itself. A flush ends the wait.
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Settle(s) => settlements.push(s),
                Message::Return(part) => returned.push(part),
                Message::Flush(done) => flushes.push(done),
            }
            next = if settlements.len() >= MAX_BATCH || !flushes.is_empty() {
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
        let mut backoff = Duration::from_millis(50);
        loop {
            match store::settle(&db, &settlements, &returned).await {
                Ok(_) => break,
                Err(error) => {
                    counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, pending = settlements.len(),
                        "cannot write settlements; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        counters
            .written
            .fetch_add(settlements.len() as u64, Ordering::Relaxed);
        for done in flushes {
            let _ = done.send(());
        }
    }
}
