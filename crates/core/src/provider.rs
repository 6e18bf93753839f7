//! Which API an upstream speaks: a credential's `provider`, parsed once where it is read.

crate::word::word! {
    /// Which API a target speaks, and so which adapter calls it.
    pub enum ProviderKind {
        /// OpenAI, at its public endpoint unless the credential names a base URL.
        OpenAi = "openai",
        /// Any server that speaks OpenAI's API, at the credential's base URL, which it needs.
        OpenAiCompatible = "openai_compatible",
        /// Azure OpenAI: the base URL names the resource and the model its deployment.
        Azure = "azure",
        /// Anthropic's Messages API.
        Anthropic = "anthropic",
        /// Google's Gemini API.
        Gemini = "gemini",
        /// The built-in `mock` provider: no network, and the model name chooses its behaviour.
        Mock = "mock",
    }
}

impl ProviderKind {
    /// Whether a credential of this kind must name its base URL (no public endpoint).
    pub fn needs_base_url(self) -> bool {
        matches!(self, Self::OpenAiCompatible | Self::Azure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_own_name_and_nothing_else_does() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.name()), Some(kind));
            assert_eq!(ProviderKind::ALL[kind as usize], kind);
        }
        assert_eq!(ProviderKind::parse("OpenAI"), None);
        let error = "nope".parse::<ProviderKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`nope` is not one of `openai`, `openai_compatible`, `azure`, `anthropic`, `gemini`, `mock`"
        );
    }
}
