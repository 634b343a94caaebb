//! `@path` and `mdc:` references reach the rendered `{{rules}}`; an edit to one changes it.

use std::path::Path;

use clab_rules::{
    DEFAULT_RULES_DIR, Kind, ProjectFiles, attached_rules, discover, referenced_paths,
    render_rules, validate,
};

#[test]
fn an_at_file_reference_reaches_the_rendered_rules_and_its_edit_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join(".cursor/rules")).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(root.join("tests/test_a.py"), "").unwrap();
    std::fs::write(root.join("docs/testing.md"), "Tests use pytest fixtures.\n").unwrap();
    std::fs::write(
        root.join(".cursor/rules/tests.mdc"),
        "---\ndescription: How we test\nglobs: tests/**/*.py\n---\nRead @docs/testing.md first.\n",
    )
    .unwrap();
    let files = discover(root, &[Path::new(DEFAULT_RULES_DIR)]).unwrap();
    let project = ProjectFiles::walk(root).unwrap();
    let diagnostics = validate(&files, Some(&project));
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");

    let attached = attached_rules(&files, &["tests/test_a.py"], &[]);
    assert_eq!(referenced_paths(&attached), ["docs/testing.md"]);
    let before = render_rules(&attached);
    assert!(
        before.contains("### File `docs/testing.md`")
            && before.contains("Tests use pytest fixtures."),
        "{before}"
    );
    // Not attached where the rule is not.
    assert!(render_rules(&attached_rules(&files, &["src/a.py"], &[])).is_empty());

    std::fs::write(root.join("docs/testing.md"), "Tests use plain asserts.\n").unwrap();
    let after = render_rules(&attached);
    assert_ne!(
        before, after,
        "an edit to the referenced file changes {{{{rules}}}}"
    );
    assert!(after.contains("Tests use plain asserts."));
}

#[test]
fn a_reference_out_of_the_project_is_refused_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    std::fs::create_dir_all(root.join(".cursor/rules")).unwrap();
    std::fs::write(dir.path().join("secret.md"), "TOP SECRET\n").unwrap();
    std::fs::write(
        root.join(".cursor/rules/leak.mdc"),
        "---\nalwaysApply: true\n---\nSee @../../../secret.md.\n",
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("secret.md"), root.join("link.md")).unwrap();
    #[cfg(unix)]
    std::fs::write(
        root.join(".cursor/rules/link.mdc"),
        "---\nalwaysApply: true\n---\nSee @link.md.\n",
    )
    .unwrap();
    let files = discover(&root, &[Path::new(DEFAULT_RULES_DIR)]).unwrap();
    let rendered = render_rules(&attached_rules(&files, &[], &[]));
    assert!(!rendered.contains("TOP SECRET"), "{rendered}");
    let outside: Vec<String> = validate(&files, Some(&ProjectFiles::walk(&root).unwrap()))
        .iter()
        .filter(|d| d.issue.kind == Kind::OutsideRoot)
        .map(|d| d.flat().message)
        .collect();
    let mut want = vec!["`../../../secret.md` is outside the project; clab does not attach it to the rule's context".to_owned()];
    if cfg!(unix) {
        want.push(
            "`link.md` is outside the project; clab does not attach it to the rule's context"
                .to_owned(),
        );
    }
    want.sort();
    let mut outside = outside;
    outside.sort();
    assert_eq!(outside, want);
}
