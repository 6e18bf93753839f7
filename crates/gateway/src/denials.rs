//! Refused admin actions in the audit trail (AC-1; ASVS 16.3.2): a member's 403 is recorded as
//! `access.denied` in the org it was aimed at, with the route template, what was required and
//! what the caller had. Bounded per actor and org: past [`PER_WINDOW`] entries in a window the
//! rest are counted, and one summary entry says how many when the window closes, so a loop of
//! refusals cannot flood the chain. The bound is per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portcullis_core::OrgId;
use portcullis_core::audit::{Actor, Source};
use portcullis_storage::{AuditedChange, Db};

use crate::state::AppState;

/// Full entries per actor, org and window, by default.
pub const PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked actors, closed windows are summarised and dropped early.
const MAX_TRACKED: usize = 10_000;

/// One refusal, as the guard saw it.
#[derive(Debug, Clone)]
pub struct Denial {
    pub org: OrgId,
    pub actor: Actor,
    pub source: Source,
    /// `METHOD /route/{template}`: never the raw path.
    pub route: String,
    pub code: &'static str,
    pub required: Option<&'static str>,
    pub role: &'static str,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    opened_at: DateTime<Utc>,
    written: u32,
    suppressed: u32,
    /// The last suppressed refusal's source, for the summary.
    last_source: Source,
}

/// A closed window's count of refusals that were not written one by one.
#[derive(Debug)]
struct Summary {
    org: OrgId,
    actor: Actor,
    source: Source,
    suppressed: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Denials {
    per_window: u32,
    windows: Mutex<HashMap<(OrgId, Actor), Window>>,
}

impl Default for Denials {
    fn default() -> Self {
        Self::new(PER_WINDOW)
    }
}

impl Denials {
    /// Full entries per actor, org and minute: `per_window`.
    pub fn new(per_window: u32) -> Self {
        Self {
            per_window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<(OrgId, Actor), Window>> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this refusal is written in full, and the summary of the actor's window that it
    /// closed, if any refusals of it went unwritten.
    fn admit(&self, denial: &Denial) -> (bool, Option<Summary>) {
        let now = Instant::now();
        let mut windows = self.locked();
        let key = (denial.org, denial.actor.clone());
        let mut closed = None;
        if let Some(window) = windows.get(&key)
            && now.duration_since(window.opened) >= WINDOW
        {
            closed = windows.remove(&key).and_then(|w| summary(&key, w));
        }
        let window = windows.entry(key).or_insert_with(|| Window {
            opened: now,
            opened_at: Utc::now(),
            written: 0,
            suppressed: 0,
            last_source: denial.source.clone(),
        });
        let full = window.written < self.per_window;
        if full {
            window.written += 1;
        } else {
            window.suppressed += 1;
            window.last_source = denial.source.clone();
        }
        (full, closed)
    }

    /// Takes every closed window (all of them when `all`), for their summaries.
    fn take_closed(&self, all: bool) -> Vec<Summary> {
        let now = Instant::now();
        let mut windows = self.locked();
        let closed: Vec<(OrgId, Actor)> = windows
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.opened) >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|key| {
                let window = windows.remove(&key)?;
                summary(&key, window)
            })
            .collect()
    }

    fn crowded(&self) -> bool {
        self.locked().len() > MAX_TRACKED
    }
}

fn summary(key: &(OrgId, Actor), window: Window) -> Option<Summary> {
    (window.suppressed > 0).then(|| Summary {
        org: key.0,
        actor: key.1.clone(),
        source: window.last_source,
        suppressed: window.suppressed,
        from: window.opened_at,
        to: Utc::now(),
    })
}

/// Records a refusal (or counts it). A failure to write is logged; the 403 stands either way.
pub async fn record(state: &AppState, denial: Denial) {
    let (full, closed) = state.denials.admit(&denial);
    if let Some(summary) = closed {
        write_summary(&state.db, summary).await;
    }
    if state.denials.crowded() {
        for summary in state.denials.take_closed(false) {
            write_summary(&state.db, summary).await;
        }
    }
    if !full {
        return;
    }
    let change = AuditedChange::new("access.denied", "route", &denial.route);
    let written = async {
        let mut tx = state
            .db
            .begin_write(denial.org, &denial.actor, &denial.source, change)
            .await?;
        tx.detail("code", denial.code);
        tx.detail("role", denial.role);
        if let Some(required) = denial.required {
            tx.detail("required", required);
        }
        tx.commit().await
    };
    if let Err(error) = written.await {
        tracing::warn!(%error, "could not record a refused admin action");
    }
}

async fn write_summary(db: &Db, summary: Summary) {
    let change = AuditedChange::new("access.denied", "actor", &summary.actor.id);
    let written = async {
        let mut tx = db
            .begin_write(summary.org, &summary.actor, &summary.source, change)
            .await?;
        tx.detail("summary", true);
        tx.detail("suppressed", summary.suppressed);
        tx.detail("from", summary.from.to_rfc3339());
        tx.detail("to", summary.to.to_rfc3339());
        tx.commit().await
    };
    if let Err(error) = written.await {
        tracing::warn!(%error, "could not record a summary of refused admin actions");
    }
}

/// Writes the summaries of closed windows, every window, until the process stops; then the
/// summaries of every window still open.
pub async fn run_summaries(
    db: Db,
    denials: std::sync::Arc<Denials>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WINDOW) => {
                for summary in denials.take_closed(false) {
                    write_summary(&db, summary).await;
                }
            }
            () = stop.cancelled() => break,
        }
    }
    for summary in denials.take_closed(true) {
        write_summary(&db, summary).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::audit::ActorKind;

    fn denial(org: OrgId, actor: &str) -> Denial {
        Denial {
            org,
            actor: Actor {
                kind: ActorKind::User,
                id: actor.to_owned(),
            },
            source: Source::default(),
            route: "POST /admin/v1/orgs/{org_id}/teams".to_owned(),
            code: "permission_denied",
            required: Some("admin"),
            role: "viewer",
        }
    }

    #[test]
    fn ac_1_refusals_past_the_bound_are_counted_not_written() {
        let denials = Denials::default();
        let org = OrgId::new();
        let written = (0..35)
            .filter(|_| denials.admit(&denial(org, "u1")).0)
            .count();
        assert_eq!(written, PER_WINDOW as usize);
        // Another actor has a window of its own.
        assert!(denials.admit(&denial(org, "u2")).0);
        let summaries = denials.take_closed(true);
        let u1 = summaries.iter().find(|s| s.actor.id == "u1").unwrap();
        assert_eq!(u1.suppressed, 35 - PER_WINDOW);
        assert!(
            summaries.iter().all(|s| s.actor.id != "u2"),
            "nothing suppressed"
        );
    }
}
