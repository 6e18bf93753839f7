//! A circuit breaker per target: after `threshold` consecutive failures a target is skipped
//! for `cooldown`; then one probe request is let through, and its outcome closes or reopens it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The circuits of every target, by circuit key, shared by all of a process's requests.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
}

impl Breakers {
    /// `threshold` failures in a row (at least 1) open a circuit for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            circuits: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, label: &str, f: impl FnOnce(&mut Circuit) -> T) -> T {
        let mut circuits = self
            .circuits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let circuit = circuits.entry(label.to_owned()).or_default();
        f(circuit)
    }

    /// Whether a request may go to the target now. An open circuit past its cooldown lets one
    /// probe through.
    pub fn allow(&self, label: &str) -> bool {
        let now = Instant::now();
        self.with(label, |c| match c.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if c.probing => false,
            Some(_) => {
                c.probing = true;
                true
            }
        })
    }

    /// Closes the circuit and forgets its failures.
    pub fn succeeded(&self, label: &str) {
        self.with(label, |c| *c = Circuit::default());
    }

    /// Counts a failure; the threshold, or a failed probe, opens the circuit for the cooldown.
    pub fn failed(&self, label: &str) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        self.with(label, |c| {
            c.failures = c.failures.saturating_add(1);
            if c.probing || c.failures >= threshold {
                c.open_until = Some(Instant::now() + cooldown);
                c.probing = false;
            }
        });
    }

    /// How many targets are skipped now or waiting for their probe (for metrics).
    pub fn open_count(&self) -> usize {
        let circuits = self
            .circuits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        circuits.values().filter(|c| c.open_until.is_some()).count()
    }

    /// Whether the circuit is open: cooling down, or waiting for its probe to succeed.
    pub fn is_open(&self, label: &str) -> bool {
        self.with(label, |c| c.open_until.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_1_the_breaker_opens_after_consecutive_failures_and_closes_after_a_probe() {
        let breakers = Breakers::new(3, Duration::from_millis(0));
        for _ in 0..2 {
            breakers.failed("a");
        }
        assert!(!breakers.is_open("a"));
        breakers.failed("a");
        assert!(breakers.is_open("a"));
        // Cooldown over: one probe, and only one, until it reports.
        assert!(breakers.allow("a"));
        assert!(!breakers.allow("a"));
        breakers.succeeded("a");
        assert!(!breakers.is_open("a"));
        assert!(breakers.allow("a"));
    }

    #[test]
    fn av_1_a_failed_probe_reopens_and_an_open_circuit_refuses() {
        let breakers = Breakers::new(1, Duration::from_secs(60));
        breakers.failed("b");
        assert!(!breakers.allow("b"));
        let quick = Breakers::new(1, Duration::from_millis(0));
        quick.failed("c");
        assert!(quick.allow("c"));
        quick.failed("c");
        assert!(quick.is_open("c"));
    }
}
