//! The README's walkthrough as a newcomer runs it: bootstrap, log in with MFA, invite a
//! colleague, create a key and read the audit trail, over HTTP against the real binary.

use portcullis_core::mfa::Totp;
use portcullis_testkit::TestDb;
use serde_json::{Value, json};

use crate::support::{Server, command, run};

const PASSWORD: &str = "a long owner passphrase";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bootstrap_mfa_login_invite_key_and_audit_over_http() {
    let test = TestDb::new().await.unwrap();
    let boot = run(command(&test)
        .env("PORTCULLIS_BOOTSTRAP_PASSWORD", PASSWORD)
        .args([
            "bootstrap",
            "--org",
            "Acme",
            "--email",
            "owner@acme.example",
        ]));
    let stdout = String::from_utf8_lossy(&boot.stdout).to_string();
    assert!(
        boot.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&boot.stderr)
    );
    let master = stdout
        .lines()
        .find_map(|l| l.strip_prefix("master key: "))
        .unwrap()
        .trim()
        .to_owned();
    let org = stdout
        .lines()
        .find_map(|l| l.strip_prefix("org_id:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(master.starts_with("pcm_"));
    assert!(
        !String::from_utf8_lossy(&boot.stderr).contains(&master),
        "the master key reached the log"
    );

    let again = run(command(&test)
        .env("PORTCULLIS_BOOTSTRAP_PASSWORD", PASSWORD)
        .args(["bootstrap", "--org", "Other", "--email", "x@acme.example"]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already bootstrapped"));

    let server = Server::start(command(&test));
    let client = reqwest::Client::builder().build().unwrap();
    let url = |path: &str| server.url(path);

    let (status, login) = post(
        &client,
        url("/auth/v1/login"),
        None,
        json!({"email": "owner@acme.example", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let session = login["session_token"].as_str().unwrap().to_owned();

    let (status, enrolment) = post(
        &client,
        url("/auth/v1/mfa/enroll"),
        Some(&session),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{enrolment}");
    let totp =
        Totp::from_base32(enrolment["secret"].as_str().unwrap(), "owner@acme.example").unwrap();
    let (status, confirmed) = post(
        &client,
        url("/auth/v1/mfa/confirm"),
        Some(&session),
        json!({"code": totp.code_at(now())}),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");

    let (_, challenge) = post(
        &client,
        url("/auth/v1/login"),
        None,
        json!({"email": "owner@acme.example", "password": PASSWORD}),
    )
    .await;
    let (status, verified) = post(
        &client,
        url("/auth/v1/login/mfa"),
        None,
        json!({"mfa_challenge": challenge["mfa_challenge"], "code": totp.code_at(now() + 30)}),
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    let owner = verified["session_token"].as_str().unwrap().to_owned();

    let members = url(&format!("/admin/v1/orgs/{org}/members"));
    let (status, invited) = post(
        &client,
        members,
        Some(&owner),
        json!({"email": "dev@acme.example", "role": "member"}),
    )
    .await;
    assert_eq!(status, 201, "{invited}");
    let (status, _) = post(
        &client,
        url("/auth/v1/invites/accept"),
        None,
        json!({"invite_token": invited["invite_token"], "password": "the colleague's passphrase"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, colleague) = post(
        &client,
        url("/auth/v1/login"),
        None,
        json!({"email": "dev@acme.example", "password": "the colleague's passphrase"}),
    )
    .await;
    let colleague = colleague["session_token"].as_str().unwrap().to_owned();

    let (status, key) = post(
        &client,
        url(&format!("/admin/v1/orgs/{org}/keys")),
        Some(&colleague),
        json!({"name": "dev laptop"}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert!(key["secret"].as_str().unwrap().starts_with("pcv_"));

    let (status, trail) = get(&client, url(&format!("/admin/v1/orgs/{org}/audit")), &owner).await;
    assert_eq!(status, 200, "{trail}");
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "org.created",
        "master_key.created",
        "mfa.enrolled",
        "login.succeeded",
        "member.added",
        "invite.accepted",
        "key.created",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let (status, verify) = get(
        &client,
        url(&format!("/admin/v1/orgs/{org}/audit/verify")),
        &master,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(verify["ok"], true, "{verify}");
    // The colleague is a member: the audit trail is for admins.
    let (status, _) = get(
        &client,
        url(&format!("/admin/v1/orgs/{org}/audit")),
        &colleague,
    )
    .await;
    assert_eq!(status, 403);
    assert!(server.terminate().success());
}
