//! Money and the arithmetic of spend (AV-2): prices, costs, budget periods, and the two books
//! of a budget lease: what PostgreSQL may grant a process, and what the process has left of
//! its grant. Integer micro-dollars throughout, never floating point.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// Micro-dollars per million tokens, by kind of token. A kind the provider does not bill apart
/// is `None`, and billed at the plain input or output price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million fresh prompt tokens, and for any input kind left `None`.
    pub input: i64,
    /// Per million answer tokens, and for any output kind left `None`.
    pub output: i64,
    /// Prompt tokens read from the provider's cache.
    #[serde(default)]
    pub cached_input: Option<i64>,
    /// Prompt tokens written to the provider's cache (Anthropic's cache creation, five
    /// minutes).
    #[serde(default)]
    pub cache_write_input: Option<i64>,
    /// Prompt tokens written to the cache for an hour, where dearer than five minutes.
    #[serde(default)]
    pub cache_write_long_input: Option<i64>,
    /// Output tokens spent thinking, where billed apart from the answer.
    #[serde(default)]
    pub reasoning: Option<i64>,
    /// Prompt tokens that are audio.
    #[serde(default)]
    pub audio_input: Option<i64>,
    /// Output tokens that are audio.
    #[serde(default)]
    pub audio_output: Option<i64>,
}

/// Tokens of one request, as the provider reported them (or as bounded when it did not). The
/// parts (cached, cache writes, reasoning, audio) are included in their totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token: fresh, read from cache, written to cache, audio.
    pub input_tokens: i64,
    /// The part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: i64,
    /// The part of `input_tokens` written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// The part of `cache_write_tokens` kept for an hour.
    pub cache_write_long_tokens: i64,
    /// The part of `input_tokens` that was audio.
    pub audio_input_tokens: i64,
    /// Every output token: the answer, reasoning, audio.
    pub output_tokens: i64,
    /// The part of `output_tokens` spent reasoning (thinking).
    pub reasoning_tokens: i64,
    /// The part of `output_tokens` that was audio.
    pub audio_output_tokens: i64,
}

impl Usage {
    /// Only totals: what a request reserves, or a provider that reports no detail.
    pub fn totals(input_tokens: i64, output_tokens: i64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// Input and output tokens together, saturating: what token rate limits count.
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// `tokens * per_mtok`: millionths of a micro-dollar, exact.
fn exact(tokens: i64, per_mtok: i64) -> i128 {
    i128::from(tokens.max(0)) * i128::from(per_mtok.max(0))
}

/// Millionths of a micro-dollar in micro-dollars, rounded up once: a fraction of a
/// micro-dollar is charged, never lost, and never charged twice.
fn rounded_up(exact: i128) -> i64 {
    i64::try_from((exact + 999_999) / 1_000_000).unwrap_or(i64::MAX)
}

/// Splits `total` into its priced parts, each clamped so that together they never exceed it:
/// what is left is billed at the plain price.
fn parts<const N: usize>(total: i64, parts: [i64; N]) -> ([i64; N], i64) {
    let mut left = total.max(0);
    let mut out = [0; N];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = part.clamp(0, left);
        left -= *slot;
    }
    (out, left)
}

impl Price {
    /// What `usage` costs at these rates, in micro-dollars: each kind at its rate, rounded up once.
    pub fn cost(&self, usage: &Usage) -> i64 {
        let ([cached, written, audio_in], fresh) = parts(
            usage.input_tokens,
            [
                usage.cached_input_tokens,
                usage.cache_write_tokens,
                usage.audio_input_tokens,
            ],
        );
        let ([written_long], written_short) = parts(written, [usage.cache_write_long_tokens]);
        let ([reasoning, audio_out], answer) = parts(
            usage.output_tokens,
            [usage.reasoning_tokens, usage.audio_output_tokens],
        );
        rounded_up(
            exact(fresh, self.input)
                + exact(cached, self.cached_input.unwrap_or(self.input))
                + exact(written_short, self.cache_write_input.unwrap_or(self.input))
                + exact(
                    written_long,
                    self.cache_write_long_input
                        .or(self.cache_write_input)
                        .unwrap_or(self.input),
                )
                + exact(audio_in, self.audio_input.unwrap_or(self.input))
                + exact(answer, self.output)
                + exact(reasoning, self.reasoning.unwrap_or(self.output))
                + exact(audio_out, self.audio_output.unwrap_or(self.output)),
        )
    }

    /// The dearest price any input or output token of a request may be billed at: the plain
    /// price, cache writes and reasoning, and audio where the request carries or asks for it.
    /// A reservation at this price is a ceiling whatever kinds the provider bills.
    pub fn ceiling(&self, audio_in: bool, audio_out: bool) -> Self {
        let input = [
            self.cache_write_input,
            self.cache_write_long_input,
            self.cached_input,
        ];
        let mut input = input.into_iter().flatten().fold(self.input, i64::max);
        if audio_in {
            input = input.max(self.audio_input.unwrap_or(0));
        }
        let mut output = self.output.max(self.reasoning.unwrap_or(0));
        if audio_out {
            output = output.max(self.audio_output.unwrap_or(0));
        }
        Self {
            input,
            output,
            ..Self::default()
        }
    }

