//! `portcullis audit verify`: walks each org's hash chain as the runtime role.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_core::OrgId;
use portcullis_core::audit::{ChainHash, KnownHead};
use portcullis_storage::{Db, DbOptions, StorageError, audit};
use serde_json::json;

use crate::config::Config;

pub async fn verify(
    config: &Config,
    org: Option<OrgId>,
    expect_head: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let known_head = expect_head.map(parse_head).transpose()?;
    let db = Db::connect_lazy(&DbOptions::new(config.database.url()?.clone()))?;
    let orgs = match org {
        Some(org) => vec![org],
        None => db.platform_org_ids().await.context("listing orgs")?,
    };
    let mut out = std::io::stdout().lock();
    let mut broken = 0;
    for org in &orgs {
        match audit::verify(&db, *org, known_head).await {
            Ok(summary) => {
                let head = summary.head.map(|h| format!("{}:{}", h.seq, h.hash));
                if as_json {
                    let line = json!({"org_id": org, "ok": true, "events_checked": summary.events_checked, "head": head});
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "ok      org {org}: {} events, head {}",
                        summary.events_checked,
                        head.as_deref().unwrap_or("(empty)")
                    )?;
                }
            }
            Err(StorageError::AuditChain { cause, .. }) => {
                broken += 1;
                if as_json {
                    let line = json!({"org_id": org, "ok": false, "error": cause.to_string()});
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(out, "BROKEN  org {org}: {cause}")?;
                }
            }
            Err(error) => return Err(error).with_context(|| format!("verifying org {org}")),
        }
    }
    db.close().await;
    if !as_json {
        writeln!(out, "{} org(s) checked, {broken} broken", orgs.len())?;
    }
    Ok(if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_head(text: &str) -> anyhow::Result<KnownHead> {
    let (seq, hash) = text
        .split_once(':')
        .context("--expect-head is SEQ:HASH, as printed by an earlier verify")?;
    Ok(KnownHead {
        seq: seq.parse().context("--expect-head: SEQ is not a number")?,
        hash: ChainHash::from_hex(hash).context("--expect-head: HASH")?,
    })
}
