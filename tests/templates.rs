//! `clab init` templates run green with their real tools on a fresh project, and a second
//! `clab run` runs nothing.
//!
//! python-uv needs `uv` (which fetches ruff, pytest and basedpyright from PyPI): without it
//! the test fails and says how to install it, it never skips. rust needs cargo (with rustfmt
//! and clippy); cargo-nextest is used when installed, and one test hides it to check the
//! plain `cargo test` path.

use std::path::{Path, PathBuf};

use crate::test::{Run, Test, require_uv};

/// A fresh project from `template`, checking init's closing hint.
fn init(template: &str) -> Test {
    let test = Test::new();
    test.run_with(&["init", "--template", template, "--name", "demo-app"])
        .status(0)
        .stdout_has("next: `clab run`");
    test
}

/// Run clab in `test` with extra variables.
fn run_env(test: &Test, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = test.command(args);
    command.envs(env.iter().copied());
    let output = command.output().expect("run clab");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Where `tool` is on `PATH`, if anywhere.
fn on_path(tool: &str, path: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(tool))
        .find(|file| file.is_file())
}

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_default()
}

#[test]
fn blank_template_runs_green_then_from_the_cache() {
    let test = init("blank");
    test.run_with(&["run"])
        .status(0)
        .stdout_has("hello from demo-app")
        .stdout_has("1 task: 1 ran");
    test.run_with(&["run"])
        .status(0)
        .stdout_has("1 task: 0 ran, 1 cached");
}

/// `clab run` twice on a fresh rust project with `path` as `PATH`.
fn rust_runs_green_twice(path: &str) -> (Test, Run) {
    let test = init("rust");
    let first = run_env(&test, &["run"], &[("PATH", path)])
        .status(0)
        .stdout_has("✓ fmt")
        .stdout_has("✓ clippy")
        .stdout_has("✓ test")
        .stdout_has("4 tasks: 4 ran");
    assert!(test.exists("Cargo.lock"), "`fetch` wrote Cargo.lock");
    run_env(&test, &["run"], &[("PATH", path)])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached")
        .stdout_lacks("warning");
    (test, first)
}

#[test]
fn rust_template_runs_green_then_from_the_cache() {
    let path = path_var();
    assert!(
        on_path("cargo", &path).is_some(),
        "this test needs cargo (https://rustup.rs)"
    );
    let (test, first) = rust_runs_green_twice(&path);
    if on_path("cargo-nextest", &path).is_some() {
        // nextest's JUnit report is read: the test count comes from it.
        first.stdout_has("2 tests, 2 passed, 0 failed");
        assert!(test.exists("target/nextest/ci/junit.xml"));
    } else {
        first.stdout_has("wrote no JUnit report `target/nextest/ci/junit.xml`");
    }

    // A config file named as an input that did not exist reruns `fmt` once it appears.
    test.write("rustfmt.toml", "max_width = 100\n");
    test.run_with(&["run"])
        .status(0)
        .stdout_has("[fmt] runs: rustfmt.toml added")
        .stdout_has("4 tasks: 1 ran, 3 cached");
}

#[test]
fn rust_template_falls_back_to_cargo_test_without_nextest() {
    // PATH without the directories holding cargo-nextest, and cargo linked in on its own
    // when it lived in one of them.
    let path = path_var();
    let cargo = on_path("cargo", &path).expect("this test needs cargo (https://rustup.rs)");
    let shim = tempfile::tempdir().unwrap();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("cargo-nextest").exists())
        .collect();
    if on_path(
        "cargo",
        &std::env::join_paths(&dirs).unwrap().to_string_lossy(),
    )
    .is_none()
    {
        std::os::unix::fs::symlink(&cargo, shim.path().join("cargo")).unwrap();
        dirs.insert(0, shim.path().to_path_buf());
    }
    let path = std::env::join_paths(&dirs).unwrap();
    let path = path.to_string_lossy();
    assert!(on_path("cargo-nextest", &path).is_none());
    let (test, first) = rust_runs_green_twice(&path);
    first
        .stdout_has("test result: ok. 2 passed")
        .stdout_has("warning: `test` wrote no JUnit report `target/nextest/ci/junit.xml`");
    assert!(!test.exists("target/nextest/ci/junit.xml"));
}

#[test]
fn python_uv_template_runs_green_then_from_the_cache_and_checks_the_lock_under_ci() {
    require_uv();
    let test = init("python-uv");
    let ci = [("CI", "true")];

    // Under CI the lock must already be there: `uv lock --check` does not write one.
    run_env(&test, &["run"], &ci)
        .status(1)
        .stdout_has("Unable to find lockfile")
        .stdout_has("✗ lock");
    assert!(!test.exists("uv.lock"));

    // Locally the first run writes uv.lock, installs the tools from PyPI and passes.
    test.run_with(&["run"])
        .status(0)
        .stdout_has("All checks passed!")
        .stdout_has("0 errors")
        .stdout_has("3 tests, 3 passed")
        .stdout_has("TOTAL")
        .stdout_has("8 tasks: 8 ran");
    assert!(test.exists("uv.lock"));
    assert!(test.exists(".venv"));
    test.run_with(&["run"])
        .status(0)
        .stdout_has("8 tasks: 0 ran, 8 cached");

    // The audit asks PyPI's vulnerability data about the locked packages where PyPI answers
    // (pip-audit), and says it skipped where it does not (this machine's PyPI mirror serves
    // no per-release JSON); it is never cached.
    for _ in 0..2 {
        let audit = test.run_with(&["run", "audit"]).status(0);
        assert!(
            audit
                .stdout
                .contains("::warning::not audited: PyPI's vulnerability data")
                || audit.stdout.contains("No known vulnerabilities found"),
            "{}",
            audit.stdout
        );
        assert!(audit.stdout.contains("✓ audit"), "{}", audit.stdout);
    }

    // Under CI, lock and sync check the committed lock (CI is part of the key).
    run_env(&test, &["run", "sync"], &ci)
        .status(0)
        .stdout_has("[lock] runs: env CI changed")
        .stdout_has("2 tasks: 2 ran");
    run_env(&test, &["run", "sync"], &ci)
        .status(0)
        .stdout_has("2 tasks: 0 ran, 2 cached");

    // A pyproject.toml change the lock does not have fails under CI, and uv.lock is left as
    // it was; locally `lock` relocks.
    let lock = test.read("uv.lock");
    let pyproject = test.read("pyproject.toml");
    test.write(
        "pyproject.toml",
        &pyproject.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    );
    run_env(&test, &["run", "sync"], &ci)
        .status(1)
        .stdout_has("✗ lock");
    assert_eq!(test.read("uv.lock"), lock);
    test.run_with(&["run"]).status(0).stdout_has("✓ lock");
    assert!(test.read("uv.lock").contains("version = \"0.2.0\""));
}

#[test]
fn every_template_has_a_test_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blank", "python-uv", "rust"]);
}