    /// The dearer of two prices, kind by kind: what a request reserves when any of several
    /// targets may serve it. A kind one side leaves out is billed there at its plain rate,
    /// which counts too.
    pub fn max(self, other: Self) -> Self {
        let (a_in, b_in, a_out, b_out) = (self.input, other.input, self.output, other.output);
        let most = |a: Option<i64>, b: Option<i64>, plain_a: i64, plain_b: i64| {
            (a.is_some() || b.is_some()).then(|| a.unwrap_or(plain_a).max(b.unwrap_or(plain_b)))
        };
        Self {
            input: a_in.max(b_in),
            output: a_out.max(b_out),
            cached_input: most(self.cached_input, other.cached_input, a_in, b_in),
            cache_write_input: most(self.cache_write_input, other.cache_write_input, a_in, b_in),
            cache_write_long_input: most(
                self.cache_write_long_input,
                other.cache_write_long_input,
                a_in,
                b_in,
            ),
            reasoning: most(self.reasoning, other.reasoning, a_out, b_out),
            audio_input: most(self.audio_input, other.audio_input, a_in, b_in),
            audio_output: most(self.audio_output, other.audio_output, a_out, b_out),
        }
    }
}

/// A model's prices, with the dearer rates some providers charge for every token of a request
/// whose prompt is long (Gemini 2.5 Pro and Claude Sonnet above 200,000 input tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pricing {
    /// The rates of a request whose prompt is not long.
    pub base: Price,
    /// Dearer rates past a prompt length, where the provider charges them.
    pub long_context: Option<LongContext>,
}

/// The rates of a request whose prompt has more than `above` input tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    /// Input tokens a prompt may have before these rates apply.
    pub above: i64,
    /// The rates for every token of such a request, input and output alike.
    pub price: Price,
}

impl From<Price> for Pricing {
    fn from(base: Price) -> Self {
        Self {
            base,
            long_context: None,
        }
    }
}

impl Pricing {
    /// The rates that apply to a request of `input_tokens`.
    pub fn price_for(&self, input_tokens: i64) -> &Price {
        match &self.long_context {
            Some(long) if input_tokens > long.above => &long.price,
            _ => &self.base,
        }
    }

    /// What `usage` costs at the rates its prompt length selects, in micro-dollars.
    pub fn cost(&self, usage: &Usage) -> i64 {
        self.price_for(usage.input_tokens).cost(usage)
    }

    /// The ceiling price of a request whose prompt is at most `input_bound` tokens.
    pub fn ceiling(&self, input_bound: i64, audio_in: bool, audio_out: bool) -> Price {
        let mut ceiling = self.base.ceiling(audio_in, audio_out);
        if let Some(long) = &self.long_context
            && input_bound > long.above
        {
            ceiling = ceiling.max(long.price.ceiling(audio_in, audio_out));
        }
        ceiling
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
    /// A stored budget period, `total` or `monthly`; `Minute` is for rate limits, never stored.
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
    /// Micro-dollars free to reserve.
    pub remaining: i64,
    /// Micro-dollars reserved by requests not yet settled.
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
            ..Price::default()
        };
        // 1000 * 0.15 = 150, 10 * 0.6 = 6.
        assert_eq!(price.cost(&Usage::totals(1_000, 10)), 156);
        assert_eq!(price.cost(&Usage::totals(1, 0)), 1);
        let cached = Usage {
            cached_input_tokens: 1_000,
            ..Usage::totals(1_000, 0)
        };
        assert_eq!(price.cost(&cached), 75);
    }

    #[test]
    fn av_2_each_kind_of_token_is_billed_at_its_own_price_and_parts_never_exceed_totals() {
        // Anthropic-like: cache writes at 1.25x, reads at 0.1x; reasoning at its own price.
        let price = Price {
            input: 3_000_000,
            output: 15_000_000,
            cached_input: Some(300_000),
            cache_write_input: Some(3_750_000),
            reasoning: Some(20_000_000),
            ..Price::default()
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 500_000,
            cache_write_tokens: 250_000,
            output_tokens: 100_000,
            reasoning_tokens: 40_000,
            ..Usage::default()
        };
        // 250k fresh * 3 + 500k * 0.3 + 250k * 3.75 + 60k * 15 + 40k * 20 (micro-dollars / 1e6).
        assert_eq!(
            price.cost(&usage),
            750_000 + 150_000 + 937_500 + 900_000 + 800_000
        );
        // Parts larger than their totals are clamped, never billed twice.
        let inflated = Usage {
            cached_input_tokens: 5_000_000,
            cache_write_tokens: 5_000_000,
            reasoning_tokens: 9_000_000,
            ..Usage::totals(1_000, 10)
        };
        assert!(
            price.cost(&inflated) <= price.ceiling(false, false).cost(&Usage::totals(1_000, 10))
        );
        let ceiling = price.ceiling(false, false);
        assert_eq!((ceiling.input, ceiling.output), (3_750_000, 20_000_000));
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
