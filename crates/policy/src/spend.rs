//! Cost estimation (AV-2): the price table that ships with Portcullis and its overrides, and
//! the worst-case token count a request reserves before it is sent.

use portcullis_core::money::Price;

/// An upper bound on the prompt tokens of a request of `bytes` bytes. Byte-level BPE
/// tokenizers (OpenAI, Anthropic, Gemini) never make a token of less than one byte, so the
/// byte count never under-estimates; the reservation is settled to the real count anyway.
pub fn input_token_bound(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Output tokens reserved when neither the request nor the route says.
pub const DEFAULT_MAX_OUTPUT_TOKENS: i64 = 4096;

/// The default price table of the repository (`prices/prices.toml`), and any overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    pub version: String,
    models: Vec<(String, Price)>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    version: String,
    #[serde(default)]
    models: std::collections::BTreeMap<String, Price>,
}

#[derive(Debug, thiserror::Error)]
#[error("price table: {0}")]
pub struct PriceTableError(String);

impl PriceTable {
    /// The table that ships with this version of Portcullis.
    pub fn builtin() -> Result<Self, PriceTableError> {
        Self::parse(include_str!("../prices/prices.toml"))
    }

    pub fn parse(text: &str) -> Result<Self, PriceTableError> {
        let file: TableFile = toml::from_str(text).map_err(|e| PriceTableError(e.to_string()))?;
        let mut table = Self {
            version: file.version,
            models: Vec::new(),
        };
        for (model, price) in file.models {
            table.set(model, price)?;
        }
        Ok(table)
    }

    fn set(&mut self, model: String, price: Price) -> Result<(), PriceTableError> {
        if price.input < 0 || price.output < 0 || price.cached_input.is_some_and(|p| p < 0) {
            return Err(PriceTableError(format!(
                "`{model}`: prices must not be negative"
            )));
        }
        self.models.retain(|(m, _)| *m != model);
        self.models.push((model, price));
        Ok(())
    }

    /// This table with `other`'s entries added or replacing; the version names both.
    pub fn overridden_by(mut self, other: Self) -> Result<Self, PriceTableError> {
        for (model, price) in other.models {
            self.set(model, price)?;
        }
        self.version = format!("{}+{}", self.version, other.version);
        Ok(self)
    }

    /// The price of `model`: an exact entry, else the longest entry that is a prefix followed
    /// by `-` (a dated snapshot of the model).
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .filter(|(key, _)| {
                model == key
                    || model
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(_, price)| *price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_exact_and_dated_models_and_takes_overrides() {
        let table = PriceTable::builtin().unwrap();
        assert!(!table.version.is_empty());
        let mini = table.lookup("gpt-4o-mini").unwrap();
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18"), Some(mini));
        assert_ne!(table.lookup("gpt-4o"), Some(mini));
        assert_eq!(table.lookup("gpt-4oz"), None);
        assert_eq!(table.lookup("unknown-model"), None);
        let local = PriceTable::parse(
            "version = \"local-1\"\n[models.\"gpt-4o-mini\"]\ninput = 1\noutput = 2\n",
        )
        .unwrap();
        let merged = table.overridden_by(local).unwrap();
        assert_eq!(merged.lookup("gpt-4o-mini").map(|p| p.output), Some(2));
        assert!(merged.version.ends_with("+local-1"));
        assert!(
            PriceTable::parse("version = \"x\"\n[models.a]\ninput = -1\noutput = 0\n").is_err()
        );
        assert!(PriceTable::parse("version = \"x\"\n[models.a]\ninput = 1\n").is_err());
    }
}
