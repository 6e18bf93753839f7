//! `ProviderError`: who failed and whether another target could succeed. Messages are scrubbed
//! of provider keys and never carry upstream URLs.

/// Why an upstream attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The connection failed or was dropped: the one error retried on the same target.
    #[error("the upstream refused or dropped the connection")]
    Connect,
    /// No answer within the attempt's time; the upstream may have billed the work.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// An HTTP error status with the upstream's (scrubbed) message.
    #[error("the upstream answered {status}: {message}")]
    Status {
        /// The HTTP status, or the one an error event in a stream stands for.
        status: u16,
        /// The upstream's message, scrubbed of the provider key and cut to 500 characters.
        message: String,
    },
    /// A body that is not what was asked, or that broke off while read; it may have been billed.
    #[error("the upstream sent a response that is not valid")]
    InvalidResponse,
    /// A body or event past its bound: never read whole into memory.
    #[error("the upstream's answer is larger than allowed")]
    TooLarge,
    /// The request cannot be served by this provider at all (its shape is wrong for it).
    #[error("{0}")]
    Unsupported(String),
    /// The base URL names an address provider requests may not reach (AV-4): loopback or a
    /// private network the operator did not allow, link-local, or the gateway itself.
    #[error("the upstream's address is not one provider requests may reach")]
    Refused,
    /// An attempt may have been billed and the caller's budget holds no other.
    #[error("no budget is left for another attempt")]
    BudgetSpent,
}

impl ProviderError {
    /// Whether the next target could succeed: connection failures, timeouts, 429 and 5xx.
    /// Any other 4xx is the caller's request at fault and is not retried.
    pub fn should_fall_back(&self) -> bool {
        match self {
            ProviderError::Connect
            | ProviderError::Timeout
            | ProviderError::InvalidResponse
            | ProviderError::TooLarge
            | ProviderError::Refused => true,
            ProviderError::Status { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Unsupported(_) | ProviderError::BudgetSpent => false,
        }
    }

    /// What failed, without the upstream's message (which may quote the prompt): the form for
    /// application logs and traces (RM-2).
    pub fn summary(&self) -> String {
        match self {
            ProviderError::Connect => "connect".to_owned(),
            ProviderError::Timeout => "timeout".to_owned(),
            ProviderError::Status { status, .. } => format!("status {status}"),
            ProviderError::InvalidResponse => "invalid response".to_owned(),
            ProviderError::TooLarge => "too large".to_owned(),
            ProviderError::Refused => "address refused".to_owned(),
            ProviderError::Unsupported(_) => "unsupported request".to_owned(),
            ProviderError::BudgetSpent => "budget spent".to_owned(),
        }
    }

    /// A low-cardinality name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Connect => "connect",
            ProviderError::Timeout => "timeout",
            ProviderError::Status { status: 429, .. } => "status_429",
            ProviderError::Status { status, .. } if *status >= 500 => "status_5xx",
            ProviderError::Status { .. } => "status_4xx",
            ProviderError::InvalidResponse => "invalid_response",
            ProviderError::TooLarge => "too_large",
            ProviderError::Refused => "address_refused",
            ProviderError::Unsupported(_) => "unsupported",
            ProviderError::BudgetSpent => "budget_spent",
        }
    }

    /// Whether retrying the same target soon may help (a refused connection often does).
    pub fn retry_same_target(&self) -> bool {
        matches!(self, ProviderError::Connect)
    }

    /// Whether the upstream may have done (and billed) the work before failing: it took the
    /// request and did not answer in time, or answered 2xx with something too large or not
    /// what was asked. Error statuses and refused connections are not billed.
    pub fn may_have_been_billed(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout | ProviderError::TooLarge | ProviderError::InvalidResponse
        )
    }

    pub(crate) fn from_reqwest(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            ProviderError::Timeout
        } else if error.is_decode() || error.is_body() {
            ProviderError::InvalidResponse
        } else {
            ProviderError::Connect
        }
    }
}

/// The upstream's error message with the provider key removed, bounded in length.
pub(crate) fn scrub(message: &str, secret: &str) -> String {
    let mut text: String = message.chars().take(500).collect();
    if secret.len() >= 8 && secret.is_ascii() {
        text = text.replace(secret, "[redacted]");
        // Providers often echo a masked key: its first or last characters.
        text = redact_affix(&text, secret, true);
        text = redact_affix(&text, secret, false);
    }
    // Keys passed as URL parameters (`key=...`) by some providers.
    let mut cleaned = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("key=") {
        cleaned.push_str(&rest[..at + 4]);
        cleaned.push_str("[redacted]");
        rest = &rest[at + 4..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    cleaned.push_str(rest);
    cleaned
}

/// Redacts every run of 8 or more characters that starts (or ends) like the secret does.
fn redact_affix(text: &str, secret: &str, prefix: bool) -> String {
    const MIN: usize = 8;
    let anchor = if prefix {
        &secret[..MIN]
    } else {
        &secret[secret.len() - MIN..]
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(anchor) {
        let (before, from) = rest.split_at(at);
        if prefix {
            let len = from
                .bytes()
                .zip(secret.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            out.push_str(before);
            out.push_str("[redacted]");
            rest = &from[len..];
        } else {
            let matched_back = before
                .bytes()
                .rev()
                .zip(secret.bytes().rev().skip(MIN))
                .take_while(|(a, b)| a == b)
                .count();
            out.push_str(&before[..before.len() - matched_back]);
            out.push_str("[redacted]");
            rest = &from[MIN..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_availability_failures_fall_back() {
        assert!(ProviderError::Connect.should_fall_back());
        assert!(ProviderError::Timeout.should_fall_back());
        assert!(
            ProviderError::Status {
                status: 429,
                message: String::new()
            }
            .should_fall_back()
        );
        assert!(
            ProviderError::Status {
                status: 503,
                message: String::new()
            }
            .should_fall_back()
        );
        assert!(
            !ProviderError::Status {
                status: 400,
                message: String::new()
            }
            .should_fall_back()
        );
        assert!(
            !ProviderError::Status {
                status: 401,
                message: String::new()
            }
            .should_fall_back()
        );
    }

    #[test]
    fn provider_keys_are_scrubbed_from_messages() {
        let key = "sk-proj-abcdefghijklmnop0123";
        let scrubbed = scrub(
            &format!("Incorrect API key provided: {key}. see https://x?key=AIzaSecret&y=1"),
            key,
        );
        assert!(!scrubbed.contains(key));
        assert!(!scrubbed.contains("AIzaSecret"));
        assert!(scrubbed.contains("key=[redacted]&y=1"));
        let partial = scrub("key sk-proj-abcde...0123 is wrong", key);
        assert!(!partial.contains("sk-proj-abcde"), "{partial}");
        let tail = scrub("key ...ijklmnop0123 is wrong", key);
        assert!(!tail.contains("ijklmnop0123"), "{tail}");
    }
}
