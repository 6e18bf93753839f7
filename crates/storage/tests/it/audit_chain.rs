//! AU-3: audit entries cannot be changed by the runtime role, changes by a DBA are detected,
//! and concurrent appends keep one valid chain.

use portcullis_core::OrgId;
use portcullis_core::audit::{ChainBreak, KnownHead};
use portcullis_storage::{StorageError, audit};
use portcullis_testkit::TestDb;
use sqlx::Connection;

use crate::fixtures::{add_team, populated_org, set_org};

/// An org whose chain has `teams + 1` entries (org.created, then one per team).
async fn org_with_chain(test: &TestDb, teams: usize) -> OrgId {
    let org = portcullis_storage::orgs::create_org(
        &test.db,
        &crate::fixtures::actor(),
        &crate::fixtures::source(),
        "chained",
    )
    .await
    .unwrap()
    .org_id;
    for n in 0..teams {
        add_team(&test.db, org, &format!("team-{n}")).await;
    }
    org
}

/// Plays a DBA with the owner's rights who disables the append-only trigger to tamper.
async fn tamper(test: &TestDb, org: OrgId, statements: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(test.admin_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("set local role portcullis_owner")
        .execute(&mut *tx)
        .await
        .unwrap();
    set_org(&mut tx, org).await;
    sqlx::query("alter table audit_events disable trigger audit_events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in statements {
        let done = sqlx::query(statement).execute(&mut *tx).await.unwrap();
        assert!(
            done.rows_affected() > 0,
            "tampering changed nothing: {statement}"
        );
    }
    sqlx::query("alter table audit_events enable trigger audit_events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn chain_break(result: Result<impl std::fmt::Debug, StorageError>) -> ChainBreak {
    match result {
        Err(StorageError::AuditChain { cause, .. }) => cause,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test]
async fn au_3_the_runtime_role_cannot_update_delete_or_truncate_audit_events() {
    let test = TestDb::new().await.unwrap();
    let org = populated_org(&test, "org-a").await.org_id;
    for statement in [
        "update audit_events set action = 'nothing.happened'",
        "delete from audit_events",
        "truncate audit_events",
    ] {
        let mut tx = test.runtime.begin().await.unwrap();
        set_org(&mut tx, org).await;
        let error = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {error}");
    }
    let summary = audit::verify(&test.db, org, None).await.unwrap();
    // The fixture's changes: org, team, member, key, credential and prompt.
    assert_eq!(summary.events_checked, 6);
}

#[tokio::test]
async fn au_3_the_trigger_refuses_changes_even_to_the_owner_and_a_superuser() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 1).await;
    let mut superuser = sqlx::PgConnection::connect(test.admin_url()).await.unwrap();
    for (role, statement) in [
        ("portcullis_owner", "update audit_events set action = 'x'"),
        ("portcullis_owner", "delete from audit_events"),
        ("portcullis_owner", "truncate audit_events"),
        ("postgres", "update audit_events set action = 'x'"),
        ("postgres", "delete from audit_events"),
        ("postgres", "truncate audit_events"),
    ] {
        let mut tx = superuser.begin().await.unwrap();
        if role != "postgres" {
            sqlx::query(&format!("set local role {role}"))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        set_org(&mut tx, org).await;
        let error = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{role} {statement}: {error}"
        );
    }
}

#[tokio::test]
async fn au_3_verification_detects_an_edited_entry() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 3).await;
    audit::verify(&test.db, org, None).await.unwrap();
    tamper(
        &test,
        org,
        &["update audit_events set details = '{\"name\": \"benign\"}' where seq = 2"],
    )
    .await;
    assert_eq!(
        chain_break(audit::verify(&test.db, org, None).await),
        ChainBreak::Edited { seq: 2 }
    );
}

#[tokio::test]
async fn au_3_verification_detects_a_removed_entry() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 3).await;
    tamper(&test, org, &["delete from audit_events where seq = 2"]).await;
    assert_eq!(
        chain_break(audit::verify(&test.db, org, None).await),
        ChainBreak::Gap {
            expected: 2,
            found: 3
        }
    );
}

