//! In-process caches of virtual keys and resolved routes, so that a request does no database
//! work for them. Every process LISTENs for changes and drops what they touch within
//! milliseconds (AC-2: a revoked key is refused everywhere within a second); a short TTL is the
//! backstop if a notification is ever lost.
//!
//! A fill reads the database, then inserts. A change heard between the two must win, or a
//! key revoked meanwhile would be put back for the whole TTL: every change bumps a generation,
//! and a fill inserts only if the generation it started at is still current.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::OrgId;
use portcullis_core::token::TokenHash;
use portcullis_storage::dataplane::{Change, Changes, LiveKey, ResolvedRoute};

use crate::router::AppState;

const TTL: Duration = Duration::from_secs(30);
/// Past this many entries a cache is emptied rather than grown: memory stays bounded.
const MAX_ENTRIES: usize = 100_000;

/// Entries carry the time they were fetched, for the TTL.
type Timed<T> = (Instant, T);
/// Resolved routes by org and alias.
type RouteMap = HashMap<(OrgId, String), Timed<Arc<ResolvedRoute>>>;

#[derive(Debug, Default)]
pub struct Caches {
    keys: Mutex<HashMap<[u8; 32], Timed<LiveKey>>>,
    routes: Mutex<RouteMap>,
    /// Bumped by every change heard; see [`Caches::fill_started`].
    generation: AtomicU64,
    /// A pause between a fill's read and its insert: the hook a test widens the race with.
    fill_delay: Option<Duration>,
}

/// Where a fill started: pass it back to the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill(u64);

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Caches {
    /// Caches whose fills wait `delay` between reading and inserting (tests of the race).
    pub fn with_fill_delay(delay: Duration) -> Self {
        Self {
            fill_delay: Some(delay),
            ..Self::default()
        }
    }

    /// Call before reading what will be inserted.
    pub fn fill_started(&self) -> Fill {
        Fill(self.generation.load(Ordering::SeqCst))
    }

    /// Waits the test hook's delay, if any (none in production).
    pub async fn before_insert(&self) {
        if let Some(delay) = self.fill_delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// Checked under the map's lock, so that a change either bumped the generation before
    /// (and the fill is dropped) or removes the entry after it was inserted.
    fn still_current(&self, fill: Fill) -> bool {
        self.generation.load(Ordering::SeqCst) == fill.0
    }

    pub fn key(&self, hash: &TokenHash) -> Option<LiveKey> {
        let keys = locked(&self.keys);
        keys.get(&hash.0)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, key)| key.clone())
    }

    pub fn put_key(&self, hash: &TokenHash, key: LiveKey, fill: Fill) {
        let mut keys = locked(&self.keys);
        if !self.still_current(fill) {
            return;
        }
        if keys.len() >= MAX_ENTRIES {
            keys.clear();
        }
        keys.insert(hash.0, (Instant::now(), key));
    }

    pub fn route(&self, org: OrgId, alias: &str) -> Option<Arc<ResolvedRoute>> {
        let routes = locked(&self.routes);
        routes
            .get(&(org, alias.to_owned()))
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, route)| Arc::clone(route))
    }

    pub fn put_route(&self, org: OrgId, route: Arc<ResolvedRoute>, fill: Fill) {
        let mut routes = locked(&self.routes);
        if !self.still_current(fill) {
            return;
        }
        if routes.len() >= MAX_ENTRIES {
            routes.clear();
        }
        routes.insert((org, route.alias.clone()), (Instant::now(), route));
    }

    pub fn apply(&self, change: &Change) {
        // Before the removal: a fill that checks after this sees the change and is dropped.
        self.generation.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Key(hash) => {
                locked(&self.keys).remove(&hash.0);
            }
            Change::Routes(org) => locked(&self.routes).retain(|(o, _), _| o != org),
            Change::OrgSettings(org) => locked(&self.keys).retain(|_, (_, key)| key.org_id != *org),
            Change::Unknown => {
                locked(&self.keys).clear();
                locked(&self.routes).clear();
            }
        }
    }
}

/// Listens for changes for as long as the process runs, reconnecting after failures.
pub fn spawn_change_listener(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match Changes::listen(&state.db).await {
                Ok(mut changes) => {
                    // Anything may have changed while nobody listened.
                    state.caches.apply(&Change::Unknown);
                    loop {
                        match changes.next().await {
                            Ok(change) => state.caches.apply(&change),
                            Err(error) => {
                                tracing::warn!(%error, "change listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot listen for changes; retrying"),
            }
            state.caches.apply(&Change::Unknown);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
