//! In-process caches of virtual keys and resolved routes, so that a request does no database
//! work for them. Every process LISTENs for changes and drops what they touch within
//! milliseconds (AC-2: a revoked key is refused everywhere within a second); a short TTL is the
//! backstop if a notification is ever lost.
//!
//! A fill reads the database, then inserts. A change heard between the two must win, or a
//! key revoked meanwhile would be put back for the whole TTL. Every change takes the next
//! epoch and records it where it applies (its org, its key's shard, or everything); a fill
//! inserts only if nothing that applies to what it read changed since the epoch it started
//! at. One tenant's changes therefore never drop another tenant's fills.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::OrgId;
use portcullis_core::token::TokenHash;
use portcullis_storage::dataplane::{Change, Changes, LiveKey};

use super::plan::RoutePlan;

use crate::state::AppState;

const TTL: Duration = Duration::from_secs(30);
/// Past this many entries a cache is emptied rather than grown: memory stays bounded.
const MAX_ENTRIES: usize = 100_000;

/// Entries carry the time they were fetched, for the TTL.
type Timed<T> = (Instant, T);
/// Route plans by org and alias.
type RouteMap = HashMap<(OrgId, String), Timed<Arc<RoutePlan>>>;

#[derive(Debug, Default)]
struct Keys {
    by_hash: HashMap<[u8; 32], Timed<LiveKey>>,
    /// The hashes cached for each org: an org's change drops them without a walk of all.
    by_org: HashMap<OrgId, Vec<[u8; 32]>>,
}

/// When each kind of change last happened, as epochs.
#[derive(Debug, Default)]
struct Epochs {
    now: u64,
    everything: u64,
    /// Key changes by the first byte of the key's hash.
    key_shard: HashMap<u8, u64>,
    /// Settings, budgets and memberships: the org's keys.
    org_keys: HashMap<OrgId, u64>,
    /// Routes and credentials: the org's routes.
    org_routes: HashMap<OrgId, u64>,
}

