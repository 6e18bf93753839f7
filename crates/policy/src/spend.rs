//! Cost estimation (AV-2): the price table that ships with Portcullis and its overrides, what
//! it knows of each model that bounds a request's cost (its output limit, the worst case of an
//! image), and the worst-case token count a request reserves before it is sent.

use portcullis_core::money::{LongContext, Price, Pricing};

/// An upper bound on the prompt tokens of a request of `bytes` bytes. Byte-level BPE
/// tokenizers (OpenAI, Anthropic, Gemini) never make a token of less than one byte, so the
/// byte count never under-estimates; the reservation is settled to the real count anyway.
pub fn input_token_bound(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Output tokens a request may ask for when neither it, its route nor the table says more.
pub const DEFAULT_MAX_OUTPUT_TOKENS: i64 = 4096;

/// The largest output bound a request may send: no model writes more in one answer.
pub const MAX_OUTPUT_BOUND: i64 = 1_000_000;

/// Prompt tokens one image part may cost when the table knows nothing of the model: above
/// every published rule (OpenAI's gpt-4o-mini bills a 768x2048 high-detail image as 48,169).
pub const DEFAULT_IMAGE_TOKENS: i64 = 50_000;

/// What the table knows of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelEntry {
    /// The model's standard rates, with any long-context rates.
    pub pricing: Pricing,
    /// The rates of priority processing (`service_tier: "priority"`), where sold.
    pub priority: Option<Pricing>,
    /// The most output tokens the model writes in one answer.
    pub max_output: Option<i64>,
    /// The most prompt tokens one image part costs at high (or automatic) detail.
    pub image_tokens: Option<i64>,
    /// The same at `detail: "low"`.
    pub image_low_tokens: Option<i64>,
    /// The entry covers every `-` suffix of its key, not only dated snapshots.
    pub variants: bool,
}

impl ModelEntry {
    /// The worst case of one image part at this detail (`low`, or anything else).
    pub fn image_bound(&self, low_detail: bool) -> i64 {
        let high = self.image_tokens.unwrap_or(DEFAULT_IMAGE_TOKENS);
        if low_detail {
            self.image_low_tokens.unwrap_or(high)
        } else {
            high
        }
    }
}

/// The default price table of the repository (`prices/prices.toml`), and any overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    /// The table's edition, such as a date; an override appends its own after `+`.
    pub version: String,
    models: Vec<(String, ModelEntry)>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    version: String,
    #[serde(default)]
    models: std::collections::BTreeMap<String, RawEntry>,
}

/// A price with its long-context rates, as the file writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    input: i64,
    output: i64,
    cached_input: Option<i64>,
    cache_write_input: Option<i64>,
    cache_write_long_input: Option<i64>,
    reasoning: Option<i64>,
    audio_input: Option<i64>,
    audio_output: Option<i64>,
    long_context: Option<RawLong>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLong {
    above: i64,
    input: i64,
    output: i64,
    cached_input: Option<i64>,
    cache_write_input: Option<i64>,
    cache_write_long_input: Option<i64>,
}

/// One model's entry as the file writes it: its standard rates, as a tier does, and the rest.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    input: i64,
    output: i64,
    cached_input: Option<i64>,
    cache_write_input: Option<i64>,
    cache_write_long_input: Option<i64>,
    reasoning: Option<i64>,
    audio_input: Option<i64>,
    audio_output: Option<i64>,
    long_context: Option<RawLong>,
    max_output: Option<i64>,
    image_tokens: Option<i64>,
    image_low_tokens: Option<i64>,
    priority: Option<RawTier>,
    #[serde(default)]
    variants: bool,
}

impl RawEntry {
    /// The standard tier and the entry's other facts.
    fn split(self) -> (RawTier, [Option<i64>; 3], Option<RawTier>, bool) {
        let tier = RawTier {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input,
            cache_write_input: self.cache_write_input,
            cache_write_long_input: self.cache_write_long_input,
            reasoning: self.reasoning,
            audio_input: self.audio_input,
            audio_output: self.audio_output,
            long_context: self.long_context,
        };
        let facts = [self.max_output, self.image_tokens, self.image_low_tokens];
        (tier, facts, self.priority, self.variants)
    }
}

