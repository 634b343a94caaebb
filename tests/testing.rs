//! Test reports and coverage gates after a task, and `clab init` templates.

use crate::test::Test;

const PYTEST_JUNIT: &str = include_str!("../engine/reports/fixtures/junit/pytest.xml");
const COVERAGE_XML: &str = include_str!("../engine/reports/fixtures/coverage/coveragepy.xml");

fn reports_project(gate: u32) -> Test {
    Test::new()
        .file("fixtures/junit.xml", PYTEST_JUNIT)
        .file("fixtures/coverage.xml", COVERAGE_XML)
        .file(
            "tasks.kdl",
            &format!(
                r#"
                task "cov" {{
                    inputs "fixtures/coverage.xml"
                    run "mkdir -p build" "cp fixtures/coverage.xml build/coverage.xml"
                    coverage "build/coverage.xml" fail-under={gate}
                }}
                task "tests" {{
                    inputs "fixtures/junit.xml"
                    run "mkdir -p build" "cp fixtures/junit.xml build/junit.xml"
                    junit "build/junit.xml"
                }}
                "#
            ),
        )
}

#[test]
fn coverage_under_the_gate_fails_with_the_table() {
    reports_project(80)
        .args(&["run", "cov"])
        .run()
        .status(1)
        .stdout_has("TOTAL")
        .stdout_has("coverage 52.1% is under fail-under=80");
}

#[test]
fn coverage_above_the_gate_passes_and_is_shown_again_from_the_cache() {
    let test = reports_project(50);
    test.run_with(&["run", "cov"]).status(0).stdout_has("TOTAL");
    std::fs::remove_dir_all(test.path().join("build")).unwrap();
    test.run_with(&["run", "cov"])
        .status(0)
        .stdout_has("⚡ cov cached")
        .stdout_has("TOTAL");
    assert!(test.exists("build/coverage.xml"), "the report was restored");
}

#[test]
fn failing_tests_are_named_with_their_message() {
    reports_project(0)
        .args(&["run", "tests"])
        .run()
        .status(1)
        .stdout_has("test_money_compare")
        .stdout_has("AssertionError: integer division expected")
        .stdout_has("3 of 9 tests failed");
}

#[test]
fn failing_tests_become_github_annotations() {
    reports_project(0)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "tests"])
        .run()
        .status(1)
        .stdout_has("::error file=tests/test_ops.py,line=15,title=tests%3A tests.test_ops%3A%3Atest_div_wrong::AssertionError: integer division expected%0A");
}

#[test]
fn a_missing_junit_report_is_a_warning_naming_the_file_and_the_exit_status_decides() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "t" { inputs "tasks.kdl"; run "true"; junit "build/junit.xml" }
        task "broken" { run "false"; junit "build/junit.xml" }
        "#,
    );
    let run = test
        .run_with(&["run", "t"])
        .status(0)
        .stdout_has("warning: `t` wrote no JUnit report `build/junit.xml`")
        .stdout_lacks("did not write its declared output");
    // Once: not again for the same report as a missing output.
    assert_eq!(
        run.stdout.matches("build/junit.xml").count(),
        1,
        "{}",
        run.stdout
    );
    test.run_with(&["run", "t"])
        .status(0)
        .stdout_has("⚡ t cached")
        .stdout_lacks("warning");
    test.run_with(&["run", "broken"])
        .status(1)
        .stdout_has("✗ broken");
}

#[test]
fn init_templates_pass_check() {
    for template in ["blank", "rust", "python-uv"] {
        let test = Test::new();
        test.run_with(&["init", "--template", template, "--name", "demo"])
            .status(0);
        test.run_with(&["check"])
            .status(0)
            .stdout_has("no problems");
        assert!(test.read(".gitignore").contains(".clab/"));
        test.run_with(&["init", "--template", template])
            .status(2)
            .stderr_has("use --force");
    }
}

#[test]
fn init_appends_to_an_existing_gitignore() {
    let test = Test::new().file(".gitignore", "node_modules/\n");
    test.run_with(&["init"]).status(0);
    let ignore = test.read(".gitignore");
    assert!(ignore.starts_with("node_modules/\n"), "{ignore}");
    assert!(ignore.contains(".clab/"));
}
