//! RM-3, RM-5 and RM-4 in PostgreSQL, as the runtime role: content retention removes only
//! content past the org's retention, and a data-subject deletion only that subject's logs and
//! content in that org; metadata, daily usage and the ledger stay.

use chrono::{Duration, Utc};
use portcullis_core::{KeyId, OrgId};
use portcullis_storage::audit::{self, EventFilter};
use portcullis_storage::logs::{self, LogFilter};
use portcullis_storage::orgs::{self, SettingsChange};
use portcullis_storage::spend::{self, Grouping};
use portcullis_storage::{AuditedChange, Db};
use portcullis_testkit::TestDb;

use crate::fixtures::{actor, log_one, populated_org, set_org, source};

async fn key_of(test: &TestDb, org: OrgId) -> KeyId {
    let mut tx = test.runtime.begin().await.unwrap();
    set_org(&mut tx, org).await;
    let key: uuid::Uuid = sqlx::query_scalar("select key_id from virtual_keys limit 1")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    KeyId::from_uuid(key)
}

/// (request logs, contents) of the org, counted as the runtime role.
async fn counts(test: &TestDb, org: OrgId) -> (i64, i64) {
    let mut tx = test.runtime.begin().await.unwrap();
    set_org(&mut tx, org).await;
    sqlx::query_as(
        "select (select count(*) from request_logs), (select count(*) from request_contents)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap()
}

/// What an auditor or the finance team reads: daily usage and the ledger.
async fn books(db: &Db, org: OrgId) -> (Vec<spend::UsageRow>, usize) {
    let mut tx = db.begin_tenant(org).await.unwrap();
    let today = Utc::now().date_naive();
    let all = Grouping {
        day: true,
        model: true,
        key: true,
        team: true,
    };
    let usage = spend::usage(&mut tx, today - Duration::days(400), today, all)
        .await
        .unwrap();
    let ledger = spend::ledger(
        &mut tx,
        Utc::now() - Duration::days(400),
        Utc::now() + Duration::hours(1),
        None,
        1000,
    )
    .await
    .unwrap();
    (usage, ledger.len())
}

#[tokio::test]
async fn rm_3_content_past_retention_is_removed_and_metadata_and_aggregates_stay() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "a").await.org_id;
    let b = populated_org(&test, "b").await.org_id;
    let (key_a, key_b) = (key_of(&test, a).await, key_of(&test, b).await);
    // Org a keeps content 30 days (the default); org b 90.
    let mut tx = test
        .db
        .begin_write(
            b,
            &actor(),
            &source(),
            AuditedChange::new("settings.changed", "org", b),
        )
        .await
        .unwrap();
    let longer = SettingsChange {
        content_retention_days: Some(90),
        ..SettingsChange::default()
    };
    orgs::update_settings(&mut tx, &longer).await.unwrap();
    tx.commit().await.unwrap();
    let forty_days_ago = Utc::now() - Duration::days(40);
    let old_a = log_one(&test.db, a, key_a, "carol", forty_days_ago).await;
    log_one(&test.db, b, key_b, "carol", forty_days_ago).await;
    let books_before = (books(&test.db, a).await, books(&test.db, b).await);
    assert_eq!(counts(&test, a).await, (2, 2));

    let removed = logs::expire_content(&test.db).await.unwrap();
    assert_eq!(
        removed,
        Some(1),
        "only org a's old content is past its retention"
    );

    assert_eq!(
        counts(&test, a).await,
        (2, 1),
        "metadata stays; old content goes"
    );
    assert_eq!(counts(&test, b).await, (2, 2), "org b keeps 90 days");
    let mut tx = test.db.begin_tenant(a).await.unwrap();
    let old = logs::list(
        &mut tx,
        &LogFilter {
            limit: 10,
            ..LogFilter::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .find(|l| l.log_id == old_a)
    .unwrap();
    assert_eq!((old.input_tokens, old.cost_micro_usd), (Some(10), Some(15)));
    let (_, content) = logs::get(&mut tx, &old.request_id).await.unwrap().unwrap();
    assert_eq!(content, None);
    tx.commit().await.unwrap();
    assert_eq!(
        (books(&test.db, a).await, books(&test.db, b).await),
        books_before,
        "daily usage and the ledger are untouched (RM-4)"
    );
    // Nothing more is past retention: a second run removes nothing.
    assert_eq!(logs::expire_content(&test.db).await.unwrap(), Some(0));
}

#[tokio::test]
async fn rm_3_the_runtime_role_deletes_only_its_own_orgs_content() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "a").await.org_id;
    let b = populated_org(&test, "b").await.org_id;
    let mut tx = test.runtime.begin().await.unwrap();
    set_org(&mut tx, a).await;
    let deleted = sqlx::query("delete from request_contents")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 1, "org a's own row only");
    tx.rollback().await.unwrap();
    assert_eq!(counts(&test, b).await, (1, 1));
}

#[tokio::test]
async fn rm_5_deleting_a_subject_removes_only_their_logs_and_content_and_is_audited() {
    let test = TestDb::new().await.unwrap();
    let a = populated_org(&test, "a").await.org_id;
    let b = populated_org(&test, "b").await.org_id;
    let (key_a, key_b) = (key_of(&test, a).await, key_of(&test, b).await);
    for _ in 0..2 {
        log_one(&test.db, a, key_a, "alice@example.com", Utc::now()).await;
    }
    log_one(&test.db, a, key_a, "bob", Utc::now()).await;
    log_one(&test.db, b, key_b, "alice@example.com", Utc::now()).await;
    let books_before = books(&test.db, a).await;
    assert_eq!(counts(&test, a).await, (4, 4));

    let digest = logs::end_user_digest(a, "alice@example.com");
    let mut tx = test
        .db
        .begin_write(
            a,
            &actor(),
            &source(),
            AuditedChange::new("data_subject.deleted", "end_user", hex::encode(&digest)),
        )
        .await
        .unwrap();
    let deleted = logs::delete_subject(&mut tx, &digest).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((deleted.request_logs, deleted.contents), (2, 2));

    assert_eq!(
        counts(&test, a).await,
        (2, 2),
        "bob and the fixture's user stay"
    );
    assert_eq!(counts(&test, b).await, (2, 2), "alice in another org stays");
    assert_eq!(
        books(&test.db, a).await,
        books_before,
        "the ledger and usage stay (RM-4)"
    );
    let mut tx = test.db.begin_tenant(a).await.unwrap();
    let filter = LogFilter {
        end_user_digest: Some(digest.clone()),
        limit: 10,
        ..LogFilter::default()
    };
    assert!(logs::list(&mut tx, &filter).await.unwrap().is_empty());
    let events = audit::list(
        &mut tx,
        &EventFilter {
            after_seq: 0,
            limit: 100,
            action: Some("data_subject.deleted".to_owned()),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(events.len(), 1);
    let details = events[0].record.details.to_string();
    assert!(details.contains(&hex::encode(&digest)), "{details}");
    assert!(details.contains("\"request_logs\":2"), "{details}");
    assert!(
        !details.contains("alice"),
        "the audit never holds the id: {details}"
    );
}
