//! PII detection throughput on ordinary prose (a support conversation with a little PII in it,
//! as prompts are) and on prose with none. The target is 100 MB/s or more on one core.
#![allow(clippy::unwrap_used, reason = "a benchmark stops on its first failure")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_policy::pii::{Detector, Placeholders, redact};

const PARAGRAPH: &str = "Thanks for getting back to me so quickly. I have been using the \
    product for about three years now, and until last week everything worked as expected. On \
    Tuesday the export stopped halfway through, and since then the dashboard shows an error \
    whenever I open the reports page. I tried clearing the cache, signing out and in again, and \
    using another browser, but nothing changed. Could you have a look at what happened to the \
    account and tell me whether any of the data was lost? The order was placed in March, and \
    the invoice should be in your system under the same name as this message. ";

const WITH_PII: &str = "You can reach me at maria.gonzalez@example.com or on +44 20 7946 0958 \
    if that is easier; our office IP is 203.0.113.42. ";

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
    let prompt = corpus(2048, true);
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    group.bench_function("find/2KiB_prompt", |b| {
        b.iter(|| detector.find(std::hint::black_box(&prompt)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
