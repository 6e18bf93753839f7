//! `portcullis demo`: a private PostgreSQL, migrations, a demo org and the gateway, in one
//! command on one machine. Trust authentication on loopback: never for production.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use portcullis_core::audit::{Actor, Source};
use portcullis_core::crypto::Keyring;
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{KeyId, OrgId};
use portcullis_storage::credentials::{self, NewCredential};
use portcullis_storage::keys::{self, NewKey};
use portcullis_storage::migrate::{self, MigrateOptions};
use portcullis_storage::model_routes::{self, ModelRoute};
use portcullis_storage::{AuditedChange, Db, DbOptions};
use secrecy::SecretString;

use crate::config::Config;
use crate::{bootstrap, serve};

const DATABASE: &str = "portcullis";

pub async fn run(config: Config, data_dir: &Path, pg_port: u16) -> anyhow::Result<()> {
    eprintln!(
        "demo: starting a private PostgreSQL in {} (port {pg_port})",
        data_dir.display()
    );
    let dir = data_dir.to_path_buf();
    let server_url = tokio::task::spawn_blocking(move || portcullis_devdb::start(&dir, pg_port))
        .await?
        .context("starting the demo PostgreSQL")?;
    // Whatever happens from here on, a failed migration included, the private PostgreSQL
    // stops with the demo.
    let result = prepare_and_serve(config, data_dir, pg_port, server_url).await;
    let dir = data_dir.to_path_buf();
    let stopped = tokio::task::spawn_blocking(move || portcullis_devdb::stop(&dir)).await?;
    if let Err(error) = stopped {
        eprintln!("demo: could not stop the private PostgreSQL: {error}");
    }
    result
}

async fn prepare_and_serve(
    mut config: Config,
    data_dir: &Path,
    pg_port: u16,
    server_url: String,
) -> anyhow::Result<()> {
    let server = SecretString::from(server_url.clone());
    migrate::create_database_if_missing(&server, DATABASE).await?;

    let admin_url = format!("postgres://postgres@127.0.0.1:{pg_port}/{DATABASE}");
    let runtime_url = format!("postgres://portcullis_app@127.0.0.1:{pg_port}/{DATABASE}");
    let report = migrate::run(&MigrateOptions {
        admin_url: SecretString::from(admin_url),
        runtime_url: SecretString::from(runtime_url.clone()),
    })
    .await
    .context("migrating the demo database")?;
    eprintln!(
        "demo: database migrated to version {}",
        report.applied_version
    );

    if config.secrets.kek.is_none() {
        config.secrets.kek = Some(demo_kek(data_dir)?);
    }
    let keyring = config.secrets.keyring()?;
    let db = Db::connect_lazy(&DbOptions::new(SecretString::from(runtime_url.clone())))?;
    let first_run = db.platform_org_ids().await?.is_empty();
    let credentials = if first_run {
        let password = demo_password()?;
        let outcome = bootstrap::bootstrap(&db, "Demo", DEMO_EMAIL, &password).await?;
        mock_routes(&db, &keyring, outcome.org_id).await?;
        Some((outcome, password))
    } else {
        None
    };
    let org = *db
        .platform_org_ids()
        .await?
        .first()
        .context("the demo org is missing")?;
    let traffic_key = demo_key(&db, org).await?;
    db.close().await;

    config.database.url = Some(SecretString::from(runtime_url));
    // A first look on one machine: plaintext unless a certificate is configured.
    if config.server.tls.is_none() {
        config.server.plaintext = true;
    }
    serve::run_with(config, |addr| {
        print_banner(addr, credentials.as_ref(), &traffic_key);
    })
    .await
}

const DEMO_EMAIL: &str = "owner@demo.example";
/// The aliases the demo routes to the built-in mock provider, and the mock model of each
/// (`mock-echo` answers with what it received: the PII guardrail at work).
const DEMO_ALIASES: [(&str, &str); 3] = [
    ("gpt-4o-mini", "mock-1"),
    ("demo", "mock-1"),
    ("echo", "mock-echo"),
];

fn actor() -> Actor {
    Actor::system("demo")
}

