//! An org's privacy settings as the data plane applies them: what a request log keeps, and
//! what the guardrail does with personal data in a prompt.

crate::word::word! {
    /// What the request log keeps of a request (RM-1).
    pub enum LoggingLevel {
        /// Who, when, which route and target, tokens, cost, status: never the content.
        Metadata = "metadata",
        /// Metadata and the request and answer content, redacted as the org says, kept for
        /// the content retention.
        Content = "content",
    }
}

crate::word::word! {
    /// What the inline guardrail does with personal data in a prompt (CF-3).
    pub enum GuardrailMode {
        /// Nothing: the prompt leaves as sent.
        Off = "off",
        /// Each value is replaced by a typed placeholder before the prompt leaves.
        Redact = "redact",
        /// A prompt holding any is refused (400 `pii_detected`).
        Block = "block",
    }
}

impl Default for LoggingLevel {
    /// A new org's level.
    fn default() -> Self {
        Self::Metadata
    }
}

impl Default for GuardrailMode {
    /// A new org's mode.
    fn default() -> Self {
        Self::Off
    }
}
