//! `cargo xtask compliance [--junit FILE] [--registry FILE] [--out DIR]`: the evidence report
//! (CM-1). Runs every control test (or reads the JUnit report of a run that did), and writes
//! `report.md` and `report.json`: per control of the registry (`docs/controls.toml`), its
//! requirement, SOC 2 criteria, where it is implemented, the tests that prove it with their
//! outcome, and pass or fail; with the commit and the time. Fails when a control fails or
//! has no test.
//!
//! A test proves a control when its name says so: `ac_1_...`, or `..._ac_1_...` for a test of
//! several controls (the project's naming rule, checked by `tests/tidy.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub soc2: String,
    pub title: String,
    pub requirement: String,
    pub implemented_in: Vec<String>,
    /// The issue whose work makes this control true, while it is open: the control is shown
    /// NOT PROVEN (never omitted) and does not fail the report until its tests exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_in: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registry {
    control: Vec<Control>,
}

pub fn read_registry(text: &str) -> anyhow::Result<Vec<Control>> {
    let registry: Registry = toml::from_str(text).context("the control registry")?;
    let mut ids: Vec<&str> = registry.control.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        bail!("the control registry names a control twice");
    }
    Ok(registry.control)
}

/// One test's outcome, from nextest's JUnit report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    /// The test binary (`portcullis-gateway::it`).
    pub binary: String,
    /// The test's path in its binary (`privacy::cf_3_...`).
    pub name: String,
    pub passed: bool,
    pub seconds: f64,
}

pub fn read_junit(xml: &str) -> anyhow::Result<Vec<TestOutcome>> {
    let doc = roxmltree::Document::parse(xml).context("the JUnit report is not XML")?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|n| !n.children().any(|c| c.has_tag_name("skipped")))
        .map(|n| TestOutcome {
            binary: n.attribute("classname").unwrap_or_default().to_owned(),
            name: n.attribute("name").unwrap_or_default().to_owned(),
            passed: !n
                .children()
                .any(|c| c.has_tag_name("failure") || c.has_tag_name("error")),
            seconds: n
                .attribute("time")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0.0),
        })
        .collect())
}

/// `AC-1` -> `ac_1`.
fn token(id: &str) -> String {
    id.to_ascii_lowercase().replace('-', "_")
}

/// Whether the test's own name (the last segment of its path) names the control.
pub fn proves(test: &str, id: &str) -> bool {
    let name = test.rsplit("::").next().unwrap_or(test);
    let token = token(id);
    name.starts_with(&format!("{token}_")) || name.contains(&format!("_{token}_"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NoTest,
    /// Registered, its work still open (`open_in`), and no test yet.
    NotProven,
    /// A test in the sources that names the control is not in the run: one passing test must
    /// not pass a control whose other tests did not run.
    Incomplete,
}

#[derive(Debug, Serialize)]
pub struct Evaluated {
    #[serde(flatten)]
    pub control: Control,
    pub status: Status,
    pub tests: Vec<TestOutcome>,
    /// Tests in the sources that name the control and are not in the run.
    pub missing: Vec<String>,
}

pub fn evaluate(controls: &[Control], outcomes: &[TestOutcome]) -> Vec<Evaluated> {
    controls
        .iter()
        .map(|control| {
            let tests: Vec<TestOutcome> = outcomes
                .iter()
                .filter(|t| proves(&t.name, &control.id))
                .cloned()
                .collect();
            let status = if tests.is_empty() && control.open_in.is_some() {
                Status::NotProven
            } else if tests.is_empty() {
                Status::NoTest
            } else if tests.iter().all(|t| t.passed) {
                Status::Pass
            } else {
                Status::Fail
            };
            Evaluated {
                control: control.clone(),
                status,
                tests,
                missing: Vec::new(),
            }
        })
        .collect()
}

/// The test functions of one source file: a `fn` after `#[test]` or `#[tokio::test(...)]`
/// (other attributes and doc comments between), not helpers whose names happen to start with
/// a control id.
pub fn source_tests(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut marked = false;
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
            marked = true;
        } else if marked && (line.starts_with("#[") || line.starts_with("//")) {
            // Still the same item.
        } else if marked {
            let rest = line.trim_start_matches("pub ").trim_start_matches("async ");
            if let Some(name) = rest.strip_prefix("fn ") {
                found.push(name.split(['(', '<']).next().unwrap_or_default().to_owned());
            }
            marked = false;
        }
    }
    found
}

