//! In-process caches of virtual keys and resolved routes, so that a request does no database
//! work for them. Every process LISTENs for changes and drops what they touch within
//! milliseconds (AC-2: a revoked key is refused everywhere within a second); a short TTL is the
//! backstop if a notification is ever lost.

use std::collections::HashMap;
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
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Caches {
    pub fn key(&self, hash: &TokenHash) -> Option<LiveKey> {
        let keys = locked(&self.keys);
        keys.get(&hash.0)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, key)| key.clone())
    }

    pub fn put_key(&self, hash: &TokenHash, key: LiveKey) {
        let mut keys = locked(&self.keys);
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

    pub fn put_route(&self, org: OrgId, route: Arc<ResolvedRoute>) {
        let mut routes = locked(&self.routes);
        if routes.len() >= MAX_ENTRIES {
            routes.clear();
        }
        routes.insert((org, route.alias.clone()), (Instant::now(), route));
    }

    pub fn apply(&self, change: &Change) {
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
