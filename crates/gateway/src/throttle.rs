//! Throttling of password and second-factor attempts (AC-4): a fixed window of failures per
//! key (an account, a client IP). In process memory: with several replicas an attacker gets
//! the limit once per replica, which still bounds guessing to a few hundred tries an hour.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond this are pruned of expired windows, bounding memory under a spray attack.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    entries: Mutex<HashMap<String, (Instant, u32)>>,
}

/// How many failures each kind of key may have per window.
#[derive(Debug, Clone, Copy)]
pub struct Limit(pub u32);

pub const PER_ACCOUNT: Limit = Limit(5);
pub const PER_IP: Limit = Limit(50);

impl Throttle {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when the key has used up its failures.
    pub fn check(&self, key: &str, limit: Limit) -> Result<(), u64> {
        let now = Instant::now();
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match entries.get(key) {
            Some((start, failures))
                if now.duration_since(*start) < self.window && *failures >= limit.0 =>
            {
                let left = self.window.saturating_sub(now.duration_since(*start));
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let window = self.window;
            entries.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = entries.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn clear(&self, key: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ac_4_failures_past_the_limit_are_refused_until_cleared() {
        let throttle = Throttle::new(Duration::from_secs(900));
        for _ in 0..5 {
            assert!(throttle.check("acct:a", PER_ACCOUNT).is_ok());
            throttle.fail("acct:a");
        }
        let wait = throttle.check("acct:a", PER_ACCOUNT).unwrap_err();
        assert!(wait > 0 && wait <= 900);
        assert!(throttle.check("acct:b", PER_ACCOUNT).is_ok());
        throttle.clear("acct:a");
        assert!(throttle.check("acct:a", PER_ACCOUNT).is_ok());
    }

    #[test]
    fn ac_4_a_window_expires() {
        let throttle = Throttle::new(Duration::from_millis(0));
        for _ in 0..10 {
            throttle.fail("ip:x");
        }
        assert!(throttle.check("ip:x", PER_ACCOUNT).is_ok());
    }
}
