//! Rules compiled into graph nodes: `rule:NAME` checks under the implicit `rules` aggregate,
//! scanned incrementally, and rules attached to LLM steps as context.

use crate::test::{Test, started_tasks};

const NO_PIP: &str = r#"---
description: Standards for uv usage
globs: *.py
alwaysApply: false
---
# Use uv, not pip
<rule>
name: no-pip-install
filters:
  - type: file_extension
    pattern: "\\.py$"
actions:
  - type: reject
    conditions:
      - pattern: "pip install"
        message: "Use uv add instead of pip install"
</rule>
"#;

const STYLE: &str = r#"---
description: House style for docs
globs: docs/*.md
---
Write short sentences.
"#;

fn project() -> Test {
    let mut test = Test::new()
        .file(".cursor/rules/uv.mdc", NO_PIP)
        .file(".cursor/rules/docs/style.mdc", STYLE)
        .file(
            "src/m.py",
            "import subprocess\n\n\ndef install():\n    pip install requests\n",
        );
    for n in 0..5 {
        test = test.file(&format!("src/clean_{n}.py"), "x = 1\n");
    }
    test.file("tasks.kdl", r#"task "ci" { deps "rules"; }"#)
}

#[test]
fn a_reject_rule_fails_at_the_line_and_column_then_passes_when_fixed() {
    let test = project();
    test.run_with(&["run", "ci"])
        .status(1)
        .stdout_has("src/m.py:5:5: error: Use uv add instead of pip install [no-pip-install]")
        .stdout_has("scanned 6 files, 0 unchanged; 1 finding");
    test.write("src/m.py", "def install():\n    return 'uv add requests'\n");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("[rule:no-pip-install] runs: src/m.py changed")
        .stdout_has("scanned 1 file, 5 unchanged; 0 findings");
    test.run_with(&["run", "ci"])
        .status(0)
        .stdout_has("⚡ rule:no-pip-install cached");
}

#[test]
fn rules_run_without_any_mention_in_tasks_kdl() {
    Test::new()
        .file(".cursor/rules/uv.mdc", NO_PIP)
        .file("src/ok.py", "x = 1\n")
        .file("tasks.kdl", r#"task "other" { run "true" }"#)
        .args(&["run", "rules"])
        .run()
        .status(0)
        .stdout_has("✓ rule:no-pip-install");
}

#[test]
fn depending_on_rules_without_rule_files_is_an_unknown_dependency() {
    Test::new()
        .file("tasks.kdl", r#"task "ci" { deps "rules"; }"#)
        .args(&["check"])
        .run()
        .status(2)
        .stderr_has("depends on unknown task `rules`");
}

#[test]
fn editing_a_rule_reruns_its_node_and_the_llm_steps_it_reaches_and_nothing_else() {
    let test = project().file(
        "tasks.kdl",
        r#"
        task "ci" { deps "rules"; }
        task "code" {
            llm {
                provider "command"
                command "cat > prompt-code.seen; printf '```\nx = 1\n```\n'"
                prompt "Write code. Rules:\n{{rules}}"
                output "gen/code.py"
            }
        }
        task "docs" {
            llm {
                provider "command"
                command "cat > prompt-docs.seen; printf '```\nText.\n```\n'"
                prompt "Write docs. Rules:\n{{rules}}"
                output "docs/guide.md"
            }
        }
        task "build" { deps "code" "docs"; inputs "tasks.kdl"; run "echo build >> counter" }
        "#,
    );
    test.write("src/m.py", "x = 2\n");
    test.run_with(&["run", "ci", "build"]).status(0);
    assert!(test.read("prompt-code.seen").contains("Use uv, not pip"));
    assert!(
        !test
            .read("prompt-code.seen")
            .contains("Write short sentences")
    );
    assert!(
        test.read("prompt-docs.seen")
            .contains("Write short sentences")
    );

    // The code step wrote a new .py file, which the uv rule checks once; then all is quiet.
    test.run_with(&["run", "ci", "build"]).status(0);
    test.run_with(&["run", "ci", "build"])
        .status(0)
        .stdout_has("0 ran");

    // The docs style rule reaches only the docs step.
    test.write(
        ".cursor/rules/docs/style.mdc",
        &STYLE.replace("short", "plain"),
    );
    let run = test.run_with(&["run", "ci", "build", "--json"]).status(0);
    let started = started_tasks(&run.stdout);
    assert_eq!(started, ["docs"], "only the step the rule reaches reruns");
    assert!(
        test.read("prompt-docs.seen")
            .contains("Write plain sentences")
    );

    // The uv rule reaches its check node and the code step (its output is a .py file).
    test.write(
        ".cursor/rules/uv.mdc",
        &NO_PIP.replace("Use uv add", "Please use uv add"),
    );
    let run = test.run_with(&["run", "ci", "build", "--json"]).status(0);
    let mut started = started_tasks(&run.stdout);
    started.sort();
    assert_eq!(started, ["code", "rule:no-pip-install"]);
    assert_eq!(
        test.read("counter").lines().count(),
        1,
        "build never reran: same outputs"
    );
}
