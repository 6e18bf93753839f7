//! The inline PII guardrail (CF-3): per org `off`, `redact` (each value replaced by a typed
//! placeholder before the request leaves for the provider) or `block` (400 `pii_detected`,
//! naming kinds, never values). Every data-plane request passes here in `funnel::serve_alias`,
//! after translation to OpenAI's shape, so that no route or mode skips it.
//!
//! What is looked at: every string of the request but its `model` alias.

use portcullis_policy::pii::{Detector, PiiKind, Placeholders, redact};
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

/// Calls `f` on every string the provider receives: message contents and names, tool calls
/// and tool definitions, embeddings input, `user`, and anything a client adds. Only `model`
/// (the route alias, which never leaves as sent) is skipped.
fn each_input(request: &mut Map<String, Value>, f: &mut impl FnMut(&mut String)) {
    fn walk(value: &mut Value, f: &mut impl FnMut(&mut String)) {
        match value {
            Value::String(text) => f(text),
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, f)),
            Value::Object(fields) => fields.values_mut().for_each(|item| walk(item, f)),
            _ => {}
        }
    }
    for (key, value) in request.iter_mut() {
        if key != "model" {
            walk(value, f);
        }
    }
}

/// Applies the org's guardrail mode to a request in OpenAI's shape; `blocked` turns a
/// `blocked` record into the client's error.
pub fn check(detector: &Detector, mode: &str, request: &mut Map<String, Value>) -> Checked {
    let mut kinds: Vec<PiiKind> = Vec::new();
    let mut grown = 0;
    match mode {
        "block" => each_input(request, &mut |text| {
            for finding in detector.find(text) {
                if !kinds.contains(&finding.kind) {
                    kinds.push(finding.kind);
                }
            }
        }),
        "redact" => {
            let mut names = Placeholders::default();
            each_input(request, &mut |text| {
                let found = detector.find(text);
                if !found.is_empty() {
                    let redacted = redact(text, &found, &mut names);
                    grown += redacted.len().saturating_sub(text.len());
                    *text = redacted;
                }
            });
            kinds = names.kinds();
        }
        _ => {
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
        ("block", false) => "blocked",
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
        let checked = check(&detector, "redact", &mut request);
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
        let checked = check(&detector, "block", &mut request);
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
        assert_eq!(check(&detector, "off", &mut request).record.action, "off");
        let mut clean = Map::new();
        clean.insert(
            "messages".into(),
            json!([{"role": "user", "content": "hello"}]),
        );
        assert_eq!(
            check(&detector, "block", &mut clean).record.action,
            "passed"
        );
    }
}
