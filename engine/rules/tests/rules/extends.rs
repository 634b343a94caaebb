//! `extends`: a child rule finds what its parent's filters select plus its own conditions.

use std::path::Path;

use clab_rules::{CompiledRule, Kind, discover, validate};

const PARENT: &str = r#"---
description: Python scripts that shell out
globs: scripts/**/*.py
---
# Shelling out

<rule>
name: shell-base
description: Files that import subprocess
filters:
  - type: file_extension
    pattern: "\\.py$"
  - type: content
    pattern: "^import subprocess"
    options:
      multiline: true
actions:
  - type: suggest
    conditions:
      - pattern: "subprocess\\.call\\("
        message: "Prefer subprocess.run"
</rule>
"#;

const CHILD: &str = r#"---
description: No shell strings
globs: scripts/**/*.py
---
<rule>
name: no-shell-true
extends: shell-base
actions:
  - type: reject
    conditions:
      - pattern: "shell\\s*=\\s*True"
        message: "Pass an argument list instead of shell=True"
</rule>
"#;

#[test]
fn a_child_rule_via_extends_finds_what_its_parents_filter_plus_its_own_condition_match() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join(".cursor/rules/python");
    std::fs::create_dir_all(&rules).unwrap();
    // The child sorts before its parent: resolution does not depend on file order.
    std::fs::write(rules.join("a-child.mdc"), CHILD).unwrap();
    std::fs::write(rules.join("z-parent.mdc"), PARENT).unwrap();
    let files = discover(dir.path(), &[Path::new(".cursor/rules")]).unwrap();
    assert!(
        validate(&files, None).is_empty(),
        "{:#?}",
        validate(&files, None)
    );
    let compiled = CompiledRule::compile_all(&files);
    let child = compiled.iter().find(|r| r.name == "no-shell-true").unwrap();
    assert_eq!(child.extends, ["shell-base"]);

    let script = "import os\nimport subprocess\nsubprocess.call('ls', shell=True)\n";
    let findings = child.try_scan("scripts/build.py", script).unwrap();
    let got: Vec<(usize, usize, String)> = findings
        .iter()
        .map(|f| (f.line, f.col, f.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (3, 1, "Prefer subprocess.run".to_owned()),
            (
                3,
                23,
                "Pass an argument list instead of shell=True".to_owned()
            ),
        ]
    );
    // The parent's content filter (with its `multiline` option) gates the child's condition.
    assert!(
        child
            .try_scan("scripts/build.py", "x = run(shell=True)\n")
            .unwrap()
            .is_empty()
    );
    // The parent's extension filter and the child's globs both hold.
    assert!(!child.selects("scripts/build.sh"));
    assert!(!child.selects("src/build.py"));
}

#[test]
fn an_unknown_parent_and_a_cycle_are_errors_at_the_span() {
    let files = vec![
        crate::rule_file(
            "a",
            "---\ndescription: a\n---\n<rule>\nname: a\nextends: b\n</rule>\n",
        ),
        crate::rule_file(
            "b",
            "---\ndescription: b\n---\n<rule>\nname: b\nextends: a\n</rule>\n",
        ),
        crate::rule_file(
            "c",
            "---\ndescription: c\n---\n<rule>\nname: c\nextends: shell-bsae\n</rule>\n",
        ),
    ];
    let got: Vec<(String, usize, usize, Kind, String)> = validate(&files, None)
        .iter()
        .map(|d| {
            let flat = d.flat();
            (flat.file, flat.line, flat.col, d.issue.kind, flat.message)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                ".cursor/rules/a.mdc".to_owned(),
                6,
                10,
                Kind::ExtendsCycle,
                "`extends` goes round in a circle: `a` → `b` → `a`".to_owned()
            ),
            (
                ".cursor/rules/b.mdc".to_owned(),
                6,
                10,
                Kind::ExtendsCycle,
                "`extends` goes round in a circle: `b` → `a` → `b`".to_owned()
            ),
            (
                ".cursor/rules/c.mdc".to_owned(),
                6,
                10,
                Kind::UnknownExtends,
                "`extends` names no rule: `shell-bsae`".to_owned()
            ),
        ]
    );
    assert!(clab_rules::check_compiles(&files).is_err());
}
