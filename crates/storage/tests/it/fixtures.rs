//! Two orgs with a row in every tenant table, for isolation tests.

use portcullis_core::audit::{Actor, Source};
use portcullis_core::crypto::Keyring;
use portcullis_core::money::Period;
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{KeyId, OrgId, Role, TeamId, UserId};
use portcullis_storage::credentials::{self, NewCredential};
use portcullis_storage::keys::{self, NewKey};
use portcullis_storage::logs::{self, NewContent, NewLog};
use portcullis_storage::members;
use portcullis_storage::model_routes::{self, ModelRoute};
use portcullis_storage::orgs::{self, Org};
use portcullis_storage::spend::{self, Charge, Counter, Scope, Settlement, Take, Want};
use portcullis_storage::teams::{self, NewTeam};
use portcullis_storage::{AuditedChange, Db};
use portcullis_testkit::TestDb;
use sqlx::PgPool;

pub fn actor() -> Actor {
    Actor::system("storage-tests")
}

pub fn source() -> Source {
    Source {
        client_ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("storage-tests".to_owned()),
        request_id: Some("req-test".to_owned()),
    }
}

/// Creates an org with a row in every tenant table: a team, a member (a user row inserted as
/// the runtime role), an invitation and a virtual key.
pub async fn populated_org(test: &TestDb, name: &str) -> Org {
    let org = orgs::create_org(&test.db, &actor(), &source(), name)
        .await
        .unwrap();
    let team = add_team(&test.db, org.org_id, &format!("{name}-team")).await;
    add_member(&test.runtime, org.org_id, &format!("{name}@example.com")).await;

    let invited = uuid::Uuid::now_v7();
    let mut tx = test
        .db
        .begin_write(
            org.org_id,
            &actor(),
            &source(),
            AuditedChange::new("member.invited", "invite", invited),
        )
        .await
        .unwrap();
    let token = Token::generate(TokenKind::Invite).unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let email = format!("{name}-invited@example.com");
    let token_hash = token.hash();
    let invitation = members::NewInvitation {
        invite_id: invited,
        email: &email,
        role: Role::Viewer,
        invited_by: None,
        token: &token_hash,
        expires_at: expires,
    };
    members::invite(&mut tx, invitation).await.unwrap();
    tx.commit().await.unwrap();

    let key_id = KeyId::new();
    let mut tx = test
        .db
        .begin_write(
            org.org_id,
            &actor(),
            &source(),
            AuditedChange::new("key.created", "key", key_id),
        )
        .await
        .unwrap();
    let key = Token::generate(TokenKind::Virtual).unwrap();
    let new_key = NewKey {
        name: format!("{name}-key"),
        team_id: Some(team),
        ..NewKey::default()
    };
    keys::create(&mut tx, key_id, &new_key, &key.hash(), &key.last4())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let credential_id = uuid::Uuid::now_v7();
    let mut tx = test
        .db
        .begin_write(
            org.org_id,
            &actor(),
            &source(),
            AuditedChange::new("credential.added", "credential", credential_id),
        )
        .await
        .unwrap();
    let credential = NewCredential {
        name: "upstream",
        provider: portcullis_core::provider::ProviderKind::Mock,
        base_url: None,
        api_key: PROVIDER_KEY,
    };
    credentials::create(&mut tx, &keyring(), credential_id, &credential)
        .await
        .unwrap();
    let route = ModelRoute {
        alias: "chat".to_owned(),
        targets: serde_json::json!([{"credential_id": credential_id, "model": "mock-1", "weight": 1}]),
        fallback: Vec::new(),
        timeout_ms: None,
        input_micro_usd_per_mtok: None,
        output_micro_usd_per_mtok: None,
        cached_input_micro_usd_per_mtok: None,
        max_output_tokens: None,
        unpriced: false,
        max_choices: None,
        file_part_tokens: None,
        stream_idle_ms: None,
        stream_max_ms: None,
        updated_at: chrono::Utc::now(),
    };
    model_routes::put(&mut tx, &route).await.unwrap();
    tx.commit().await.unwrap();
    settle_one(&test.db, org.org_id, key_id, *team.as_uuid(), 1_234).await;
    log_one(
        &test.db,
        org.org_id,
        key_id,
        "fixture-user",
        chrono::Utc::now(),
    )
    .await;
    add_prompt(&test.db, org.org_id).await;
    org
}

