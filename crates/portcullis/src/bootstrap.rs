//! `portcullis bootstrap`: the first org, its owner and the master key, once per database.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use portcullis_core::token::{Token, TokenKind};
use portcullis_core::{KeyId, password};
use portcullis_storage::platform::{self, Bootstrap};
use portcullis_storage::{Db, DbOptions, StorageError};

use crate::config::Config;

/// The environment variable that gives scripts a way to pass the owner's password.
pub const PASSWORD_ENV: &str = "PORTCULLIS_BOOTSTRAP_PASSWORD";

/// What bootstrap made; the master key is in plain text here and nowhere else.
pub struct Outcome {
    pub org_id: portcullis_core::OrgId,
    pub master_key: Token,
}

pub async fn run(config: &Config, org_name: &str, email: &str) -> anyhow::Result<()> {
    let password = owner_password()?;
    let db = Db::connect_lazy(&DbOptions::new(config.database.url()?.clone()))?;
    // With a keyring configured, the canary is written (or proved) before anything else.
    if config.secrets.kek.is_some() {
        let ring = config.secrets.keyring()?;
        if let Err(error) = crate::canary::check(&db, &ring).await {
            db.close().await;
            return Err(error);
        }
    }
    let outcome = bootstrap(&db, org_name, email, &password).await;
    db.close().await;
    let outcome = outcome?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "org_id:     {}", outcome.org_id)?;
    writeln!(out, "owner:      {email}")?;
    writeln!(out, "master key: {}", outcome.master_key.expose())?;
    writeln!(out)?;
    writeln!(
        out,
        "The master key is shown this once and stored only as a hash: keep it in a"
    )?;
    writeln!(
        out,
        "secret manager. It administers every org; people log in with their email."
    )?;
    Ok(())
}

pub async fn bootstrap(
    db: &Db,
    org_name: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<Outcome> {
    if org_name.trim().is_empty() || org_name.chars().count() > 200 {
        bail!("--org must be 1 to 200 characters");
    }
    if !email.contains('@') || email.len() > 320 {
        bail!("--email is not an email address");
    }
    password::check_new_password(password).context("the owner's password")?;
    let owned = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || password::hash(&owned)).await??;
    let master_key = Token::generate(TokenKind::Master)?;
    let request = Bootstrap {
        org_name: org_name.trim(),
        owner_email: email.trim(),
        owner_password_hash: &password_hash,
        master_key_id: KeyId::new(),
        master_key_hash: master_key.hash(),
        master_key_last4: &master_key.last4(),
    };
    match platform::bootstrap(db, &request).await {
        Ok(done) => Ok(Outcome {
            org_id: done.org_id,
            master_key,
        }),
        Err(StorageError::Conflict(message)) => {
            bail!("{message}: bootstrap runs once; administer further orgs with the master key")
        }
        Err(error) => Err(error).context("bootstrapping"),
    }
}

/// From the environment (scripts), a prompt without echo (a terminal), or one line of stdin.
fn owner_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Owner password: ")?;
        let second = rpassword::prompt_password("Again: ")?;
        if first != second {
            bail!("the passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password: set {PASSWORD_ENV}, or run in a terminal to be asked");
    }
    Ok(password)
}

/// `portcullis master-key rotate`: a new master key, printed once; every earlier one revoked.
pub async fn rotate_master_key(config: &Config) -> anyhow::Result<()> {
    let key = Token::generate(TokenKind::Master).context("generating the master key")?;
    let revoked = platform::rotate_master_key(
        config.database.admin_url()?,
        KeyId::new(),
        &key.hash(),
        &key.last4(),
        &portcullis_core::audit::Actor::system("master-key-rotate"),
    )
    .await
    .context("rotating the master key")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "master key: {}", key.expose())?;
    writeln!(out)?;
    writeln!(
        out,
        "Shown this once and stored only as a hash: keep it in a secret manager now."
    )?;
    eprintln!(
        "revoked {revoked} earlier master key(s); audited as master_key.rotated in every org"
    );
    Ok(())
}
