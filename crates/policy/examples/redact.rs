//! Redacting personal data and secrets with `portcullis-policy`, outside the gateway: the same
//! detector and placeholders the guardrail and the request log use.
//!
//! ```bash
//! cargo run -p portcullis-policy --example redact -- "Mail jane@example.com, card 4111 1111 1111 1111"
//! ```

use portcullis_policy::pii::{Detector, Placeholders, redact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Reach Jane at jane.roe@example.com or +44 20 7946 0958.".to_owned());
    // Building the detector compiles its patterns: do it once and share it.
    let detector = Detector::new()?;
    let findings = detector.find(&text);
    // One numbering per text or request: a repeated value keeps its placeholder.
    let mut placeholders = Placeholders::default();
    let redacted = redact(&text, &findings, &mut placeholders);
    let kinds: Vec<&str> = placeholders
        .kinds()
        .into_iter()
        .map(|k| k.as_str())
        .collect();
    eprintln!("found: {}", kinds.join(", "));
    #[allow(clippy::print_stdout, reason = "an example's output")]
    {
        println!("{redacted}");
    }
    Ok(())
}
