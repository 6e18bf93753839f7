//! Throttling of password and second-factor attempts (AC-4). An attempt is counted before its
//! work, under one lock across all of its buckets (an atomic acquire), so that any number of
//! concurrent attempts evaluate at most each bucket's limit; a success gives its count back.
//!
//! Buckets are fixed-size digests of what they count (an account, an account from one client
//! address, a client address), so an attacker cannot make them large. IPv6 clients are counted
//! by their /64, which one host usually holds whole. In process memory: with several replicas an
//! attacker gets each limit once per replica. docs/operations.md says why these buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Buckets beyond this are pruned, bounding memory under a spray attack: expired windows
/// first, then those of a single attempt. A bucket near its limit is never forgotten, so
/// filling the table does not wipe an account's count: keeping 100,000 buckets of two
/// attempts alive needs 200,000 password checks within one window.
const MAX_ENTRIES: usize = 100_000;

/// An IPv6 /48 (one site's allocation, which hands out 65,536 /64s) may fail this many times
/// more than one address.
const NETWORK_FACTOR: u32 = 8;

/// The limits of each kind of bucket within one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    pub window: Duration,
    /// Failures of one account from one client address: what a guesser at one address gets.
    pub per_account_and_address: u32,
    /// Failures of one account from anywhere: the ceiling on distributed guessing. A stranger
    /// must spend this many attempts from `ceiling / per_account_and_address` addresses to
    /// lock the account out, and its owner's own address bucket is never theirs to fill.
    pub per_account: u32,
    /// Failures from one client address over every account: password spraying.
    pub per_address: u32,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            per_account_and_address: 5,
            per_account: 50,
            per_address: 100,
        }
    }
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A login name (an email, whether or not it has an account) or a second-factor
    /// challenge's person, namespaced by `what`.
    Account {
        what: &'static str,
        name: &'a str,
    },
    /// That account from one client address.
    AccountAt {
        what: &'static str,
        name: &'a str,
        address: Option<IpAddr>,
    },
    Address(Option<IpAddr>),
    /// The IPv6 /48 of the client (none for IPv4): many /64s of one site.
    Network(Option<IpAddr>),
    /// One person's second-factor codes, from anywhere: whoever reaches that step has their
    /// password, so it gets the small limit of one guesser.
    SecondFactor(&'a str),
}

impl Subject<'_> {
    fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        match self {
            Subject::Account { what, name } => {
                hash.update(b"account\0");
                hash.update(what.as_bytes());
                hash.update(b"\0");
                hash.update(name.to_lowercase().as_bytes());
            }
            Subject::AccountAt {
                what,
                name,
                address,
            } => {
                hash.update(b"account-at\0");
                hash.update(what.as_bytes());
                hash.update(b"\0");
                hash.update(name.to_lowercase().as_bytes());
                hash.update(b"\0");
                hash.update(bucket_of(*address).as_bytes());
            }
            Subject::Address(address) => {
                hash.update(b"address\0");
                hash.update(bucket_of(*address).as_bytes());
            }
            Subject::Network(address) => {
                hash.update(b"network\0");
                hash.update(network_of(*address).unwrap_or_default().as_bytes());
            }
            Subject::SecondFactor(person) => {
                hash.update(b"second-factor\0");
                hash.update(person.as_bytes());
            }
        }
        hash.finalize().into()
    }

    fn limit(&self, limits: &ThrottleLimits) -> u32 {
        match self {
            Subject::Account { .. } => limits.per_account,
            Subject::AccountAt { .. } | Subject::SecondFactor(_) => limits.per_account_and_address,
            Subject::Address(_) => limits.per_address,
            Subject::Network(_) => limits.per_address.saturating_mul(NETWORK_FACTOR),
        }
    }

    /// A success clears the account-from-this-address bucket (its owner proved themselves
    /// there) and gives back its one count to the others, so that strangers' failures stay
    /// counted against the account and a busy address is not charged for its successes.
    fn cleared_on_success(&self) -> bool {
        matches!(self, Subject::AccountAt { .. } | Subject::SecondFactor(_))
    }
}

/// The IPv6 /48 of a client; IPv4 has no wider bucket than its address.
fn network_of(address: Option<IpAddr>) -> Option<String> {
    match address.map(|ip| ip.to_canonical())? {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
        IpAddr::V4(_) => None,
    }
}