/// A prompt with one version and a `production` label.
pub async fn add_prompt(db: &Db, org: OrgId) {
    let prompt_id = uuid::Uuid::now_v7();
    let mut tx = db
        .begin_write(
            org,
            &actor(),
            &source(),
            AuditedChange::new("prompt.created", "prompt", prompt_id),
        )
        .await
        .unwrap();
    let messages = serde_json::json!([{"role": "system", "content": "Be brief."}]);
    portcullis_storage::prompts::create(&mut tx, prompt_id, "fixture", &messages)
        .await
        .unwrap();
    portcullis_storage::prompts::move_label(&mut tx, prompt_id, "production", 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// One request log with its content, for `end_user`, as the log writer records it.
pub async fn log_one(
    db: &Db,
    org: OrgId,
    key: KeyId,
    end_user: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> uuid::Uuid {
    let log_id = uuid::Uuid::now_v7();
    let log = NewLog {
        log_id,
        org_id: org,
        created_at: at,
        request_id: format!("req-{log_id}"),
        key_id: key,
        team_id: None,
        end_user: Some(end_user.to_owned()),
        end_user_digest: Some(logs::end_user_digest(org, end_user)),
        endpoint: "chat",
        model: "chat".to_owned(),
        target: Some("upstream:mock-1".to_owned()),
        stream: false,
        status: 200,
        error_code: None,
        input_tokens: Some(10),
        output_tokens: Some(5),
        cost_micro_usd: Some(15),
        latency_ms: 12,
        guardrail: "off",
        pii_types: Vec::new(),
        logging_level: "content",
        redacted: false,
        content: Some(NewContent {
            request: r#"{"messages":[{"role":"user","content":"hello"}]}"#.to_owned(),
            response: Some("hi there".to_owned()),
            truncated: false,
        }),
    };
    assert_eq!(
        logs::write(db, std::slice::from_ref(&log)).await.unwrap(),
        1
    );
    // A retried batch inserts nothing twice.
    assert_eq!(logs::write(db, &[log]).await.unwrap(), 0);
    log_id
}

/// The team budget's counter of this month.
pub fn team_counter(team: uuid::Uuid) -> Counter {
    Counter {
        scope: Scope::Team,
        scope_id: team,
        period_start: Period::Monthly.start(chrono::Utc::now()),
    }
}

/// One request reserved from a lease on the team budget and settled: a counter, a lease, a
/// ledger row and a day of usage.
pub async fn settle_one(
    db: &Db,
    org: OrgId,
    key: KeyId,
    team: uuid::Uuid,
    cost: i64,
) -> Settlement {
    let holder = uuid::Uuid::now_v7();
    let want = Want {
        counter: team_counter(team),
        lease_id: None,
        needed: cost,
        wanted: cost * 2,
    };
    let Take::Granted(grants) = spend::take(db, org, holder, 60_000, &[want]).await.unwrap() else {
        panic!("the fixture's team budget refused {cost}");
    };
    let settlement = Settlement {
        entry_id: uuid::Uuid::now_v7(),
        org_id: org,
        occurred_at: chrono::Utc::now(),
        request_id: "req-fixture".to_owned(),
        team_id: Some(team),
        key_id: key,
        model: "chat".to_owned(),
        target: "upstream:mock-1".to_owned(),
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_micro_usd: cost,
        priced: true,
        estimated: false,
        charges: vec![Charge {
            counter: want.counter,
            lease_id: Some(grants[0].lease_id),
            amount: cost,
        }],
    };
    spend::settle(db, std::slice::from_ref(&settlement), &[])
        .await
        .unwrap();
    settlement
}

/// The provider key every fixture org stores (sealed).
pub const PROVIDER_KEY: &str = "sk-fixture-provider-key-0123456789";

/// The key-encryption keyring of the fixtures: fixed, so that every test opens what any sealed.
pub fn keyring() -> Keyring {
    Keyring::new(1, vec![(1, vec![7; 32])]).unwrap()
}

pub async fn add_team(db: &Db, org: OrgId, name: &str) -> TeamId {
    let team_id = TeamId::new();
    let mut tx = db
        .begin_write(
            org,
            &actor(),
            &source(),
            AuditedChange::new("team.created", "team", team_id),
        )
        .await
        .unwrap();
    let team = NewTeam {
        name: name.to_owned(),
        budget_micro_usd: Some(1_000_000),
        budget_period: Some("monthly".to_owned()),
    };
    teams::create_team(&mut tx, team_id, &team).await.unwrap();
    tx.commit().await.unwrap();
    team_id
}

/// Raw SQL as the runtime role, inside the org's context: membership management arrives with
/// the access-control plane, and these tests only need the rows.
pub async fn add_member(runtime: &PgPool, org: OrgId, email: &str) -> UserId {
    let user = UserId::new();
    let mut tx = runtime.begin().await.unwrap();
    set_org(&mut tx, org).await;
    sqlx::query("insert into users (user_id, email) values ($1, $2)")
        .bind(user.as_uuid())
        .bind(email)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("insert into memberships (org_id, user_id, role) values ($1, $2, 'admin')")
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    user
}

pub async fn set_org(conn: &mut sqlx::PgConnection, org: OrgId) {
    sqlx::query("select set_config('portcullis.org_id', $1, true)")
        .bind(org.to_string())
        .execute(conn)
        .await
        .unwrap();
}

/// Every table of the schema with an `org_id` column, from the catalog.
pub async fn tenant_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_class c
         join pg_attribute a on a.attrelid = c.oid and a.attname = 'org_id' and not a.attisdropped
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}
