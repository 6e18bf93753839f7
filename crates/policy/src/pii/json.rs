//! Personal data in JSON (CF-3, RM-2): every string, every object key and every number, read
//! as text. A key is the client's text as much as a value (a schema's property may be named
//! with an address), and a card number may be sent as a JSON number.

use serde_json::{Map, Value};

use super::{Detector, PiiKind, Placeholders, redact};

/// Adds to `kinds` each kind found anywhere in `value`, once.
pub fn find_in_json(detector: &Detector, value: &Value, kinds: &mut Vec<PiiKind>) {
    let mut note = |text: &str| {
        for finding in detector.find(text) {
            if !kinds.contains(&finding.kind) {
                kinds.push(finding.kind);
            }
        }
    };
    walk(value, &mut note);
}

/// A number as the detector reads it: as written, and, if it is a whole number written as a
/// negative or a float (`-4111111111111111`, `4111111111111111.0`), its digits alone.
fn number_text(number: &serde_json::Number) -> String {
    let written = number.to_string();
    let whole = number
        .as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 1e19 && (written.contains(['.', 'e', 'E', '-'])))
        .map(|f| format!("{}", f.abs() as u64));
    match whole {
        Some(digits) => format!("{written} {digits}"),
        None => written,
    }
}

fn walk(value: &Value, note: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => note(text),
        Value::Number(number) => note(&number_text(number)),
        Value::Array(items) => items.iter().for_each(|item| walk(item, note)),
        Value::Object(fields) => fields.iter().for_each(|(key, item)| {
            note(key);
            walk(item, note);
        }),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Replaces each finding in `value` by its placeholder, in place: in strings, in keys, and in
/// numbers (which become strings). Returns the bytes the placeholders added.
pub fn redact_json(detector: &Detector, value: &mut Value, names: &mut Placeholders) -> usize {
    match value {
        Value::String(text) => redact_text(detector, text, names),
        Value::Number(number) => {
            let text = number_text(number);
            let found = detector.find(&text);
            if found.is_empty() {
                return 0;
            }
            let redacted = redact(&text, &found, names);
            let grown = redacted.len().saturating_sub(text.len());
            *value = Value::String(redacted);
            grown
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|item| redact_json(detector, item, names))
            .sum(),
        Value::Object(fields) => redact_object(detector, fields, names),
        Value::Bool(_) | Value::Null => 0,
    }
}

fn redact_object(
    detector: &Detector,
    fields: &mut Map<String, Value>,
    names: &mut Placeholders,
) -> usize {
    let mut grown: usize = fields
        .values_mut()
        .map(|item| redact_json(detector, item, names))
        .sum();
    let renamed: Vec<(String, String)> = fields
        .keys()
        .filter_map(|key| {
            let found = detector.find(key);
            (!found.is_empty()).then(|| (key.clone(), redact(key, &found, names)))
        })
        .collect();
    for (old, mut new) in renamed {
        if let Some(item) = fields.remove(&old) {
            // Two keys redacted alike keep both values.
            while fields.contains_key(&new) {
                new.push('_');
            }
            grown += new.len().saturating_sub(old.len());
            fields.insert(new, item);
        }
    }
    grown
}

fn redact_text(detector: &Detector, text: &mut String, names: &mut Placeholders) -> usize {
    let found = detector.find(text);
    if found.is_empty() {
        return 0;
    }
    let redacted = redact(text, &found, names);
    let grown = redacted.len().saturating_sub(text.len());
    *text = redacted;
    grown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The guardrail's blind spots: a schema property named with personal data, a card sent as
    /// a number, full-width digits, an internationalised address.
    #[test]
    fn av_4_keys_numbers_and_folded_text_are_read_and_redacted() {
        let detector = Detector::new().unwrap();
        let original = json!({
            "response_format": {"type": "json_schema", "json_schema": {"schema": {
                "properties": {"ssn 536-90-4399 of jane.roe@example.com": {"type": "string"}}}}},
            "metadata": {"card": 4111111111111111_u64, "note": "card ４１１１ １１１１ １１１１ １１１１"},
            "messages": [{"role": "user", "content": "write to jörg.müller@exämple.de"}]
        });
        let mut kinds = Vec::new();
        find_in_json(&detector, &original, &mut kinds);
        kinds.sort();
        assert_eq!(
            kinds,
            vec![PiiKind::Email, PiiKind::PaymentCard, PiiKind::UsSsn]
        );
        let mut value = original.clone();
        let mut names = Placeholders::default();
        redact_json(&detector, &mut value, &mut names);
        let text = value.to_string();
        for secret in [
            "536-90-4399",
            "jane.roe",
            "4111111111111111",
            "４１１１",
            "jörg",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(value["metadata"]["card"], "[PAYMENT_CARD_1]");
        assert_eq!(value["metadata"]["note"], "card [PAYMENT_CARD_2]");
        let properties = value["response_format"]["json_schema"]["schema"]["properties"]
            .as_object()
            .unwrap();
        let key = properties.keys().next().unwrap();
        assert!(
            key.starts_with("ssn [US_SSN_1] of [EMAIL_"),
            "{key} in {text}"
        );
        // A card as a negative or a float is still a card.
        let mut kinds = Vec::new();
        find_in_json(
            &detector,
            &json!([-4111111111111111_i64, 4111111111111111.0]),
            &mut kinds,
        );
        assert_eq!(kinds, vec![PiiKind::PaymentCard]);
        // Numbers without personal data stay numbers.
        let mut plain = json!({"max_tokens": 100, "temperature": 0.5});
        redact_json(&detector, &mut plain, &mut names);
        assert_eq!(plain, json!({"max_tokens": 100, "temperature": 0.5}));
    }
}
