//! Tidy checks: the architecture rules of docs/ARCHITECTURE.md as tests anyone can run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Each crate's normal (non-dev) dependencies as (name, set of dependency names).
fn normal_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null())
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), dependencies)
        })
        .collect()
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn internal_dependencies_point_one_way() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("portcullis-core", &[][..]),
        ("portcullis-policy", &["portcullis-core"][..]),
        ("portcullis-storage", &["portcullis-core"][..]),
        ("portcullis-providers", &["portcullis-core"][..]),
        (
            "portcullis-gateway",
            &[
                "portcullis-core",
                "portcullis-policy",
                "portcullis-storage",
                "portcullis-providers",
            ][..],
        ),
        (
            "portcullis",
            &[
                "portcullis-core",
                // `pii scan`: the detector for operators, without a database.
                "portcullis-policy",
                "portcullis-storage",
                "portcullis-gateway",
                "portcullis-devdb",
            ][..],
        ),
        ("portcullis-testkit", &["portcullis-storage"][..]),
        ("portcullis-devdb", &[][..]),
        ("xtask", &["portcullis-devdb"][..]),
        ("portcullis-tests", &[][..]),
    ]);
    for (package, dependencies) in normal_dependencies() {
        let permitted = allowed
            .get(package.as_str())
            .unwrap_or_else(|| panic!("new crate {package}: add its allowed dependencies here"));
        for dependency in dependencies.iter().filter(|d| d.starts_with("portcullis")) {
            assert!(
                permitted.contains(&dependency.as_str()),
                "{package} must not depend on {dependency}"
            );
        }
    }
}

#[test]
fn each_framework_is_named_by_one_crate_only() {
    let owners = [
        ("sqlx", &["portcullis-storage", "portcullis-testkit"][..]),
        ("axum", &["portcullis-gateway"][..]),
        ("reqwest", &["portcullis-providers"][..]),
    ];
    for (package, dependencies) in normal_dependencies() {
        for (framework, allowed) in owners {
            if dependencies.contains(framework) {
                assert!(
                    allowed.contains(&package.as_str()),
                    "{package} must not name {framework}"
                );
            }
        }
    }
}

#[test]
fn core_and_policy_have_no_async_or_io_dependencies() {
    let dependencies = normal_dependencies();
    for package in ["portcullis-core", "portcullis-policy"] {
        for forbidden in ["tokio", "sqlx", "axum", "reqwest", "hyper", "futures"] {
            assert!(
                !dependencies[package].contains(forbidden),
                "{package} must stay free of I/O: it depends on {forbidden}"
            );
        }
    }
}

#[test]
fn the_architecture_map_names_every_crate() {
    let map = std::fs::read_to_string(workspace_root().join("docs/ARCHITECTURE.md")).unwrap();
    for package in normal_dependencies().keys() {
        assert!(
            map.contains(package.as_str()),
            "docs/ARCHITECTURE.md does not mention {package}"
        );
    }
}

#[test]
fn every_library_module_says_what_it_owns() {
    let mut missing = Vec::new();
    for dir in ["crates", "xtask"] {
        visit(&workspace_root().join(dir), &mut |path| {
            let text = std::fs::read_to_string(path).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(path.display().to_string());
            }
        });
    }
    assert!(
        missing.is_empty(),
        "modules without a //! line: {missing:#?}"
    );
}

fn visit(dir: &Path, on_file: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            visit(&path, on_file);
        } else if path.extension().is_some_and(|e| e == "rs") {
            on_file(&path);
        }
    }
}

/// CM-1: every control of the registry (docs/controls.toml) has at least one test named for it
/// (`fn ac_1_...` or `fn ..._ac_1_...`) somewhere in the workspace, but for those whose work
/// is open (`open_in`), which the report shows NOT PROVEN; an open control that has tests is
/// no longer open and must say so.
#[test]
fn cm_1_every_control_in_the_registry_has_a_test() {
    #[derive(serde::Deserialize)]
    struct Registry {
        control: Vec<Control>,
    }
    #[derive(serde::Deserialize)]
    struct Control {
        id: String,
        open_in: Option<String>,
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let registry: Registry =
        toml::from_str(&std::fs::read_to_string(root.join("docs/controls.toml")).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut dirs = vec![root.join("crates"), root.join("tests"), root.join("xtask")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Only test functions count: a `fn` after `#[test]` or `#[tokio::test]`, not a
                // helper whose name starts with a control id.
                let mut marked = false;
                for line in text.lines().map(str::trim_start) {
                    if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
                        marked = true;
                    } else if marked && (line.starts_with("#[") || line.starts_with("//")) {
                    } else if marked {
                        let rest = line.trim_start_matches("pub ").trim_start_matches("async ");
                        if let Some(name) = rest.strip_prefix("fn ") {
                            names
                                .push(name.split(['(', '<']).next().unwrap_or_default().to_owned());
                        }
                        marked = false;
                    }
                }
            }
        }
    }
    let tested = |id: &str| {
        let token = id.to_ascii_lowercase().replace('-', "_");
        names
            .iter()
            .any(|n| n.starts_with(&format!("{token}_")) || n.contains(&format!("_{token}_")))
    };
    let untested: Vec<&str> = registry
        .control
        .iter()
        .filter(|c| c.open_in.is_none() && !tested(&c.id))
        .map(|c| c.id.as_str())
        .collect();
    assert!(untested.is_empty(), "controls without a test: {untested:?}");
    let stale: Vec<&str> = registry
        .control
        .iter()
        .filter(|c| c.open_in.is_some() && tested(&c.id))
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "controls marked open that have tests: {stale:?}"
    );
    assert_eq!(registry.control.len(), 29, "every control of CONTROLS.md");
}