#[tokio::test]
async fn au_3_verification_detects_a_removed_entry_even_with_the_numbering_repaired() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 3).await;
    tamper(
        &test,
        org,
        &[
            "delete from audit_events where seq = 2",
            "update audit_events set seq = seq - 1 where seq > 2",
        ],
    )
    .await;
    let cause = chain_break(audit::verify(&test.db, org, None).await);
    assert!(
        matches!(
            cause,
            ChainBreak::BrokenLink { seq: 2 } | ChainBreak::Edited { seq: 2 }
        ),
        "{cause:?}"
    );
}

#[tokio::test]
async fn au_3_verification_detects_reordered_entries() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 3).await;
    tamper(
        &test,
        org,
        &[
            "update audit_events set seq = seq + 100 where seq in (2, 3)",
            "update audit_events set seq = case seq when 102 then 3 else 2 end where seq > 100",
        ],
    )
    .await;
    let cause = chain_break(audit::verify(&test.db, org, None).await);
    assert!(
        matches!(
            cause,
            ChainBreak::BrokenLink { seq: 2 } | ChainBreak::Edited { seq: 2 }
        ),
        "{cause:?}"
    );
}

#[tokio::test]
async fn au_3_a_removed_tail_is_detected_against_the_recorded_head() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 4).await;
    let summary = audit::verify(&test.db, org, None).await.unwrap();
    let head: KnownHead = summary.head.unwrap();
    assert_eq!(head.seq, 5);

    tamper(&test, org, &["delete from audit_events where seq >= 4"]).await;
    // Without the recorded head a cut tail looks like a shorter, valid chain...
    assert_eq!(
        audit::verify(&test.db, org, None)
            .await
            .unwrap()
            .events_checked,
        3
    );
    // ...with it, the cut is found.
    assert_eq!(
        chain_break(audit::verify(&test.db, org, Some(head)).await),
        ChainBreak::HeadMissing {
            seq: 5,
            expected: head.hash
        }
    );
}

#[tokio::test]
async fn au_3_concurrent_appends_in_one_org_keep_a_valid_chain() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 0).await;
    let writers = 40;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..writers {
        let db = test.db.clone();
        tasks.spawn(async move { add_team(&db, org, &format!("team-{n}")).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let summary = audit::verify(&test.db, org, None).await.unwrap();
    assert_eq!(summary.events_checked, writers + 1);
    assert_eq!(summary.head.unwrap().seq, (writers + 1) as i64);
}

#[tokio::test]
async fn au_3_a_failed_change_leaves_no_audit_entry_and_an_entry_never_outlives_its_change() {
    let test = TestDb::new().await.unwrap();
    let org = org_with_chain(&test, 1).await;
    // A duplicate name fails inside the write: neither the team nor an entry may land.
    let team_id = portcullis_core::TeamId::new();
    let mut tx = test
        .db
        .begin_write(
            org,
            &crate::fixtures::actor(),
            &crate::fixtures::source(),
            portcullis_storage::AuditedChange::new("team.created", "team", team_id),
        )
        .await
        .unwrap();
    let duplicate = portcullis_storage::teams::NewTeam {
        name: "team-0".to_owned(),
        budget_micro_usd: None,
        budget_period: None,
    };
    assert!(
        portcullis_storage::teams::create_team(&mut tx, team_id, &duplicate)
            .await
            .is_err()
    );
    assert!(
        tx.commit().await.is_err(),
        "a failed transaction must not commit"
    );
    // A write dropped without commit leaves nothing either.
    let dropped = test
        .db
        .begin_write(
            org,
            &crate::fixtures::actor(),
            &crate::fixtures::source(),
            portcullis_storage::AuditedChange::new("team.created", "team", team_id),
        )
        .await
        .unwrap();
    drop(dropped);
    assert_eq!(
        audit::verify(&test.db, org, None)
            .await
            .unwrap()
            .events_checked,
        2
    );
}