/// A `mock` credential and routes to it, so that chat works with no provider key.
async fn mock_routes(db: &Db, keyring: &Keyring, org: OrgId) -> anyhow::Result<()> {
    let credential_id = uuid::Uuid::now_v7();
    let change = AuditedChange::new("credential.added", "credential", credential_id);
    let mut tx = db
        .begin_write(org, &actor(), &Source::default(), change)
        .await?;
    let mock = NewCredential {
        name: "mock",
        provider: portcullis_core::provider::ProviderKind::Mock,
        base_url: None,
        api_key: "mock-key-not-secret",
    };
    credentials::create(&mut tx, keyring, credential_id, &mock).await?;
    tx.commit().await?;
    for (alias, model) in DEMO_ALIASES {
        let change = AuditedChange::new("route.changed", "route", alias);
        let mut tx = db
            .begin_write(org, &actor(), &Source::default(), change)
            .await?;
        let route = ModelRoute {
            alias: alias.to_owned(),
            targets: serde_json::json!([{"credential_id": credential_id, "model": model, "weight": 1}]),
            fallback: Vec::new(),
            timeout_ms: None,
            // Priced like gpt-4o-mini, so that the demo's ledger and /usage show costs.
            input_micro_usd_per_mtok: Some(150_000),
            output_micro_usd_per_mtok: Some(600_000),
            cached_input_micro_usd_per_mtok: None,
            max_output_tokens: None,
            unpriced: false,
            max_choices: None,
            file_part_tokens: None,
            stream_idle_ms: None,
            stream_max_ms: None,
            updated_at: chrono::Utc::now(),
        };
        model_routes::put(&mut tx, &route).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// A fresh virtual key for this run: secrets are shown once, so each run makes its own.
async fn demo_key(db: &Db, org: OrgId) -> anyhow::Result<Token> {
    let key_id = KeyId::new();
    let token = Token::generate(TokenKind::Virtual)?;
    let change = AuditedChange::new("key.created", "key", key_id);
    let mut tx = db
        .begin_write(org, &actor(), &Source::default(), change)
        .await?;
    let new_key = NewKey {
        name: "demo".to_owned(),
        ..NewKey::default()
    };
    keys::create(&mut tx, key_id, &new_key, &token.hash(), &token.last4()).await?;
    tx.commit().await?;
    Ok(token)
}

/// A random password for the demo owner, shown once in the banner.
fn demo_password() -> anyhow::Result<String> {
    let token = Token::generate(TokenKind::Invite)?;
    Ok(token.expose()[4..24].to_owned())
}

/// The demo's key-encryption key, kept beside its database so that a restarted demo can still
/// open what it sealed.
fn demo_kek(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("kek.b64");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let mut bytes = [0u8; 32];
    portcullis_core::token::random_bytes(&mut bytes)?;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(SecretString::from(text))
}

fn print_banner(
    addr: std::net::SocketAddr,
    credentials: Option<&(bootstrap::Outcome, String)>,
    traffic_key: &Token,
) {
    let key = traffic_key.expose();
    let mut banner = format!(
        "\nPortcullis demo is up on http://{addr}; its models go to the built-in mock provider.\n\
         \nVirtual key for this run (shown once): {key}\n\
         \n  curl -s http://{addr}/v1/chat/completions -H 'authorization: Bearer {key}' \\\
         \n    -H 'content-type: application/json' \\\
         \n    -d '{{\"model\": \"gpt-4o-mini\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'\n\
         \n  OpenAI SDKs: base_url http://{addr}/v1, api_key {key}\n\
         \nConsole: http://{addr}/console (sign in as {DEMO_EMAIL})\n"
    );
    match credentials {
        Some((outcome, password)) => banner.push_str(&format!(
            "\nDemo org {org}, owner {DEMO_EMAIL}, password {password}\n\
             Master key (shown once): {key}\n\
             \n  curl -s http://{addr}/auth/v1/login -H 'content-type: application/json' \\\
             \n    -d '{{\"email\": \"{DEMO_EMAIL}\", \"password\": \"{password}\"}}'\
             \n  curl -s http://{addr}/admin/v1/orgs -H 'authorization: Bearer {key}'\n",
            org = outcome.org_id,
            key = outcome.master_key.expose(),
        )),
        None => banner.push_str(&format!(
            "\nThe demo was bootstrapped on an earlier run: log in as {DEMO_EMAIL} with the \
             password printed then, or delete the data directory to start afresh.\n"
        )),
    }
    banner.push_str("\nPress Ctrl-C to stop (the private PostgreSQL stops too).\n");
    let _ = std::io::stdout().lock().write_all(banner.as_bytes());
}
