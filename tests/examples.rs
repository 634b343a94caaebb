//! The shipped examples run green from a fresh copy.

use std::path::Path;

use crate::test::Test;

/// Copy an example into a fresh temp project, leaving out what a run leaves behind (and
/// the cache, unless the example ships one).
fn copy_example(name: &str) -> Test {
    let test = Test::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    copy_dir(&source, test.path(), name == "llm");
    test
}

fn copy_dir(from: &Path, to: &Path, with_cache: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let skip = match name.to_str() {
            Some(".venv" | "build" | "__pycache__" | "locks") => true,
            Some(".clab") => !with_cache,
            // The llm example's src/ is its generated output, which the cache restores.
            Some("src") => with_cache,
            _ => false,
        };
        if skip {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, with_cache);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn quickstart_runs_and_then_replays_from_the_cache() {
    let test = copy_example("quickstart");
    test.run_with(&["run"])
        .status(0)
        .stdout_has("5 rows checked")
        .stdout_has("4 tasks: 4 ran");
    test.run_with(&["run"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached");
}

#[test]
fn python_uv_example_runs_green() {
    crate::test::require_uv();
    let test = copy_example("python-uv");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("12 passed")
        .stdout_has("TOTAL")
        .stdout_has("4 tasks: 4 ran");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("4 cached");
}

#[test]
fn uv_workspace_example_runs_green_and_then_only_what_a_change_touches() {
    crate::test::require_uv();
    let test = copy_example("uv-workspace");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("[core:test] 2 passed")
        .stdout_has("[lib:test] 2 passed")
        .stdout_has("[cli:test] 2 passed")
        .stdout_has("7 tasks: 7 ran");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("7 tasks: 0 ran, 7 cached");
    // A change in lib reruns lib's checks and cli's tests (which exercise lib's code), not
    // core's; inside lib, bare names are lib's tasks.
    let path = "packages/lib/src/tally_report/__init__.py";
    let source = test.read(path);
    test.write(path, &format!("{source}\n\nSEPARATOR = \": \"\n"));
    test.run_with(&["-C", "packages/lib", "run", "test"])
        .status(0)
        .stdout_has("⚡ core:test cached")
        .stdout_has("✓ lib:test")
        .stdout_lacks("cli:test");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("✓ lib:lint")
        .stdout_has("✓ cli:test")
        .stdout_has("7 tasks: 2 ran, 5 cached");
}

#[test]
fn llm_example_replays_offline_from_its_shipped_cache() {
    let test = copy_example("llm");
    test.run_with(&["run", "--offline"])
        .status(0)
        .stdout_has("⚡ module cached")
        .stdout_has("2 cached");
    assert!(test.read("src/slugify.py").contains("def slugify"));
    test.write("spec/slugify.md", "# changed\n");
    test.run_with(&["run", "--offline"]).status(1).stdout_has(
        "module needs an LLM call (spec/slugify.md changed, +1 more) and --offline is set",
    );
}

#[test]
fn rules_example_reports_its_known_violation() {
    let test = copy_example("rules");
    test.run_with(&["run"])
        .status(1)
        .stdout_has("src/shop/plugins.py:8:5: error:")
        .stdout_has("src/shop/cart.py:7:5: warning:");
    test.run_with(&["check"]).status(0);
}
