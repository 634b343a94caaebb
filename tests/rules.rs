//! `clab rules validate|list|show|new` and the rules part of `clab check`.

use crate::test::Test;

const UV_RULE: &str = r#"
---
description: Standards for UV usage
globs: *.py
alwaysApply: false
---
# Use uv

Run tools with `uv run`; see @README.md.

<rule>
name: no-pip-install
filters:
  - type: file_extension
    pattern: "\\.py$"
  - type: content
    pattern: "pip install"
actions:
  - type: reject
    conditions:
      - pattern: "pip install"
        message: "Use uv add instead of pip install"
  - type: suggest
    message: Prefer `uv add` / `uv sync`.
</rule>
"#;

const ALWAYS_RULE: &str = "
---
description:
globs:
alwaysApply: true
---
Answer in short sentences.
";

const BROKEN_RULE: &str = r#"
---
description: Broken on purpose
globs: *.py
alwaysApply: false
---
# Broken

See @docs/missing.md for details.

<rule>
name: broken
filters:
  - type: file_extention
    pattern: "\\.py$"
  - type: content
    pattern: "foo("
actions:
  - type: reject
    conditions:
      - pattern: "foo\\("
        message: "no foo"
</rule>
"#;

const QUOTED_RULE: &str = r#"
---
description: Quoted globs
globs: "*.py"
---
Quoted.
"#;