/// Why a price table does not load: a TOML error, or the model and value at fault.
#[derive(Debug, thiserror::Error)]
#[error("price table: {0}")]
pub struct PriceTableError(String);

impl RawTier {
    fn pricing(&self, model: &str) -> Result<Pricing, PriceTableError> {
        let base = Price {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input,
            cache_write_input: self.cache_write_input,
            cache_write_long_input: self.cache_write_long_input,
            reasoning: self.reasoning,
            audio_input: self.audio_input,
            audio_output: self.audio_output,
        };
        let long_context = self
            .long_context
            .as_ref()
            .map(|long| {
                if long.above < 1 {
                    return Err(PriceTableError(format!(
                        "`{model}`: long_context.above is a positive token count"
                    )));
                }
                Ok(LongContext {
                    above: long.above,
                    price: Price {
                        input: long.input,
                        output: long.output,
                        cached_input: long.cached_input,
                        cache_write_input: long.cache_write_input,
                        cache_write_long_input: long.cache_write_long_input,
                        ..base
                    },
                })
            })
            .transpose()?;
        let pricing = Pricing { base, long_context };
        let prices = [pricing.base]
            .into_iter()
            .chain(pricing.long_context.map(|l| l.price));
        for price in prices {
            let all = [
                Some(price.input),
                Some(price.output),
                price.cached_input,
                price.cache_write_input,
                price.cache_write_long_input,
                price.reasoning,
                price.audio_input,
                price.audio_output,
            ];
            if all.into_iter().flatten().any(|p| p < 0) {
                return Err(PriceTableError(format!(
                    "`{model}`: prices must not be negative"
                )));
            }
        }
        Ok(pricing)
    }
}

impl PriceTable {
    /// The table that ships with this version of Portcullis.
    pub fn builtin() -> Result<Self, PriceTableError> {
        Self::parse(include_str!("../prices/prices.toml"))
    }

    /// Reads a table in the format of `prices/prices.toml`, refusing negative prices and token
    /// counts below 1.
    pub fn parse(text: &str) -> Result<Self, PriceTableError> {
        let file: TableFile = toml::from_str(text).map_err(|e| PriceTableError(e.to_string()))?;
        let mut table = Self {
            version: file.version,
            models: Vec::new(),
        };
        for (model, raw) in file.models {
            let positive = |name: &str, value: Option<i64>| match value {
                Some(v) if v < 1 => Err(PriceTableError(format!(
                    "`{model}`: {name} is a positive token count"
                ))),
                _ => Ok(value),
            };
            let (tier, [max_output, image_tokens, image_low_tokens], priority, variants) =
                raw.split();
            let entry = ModelEntry {
                pricing: tier.pricing(&model)?,
                priority: priority.map(|p| p.pricing(&model)).transpose()?,
                max_output: positive("max_output", max_output)?,
                image_tokens: positive("image_tokens", image_tokens)?,
                image_low_tokens: positive("image_low_tokens", image_low_tokens)?,
                variants,
            };
            table.set(model, entry);
        }
        Ok(table)
    }

    fn set(&mut self, model: String, entry: ModelEntry) {
        self.models.retain(|(m, _)| *m != model);
        self.models.push((model, entry));
    }

    /// This table with `other`'s entries added or replacing; the version names both.
    pub fn overridden_by(mut self, other: Self) -> Result<Self, PriceTableError> {
        for (model, entry) in other.models {
            self.set(model, entry);
        }
        self.version = format!("{}+{}", self.version, other.version);
        Ok(self)
    }

