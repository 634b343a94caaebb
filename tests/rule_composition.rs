//! Issue 19, rules end to end: a rule that `extends` another checks with its parent's filters
//! and conditions plus its own; an `@file` reference reaches the `{{rules}}` an LLM step
//! renders and an edit to that file reruns exactly that step; unknown keys and a misspelt
//! filter type are warned with a suggestion, and do not stop a run.

use crate::test::{Test, started_tasks};

const BASE: &str = r#"---
description: Python basics
globs: *.py
---
<rule>
name: python-base
filters:
  - type: file_extension
    pattern: "\\.py$"
  - type: content
    pattern: "import (os|subprocess)"
actions:
  - type: reject
    conditions:
      - pattern: "os\\.system\\("
        message: "Use subprocess.run, not os.system"
</rule>
"#;

const CHILD: &str = r#"---
description: No shells
globs: *.py
---
<rule>
name: no-shell
extends: python-base
actions:
  - type: reject
    conditions:
      - pattern: "shell=True"
        message: "Pass a list, not shell=True"
</rule>
"#;

#[test]
fn a_rule_that_extends_another_finds_its_parents_matches_plus_its_own() {
    let test = Test::new()
        .file(".cursor/rules/base.mdc", BASE)
        .file(".cursor/rules/child.mdc", CHILD)
        .file(
            "src/a.py",
            "import subprocess\nsubprocess.run('ls', shell=True)\nos.system('ls')\n",
        )
        // No `import os|subprocess`: the parent's content filter keeps the child out too.
        .file("src/b.py", "run(shell=True)\n")
        .file("tasks.kdl", r#"task "ci" { deps "rules"; }"#);
    let run = test.run_with(&["run", "ci"]).status(1);
    let run = run
        .stdout_has("src/a.py:2:22: error: Pass a list, not shell=True [no-shell]")
        .stdout_has("src/a.py:3:1: error: Use subprocess.run, not os.system [no-shell]")
        .stdout_has("src/a.py:3:1: error: Use subprocess.run, not os.system [python-base]")
        .stdout_lacks("src/b.py");
    assert!(
        !run.stdout.contains("shell=True [python-base]"),
        "the parent does not take the child's condition: {}",
        run.stdout
    );
    test.run_with(&["rules", "show", "no-shell"])
        .status(0)
        .stdout_has("python-base");
}

#[test]
fn an_extends_cycle_or_unknown_name_is_an_error_at_its_span() {
    let test = Test::new()
        .file(
            ".cursor/rules/loop.mdc",
            "---\nglobs: *.py\n---\n<rule>\nname: a\nextends: b\n</rule>\n<rule>\nname: b\nextends: a\n</rule>\n",
        )
        .file(
            ".cursor/rules/lost.mdc",
            "---\nglobs: *.py\n---\n<rule>\nname: lost\nextends: pyhton-base\n</rule>\n",
        )
        .file(".cursor/rules/base.mdc", BASE)
        .file("tasks.kdl", r#"task "ci" { deps "rules"; }"#);
    test.run_with(&["rules", "validate"])
        .status(1)
        .stderr_has("loop.mdc:6:")
        .stderr_has("cycle")
        .stderr_has("lost.mdc:6:")
        .stderr_has("did you mean `python-base`?");
}

#[test]
fn an_at_file_reference_reaches_the_prompt_and_its_edit_reruns_only_that_step() {
    let test = Test::new()
        .file(
            ".cursor/rules/style.mdc",
            "---\ndescription: House style\nglobs: *.py\n---\nFollow @docs/style-guide.md and [the naming notes](mdc:docs/naming.md).\n",
        )
        .file("docs/style-guide.md", "Functions are verbs.\n")
        .file("docs/naming.md", "Snake case everywhere.\n")
        .file(
            "tasks.kdl",
            r#"
            task "code" {
                llm {
                    provider "command"
                    command "cat > prompt-code.seen; printf '```\nx = 1\n```\n'"
                    prompt "Write code. Rules:\n{{rules}}"
                    output "gen/code.py"
                }
            }
            task "notes" {
                llm {
                    provider "command"
                    command "cat > prompt-notes.seen; printf '```\nText.\n```\n'"
                    prompt "Write notes. Rules:\n{{rules}}"
                    output "notes/today.md"
                }
            }
            "#,
        );
    test.run_with(&["run", "code", "notes"]).status(0);
    let prompt = test.read("prompt-code.seen");
    assert!(prompt.contains("Functions are verbs."), "{prompt}");
    assert!(prompt.contains("Snake case everywhere."), "{prompt}");
    assert!(
        !test
            .read("prompt-notes.seen")
            .contains("Functions are verbs."),
        "the rule (globs *.py) does not reach the Markdown step"
    );
    test.run_with(&["run", "code", "notes"])
        .status(0)
        .stdout_has("0 ran");

    test.write("docs/style-guide.md", "Functions are short verbs.\n");
    let run = test.run_with(&["run", "code", "notes", "--json"]).status(0);
    let started = started_tasks(&run.stdout);
    assert_eq!(started, ["code"], "only the step that sees the file reruns");
    assert!(
        test.read("prompt-code.seen")
            .contains("Functions are short verbs.")
    );
}

#[test]
fn unknown_keys_and_a_misspelt_filter_type_are_warned_with_a_suggestion() {
    let test = Test::new()
        .file(
            ".cursor/rules/typo.mdc",
            r#"---
description: Typos
globs: *.py
---
<rule>
name: typo
version: 1.2.0
descripton: Typos in a rule
filters:
  - type: file_extention
    pattern: "\\.py$"
    options:
      case_insensitive: true
actions:
  - type: warn
    conditions:
      - pattern: "todo"
        message: "A TODO is left"
</rule>
"#,
        )
        .file("src/a.py", "# TODO: later\n")
        .file("tasks.kdl", r#"task "ci" { deps "rules"; }"#);
    test.run_with(&["rules", "validate"])
        .stderr_has("unknown key `descripton`")
        .stderr_has("did you mean `description`?")
        .stderr_has("unknown filter type `file_extention`")
        .stderr_has("did you mean `file_extension`?");
    test.run_with(&["rules", "show", "typo"])
        .status(0)
        .stdout_has("1.2.0");
}