#[derive(Debug, Default)]
pub struct Caches {
    keys: Mutex<Keys>,
    routes: Mutex<RouteMap>,
    epochs: Mutex<Epochs>,
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
        Fill(locked(&self.epochs).now)
    }

    /// How many changes this process has heard (the listener's first, on connecting, is one).
    pub fn changes_heard(&self) -> u64 {
        locked(&self.epochs).now
    }

    /// Waits the test hook's delay, if any (none in production).
    pub async fn before_insert(&self) {
        if let Some(delay) = self.fill_delay {
            tokio::time::sleep(delay).await;
        }
    }

    pub fn key(&self, hash: &TokenHash) -> Option<LiveKey> {
        let keys = locked(&self.keys);
        keys.by_hash
            .get(&hash.0)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, key)| key.clone())
    }

    /// Inserts a key read since `fill`, unless a change to it, its org, or everything was heard
    /// since. Checked under the map's lock, and changes are applied under it too: a change
    /// either came first (the fill is dropped) or removes the entry after its insert.
    pub fn put_key(&self, hash: &TokenHash, key: LiveKey, fill: Fill) {
        let mut keys = locked(&self.keys);
        {
            let epochs = locked(&self.epochs);
            let changed = [
                Some(epochs.everything),
                epochs.key_shard.get(&hash.0[0]).copied(),
                epochs.org_keys.get(&key.org_id).copied(),
            ];
            if changed.into_iter().flatten().any(|at| at > fill.0) {
                return;
            }
        }
        if keys.by_hash.len() >= MAX_ENTRIES {
            *keys = Keys::default();
        }
        let org = key.org_id;
        if keys.by_hash.insert(hash.0, (Instant::now(), key)).is_none() {
            keys.by_org.entry(org).or_default().push(hash.0);
        }
    }

    pub fn route(&self, org: OrgId, alias: &str) -> Option<Arc<RoutePlan>> {
        let routes = locked(&self.routes);
        routes
            .get(&(org, alias.to_owned()))
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, route)| Arc::clone(route))
    }

    /// Inserts a route planned since `fill`, unless the org's routes or everything changed.
    pub fn put_route(&self, org: OrgId, route: Arc<RoutePlan>, fill: Fill) {
        let mut routes = locked(&self.routes);
        {
            let epochs = locked(&self.epochs);
            let changed = [
                Some(epochs.everything),
                epochs.org_routes.get(&org).copied(),
            ];
            if changed.into_iter().flatten().any(|at| at > fill.0) {
                return;
            }
        }
        if routes.len() >= MAX_ENTRIES {
            routes.clear();
        }
        routes.insert((org, route.alias.clone()), (Instant::now(), route));
    }

    pub fn apply(&self, change: &Change) {
        // The epoch is recorded before the removal: a fill that checks after it is dropped.
        {
            let mut epochs = locked(&self.epochs);
            epochs.now += 1;
            let now = epochs.now;
            match change {
                Change::Key(hash) => {
                    epochs.key_shard.insert(hash.0[0], now);
                }
                Change::Routes(org) => {
                    epochs.org_routes.insert(*org, now);
                }
                Change::OrgSettings(org) => {
                    epochs.org_keys.insert(*org, now);
                }
                Change::Unknown => epochs.everything = now,
            }
        }
        match change {
            Change::Key(hash) => {
                let mut keys = locked(&self.keys);
                if let Some((_, key)) = keys.by_hash.remove(&hash.0)
                    && let Some(hashes) = keys.by_org.get_mut(&key.org_id)
                {
                    hashes.retain(|h| *h != hash.0);
                }
            }
            Change::Routes(org) => locked(&self.routes).retain(|(o, _), _| o != org),
            Change::OrgSettings(org) => {
                let mut keys = locked(&self.keys);
                for hash in keys.by_org.remove(org).unwrap_or_default() {
                    keys.by_hash.remove(&hash);
                }
            }
            Change::Unknown => {
                *locked(&self.keys) = Keys::default();
                locked(&self.routes).clear();
            }
        }
    }
}

/// Listens for changes for as long as the process runs, reconnecting after failures.
pub fn spawn_change_listener(state: &AppState) {
    let state_for_task = state.clone();
    state.background.spawn_loop(async move {
        let state = state_for_task;
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

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_storage::dataplane::{Limits, Privacy};

    fn key(org: OrgId) -> LiveKey {
        LiveKey {
            key_id: portcullis_core::KeyId::new(),
            org_id: org,
            team_id: None,
            models: None,
            expires_at: None,
            limits: Limits::default(),
            privacy: Privacy::default(),
        }
    }

    #[test]
    fn av_4_another_orgs_change_does_not_drop_a_fill_but_its_own_does() {
        let caches = Caches::default();
        let (mine, theirs) = (OrgId::new(), OrgId::new());
        let (a, b) = (TokenHash([1; 32]), TokenHash([2; 32]));
        let fill = caches.fill_started();
        caches.apply(&Change::OrgSettings(theirs));
        caches.apply(&Change::Routes(mine));
        caches.apply(&Change::Key(TokenHash([9; 32])));
        caches.put_key(&a, key(mine), fill);
        assert!(
            caches.key(&a).is_some(),
            "unrelated changes dropped the fill"
        );
        let fill = caches.fill_started();
        caches.apply(&Change::OrgSettings(mine));
        caches.put_key(&b, key(mine), fill);
        assert!(
            caches.key(&b).is_none(),
            "the org's own change lost to its fill"
        );
        // The org's change dropped its cached keys, found through the index.
        assert!(caches.key(&a).is_none());
        let fill = caches.fill_started();
        caches.apply(&Change::Key(TokenHash([2; 32])));
        caches.put_key(&b, key(mine), fill);
        assert!(
            caches.key(&b).is_none(),
            "the key's own change lost to its fill"
        );
    }
}
