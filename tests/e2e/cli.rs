//! `portcullis audit verify` from the command line (AU-3).

use portcullis_core::audit::Actor;
use portcullis_core::audit::Source;
use portcullis_storage::orgs;
use portcullis_testkit::TestDb;
use sqlx::Connection;

use crate::support::{command, run};

#[tokio::test]
async fn au_3_audit_verify_reports_each_org_and_fails_on_tampering() {
    let test = TestDb::new().await.unwrap();
    let actor = Actor::system("e2e");
    let a = orgs::create_org(&test.db, &actor, &Source::default(), "a")
        .await
        .unwrap();
    orgs::create_org(&test.db, &actor, &Source::default(), "b")
        .await
        .unwrap();

    let output = run(command(&test).args(["audit", "verify"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("2 org(s) checked, 0 broken"), "{stdout}");

    let output =
        run(command(&test).args(["audit", "verify", "--json", "--org", &a.org_id.to_string()]));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["ok"], true);
    let head = line["head"].as_str().unwrap().to_owned();
    assert!(head.starts_with("1:"), "{head}");

    // A DBA edits org A's only entry: verify names it and exits non-zero.
    let mut dba = sqlx::PgConnection::connect(test.admin_url()).await.unwrap();
    for statement in [
        "alter table audit_events disable trigger audit_events_append_only",
        "update audit_events set actor_id = 'someone-else' where seq = 1 and org_id = $1",
        "alter table audit_events enable trigger audit_events_append_only",
    ] {
        sqlx::query(statement)
            .bind(a.org_id.as_uuid())
            .execute(&mut dba)
            .await
            .unwrap();
    }
    let output = run(command(&test).args(["audit", "verify"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("BROKEN  org {}: entry 1", a.org_id)),
        "{stdout}"
    );
    assert!(stdout.contains("1 broken"), "{stdout}");

    // The removed entry is caught against the head recorded earlier.
    for statement in [
        "alter table audit_events disable trigger audit_events_append_only",
        "delete from audit_events where org_id = $1",
        "alter table audit_events enable trigger audit_events_append_only",
    ] {
        sqlx::query(statement)
            .bind(a.org_id.as_uuid())
            .execute(&mut dba)
            .await
            .unwrap();
    }
    let org = a.org_id.to_string();
    let output = run(command(&test).args(["audit", "verify", "--org", &org]));
    assert!(
        output.status.success(),
        "an emptied chain alone looks valid"
    );
    let output =
        run(command(&test).args(["audit", "verify", "--org", &org, "--expect-head", &head]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("is not in the chain"), "{stdout}");
}

#[tokio::test]
async fn en_2_kek_rotate_rewraps_under_the_new_key_from_the_command_line() {
    use portcullis_core::crypto::Keyring;
    use portcullis_storage::credentials::{self, NewCredential};

    let test = TestDb::new().await.unwrap();
    let org = orgs::create_org(&test.db, &Actor::system("e2e"), &Source::default(), "a")
        .await
        .unwrap();
    // The key the harness gives every command, as version 1.
    let old = Keyring::new(1, vec![(1, b"0123456789abcdef0123456789abcdef".to_vec())]).unwrap();
    let id = uuid::Uuid::now_v7();
    let change = portcullis_storage::AuditedChange::new("credential.added", "credential", id);
    let mut tx = test
        .db
        .begin_write(
            org.org_id,
            &Actor::system("e2e"),
            &Source::default(),
            change,
        )
        .await
        .unwrap();
    let new = NewCredential {
        name: "up",
        provider: portcullis_core::provider::ProviderKind::Mock,
        base_url: None,
        api_key: "sk-rotate-me-123",
    };
    credentials::create(&mut tx, &old, id, &new).await.unwrap();
    tx.commit().await.unwrap();

    let new_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let output = run(command(&test)
        .env("PORTCULLIS_SECRETS__KEK", new_key)
        .env("PORTCULLIS_SECRETS__KEK_VERSION", "2")
        .env(
            "PORTCULLIS_SECRETS__PREVIOUS_KEKS",
            "1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .args(["kek", "rotate"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("re-wrapped 1 data key"), "{stderr}");
    assert!(!stderr.contains(new_key), "the key reached the output");

    let retired = Keyring::new(2, vec![(2, vec![2; 32])]).unwrap();
    let mut tx = test.db.begin_tenant(org.org_id).await.unwrap();
    assert_eq!(
        credentials::reveal(&mut tx, &retired, id).await.unwrap(),
        "sk-rotate-me-123"
    );
}

#[tokio::test]
async fn ac_5_master_key_rotation_revokes_the_old_key_and_is_audited() {
    let setup = crate::support::setup().await;
    let server = crate::support::Server::start(crate::support::command(&setup.test));
    let client = reqwest::Client::builder().build().unwrap();
    let orgs = |key: String| {
        let client = client.clone();
        let url = server.url("/admin/v1/orgs");
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(orgs(setup.master.clone()).await, 200);
    let rotated =
        crate::support::run(crate::support::command(&setup.test).args(["master-key", "rotate"]));
    let stdout = String::from_utf8_lossy(&rotated.stdout).to_string();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("master key: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new_key, setup.master);
    assert_eq!(
        orgs(setup.master.clone()).await,
        401,
        "the old master key still works"
    );
    assert_eq!(orgs(new_key.clone()).await, 200);
    let audit: serde_json::Value = client
        .get(server.url(&format!(
            "/admin/v1/orgs/{}/audit?action=master_key.rotated",
            setup.org
        )))
        .bearer_auth(&new_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["details"]["revoked"], 1);
    assert!(
        !audit.to_string().contains(&new_key),
        "the audit holds the key"
    );
    let verify =
        crate::support::run(crate::support::command(&setup.test).args(["audit", "verify"]));
    assert!(verify.status.success());
}
