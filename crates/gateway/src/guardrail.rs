//! The inline PII guardrail (CF-3): per org `off`, `redact` (each value replaced by a typed
//! placeholder before the request leaves for the provider) or `block` (400 `pii_detected`,
//! naming kinds, never values). Every data-plane request passes here in `funnel::serve_alias`,
//! after translation to OpenAI's shape, so that no route or mode skips it.
//!
//! What is looked at: every string, object key and number of the request but its `model`
//! alias, each in its compatibility form (NFKC).

use portcullis_core::privacy::GuardrailMode;
use portcullis_policy::pii::{Detector, PiiKind, Placeholders, find_in_json, redact_json};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::logs::GuardrailRecord;

/// What the guardrail did, and how many bytes placeholders added (the reservation's bound on
/// prompt tokens grows by as much).
#[derive(Debug)]
pub struct Checked {
    pub record: GuardrailRecord,
    pub grown: usize,
}

/// Runs `f` on the request as the provider receives it, but for `model` (the route alias,
/// which never leaves as sent): message contents and names, tool calls and definitions,
/// schemas, embeddings input, `user`, anything a client adds; keys and numbers too.
fn without_model<T>(request: &mut Map<String, Value>, f: impl FnOnce(&mut Value) -> T) -> T {
    let model = request.remove("model");
    let mut rest = Value::Object(std::mem::take(request));
    let out = f(&mut rest);
    if let Value::Object(fields) = rest {
        *request = fields;
    }
    if let Some(model) = model {
        request.insert("model".into(), model);
    }
    out
}

/// Applies the org's guardrail mode to a request in OpenAI's shape; `blocked` turns a
/// `blocked` record into the client's error.
pub fn check(
    detector: &Detector,
    mode: GuardrailMode,
    request: &mut Map<String, Value>,
) -> Checked {
    let mut kinds: Vec<PiiKind> = Vec::new();
    let mut grown = 0;
    match mode {
        GuardrailMode::Block => {
            without_model(request, |rest| find_in_json(detector, rest, &mut kinds));
        }
        GuardrailMode::Redact => {
            let mut names = Placeholders::default();
            grown = without_model(request, |rest| redact_json(detector, rest, &mut names));
            kinds = names.kinds();
        }
        GuardrailMode::Off => {
            return Checked {
                record: GuardrailRecord {
                    action: "off",
                    kinds: Vec::new(),
                },
                grown: 0,
            };
        }
    }
    kinds.sort();
    let names: Vec<String> = kinds.iter().map(|k| k.as_str().to_owned()).collect();
    let action = match (mode, kinds.is_empty()) {
        (_, true) => "passed",
        (GuardrailMode::Block, false) => "blocked",
        _ => "redacted",
    };
    Checked {
        record: GuardrailRecord {
            action,
            kinds: names,
        },
        grown,
    }
}

/// The error a blocked request gets: the kinds, never the values.
pub fn blocked(record: &GuardrailRecord) -> ApiError {
    ApiError::InvalidRequest {
        code: "pii_detected",
        message: format!(
            "the request contains personal data or secrets ({}); this organisation blocks them",
            record.kinds.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Map<String, Value> {
        let value = json!({
            "model": "m",
            "user": "bob@example.com",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Mail bob@example.com"},
                                             {"type": "image_url", "image_url": {"url": "https://x"}}]},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f",
                    "arguments": "{\"ssn\": \"123-45-6789\"}"}}]}
            ]
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn redact_replaces_every_input_string_with_consistent_placeholders() {
        let detector = Detector::new().unwrap();
        let mut request = request();
        let checked = check(&detector, GuardrailMode::Redact, &mut request);
        let text = Value::Object(request).to_string();
        assert!(!text.contains("bob@example.com"), "{text}");
        assert!(!text.contains("123-45-6789"), "{text}");
        assert!(text.contains("Mail [EMAIL_1]"), "{text}");
        assert!(text.contains("\"user\":\"[EMAIL_1]\""), "{text}");
        assert_eq!(checked.record.action, "redacted");
        assert_eq!(checked.record.kinds, vec!["email", "us_ssn"]);
    }

    #[test]
    fn block_names_kinds_and_leaves_the_request_alone() {
        let detector = Detector::new().unwrap();
        let mut request = request();
        let checked = check(&detector, GuardrailMode::Block, &mut request);
        assert_eq!(checked.record.action, "blocked");
        let error = blocked(&checked.record).to_string();
        assert!(error.contains("email, us_ssn"), "{error}");
        assert!(!error.contains("bob@"), "{error}");
        assert_eq!(request, self::request());
    }

    #[test]
    fn off_looks_at_nothing_and_clean_requests_pass() {
        let detector = Detector::new().unwrap();
        let mut request = request();
        assert_eq!(
            check(&detector, GuardrailMode::Off, &mut request)
                .record
                .action,
            "off"
        );
        let mut clean = Map::new();
        clean.insert(
            "messages".into(),
            json!([{"role": "user", "content": "hello"}]),
        );
        assert_eq!(
            check(&detector, GuardrailMode::Block, &mut clean)
                .record
                .action,
            "passed"
        );
    }

    /// The request: a schema property named with an SSN and an address went through
    /// `block` untouched; a card as a JSON number and in full-width digits too.
    #[test]
    fn av_4_keys_numbers_and_full_width_digits_are_blocked_and_redacted() {
        let detector = Detector::new().unwrap();
        let body = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "fill the form"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": {
                "type": "object",
                "properties": {"ssn 536-90-4399 of jane.roe@example.com": {"type": "string"}}}}},
            "metadata": {"card": 4111111111111111_u64, "again": "４１１１ １１１１ １１１１ １１１１"}
        });
        let Value::Object(original) = body else {
            unreachable!()
        };
        let mut request = original.clone();
        let checked = check(&detector, GuardrailMode::Block, &mut request);
        assert_eq!(checked.record.action, "blocked");
        assert_eq!(
            checked.record.kinds,
            vec!["email", "payment_card", "us_ssn"]
        );
        assert_eq!(request, original, "block changes nothing");

        let checked = check(&detector, GuardrailMode::Redact, &mut request);
        assert_eq!(checked.record.action, "redacted");
        let text = Value::Object(request.clone()).to_string();
        for value in ["536-90-4399", "jane.roe", "4111111111111111", "４１１１"] {
            assert!(!text.contains(value), "{value} left in {text}");
        }
        assert_eq!(request["model"], "m", "the alias is not the client's text");
    }
}