/// A project with two clean rules and a Python file for their globs.
fn clean() -> Test {
    Test::new()
        .file("tasks.kdl", r#"task "a" { run "true" }"#)
        .file("README.md", "hello")
        .file("src/a.py", "print('hi')")
        .file(".cursor/rules/python/uv.mdc", UV_RULE)
        .file(".cursor/rules/style.mdc", ALWAYS_RULE)
}

/// The clean project plus a broken rule (three errors) and one with a warning.
fn broken() -> Test {
    clean()
        .file(".cursor/rules/broken.mdc", BROKEN_RULE)
        .file(".cursor/rules/quoted.mdc", QUOTED_RULE)
}

#[test]
fn validate_a_clean_rules_dir() {
    let run = clean().args(&["rules", "validate"]).run().status(0);
    assert_eq!(run.stdout, ".cursor/rules: 2 files, 1 rule, no problems\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn validate_reports_every_problem() {
    let run = broken().args(&["rules", "validate"]).run().status(1);
    assert_eq!(
        run.stdout,
        ".cursor/rules: 4 files, 2 rules, 3 errors, 1 warning\n"
    );
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn validate_json_is_flat_diagnostics() {
    let run = broken()
        .args(&["rules", "validate", "--format", "json"])
        .run()
        .status(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json on stdout");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"files": 4, "rules": 2, "errors": 3, "warnings": 1})
    );
    let entries: Vec<(String, u64, u64, String, String)> = doc["diagnostics"]
        .as_array()
        .expect("diagnostics array")
        .iter()
        .map(|d| {
            (
                d["file"].as_str().unwrap_or("").to_owned(),
                d["line"].as_u64().unwrap_or(0),
                d["col"].as_u64().unwrap_or(0),
                d["severity"].as_str().unwrap_or("").to_owned(),
                d["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let entry = |line, col, severity: &str, code: &str| {
        (
            ".cursor/rules/broken.mdc".to_owned(),
            line,
            col,
            severity.to_owned(),
            format!("clab::rules::{code}"),
        )
    };
    assert_eq!(
        entries,
        vec![
            entry(8, 5, "error", "missing_file"),
            entry(13, 11, "error", "unknown_filter_type"),
            entry(16, 14, "error", "bad_regex"),
            (
                ".cursor/rules/quoted.mdc".to_owned(),
                3,
                8,
                "warning".to_owned(),
                "clab::rules::quoted_globs".to_owned()
            ),
        ]
    );
    assert!(
        doc["diagnostics"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("file_extention")),
        "{}",
        run.stdout
    );
    // The human summary still goes to stderr; the diagnostics are not rendered twice.
    assert_eq!(
        run.stderr,
        ".cursor/rules: 4 files, 2 rules, 3 errors, 1 warning\n"
    );
}

#[test]
fn validate_in_github_actions_prints_annotations() {
    broken()
        .env("GITHUB_ACTIONS", "true")
        .args(&["rules", "validate"])
        .run()
        .status(1)
        .stdout_has(
            "::error file=.cursor/rules/broken.mdc,line=8,col=5,title=clab%3A%3Arules%3A%3Amissing_file::`docs/missing.md` does not exist\n",
        )
        .stdout_has("::warning file=.cursor/rules/quoted.mdc,line=3,col=8,");
}

#[test]
fn validate_without_tasks_kdl_uses_the_working_directory() {
    let run = Test::new()
        .file(".cursor/rules/style.mdc", ALWAYS_RULE)
        .args(&["rules", "validate"])
        .run()
        .status(0);
    assert_eq!(run.stdout, ".cursor/rules: 1 file, 0 rules, no problems\n");
}

#[test]
fn rules_dirs_come_from_tasks_kdl() {
    Test::new()
        .file(
            "tasks.kdl",
            r#"
            rules "team-rules" "more-rules"
            task "a" { run "true" }
            "#,
        )
        .file("team-rules/style.mdc", ALWAYS_RULE)
        .file("more-rules/other.mdc", ALWAYS_RULE)
        .file(".cursor/rules/ignored.mdc", BROKEN_RULE)
        .args(&["rules", "validate"])
        .run()
        .status(0)
        .stdout_has("team-rules, more-rules: 2 files, 0 rules, no problems");
}

#[test]
fn list_is_a_table() {
    let run = broken().args(&["rules", "list"]).run().status(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn show_one_rule() {
    let run = clean()
        .args(&["rules", "show", "python/uv"])
        .run()
        .status(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn show_finds_a_rule_by_its_rule_name() {
    clean()
        .args(&["rules", "show", "no-pip-install"])
        .run()
        .status(0)
        .stdout_has("python/uv (.cursor/rules/python/uv.mdc)");
}

#[test]
fn show_an_unknown_rule_suggests_a_close_one() {
    clean()
        .args(&["rules", "show", "python/vu"])
        .run()
        .status(2)
        .stderr_has("no rule `python/vu` in `.cursor/rules`")
        .stderr_has("did you mean `python/uv`?");
}

#[test]
fn new_writes_a_rule_that_validates_and_never_overwrites() {
    let test = clean();
    test.run_with(&[
        "rules",
        "new",
        "python/no-print",
        "--globs",
        "*.py, src/**/*.py",
        "--description",
        "No print in library code",
    ])
    .status(0)
    .stdout_has("created `.cursor/rules/python/no-print.mdc` (auto-attached)");
    let text = test.read(".cursor/rules/python/no-print.mdc");
    assert!(text.contains("globs: *.py, src/**/*.py\n"), "{text}");
    assert!(text.contains("name: no-print\n"), "{text}");
    test.run_with(&["rules", "validate"])
        .status(0)
        .stdout_has("3 files, 2 rules, no problems");
    test.run_with(&["rules", "new", "python/no-print", "--type", "manual"])
        .status(2)
        .stderr_has("clab::rules::exists")
        .stderr_has("pick another name");
    assert_eq!(test.read(".cursor/rules/python/no-print.mdc"), text);
}

#[test]
fn new_infers_the_type_and_checks_its_arguments() {
    let test = clean();
    test.run_with(&["rules", "new", "plain"])
        .status(0)
        .stdout_has("(manual)");
    test.run_with(&["rules", "new", "asked", "--description", "When releasing"])
        .status(0)
        .stdout_has("(agent-requested)");
    test.run_with(&["rules", "new", "every", "--type", "always"])
        .status(0)
        .stdout_has("(always)");
    test.run_with(&["rules", "new", "globless", "--type", "auto"])
        .status(2)
        .stderr_has("needs at least one glob");
    test.run_with(&["rules", "new", "Bad Name"])
        .status(2)
        .stderr_has("is not a valid rule name");
    test.run_with(&["rules", "validate"]).status(0);
}

#[test]
fn new_reports_a_taken_rule_name() {
    let test = clean();
    test.run_with(&["rules", "new", "other/no-pip-install"])
        .status(1)
        .stderr_has("clab::rules::duplicate_name")
        .stdout_has("created `.cursor/rules/other/no-pip-install.mdc`");
}

#[test]
fn check_covers_rules() {
    clean()
        .args(&["check"])
        .run()
        .status(0)
        // The task, the rule check and the implicit `rules` aggregate.
        .stdout_has("tasks.kdl: 1 task, 3 nodes, no problems\n")
        .stdout_has(".cursor/rules: 2 files, 1 rule, no problems\n");
    broken()
        .args(&["check"])
        .run()
        .status(1)
        // The task, two rule checks and the implicit `rules` aggregate.
        .stdout_has("tasks.kdl: 1 task, 4 nodes, no problems\n")
        .stdout_has(".cursor/rules: 4 files, 2 rules, 3 errors, 1 warning\n")
        .stderr_has("clab::rules::bad_regex");
}

#[test]
fn check_a_broken_tasks_kdl_stays_exit_2_and_still_reports_rules() {
    broken()
        .file("tasks.kdl", r#"task "a" { deps "b"; run "true" }"#)
        .args(&["check"])
        .run()
        .status(2)
        .stderr_has("clab::tasks::unknown_dep")
        .stderr_has("clab::rules::bad_regex")
        .stdout_has(".cursor/rules: 4 files, 2 rules, 3 errors, 1 warning\n");
    broken()
        .file("tasks.kdl", r#"task "a" {"#)
        .args(&["check"])
        .run()
        .status(2)
        .stdout_lacks(".cursor/rules");
}

/// `clab rules validate` and `list` over a corpus of real rule files (default
/// `/work/shared/corpus/mdc`): no panic, exit 0 or 1. `*.mdc.md` drafts are copied as `*.mdc`.
/// Run with `cargo test -p clab --test e2e rules::corpus -- --ignored --nocapture`.
#[test]
#[ignore = "needs a corpus of .mdc files (CLAB_MDC_CORPUS)"]
fn corpus_validates_and_lists_without_panic() {
    let corpus =
        std::env::var("CLAB_MDC_CORPUS").unwrap_or_else(|_| "/work/shared/corpus/mdc".to_owned());
    let test = Test::new();
    let rules = test.path().join(".cursor/rules");
    let mut copied = 0;
    let mut stack = vec![std::path::PathBuf::from(&corpus)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read corpus") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_suffix(".mdc.md")
                .or_else(|| name.strip_suffix(".mdc"))
            else {
                continue;
            };
            let rel = stem.strip_prefix(&corpus).unwrap_or(stem);
            let target = rules.join(format!("{}.mdc", rel.trim_start_matches('/')));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&path, &target).expect("copy");
            copied += 1;
        }
    }
    for args in [["rules", "validate"], ["rules", "list"]] {
        let start = std::time::Instant::now();
        let run = test.run_with(&args);
        eprintln!(
            "{}: {copied} files copied, exit {}, {:?}, last line: {}",
            args.join(" "),
            run.status,
            start.elapsed(),
            run.stdout.lines().last().unwrap_or("")
        );
        assert!(matches!(run.status, 0 | 1), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

fn example_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules")
}

#[test]
fn rules_example_validates_clean_and_lists_its_four_rules() {
    let dir = example_dir();
    let dir = dir.to_str().expect("utf-8 path");
    Test::new()
        .args(&["-C", dir, "rules", "validate"])
        .run()
        .status(0)
        .stdout_has(".cursor/rules: 4 files, 2 rules, no problems");
    let run = Test::new()
        .args(&["-C", dir, "rules", "list"])
        .run()
        .status(0);
    insta::assert_snapshot!(run.stdout);
}

/// The README's promise: `plugins.py` breaks `no-pip-install` at 8:5, `cart.py` gets a
/// suggestion at 7:5, nothing else is found.
#[test]
fn rules_example_findings_are_where_the_readme_says() {
    use clab_rules::{CompiledRule, Severity, discover};
    let dir = example_dir();
    let files = discover(&dir, &[std::path::Path::new(".cursor/rules")]).expect("discover");
    let rules = CompiledRule::compile_all(&files);
    let mut found = Vec::new();
    for path in [
        "src/shop/__init__.py",
        "src/shop/cart.py",
        "src/shop/plugins.py",
    ] {
        let text = std::fs::read_to_string(dir.join(path)).expect("read source");
        for rule in rules.iter().filter(|r| r.selects(path)) {
            for f in rule.scan(path, &text) {
                found.push((f.rule, f.path, f.line, f.col, f.severity));
            }
        }
    }
    assert_eq!(
        found,
        vec![
            (
                "prefer-logging".to_owned(),
                "src/shop/cart.py".to_owned(),
                7,
                5,
                Severity::Warning
            ),
            (
                "no-pip-install".to_owned(),
                "src/shop/plugins.py".to_owned(),
                8,
                5,
                Severity::Error
            ),
        ]
    );
}

/// A rule whose regex does not compile made `run rules` print `0 tasks: 0 ran` and exit 0.
#[test]
fn a_rule_that_does_not_compile_fails_run_with_the_validate_diagnostic() {
    let test = Test::new()
        .file("tasks.kdl", r#"task "a" { run "true" }"#)
        .file("src/a.py", "foo(1)\n")
        .file(
            ".cursor/rules/bad.mdc",
            r#"
            ---
            description: A bad regex
            globs: *.py
            ---
            <rule>
            name: no-foo
            actions:
              - type: reject
                conditions:
                  - pattern: "foo("
                    message: "no foo"
            </rule>
            "#,
        );
    let validate = test.run_with(&["rules", "validate"]);
    assert_eq!(validate.status, 1);
    for args in [
        &["run", "rules"][..],
        &["run", "a"],
        &["run", "--dry-run", "a"],
    ] {
        let run = test.run_with(args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("1 problem in the rule files"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("clab::rules::bad_regex"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(".cursor/rules/bad.mdc:10:18"),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains("0 ran"), "{}", run.stdout);
    }
    // The same diagnostic `rules validate` prints.
    let run = test.run_with(&["run", "rules"]);
    let diagnostic = validate
        .stderr
        .lines()
        .find(|l| l.contains("bad_regex"))
        .expect("validate names the code");
    assert!(run.stderr.contains(diagnostic.trim()), "{}", run.stderr);
    insta::assert_snapshot!(run.stderr);
    // Showing the project still works, so the rule can be looked at.
    assert_eq!(test.run_with(&["list"]).status, 0);
}

/// Problems that do not change what a rule does (a missing `@file`, an unknown key) do not
/// stop a run.
#[test]
fn rule_problems_that_do_not_break_compilation_do_not_stop_run() {
    broken_without_compile_errors()
        .args(&["run", "rules"])
        .run()
        .status(0);
}

fn broken_without_compile_errors() -> Test {
    Test::new()
        .file("tasks.kdl", r#"task "a" { run "true" }"#)
        .file("src/a.py", "print(1)\n")
        .file(
            ".cursor/rules/refs.mdc",
            r#"
            ---
            description: See @docs/missing.md
            globs: *.py
            owner: me
            ---
            See @docs/missing.md.

            <rule>
            name: no-pip
            actions:
              - type: reject
                conditions:
                  - pattern: "pip install"
                    message: "use uv"
            </rule>
            "#,
        )
}
