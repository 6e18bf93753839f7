//! Money and the arithmetic of spend (AV-2): prices, costs, budget periods, and the two books
//! of a budget lease: what PostgreSQL may grant a process, and what the process has left of
//! its grant. Integer micro-dollars throughout, never floating point.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// Micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    /// Cached prompt tokens, where the provider bills them apart; else billed as `input`.
    #[serde(default)]
    pub cached_input: Option<i64>,
}

/// Tokens of one request, as the provider reported them (or as bounded when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// The part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: i64,
}

impl Usage {
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// `tokens * per_mtok / 1e6`, rounded up: a fraction of a micro-dollar is charged, never lost.
fn charge(tokens: i64, per_mtok: i64) -> i64 {
    let exact = i128::from(tokens.max(0)) * i128::from(per_mtok.max(0));
    let micro = (exact + 999_999) / 1_000_000;
    i64::try_from(micro).unwrap_or(i64::MAX)
}

impl Price {
    pub fn cost(&self, usage: &Usage) -> i64 {
        let cached = usage
            .cached_input_tokens
            .clamp(0, usage.input_tokens.max(0));
        let fresh = usage.input_tokens.max(0) - cached;
        let cached_price = self.cached_input.unwrap_or(self.input);
        charge(fresh, self.input)
            .saturating_add(charge(cached, cached_price))
            .saturating_add(charge(usage.output_tokens, self.output))
    }

    /// The dearer of two prices, side by side: what a request reserves when any of several
    /// targets may serve it.
    pub fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cached_input: None,
        }
    }
}

/// How long a budget runs before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One budget for the life of its key, team or org.
    Total,
    /// A new budget every calendar month, in UTC.
    Monthly,
    /// Rate limits: a new allowance every minute.
    Minute,
}

impl Period {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "total" => Some(Self::Total),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// When the period holding `now` began (the Unix epoch for `Total`).
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let start = match self {
            Self::Total => Utc.timestamp_opt(0, 0).single(),
            Self::Monthly => Utc
                .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .single(),
            Self::Minute => now.with_second(0).and_then(|t| t.with_nanosecond(0)),
        };
        start.unwrap_or(now)
    }

    /// Whole seconds until the next period begins (for `Retry-After`); at least 1.
    pub fn seconds_left(self, now: DateTime<Utc>) -> u64 {
        match self {
            Self::Minute => 60 - u64::from(now.second()).min(59),
            Self::Monthly => {
                let (year, month) = if now.month() == 12 {
                    (now.year() + 1, 1)
                } else {
                    (now.year(), now.month() + 1)
                };
                Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
                    .single()
                    .map_or(1, |next| {
                        u64::try_from((next - now).num_seconds())
                            .unwrap_or(1)
                            .max(1)
                    })
            }
            Self::Total => 0,
        }
    }
}

/// What PostgreSQL may lease to a process from one budget: `wanted`, or less down to `needed`,
/// out of what neither settled spend nor live leases hold. `None`: not even `needed` is left.
pub fn grantable(cap: i64, spent: i64, leased: i64, needed: i64, wanted: i64) -> Option<i64> {
    let free = cap.saturating_sub(spent).saturating_sub(leased);
    if needed > free {
        return None;
    }
    Some(wanted.max(needed).min(free).max(0))
}

/// How much of a budget a process asks for at once: enough for this request and, while the
/// budget is large, about a sixteenth of it, so that most requests need no database round trip
/// while the rest stays free for other processes.
pub fn lease_slice(cap: i64, needed: i64) -> i64 {
    needed.max(cap / 16)
}

/// What a process holds of one lease: `remaining` is free to reserve, `in_flight` is reserved
/// by requests not yet settled. Invariant: `remaining >= 0`, `in_flight >= 0`, and
/// `remaining + in_flight` never exceeds what was granted minus what was settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    pub remaining: i64,
    pub in_flight: i64,
}

impl Allowance {
    /// Sets `amount` aside for a request; false (and nothing changes) if it does not fit.
    pub fn reserve(&mut self, amount: i64) -> bool {
        if amount < 0 || amount > self.remaining {
            return false;
        }
        self.remaining -= amount;
        self.in_flight += amount;
        true
    }

    /// The request that reserved `reserved` cost `actual`: the difference comes back. An
    /// actual cost above the reservation is taken from what is left, down to zero (the ledger
    /// records it in full, and the next lease sees it as spent).
    pub fn settle(&mut self, reserved: i64, actual: i64) {
        let reserved = reserved.clamp(0, self.in_flight);
        self.in_flight -= reserved;
        self.remaining = (self.remaining + reserved - actual.max(0)).max(0);
    }

    /// More of the budget, leased from PostgreSQL.
    pub fn grant(&mut self, amount: i64) {
        self.remaining = self.remaining.saturating_add(amount.max(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_rounds_up_to_the_micro_dollar() {
        let price = Price {
            input: 150_000,
            output: 600_000,
            cached_input: Some(75_000),
        };
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 10,
            cached_input_tokens: 0,
        };
        // 1000 * 0.15 = 150, 10 * 0.6 = 6.
        assert_eq!(price.cost(&usage), 156);
        let one = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(price.cost(&one), 1);
        let cached = Usage {
            input_tokens: 1_000,
            output_tokens: 0,
            cached_input_tokens: 1_000,
        };
        assert_eq!(price.cost(&cached), 75);
    }

    #[test]
    fn periods_start_and_end_in_utc() {
        let now = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 30).unwrap();
        assert_eq!(
            Period::Monthly.start(now),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(Period::Monthly.seconds_left(now), 30);
        assert_eq!(Period::Minute.seconds_left(now), 30);
        assert_eq!(Period::Total.start(now).timestamp(), 0);
        assert_eq!(Period::parse("monthly"), Some(Period::Monthly));
        assert_eq!(Period::parse("weekly"), None);
    }
}