/// A client address as throttling sees it: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6
/// by its /64.
fn bucket_of(address: Option<IpAddr>) -> String {
    match address.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    entries: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<[u8; 32], Window>,
    /// When the table was last pruned: a full table is pruned at most once a second, so that
    /// a flood of new names cannot make every attempt walk it.
    pruned: Option<Instant>,
}

/// An attempt counted in every bucket it touches. Dropped without [`Attempt::succeeded`], it
/// stays counted: a failure, or any early return, is a spent attempt.
#[must_use = "an attempt is counted as a failure unless it succeeds"]
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    buckets: Vec<([u8; 32], bool)>,
}

impl Attempt<'_> {
    /// The attempt proved the secret: the buckets give its count back.
    pub fn succeeded(self) {
        let mut table = self.throttle.locked();
        let entries = &mut table.buckets;
        for (digest, clear) in &self.buckets {
            if *clear {
                entries.remove(digest);
            } else if let Some(window) = entries.get_mut(digest) {
                window.count = window.count.saturating_sub(1);
            }
        }
    }
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(Table::default()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Table> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one attempt in each bucket of `subjects`, all or none: `Err(seconds to wait)`
    /// when any of them has used up its limit, and then none is counted.
    pub fn acquire(&self, subjects: &[Subject<'_>]) -> Result<Attempt<'_>, u64> {
        let now = Instant::now();
        let window = self.limits.window;
        let mut table = self.locked();
        let due = table
            .pruned
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if table.buckets.len() >= MAX_ENTRIES && due {
            table.pruned = Some(now);
            table
                .buckets
                .retain(|_, w| now.duration_since(w.start) < window);
            if table.buckets.len() >= MAX_ENTRIES {
                // Full of live windows: forget those of one attempt, which protect least.
                table.buckets.retain(|_, w| w.count > 1);
            }
        }
        let entries = &mut table.buckets;
        let buckets: Vec<([u8; 32], bool, u32)> = subjects
            .iter()
            .filter(|s| !matches!(s, Subject::Network(a) if network_of(*a).is_none()))
            .map(|s| (s.digest(), s.cleared_on_success(), s.limit(&self.limits)))
            .collect();
        let new_buckets = buckets
            .iter()
            .filter(|(d, _, _)| !entries.contains_key(d))
            .count();
        if entries.len() + new_buckets > MAX_ENTRIES {
            // Still full: no new bucket, and so no unchecked attempt, until windows expire.
            return Err(window.as_secs().max(1));
        }
        let mut wait = None;
        for (digest, _, limit) in &buckets {
            if let Some(w) = entries.get(digest)
                && now.duration_since(w.start) < window
                && w.count >= *limit
            {
                let left = window.saturating_sub(now.duration_since(w.start));
                wait = Some(wait.unwrap_or(0).max(left.as_secs().max(1)));
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        for (digest, _, _) in &buckets {
            let entry = entries.entry(*digest).or_insert(Window {
                start: now,
                count: 0,
            });
            if now.duration_since(entry.start) >= window {
                *entry = Window {
                    start: now,
                    count: 0,
                };
            }
            entry.count += 1;
        }
        Ok(Attempt {
            throttle: self,
            buckets: buckets.into_iter().map(|(d, c, _)| (d, c)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            window: Duration::from_secs(900),
            per_account_and_address: 5,
            per_account: 12,
            per_address: 100,
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn login<'a>(name: &'a str, address: &str) -> [Subject<'a>; 4] {
        [
            Subject::AccountAt {
                what: "login",
                name,
                address: ip(address),
            },
            Subject::Account {
                what: "login",
                name,
            },
            Subject::Address(ip(address)),
            Subject::Network(ip(address)),
        ]
    }

    #[test]
    fn ac_4_failures_past_the_limit_are_refused_and_a_success_clears_its_address() {
        let throttle = Throttle::new(limits());
        for _ in 0..5 {
            drop(throttle.acquire(&login("a@x", "192.0.2.1")).unwrap());
        }
        let wait = throttle.acquire(&login("a@x", "192.0.2.1")).unwrap_err();
        assert!(wait > 0 && wait <= 900);
        // The same account from elsewhere, and another account from here, still go.
        throttle
            .acquire(&login("a@x", "192.0.2.2"))
            .unwrap()
            .succeeded();
        assert!(throttle.acquire(&login("b@x", "192.0.2.1")).is_ok());
        assert!(throttle.acquire(&login("A@X", "192.0.2.1")).is_err());
    }

    #[test]
    fn ac_4_a_stranger_does_not_lock_the_owner_out_from_their_own_address() {
        let throttle = Throttle::new(limits());
        for _ in 0..5 {
            drop(throttle.acquire(&login("owner@x", "198.51.100.9")).unwrap());
        }
        assert!(throttle.acquire(&login("owner@x", "198.51.100.9")).is_err());
        throttle
            .acquire(&login("owner@x", "192.0.2.50"))
            .unwrap()
            .succeeded();
    }

    #[test]
    fn ac_4_the_per_account_ceiling_bounds_guessing_from_many_addresses() {
        let throttle = Throttle::new(limits());
        let mut spent = 0;
        for n in 0..40 {
            if let Ok(attempt) = throttle.acquire(&login("target@x", &format!("203.0.113.{n}"))) {
                drop(attempt);
                spent += 1;
            }
        }
        assert_eq!(spent, 12);
    }

    #[test]
    fn ac_4_a_refused_attempt_counts_nowhere() {
        let throttle = Throttle::new(limits());
        for _ in 0..5 {
            drop(throttle.acquire(&login("a@x", "192.0.2.1")).unwrap());
        }
        for _ in 0..50 {
            assert!(throttle.acquire(&login("a@x", "192.0.2.1")).is_err());
        }
        // The refused ones did not reach the account's ceiling (12).
        for n in 0..7 {
            drop(
                throttle
                    .acquire(&login("a@x", &format!("192.0.2.{}", 100 + n)))
                    .unwrap(),
            );
        }
    }

    #[test]
    fn ac_4_ipv6_clients_are_counted_by_their_64() {
        let throttle = Throttle::new(limits());
        for n in 0..5 {
            drop(
                throttle
                    .acquire(&login("a@x", &format!("2001:db8:1:2::{n:x}")))
                    .unwrap(),
            );
        }
        assert!(
            throttle
                .acquire(&login("a@x", "2001:db8:1:2:ffff::1"))
                .is_err()
        );
        assert!(throttle.acquire(&login("a@x", "2001:db8:1:3::1")).is_ok());
        assert_eq!(
            bucket_of(ip("::ffff:192.0.2.7")),
            bucket_of(ip("192.0.2.7"))
        );
    }

    #[test]
    fn ac_4_one_ipv6_site_is_bounded_over_its_many_64s() {
        let throttle = Throttle::new(ThrottleLimits {
            per_address: 10,
            per_account: 1_000,
            ..limits()
        });
        // 80 failures (8 x 10) over as many /64s of one /48, then the site is refused.
        let mut spent = 0;
        for n in 0..200u32 {
            let name = format!("user{n}@x");
            if let Ok(attempt) = throttle.acquire(&login(&name, &format!("2001:db8:7:{n:x}::1"))) {
                drop(attempt);
                spent += 1;
            }
        }
        assert_eq!(spent, 80);
        assert!(throttle.acquire(&login("a@x", "2001:db8:8::1")).is_ok());
    }

    #[test]
    fn ac_4_filling_the_table_never_forgets_an_account_near_its_limit() {
        let throttle = Throttle::new(limits());
        for _ in 0..4 {
            drop(throttle.acquire(&login("victim@x", "192.0.2.1")).unwrap());
        }
        // A spray of single attempts from many addresses fills the table.
        for n in 0..(MAX_ENTRIES as u32) {
            let name = format!("s{n}");
            let address = std::net::Ipv4Addr::from(0x0A00_0000 + n).to_string();
            let _ = throttle.acquire(&login(&name, &address));
        }
        // The victim's bucket (four attempts) survived: one more, then refused.
        drop(throttle.acquire(&login("victim@x", "192.0.2.1")).unwrap());
        assert!(throttle.acquire(&login("victim@x", "192.0.2.1")).is_err());
        assert!(throttle.locked().buckets.len() <= MAX_ENTRIES);
    }

    #[test]
    fn ac_4_a_window_expires() {
        let throttle = Throttle::new(ThrottleLimits {
            window: Duration::ZERO,
            ..limits()
        });
        for _ in 0..10 {
            drop(throttle.acquire(&login("a@x", "192.0.2.1")).unwrap());
        }
    }
}
