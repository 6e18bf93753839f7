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
