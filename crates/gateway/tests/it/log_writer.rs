//! The request-log writer when PostgreSQL is down (AV-4, with its counters AV-3): requests are never held up, the
//! queue stays bounded, and what cannot be kept is counted and exported on `/metrics`, never
//! silent; once the database answers, what was queued is written.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use portcullis_gateway::logs::{Draft, End, Endpoint, LogOptions, RequestLogs};
use portcullis_policy::pii::Detector;
use portcullis_storage::dataplane::LiveKey;
use portcullis_storage::{Db, DbOptions};
use serde_json::Map;

use crate::support::{Env, Who};

fn entry(key: &LiveKey) -> (Draft, End) {
    let draft = Draft::open(key, Endpoint::Chat, "chat", false, &Map::new());
    let end = End {
        status: 200,
        ..End::default()
    };
    (draft, end)
}

#[tokio::test]
async fn av_4_with_the_database_down_log_entries_past_the_queue_are_dropped_and_counted() {
    // Nothing listens on port 9: every write fails at once.
    let mut options = DbOptions::new("postgres://nobody@127.0.0.1:9/none".to_owned().into());
    options.acquire_timeout = Duration::from_millis(200);
    let down = Db::connect_lazy(&options).unwrap();
    let logs = RequestLogs::start(
        down,
        std::sync::Arc::new(Detector::new().unwrap()),
        LogOptions {
            queue_capacity: 4,
            batch_size: 2,
            ..LogOptions::default()
        },
        &portcullis_gateway::Background::default(),
    );
    let key = LiveKey {
        key_id: portcullis_core::KeyId::new(),
        org_id: portcullis_core::OrgId::new(),
        team_id: None,
        models: None,
        expires_at: None,
        limits: Default::default(),
        privacy: Default::default(),
    };
    for _ in 0..20 {
        let (draft, end) = entry(&key);
        draft.finish(&logs, end);
    }
    let metrics = logs.metrics();
    // The writer holds one batch (2) and the queue 4: the rest are dropped, each counted.
    assert!(
        metrics.dropped.get() >= 14,
        "dropped {}",
        metrics.dropped.get()
    );
    assert!(metrics.queued.get() <= 4);
    // A failing database is counted.
    crate::support::eventually(|| {
        let failed = metrics.failed_batches.get();
        async move { (failed >= 1).then_some(()) }
    })
    .await;
    assert_eq!(metrics.written.get(), 0);
    // A flush cannot finish while the database is down: it gives up at its deadline.
    assert!(!logs.flush(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn av_3_the_log_writer_counters_are_exported_on_metrics() {
    let env = Env::new().await;
    env.logged_request().await;
    let metrics = env.call(Method::GET, "/metrics", Who::Nobody, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    for name in [
        "portcullis_request_logs_written_total 1",
        "portcullis_request_logs_dropped_total 0",
        "portcullis_request_log_queue_depth 0",
        "portcullis_request_log_failed_batches_total 0",
        "portcullis_ledger_queue_depth 0",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
