//! Personal data and secrets in text (CF-3, RM-2): where they are, of which kind, and the text
//! with each replaced by a typed placeholder (`[EMAIL_1]`).
//!
//! One pass of one regular expression (every kind's shape as one pattern of a multi-pattern
//! regex, bytes only, so that it runs as a lazy DFA) proposes candidates, each with the first
//! kind whose shape matches there; each candidate is then held to that kind's rules (and to the
//! later kinds' if it fails them):
//! word boundaries, the Luhn check of a card, the mod-97 check and the country length of an
//! IBAN, the ranges of an SSN, a parsed IP address, the randomness of a key. A candidate that
//! fails every rule is dropped and the search goes on one byte later.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use regex_automata::Input;
use regex_automata::meta::Regex as MultiRegex;

mod fold;
mod json;
mod rules;

pub use json::{find_in_json, redact_json};

/// The kinds of personal data and secrets found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// An email address, not a file name such as `logo@2x.png`.
    Email,
    /// A phone number, international or national, with its extension if it has one.
    Phone,
    /// A card number of its network's length that passes the Luhn check.
    PaymentCard,
    /// A US Social Security number, `AAA-GG-SSSS`, outside the ranges never assigned.
    UsSsn,
    /// An IBAN of its country's length whose mod-97 check holds.
    Iban,
    /// An IPv4 or IPv6 address that parses as one.
    IpAddress,
    /// API keys, tokens, JWTs and private keys.
    Secret,
}

impl PiiKind {
    /// Every kind, in one place, so that `parse` knows every name.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::PaymentCard,
        PiiKind::UsSsn,
        PiiKind::Iban,
        PiiKind::IpAddress,
        PiiKind::Secret,
    ];

    /// The name in JSON, settings and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::UsSsn => "us_ssn",
            PiiKind::Iban => "iban",
            PiiKind::IpAddress => "ip_address",
            PiiKind::Secret => "secret",
        }
    }

    /// The kind an `as_str` name stands for; `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The tag of its placeholders: `[EMAIL_1]`.
    fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::PaymentCard => "PAYMENT_CARD",
            PiiKind::UsSsn => "US_SSN",
            PiiKind::Iban => "IBAN",
            PiiKind::IpAddress => "IP_ADDRESS",
            PiiKind::Secret => "SECRET",
        }
    }
}

impl std::fmt::Display for PiiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: its kind and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub kind: PiiKind,
    /// Where it starts: a byte offset into the text searched.
    pub start: usize,
    /// Where it ends: the byte offset just past it.
    pub end: usize,
}

/// The built-in patterns do not compile: a bug, found when the detector is built.
#[derive(Debug, thiserror::Error)]
#[error("the PII patterns do not compile: {0}")]
pub struct DetectorError(String);

/// The compiled detector. Build it once (it takes milliseconds) and share it.
#[derive(Debug, Clone)]
pub struct Detector {
    /// One pattern per rule, in the rules' order: a match names the first rule that matches
    /// at its start (the earlier ones cannot).
    candidates: MultiRegex,
    rules: Vec<rules::Rule>,
}

impl Detector {
    /// Compiles the rules into one detector; fails only if a built-in pattern is wrong.
    pub fn new() -> Result<Self, DetectorError> {
        let rules = rules::all().map_err(|e| DetectorError(e.to_string()))?;
        let patterns: Vec<&str> = rules.iter().map(|rule| rule.pattern.as_str()).collect();
        let candidates = MultiRegex::builder()
            .syntax(
                regex_automata::util::syntax::Config::new()
                    .unicode(false)
                    .utf8(false),
            )
            .configure(
                MultiRegex::config()
                    .utf8_empty(false)
                    .hybrid_cache_capacity(16 << 20),
            )
            .build_many(&patterns)
            .map_err(|e| DetectorError(e.to_string()))?;
        Ok(Self { candidates, rules })
    }

    /// Every finding, in order, none overlapping, read in each character's compatibility
    /// form (NFKC: full-width digits are digits) and named in `text`'s own bytes.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let Some(folded) = fold::fold(text) else {
            return self.find_folded(text);
        };
        let mut found = self.find_folded(&folded.text);
        for finding in &mut found {
            finding.start = folded.start(finding.start);
            finding.end = folded.end(finding.end);
        }
        found
    }

    fn find_folded(&self, text: &str) -> Vec<Finding> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let Some(candidate) = self.candidates.find(Input::new(bytes).range(at..)) else {
                break;
            };
            let start = candidate.start();
            match self.confirm(bytes, candidate) {
                Some(finding) => {
                    at = finding.end.max(start + 1);
                    found.push(finding);
                }
                None => at = start + 1,
            }
        }
        found
    }

    /// The first rule that holds at `start`, in the rules' order of precedence, from `first`
    /// (the first whose shape matched there).
    /// The candidate's own span is that rule's match there; later rules are run for theirs.
    fn confirm(&self, bytes: &[u8], candidate: regex_automata::Match) -> Option<Finding> {
        let (start, first) = (candidate.start(), candidate.pattern().as_usize());
        let here = Input::new(bytes)
            .range(start..)
            .anchored(regex_automata::Anchored::Yes);
        self.rules[first..]
            .iter()
            .enumerate()
            .find_map(|(n, rule)| {
                let end = if n == 0 {
                    candidate.end()
                } else {
                    rule.alone.find(here.clone())?.end()
                };
                let (s, e) = (rule.check)(bytes, start, end)?;
                Some(Finding {
                    kind: rule.kind,
                    start: s,
                    end: e,
                })
            })
    }
}

