//! PII detection throughput on ordinary prose (a support conversation with a little PII in it,
//! as prompts are), on prose with none, on text that is nearly all PII, on non-ASCII prose
//! (read in its folded form), and on a whole chat request as JSON (keys and numbers too). The
//! target is 100 MB/s or more on one core.
#![allow(clippy::unwrap_used, reason = "a benchmark stops on its first failure")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_policy::pii::{Detector, Placeholders, find_in_json, redact, redact_json};

const PARAGRAPH: &str = "Thanks for getting back to me so quickly. I have been using the \
    product for about three years now, and until last week everything worked as expected. On \
    Tuesday the export stopped halfway through, and since then the dashboard shows an error \
    whenever I open the reports page. I tried clearing the cache, signing out and in again, and \
    using another browser, but nothing changed. Could you have a look at what happened to the \
    account and tell me whether any of the data was lost? The order was placed in March, and \
    the invoice should be in your system under the same name as this message. ";

const WITH_PII: &str = "You can reach me at maria.gonzalez@example.com or on +44 20 7946 0958 \
    if that is easier; our office IP is 203.0.113.42. ";

/// A support-ticket export: every line carries a name, an address, a phone and more (a
/// finding every ~40 bytes).
const DENSE: &str = "Ticket 48213, Maria Gonzalez <maria.gonzalez@example.com>, +44 20 7946 0958: \
    export stopped on Tuesday, login from 203.0.113.42.\nTicket 48214, Jon Berg \
    <jon.berg@example.org>, (415) 555-0134: card 4111 1111 1111 1111 declined twice, refund \
    asked.\n";

/// Nothing but findings: every kind, in a few formats each, one after another.
const LIST: &str = "ana.lopez@example.com, +44 20 7946 0958, (415) 555-0134, 030 901820, \
    4111 1111 1111 1111, 123-45-6789, GB82 WEST 1234 5698 7654 32, 203.0.113.42, \
    2001:db8::8a2e:370:7334, sk-proj-Ab3dEf9hIj2kLm4nOp6qRs8tUv0wXy, +49 151 2125 4556. ";

/// Accented and CJK prose with full-width digits and an internationalised address.
const UNICODE: &str = "Bonjour, je m'appelle Zoë et j'habite à Besançon. 日本語のテキストも\
    少し含まれています。電話は０３－１２３４－５６７８、メールは jörg.müller@exämple.de です。";

fn repeated(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len() + 1)
}

/// A chat request of `size` bytes as JSON: many messages, a schema, metadata numbers.
fn request(size: usize) -> serde_json::Value {
    let mut messages = Vec::new();
    let mut length = 0;
    while length < size {
        let content = format!("{PARAGRAPH}{WITH_PII}");
        length += content.len() + 40;
        messages.push(serde_json::json!({"role": "user", "content": content}));
    }
    serde_json::json!({"model": "m", "messages": messages, "max_tokens": 512,
        "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": {
            "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}},
        "metadata": {"order": 12345678, "ratio": 0.25}})
}

fn corpus(size: usize, pii: bool) -> String {
    let mut text = String::with_capacity(size + 1024);
    let mut n = 0;
    while text.len() < size {
        text.push_str(PARAGRAPH);
        if pii && n % 4 == 0 {
            text.push_str(WITH_PII);
        }
        n += 1;
    }
    text
}

fn bench(c: &mut Criterion) {
    let detector = Detector::new().unwrap();
    let mut group = c.benchmark_group("pii");
    for (name, pii) in [("prose", false), ("prose_with_pii", true)] {
        let text = corpus(1 << 20, pii);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("find/{name}"), |b| {
            b.iter(|| detector.find(std::hint::black_box(&text)))
        });
        group.bench_function(format!("redact/{name}"), |b| {
            b.iter(|| {
                let findings = detector.find(std::hint::black_box(&text));
                redact(&text, &findings, &mut Placeholders::default())
            })
        });
    }
    for (name, text) in [
        ("pii_dense", repeated(DENSE, 1 << 20)),
        ("pii_only", repeated(LIST, 1 << 20)),
        ("unicode_prose", repeated(UNICODE, 1 << 20)),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("find/{name}"), |b| {
            b.iter(|| detector.find(std::hint::black_box(&text)))
        });
        group.bench_function(format!("redact/{name}"), |b| {
            b.iter(|| {
                let findings = detector.find(std::hint::black_box(&text));
                redact(&text, &findings, &mut Placeholders::default())
            })
        });
    }
    let json = request(1 << 20);
    group.throughput(Throughput::Bytes(json.to_string().len() as u64));
    group.bench_function("find/json_request", |b| {
        b.iter(|| {
            let mut kinds = Vec::new();
            find_in_json(&detector, std::hint::black_box(&json), &mut kinds);
            kinds
        })
    });
    group.bench_function("redact/json_request", |b| {
        b.iter(|| {
            let mut value = json.clone();
            redact_json(&detector, &mut value, &mut Placeholders::default());
            value
        })
    });
    let prompt = corpus(2048, true);
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    group.bench_function("find/2KiB_prompt", |b| {
        b.iter(|| detector.find(std::hint::black_box(&prompt)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