/// Marks each control whose tests in the sources (`expected`) are not all in the run.
pub fn require_all(evaluated: &mut [Evaluated], expected: &[String]) {
    for e in evaluated {
        let ran: std::collections::HashSet<&str> = e
            .tests
            .iter()
            .map(|t| t.name.rsplit("::").next().unwrap_or(&t.name))
            .collect();
        let mut missing: Vec<String> = expected
            .iter()
            .filter(|name| proves(name, &e.control.id) && !ran.contains(name.as_str()))
            .cloned()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() && e.status != Status::NotProven {
            e.status = Status::Incomplete;
        }
        e.missing = missing;
    }
}

/// What the report is about: the commit (`git describe --dirty`: a tree with uncommitted
/// changes says so), when the report was made, and when the test run it reads was written.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub commit: String,
    pub generated_at: String,
    pub tests_run_at: String,
}

pub fn markdown(evaluated: &[Evaluated], provenance: &Provenance) -> String {
    let passed = evaluated
        .iter()
        .filter(|e| e.status == Status::Pass)
        .count();
    let mut out = format!(
        "# Portcullis control evidence\n\nCommit `{}`, generated {} from a test run written \
         {}. {passed} of {} controls pass.\n\n| control | SOC 2 | status | tests |\n\
         |---|---|---|---:|\n",
        provenance.commit,
        provenance.generated_at,
        provenance.tests_run_at,
        evaluated.len()
    );
    for e in evaluated {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            e.control.id,
            e.control.soc2,
            status_text(e.status),
            e.tests.len()
        ));
    }
    for e in evaluated {
        out.push_str(&format!(
            "\n## {}: {}\n\n{} ({})\n\n**Requirement.** {}\n\n**Implemented in.** {}\n\n",
            e.control.id,
            status_text(e.status),
            e.control.title,
            e.control.soc2,
            e.control.requirement,
            e.control
                .implemented_in
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if !e.missing.is_empty() {
            out.push_str(&format!(
                "**Missing from the run:** {}.\n\n",
                e.missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let (true, Some(issue)) = (e.tests.is_empty(), &e.control.open_in) {
            out.push_str(&format!(
                "**Not proven: its work is open ({issue}); no test proves it yet.**\n"
            ));
        } else if e.tests.is_empty() {
            out.push_str("**No test proves this control.**\n");
        } else {
            out.push_str("| test | binary | outcome | seconds |\n|---|---|---|---:|\n");
            for t in &e.tests {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {:.2} |\n",
                    t.name,
                    t.binary,
                    if t.passed { "pass" } else { "FAIL" },
                    t.seconds
                ));
            }
        }
    }
    out
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::NoTest => "NO TEST",
        Status::NotProven => "NOT PROVEN",
        Status::Incomplete => "INCOMPLETE",
    }
}

pub fn json(evaluated: &[Evaluated], provenance: &Provenance) -> serde_json::Value {
    serde_json::json!({
        "commit": provenance.commit,
        "generated_at": provenance.generated_at,
        "tests_run_at": provenance.tests_run_at,
        "passed": evaluated.iter().all(|e| matches!(e.status, Status::Pass | Status::NotProven)),
        "controls": evaluated,
    })
}

/// Writes both reports; an error when any control fails or has no test (a control whose work
/// is open is shown NOT PROVEN without failing the report).
pub fn write_reports(
    evaluated: &[Evaluated],
    provenance: &Provenance,
    out: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("report.md"), markdown(evaluated, provenance))?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json(evaluated, provenance))?,
    )?;
    let failing: Vec<String> = evaluated
        .iter()
        .filter(|e| !matches!(e.status, Status::Pass | Status::NotProven))
        .map(|e| format!("{} ({})", e.control.id, status_text(e.status)))
        .collect();
    if !failing.is_empty() {
        bail!("controls not proven: {}", failing.join(", "));
    }
    Ok(())
}