/// Numbers the values of one text or request: the same value keeps its placeholder, so a
/// conversation that repeats an address still reads coherently.
#[derive(Debug, Default)]
pub struct Placeholders {
    seen: HashMap<PiiKind, HashMap<String, usize>>,
}

impl Placeholders {
    /// The number of `value` among its kind's, from 1.
    fn number(&mut self, kind: PiiKind, value: &str) -> usize {
        let values = self.seen.entry(kind).or_default();
        if let Some(n) = values.get(value) {
            return *n;
        }
        let n = values.len() + 1;
        values.insert(value.to_owned(), n);
        n
    }

    /// The kinds replaced so far, each once, in a stable order.
    pub fn kinds(&self) -> Vec<PiiKind> {
        let mut kinds: Vec<PiiKind> = self.seen.keys().copied().collect();
        kinds.sort();
        kinds
    }
}

/// `text` with each finding replaced by its placeholder.
pub fn redact(text: &str, findings: &[Finding], names: &mut Placeholders) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + findings.len() * 8);
    let mut at = 0;
    for f in findings {
        // Findings mapped back from folded text may overlap: the union is redacted.
        if f.end <= at {
            continue;
        }
        let start = f.start.max(at);
        let (Some(before), Some(value)) = (text.get(at..start), text.get(start..f.end)) else {
            continue;
        };
        out.push_str(before);
        let n = names.number(f.kind, value);
        // Writing to a String cannot fail.
        let _ = write!(out, "[{}_{n}]", f.kind.tag());
        at = f.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// The Luhn check of a run of digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// ISO 13616's check: the country and check digits moved to the end, letters as 10..35, the
/// whole number mod 97 is 1.
pub(crate) fn iban_checksum(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for &c in tail.iter().chain(head) {
        let (value, width) = match c {
            b'0'..=b'9' => (u32::from(c - b'0'), 10),
            b'A'..=b'Z' => (u32::from(c - b'A') + 10, 100),
            _ => return false,
        };
        rem = (rem * width + value) % 97;
    }
    rem == 1
}

pub(crate) fn parses_as_ipv6(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|t| t.parse::<Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, String)> {
        let detector = Detector::new().unwrap();
        detector
            .find(text)
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_owned()))
            .collect()
    }

    #[test]
    fn each_kind_is_found_with_its_offsets() {
        let text = "Mail ana.lopez+news@mail.example.co.uk or call +44 20 7946 0958; card \
                    4111 1111 1111 1111, SSN 123-45-6789, IBAN GB82 WEST 1234 5698 7654 32, \
                    from 192.168.10.4 and 2001:db8::8a2e:370:7334, key sk-proj-Ab3dEf9hIj2kLm4nOp6qRs8tUv0wXy.";
        let found = kinds(text);
        let expected = [
            (PiiKind::Email, "ana.lopez+news@mail.example.co.uk"),
            (PiiKind::Phone, "+44 20 7946 0958"),
            (PiiKind::PaymentCard, "4111 1111 1111 1111"),
            (PiiKind::UsSsn, "123-45-6789"),
            (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
            (PiiKind::IpAddress, "192.168.10.4"),
            (PiiKind::IpAddress, "2001:db8::8a2e:370:7334"),
            (PiiKind::Secret, "sk-proj-Ab3dEf9hIj2kLm4nOp6qRs8tUv0wXy"),
        ];
        let expected: Vec<(PiiKind, String)> = expected
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn near_misses_are_not_findings() {
        for text in [
            "order ORD-2024-000123 shipped 2024-01-15T10:30:00Z",
            "upgrade to v2.10.4 or 10.0.19045.3570",
            "card 4111 1111 1111 1112 fails Luhn",
            "ssn-like 000-12-3456 and 666-12-3456 and 912-34-5678",
            "use std::io::Result and std::vector",
            "import @scope/pkg and @Override, logo@2x.png",
            "pip install scikit-learn; sk-learn is fine; task-list",
            "mac 00:1A:2B:3C:4D:5E at 10:30:45",
            "GB82 WEST 1234 5698 7654 33 has a bad checksum",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn redaction_numbers_values_and_keeps_repeats() {
        let detector = Detector::new().unwrap();
        let text = "a@example.com, b@example.com, a@example.com";
        let mut names = Placeholders::default();
        let out = redact(text, &detector.find(text), &mut names);
        assert_eq!(out, "[EMAIL_1], [EMAIL_2], [EMAIL_1]");
        assert_eq!(names.kinds(), vec![PiiKind::Email]);
    }

    /// Shapes that make a backtracking or restart-happy scanner quadratic: each would take
    /// minutes at this size if the work per byte were not bounded (nextest stops it then).
    #[test]
    fn adversarial_inputs_take_linear_work() {
        let detector = Detector::new().unwrap();
        let size = 512 * 1024;
        let long_local = format!("{}@x.io", "a".repeat(size));
        let colons = "1:".repeat(size / 2);
        let digits = "1".repeat(size);
        let key_bodies = format!("sk-{}", "a1".repeat(size / 2));
        let headers = "-----BEGIN PRIVATE KEY-----".repeat(size / 28);
        let dots = "1.".repeat(size / 2);
        for text in [&long_local, &colons, &digits, &key_bodies, &headers, &dots] {
            let found = detector.find(text);
            assert!(found.len() <= text.len());
        }
        // A local part past 64 characters is no address, however it ends.
        assert!(detector.find(&long_local).is_empty());
        let fine = format!("{} mail {}@x.io", "a".repeat(1000), "b".repeat(64));
        assert_eq!(detector.find(&fine).len(), 1);
    }

    #[test]
    fn checksums() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(iban_checksum(b"DE89370400440532013000"));
        assert!(!iban_checksum(b"DE89370400440532013001"));
    }
}