    /// What the table knows of `model`: an exact entry, else the entry it is a dated snapshot
    /// of (`-2024-07-18`, `-20250514`). A variant (`o3-pro`, `gpt-4o-search-preview`) is not
    /// its base model: it bills otherwise, so it has no price until the table names it. An
    /// entry with `variants = true` (the mock provider's) covers every `-` suffix.
    pub fn lookup(&self, model: &str) -> Option<&ModelEntry> {
        self.models
            .iter()
            .filter(|(key, entry)| {
                model == key
                    || model
                        .strip_prefix(key.as_str())
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|rest| entry.variants || is_snapshot_date(rest))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(_, entry)| entry)
    }
}

/// `2024-07-18` or `20250514`: the date of a model's snapshot.
fn is_snapshot_date(suffix: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match suffix.split('-').collect::<Vec<_>>().as_slice() {
        [date] => date.len() == 8 && digits(date),
        [year, month, day] => {
            year.len() == 4
                && month.len() == 2
                && day.len() == 2
                && digits(year)
                && digits(month)
                && digits(day)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_exact_and_dated_models_and_takes_overrides() {
        let table = PriceTable::builtin().unwrap();
        assert!(!table.version.is_empty());
        let mini = *table.lookup("gpt-4o-mini").unwrap();
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18"), Some(&mini));
        assert_ne!(table.lookup("gpt-4o"), Some(&mini));
        assert_eq!(table.lookup("gpt-4oz"), None);
        assert_eq!(table.lookup("unknown-model"), None);
        // A variant is not its base model; a dated snapshot is.
        assert_eq!(table.lookup("o3-pro"), None);
        assert_eq!(table.lookup("gpt-4o-search-preview"), None);
        assert!(table.lookup("claude-sonnet-4-20250514").is_some());
        assert!(
            table.lookup("mock-echo").is_some(),
            "the mock covers its variants"
        );
        let local = PriceTable::parse(
            "version = \"local-1\"\n[models.\"gpt-4o-mini\"]\ninput = 1\noutput = 2\n",
        )
        .unwrap();
        let merged = table.overridden_by(local).unwrap();
        assert_eq!(
            merged.lookup("gpt-4o-mini").map(|p| p.pricing.base.output),
            Some(2)
        );
        assert!(merged.version.ends_with("+local-1"));
        assert!(
            PriceTable::parse("version = \"x\"\n[models.a]\ninput = -1\noutput = 0\n").is_err()
        );
        assert!(PriceTable::parse("version = \"x\"\n[models.a]\ninput = 1\n").is_err());
        assert!(
            PriceTable::parse(
                "version = \"x\"\n[models.a]\ninput = 1\noutput = 1\nmax_output = 0\n"
            )
            .is_err()
        );
    }

    #[test]
    fn av_2_the_table_knows_long_context_rates_priority_and_image_bounds() {
        let table = PriceTable::builtin().unwrap();
        let pro = table.lookup("gemini-2.5-pro").unwrap();
        let long = pro.pricing.long_context.unwrap();
        assert_eq!(long.above, 200_000);
        assert!(long.price.input > pro.pricing.base.input);
        assert!(pro.pricing.ceiling(300_000, false, false).input >= long.price.input);
        assert_eq!(
            pro.pricing.ceiling(1_000, false, false).input,
            pro.pricing.base.input
        );
        let sonnet = table.lookup("claude-sonnet-4").unwrap();
        assert!(sonnet.pricing.base.cache_write_input > Some(sonnet.pricing.base.input));
        let gpt4o = table.lookup("gpt-4o").unwrap();
        assert!(gpt4o.priority.is_some());
        assert!(gpt4o.image_bound(true) < gpt4o.image_bound(false));
        assert_eq!(
            ModelEntry::default().image_bound(false),
            DEFAULT_IMAGE_TOKENS
        );
        // Every entry's worst image is within the default a model without one gets.
        assert!(
            table
                .models
                .iter()
                .all(|(_, e)| e.image_bound(false) <= DEFAULT_IMAGE_TOKENS)
        );
    }
}