/// A test run written before the commit it would be stamped with cannot be that commit's run
/// (the file was left by an earlier run, or a run that failed before it started).
pub fn stale_run(run_written: i64, commit_time: i64) -> anyhow::Result<()> {
    if run_written < commit_time {
        bail!(
            "the test run's report is older than the commit: it is an earlier run's, and \
             would be stamped as this one's"
        );
    }
    Ok(())
}

/// The arguments of `cargo xtask compliance`.
#[derive(Debug, Default)]
pub struct Args {
    pub registry: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub out: Option<PathBuf>,
}

pub fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .map(PathBuf::from)
                .with_context(|| format!("{flag} needs a path"))
        };
        match flag.as_str() {
            "--registry" => parsed.registry = Some(value()?),
            "--junit" => parsed.junit = Some(value()?),
            "--out" => parsed.out = Some(value()?),
            other => bail!("unknown argument `{other}`: --registry, --junit or --out"),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
[[control]]
id = "ZZ-1"
soc2 = "CC0"
title = "Fixture that passes"
requirement = "Passes"
implemented_in = ["a.rs"]

[[control]]
id = "ZZ-2"
soc2 = "CC0"
title = "Fixture that fails"
requirement = "Fails"
implemented_in = ["b.rs"]

[[control]]
id = "ZZ-3"
soc2 = "CC0"
title = "Fixture without a test"
requirement = "Untested"
implemented_in = []
"#;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0">
  <testsuite name="fixture::it" tests="4">
    <testcase name="a::zz_1_holds" classname="fixture::it" time="0.25"/>
    <testcase name="b::zz_2_breaks" classname="fixture::it" time="0.5"><failure type="test failure">assertion failed</failure></testcase>
    <testcase name="b::zz_1_zz_2_both" classname="fixture::it" time="0.1"/>
    <testcase name="c::unrelated" classname="fixture::it" time="0.1"/>
  </testsuite>
</testsuites>"#;

    fn provenance() -> Provenance {
        Provenance {
            commit: "abc123".into(),
            generated_at: "2026-11-26T00:00:00Z".into(),
            tests_run_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn cm_1_a_failing_test_or_a_control_without_one_fails_the_report() {
        let controls = read_registry(REGISTRY).unwrap();
        let outcomes = read_junit(JUNIT).unwrap();
        assert_eq!(outcomes.len(), 4);
        let evaluated = evaluate(&controls, &outcomes);
        let statuses: Vec<Status> = evaluated.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Fail, Status::NoTest]);
        assert_eq!(
            evaluated[0].tests.len(),
            2,
            "a test naming two controls proves both"
        );
        let out = std::env::temp_dir().join(format!("compliance-{}", std::process::id()));
        let error = write_reports(&evaluated, &provenance(), &out).unwrap_err();
        assert!(error.to_string().contains("ZZ-2 (FAIL)"), "{error}");
        assert!(error.to_string().contains("ZZ-3 (NO TEST)"), "{error}");
        // Only passing controls: the report succeeds.
        let passing = evaluate(&controls[..1], &outcomes);
        write_reports(&passing, &provenance(), &out).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["passed"], true);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn cm_1_the_report_names_requirement_place_tests_commit_and_time() {
        let controls = read_registry(REGISTRY).unwrap();
        let evaluated = evaluate(&controls, &read_junit(JUNIT).unwrap());
        let text = markdown(&evaluated, &provenance());
        for needle in [
            "Commit `abc123`",
            "2026-11-26T00:00:00Z",
            "**Requirement.** Fails",
            "`b.rs`",
            "`b::zz_2_breaks`",
            "FAIL",
            "No test proves this control",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn cm_1_test_names_prove_only_the_controls_they_name() {
        assert!(proves("privacy::cf_3_rm_2_detector", "CF-3"));
        assert!(proves("privacy::cf_3_rm_2_detector", "RM-2"));
        assert!(!proves("privacy::cf_3_rm_2_detector", "RM-1"));
        assert!(!proves("spend::av_21_x", "AV-2"));
        assert!(
            !proves("tests::has_ac_1", "AC-1"),
            "a name ending in the token"
        );
    }

    #[test]
    fn cm_1_the_project_registry_lists_every_control_once() {
        let text = include_str!("../../docs/controls.toml");
        let controls = read_registry(text).unwrap();
        let ids: Vec<&str> = controls.iter().map(|c| c.id.as_str()).collect();
        for family in [
            ("AC", 8),
            ("AU", 4),
            ("RM", 5),
            ("EN", 3),
            ("CF", 3),
            ("AV", 4),
            ("CM", 2),
        ] {
            for n in 1..=family.1 {
                let id = format!("{}-{n}", family.0);
                assert!(
                    ids.contains(&id.as_str()),
                    "{id} missing from docs/controls.toml"
                );
            }
        }
        // Every control of CONTROLS.md: those of open work are registered too, shown NOT
        // PROVEN until their tests exist.
        assert_eq!(ids.len(), 29);
        for open in ["AC-7", "AC-8", "AU-4"] {
            let control = controls.iter().find(|c| c.id == open).unwrap();
            assert!(control.open_in.is_some(), "{open} is open work");
        }
        assert!(
            controls
                .iter()
                .all(|c| !c.requirement.is_empty() && !c.implemented_in.is_empty())
        );
    }

    #[test]
    fn cm_1_open_work_is_shown_not_proven_and_a_closed_control_without_tests_fails() {
        let mut open = read_registry(REGISTRY).unwrap();
        open[0].open_in = Some("#16".into());
        let evaluated = evaluate(&open[..1], &[]);
        assert_eq!(evaluated[0].status, Status::NotProven);
        let dir = std::env::temp_dir().join(format!("pc-compliance-{}", std::process::id()));
        write_reports(&evaluated, &provenance(), &dir).unwrap();
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(report.contains("NOT PROVEN"), "{report}");
        open[0].open_in = None;
        let evaluated = evaluate(&open[..1], &[]);
        assert!(write_reports(&evaluated, &provenance(), &dir).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Run without one of a control's tests (a crate that did not build, a filter), the
    /// control does not pass on the others.
    #[test]
    fn cm_1_a_control_whose_test_is_missing_from_the_run_is_incomplete() {
        let source = "#[test]\nfn zz_1_a() {}\n\n#[tokio::test(flavor = \"multi_thread\")]\n\
                      /// doc\nasync fn zz_1_b() {}\nfn zz_1_helper() {}\n";
        let expected = source_tests(source);
        assert_eq!(expected, vec!["zz_1_a", "zz_1_b"]);
        let controls = read_registry(REGISTRY).unwrap();
        let ran = vec![TestOutcome {
            binary: "x".into(),
            name: "m::zz_1_a".into(),
            passed: true,
            seconds: 0.0,
        }];
        let mut evaluated = evaluate(&controls[..1], &ran);
        assert_eq!(evaluated[0].status, Status::Pass);
        require_all(&mut evaluated, &expected);
        assert_eq!(evaluated[0].status, Status::Incomplete);
        assert_eq!(evaluated[0].missing, vec!["zz_1_b"]);
    }

    #[test]
    fn cm_1_a_run_older_than_the_commit_is_stale() {
        let commit = 1_700_000_000;
        assert!(stale_run(commit - 1, commit).is_err());
        assert!(stale_run(commit + 5, commit).is_ok());
    }
}
