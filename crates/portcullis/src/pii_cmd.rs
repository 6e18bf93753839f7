//! `portcullis pii scan [--redact]`: the detector of the guardrail, for operators. Reads text
//! on standard input; writes one JSON object per finding (`type`, `start`, `end`, byte offsets
//! into the input), or with `--redact` the text with typed placeholders. Never prints a value.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use portcullis_policy::pii::{Detector, Placeholders, redact};

/// Larger inputs are refused rather than read into memory whole.
const MAX_INPUT: u64 = 256 * 1024 * 1024;

pub fn scan(redacting: bool) -> anyhow::Result<ExitCode> {
    let detector = Detector::new()?;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .context("reading standard input")?;
    if input.len() as u64 > MAX_INPUT {
        anyhow::bail!("the input is over {} MiB", MAX_INPUT >> 20);
    }
    let text = std::str::from_utf8(&input).context("the input is not UTF-8 text")?;
    let findings = detector.find(text);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if redacting {
        out.write_all(redact(text, &findings, &mut Placeholders::default()).as_bytes())?;
    } else {
        for finding in &findings {
            let line = serde_json::json!({
                "type": finding.kind.as_str(),
                "start": finding.start,
                "end": finding.end,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    eprintln!("{} finding(s)", findings.len());
    Ok(ExitCode::SUCCESS)
}
