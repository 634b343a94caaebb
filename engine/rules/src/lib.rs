//! Cursor rule files (`*.mdc`): lenient parsing, precise validation, compilation into check
//! nodes and LLM context.
//!
//! ```text
//! rules dir ──discover──▶ [RuleFile] ──validate──▶ [RuleDiagnostic]
//!                            │  └──CompiledRule::compile──▶ selects / scan ──▶ [Finding]
//!                            │                  └──PrefilterSet──▶ one search for all rules
//!                            └──attached_rules / render_rules──▶ `{{rules}}` text
//! ```
//!
//! # Purpose
//!
//! Everything clab knows about rule files, apart from when a rule runs: the engine makes a
//! [`CompiledRule`] a check node and scans with it (`engine::exec::rule_scan`).
//!
//! # In
//!
//! The `.mdc` files under the rules directories (default [`DEFAULT_RULES_DIR`]), or their
//! text as a [`SourceFile`].
//!
//! # Out
//!
//! [`RuleFile`]s, each with its front matter, body, `<rule>` blocks, resolved references and
//! the [`Issue`]s found while reading it; [`RuleDiagnostic`]s from [`validate`];
//! [`CompiledRule`]s (with the rules they `extends`) that select files and find [`Finding`]s
//! in their text, or say why they could not ([`ScanError`]); a [`PrefilterSet`] of every
//! rule's whole-text prefilters; the `{{rules}}` text of [`render_rules`], referenced files
//! included.
//!
//! # Invariants
//!
//! Parsing never fails on file content: every problem becomes an issue with a byte span into
//! the file; only I/O fails. A scan never passes a file it could not finish searching. A
//! reference outside the project root is never read. A file's id is its path relative to its rules directory without
//! `.mdc`, folders kept (`python/uv`). The crate depends on `clab-model` only among clab's
//! crates: it knows nothing of graphs, plans, the store or execution.

mod body;
mod compiled_rule;
mod front_matter;
mod known_types;
mod pattern;
mod prefilter_set;
mod reference;
mod rule_diagnostic;
mod rule_globs;
mod rule_index;
mod scan_budget;
mod scan_error;
mod template;
mod validate;
mod yaml_node;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use body::{Action, Body, Condition, FileRef, Filter, RefStyle, RuleBlock, parse_body};
pub use compiled_rule::{CompiledRule, Finding, SelectFilter};
pub use front_matter::{FrontMatter, GlobsShape, parse_front_matter};
pub use pattern::{BACKTRACK_LIMIT, Incomplete, Pattern, PatternOptions};
pub use prefilter_set::PrefilterSet;
pub use reference::{MAX_ATTACHED_BYTES, Reference, Target, referenced_paths};
pub use rule_diagnostic::{FlatDiagnostic, Issue, Kind, RuleDiagnostic, Severity};
pub use rule_globs::RuleGlobs;
pub use scan_budget::{DEFAULT_FILE_SCAN_TIME, ScanBudget};
pub use scan_error::ScanError;
pub use template::{NewRule, write_new_rule};
pub use validate::{ProjectFiles, validate};
pub use yaml_node::{YamlError, YamlNode, YamlValue, parse_yaml};

use clab_model::source::SourceFile;

/// Where Cursor keeps rule files, relative to the project root.
pub const DEFAULT_RULES_DIR: &str = ".cursor/rules";

/// Errors reading or writing rule files (content problems are [`Issue`]s, not errors).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A rules directory could not be listed.
    #[error("cannot read rules directory `{}`", path.display())]
    #[diagnostic(code(clab::rules::read_dir))]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule file could not be read.
    #[error("cannot read rule file `{}`", path.display())]
    #[diagnostic(code(clab::rules::read_file))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A new rule file could not be written.
    #[error("cannot write rule file `{}`", path.display())]
    #[diagnostic(code(clab::rules::write_file))]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `clab rules new` was asked for a file that exists.
    #[error("rule file `{}` already exists", path.display())]
    #[diagnostic(
        code(clab::rules::exists),
        help("pick another name or edit the existing file")
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A rule name that cannot be a file name.
    #[error("`{name}` is not a valid rule name")]
    #[diagnostic(
        code(clab::rules::bad_name),
        help("use lowercase letters, digits, `-` and `_`, with `/` for folders (`python/uv`)")
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// `--type auto` without globs.
    #[error("an auto-attached rule needs at least one glob")]
    #[diagnostic(
        code(clab::rules::missing_globs),
        help("pass `--globs '*.py, src/**/*.ts'`")
    )]
    MissingGlobs,
}

/// How Cursor attaches a rule to a request, derived from the three front matter fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleType {
    /// `alwaysApply: true`: attached to every request.
    Always,
    /// Has globs: attached when a file in the request matches them.
    AutoAttached,
    /// Only a description: the agent decides from the description.
    AgentRequested,
    /// Neither: attached only when named.
    Manual,
}

impl RuleType {
    /// The name shown by `clab rules list` (`always`, `auto-attached`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleType::Always => "always",
            RuleType::AutoAttached => "auto-attached",
            RuleType::AgentRequested => "agent-requested",
            RuleType::Manual => "manual",
        }
    }
}

/// One parsed rule file.
#[derive(Clone, Debug)]
pub struct RuleFile {
    /// The path relative to its rules directory, without `.mdc` (`python/uv`).
    pub id: String,
    /// The file's text and name.
    pub source: SourceFile,
    /// The front matter (all fields empty when the file has none).
    pub front_matter: FrontMatter,
    /// The Markdown body.
    pub body: Body,
    /// Problems found while reading the file.
    pub issues: Vec<Issue>,
    /// The project root its references are read from (see [`RuleFile::with_root`]); `None`
    /// for a file parsed on its own, whose references are then not attached.
    root: Option<PathBuf>,
}

impl RuleFile {
    /// Parse a rule file's text. Never fails: problems become [`RuleFile::issues`].
    pub fn parse(id: impl Into<String>, source: SourceFile) -> RuleFile {
        let (front_matter, body_start, mut issues) = parse_front_matter(source.text());
        let (body, body_issues) = parse_body(source.text(), body_start);
        issues.extend(body_issues);
        RuleFile {
            id: id.into(),
            source,
            front_matter,
            body,
            issues,
            root: None,
        }
    }

    /// The rule type: `alwaysApply: true` wins, then globs, then a description.
    pub fn rule_type(&self) -> RuleType {
        let fm = &self.front_matter;
        if fm.always_apply.as_ref().is_some_and(|a| a.value) {
            RuleType::Always
        } else if !fm.globs.is_empty() {
            RuleType::AutoAttached
        } else if fm
            .description
            .as_ref()
            .is_some_and(|d| !d.value.trim().is_empty())
        {
            RuleType::AgentRequested
        } else {
            RuleType::Manual
        }
    }

    /// The body text (everything after the front matter).
    pub fn body_text(&self) -> &str {
        let span = self.body.span;
        self.source
            .text()
            .get(span.offset()..span.offset() + span.len())
            .unwrap_or("")
    }

    /// Whether `name` names this file: its id, the id's last segment, or a `<rule>` name in it.
    pub fn is_named(&self, name: &str) -> bool {
        self.id == name
            || self.id.rsplit('/').next() == Some(name)
            || self
                .body
                .rules
                .iter()
                .any(|r| r.name.as_ref().is_some_and(|n| n.value == name))
    }
}

/// Find and parse every `*.mdc` under each of `dirs` (relative to `root` unless absolute),
/// recursively, sorted by path. A directory that does not exist yields no files.
pub fn discover(root: &Path, dirs: &[&Path]) -> Result<Vec<RuleFile>, Error> {
    let mut files = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        let mut paths = Vec::new();
        collect_mdc(&dir, &mut paths)?;
        paths.sort();
        for path in paths {
            let rel = path.strip_prefix(&dir).unwrap_or(&path);
            let id = rel.with_extension("").to_string_lossy().replace('\\', "/");
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let source = SourceFile::read(&path, name).map_err(|source| Error::ReadFile {
                path: path.clone(),
                source,
            })?;
            files.push(RuleFile::parse(id, source).with_root(root));
        }
    }
    Ok(files)
}

/// Rule files with problems that change what a rule does as written (see
/// [`Kind::breaks_compilation`]): `run` and `watch` refuse to start with any, because the
/// compiler would leave the broken part out and the rule would silently check less, or
/// vanish from the run.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(
    "{} in the rule files",
    if errors.len() == 1 { "1 problem".to_owned() } else { format!("{} problems", errors.len()) }
)]
#[diagnostic(
    code(clab::rules::broken),
    help("fix the rule files (`clab rules validate` shows every problem, warnings too)")
)]
pub struct Broken {
    /// The problems, each a diagnostic into its rule file.
    #[related]
    pub errors: Vec<RuleDiagnostic>,
}

/// `Err` with every problem of `files` that breaks a rule's compilation; the same
/// diagnostics `clab rules validate` reports for them.
pub fn check_compiles(files: &[RuleFile]) -> Result<(), Broken> {
    if files.is_empty() {
        return Ok(());
    }
    let errors: Vec<RuleDiagnostic> = validate(files, None)
        .into_iter()
        .filter(|d| d.severity() == Severity::Error && d.issue.kind.breaks_compilation())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Broken { errors })
    }
}

fn collect_mdc(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::ReadDir {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| Error::ReadDir {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            collect_mdc(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "mdc") {
            out.push(path);
        }
    }
    Ok(())
}

/// The rules an LLM step gets as context: every always rule, every auto-attached rule whose
/// globs match one of `paths`, and any rule named in `named` (by id, last id segment, or
/// `<rule>` name). In `files` order, each at most once.
pub fn attached_rules<'a>(
    files: &'a [RuleFile],
    paths: &[&str],
    named: &[&str],
) -> Vec<&'a RuleFile> {
    files
        .iter()
        .filter(|file| {
            if named.iter().any(|n| file.is_named(n)) {
                return true;
            }
            match file.rule_type() {
                RuleType::Always => true,
                RuleType::AutoAttached => {
                    let (globs, _) = RuleGlobs::compile(&file.front_matter.globs);
                    paths.iter().any(|p| globs.matches(p))
                }
                RuleType::AgentRequested | RuleType::Manual => false,
            }
        })
        .collect()
}

/// Render rules for a prompt's `{{rules}}`: per rule a heading with its id, its description,
/// its body, then the text of each file the body references (`@path`, `mdc:` links) under a
/// heading with its path, each file once in all; rules separated by blank lines. The
/// referenced files are read now, from the project root (see [`RuleFile::references`]), so
/// the text changes whenever one of them does.
pub fn render_rules(files: &[&RuleFile]) -> String {
    let mut out = String::new();
    let mut attached = std::collections::BTreeSet::new();
    for file in files {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("## Rule `{}`\n\n", file.id));
        if let Some(d) = file
            .front_matter
            .description
            .as_ref()
            .filter(|d| !d.value.is_empty())
        {
            out.push_str(&d.value);
            out.push_str("\n\n");
        }
        out.push_str(file.body_text().trim());
        out.push('\n');
        reference::render_attachments(file, &mut attached, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, text: &str) -> RuleFile {
        RuleFile::parse(
            id,
            SourceFile::new(format!("{id}.mdc"), format!("{id}.mdc"), text),
        )
    }

    #[test]
    fn only_problems_that_change_the_compiled_rule_break_it() {
        let rule = |name: &str, pattern: &str| {
            format!(
                "---\ndescription: x\nglobs: *.py\n---\n<rule>\nname: {name}\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"{pattern}\"\n</rule>\n"
            )
        };
        assert!(check_compiles(&[file("ok", &rule("a", "foo"))]).is_ok());
        assert!(check_compiles(&[]).is_ok());
        // An unknown front-matter key and a missing `@file` leave the rule as written.
        let harmless = "---\ndescription: see @missing.md\nowner: me\n---\nSee @missing.md\n";
        assert!(check_compiles(&[file("harmless", harmless)]).is_ok());
        let broken = check_compiles(&[
            file("ok", &rule("a", "foo")),
            file("bad", &rule("b", "foo(")),
        ])
        .expect_err("a bad regex breaks the rule");
        let kinds: Vec<Kind> = broken.errors.iter().map(|d| d.issue.kind).collect();
        assert_eq!(kinds, [Kind::BadRegex]);
        assert_eq!(broken.to_string(), "1 problem in the rule files");
    }

    #[test]
    fn rule_types_follow_cursor() {
        let cases = [
            (
                "---\nalwaysApply: true\nglobs: *.py\n---\n",
                RuleType::Always,
            ),
            (
                "---\ndescription: x\nglobs: *.py\n---\n",
                RuleType::AutoAttached,
            ),
            (
                "---\ndescription: x\nglobs:\nalwaysApply: false\n---\n",
                RuleType::AgentRequested,
            ),
            ("---\ndescription:\nglobs:\n---\n", RuleType::Manual),
            ("no front matter\n", RuleType::Manual),
        ];
        for (text, want) in cases {
            assert_eq!(file("r", text).rule_type(), want, "{text}");
        }
    }

    #[test]
    fn attached_rules_by_type() {
        let files = vec![
            file("always", "---\nalwaysApply: true\n---\nA\n"),
            file("py", "---\nglobs: *.py\n---\nP\n"),
            file("agent", "---\ndescription: d\n---\nG\n"),
            file("tools/manual", "---\n---\nM\n"),
        ];
        let ids = |v: Vec<&RuleFile>| v.into_iter().map(|f| f.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(attached_rules(&files, &["src/a.py"], &[])),
            vec!["always", "py"]
        );
        assert_eq!(
            ids(attached_rules(&files, &["a.rs"], &["manual"])),
            vec!["always", "tools/manual"]
        );
        let rendered = render_rules(&attached_rules(&files, &["a.py"], &[]));
        assert_eq!(rendered, "## Rule `always`\n\nA\n\n## Rule `py`\n\nP\n");
    }

    #[test]
    fn discover_keeps_folders_in_ids() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join(".cursor/rules/python");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(rules.join("uv.mdc"), "---\nglobs: *.py\n---\n").unwrap();
        std::fs::write(dir.path().join(".cursor/rules/a.mdc"), "x").unwrap();
        std::fs::write(dir.path().join(".cursor/rules/notes.md"), "x").unwrap();
        let found = discover(
            dir.path(),
            &[Path::new(DEFAULT_RULES_DIR), Path::new("missing")],
        )
        .unwrap();
        let ids: Vec<_> = found
            .iter()
            .map(|f| (f.id.as_str(), f.source.name()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("a", ".cursor/rules/a.mdc"),
                ("python/uv", ".cursor/rules/python/uv.mdc")
            ]
        );
    }

    #[test]
    fn crlf_and_bom_whole_file() {
        let text = "\u{feff}---\r\ndescription: d\r\nglobs: *.py\r\n---\r\n# T\r\n<rule>\r\nname: crlf\r\nfilters:\r\n  - type: content\r\n    pattern: \"x\"\r\nactions:\r\n  - type: reject\r\n    conditions:\r\n      - pattern: \"x$\"\r\n        message: |\r\n          no x\r\n</rule>\r\n";
        let f = file("crlf", text);
        assert!(f.issues.is_empty(), "{:?}", f.issues);
        assert!(validate(std::slice::from_ref(&f), None).is_empty());
        let rule = &f.body.rules[0];
        let name = rule.name.as_ref().unwrap();
        assert_eq!(
            &text[name.span.offset()..name.span.offset() + name.span.len()],
            "crlf"
        );
        let message = rule.actions[0].conditions[0].message.as_ref().unwrap();
        assert_eq!(message.value, "no x\n");
        let compiled = CompiledRule::compile(&f, rule).unwrap();
        let findings = compiled.scan("a.py", "ok\r\nax\r\n");
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (
                findings[0].line,
                findings[0].col,
                findings[0].message.as_str()
            ),
            (2, 2, "no x")
        );
        assert_eq!(f.body_text(), &text[text.find("# T").unwrap()..]);
    }

    #[test]
    fn referenced_files_reach_the_rendered_rules_and_their_edits_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        let rules = root.join(".cursor/rules");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/style.md"), "Use four spaces.\n").unwrap();
        std::fs::write(rules.join("layout.md"), "src/ holds the code.\n").unwrap();
        std::fs::write(dir.path().join("secret.md"), "do not send\n").unwrap();
        std::fs::write(
            rules.join("style.mdc"),
            "---\nalwaysApply: true\n---\nFollow @docs/style.md and [layout](mdc:layout.md).\nNot @../../../secret.md.\nAgain @docs/style.md.\n",
        )
        .unwrap();
        std::fs::write(
            rules.join("more.mdc"),
            "---\nalwaysApply: true\n---\nAlso @docs/style.md and @docs/missing.md.\n",
        )
        .unwrap();
        let files = discover(&root, &[Path::new(DEFAULT_RULES_DIR)]).unwrap();
        let style = files.iter().find(|f| f.id == "style").unwrap();
        assert_eq!(
            style.references(),
            ["docs/style.md", ".cursor/rules/layout.md"]
        );
        let attached = attached_rules(&files, &[], &[]);
        assert_eq!(
            referenced_paths(&attached),
            [
                ".cursor/rules/layout.md",
                "docs/missing.md",
                "docs/style.md"
            ]
        );
        let before = render_rules(&attached);
        assert_eq!(
            before,
            "## Rule `more`\n\nAlso @docs/style.md and @docs/missing.md.\n\
             \n### File `docs/style.md` (referenced by rule `more`)\n\n```\nUse four spaces.\n```\n\
             \n### File `docs/missing.md` (referenced by rule `more`)\n\n(not found)\n\
             \n## Rule `style`\n\nFollow @docs/style.md and [layout](mdc:layout.md).\nNot @../../../secret.md.\nAgain @docs/style.md.\n\
             \n### File `.cursor/rules/layout.md` (referenced by rule `style`)\n\n```\nsrc/ holds the code.\n```\n"
        );
        assert!(!before.contains("do not send"));
        std::fs::write(root.join("docs/style.md"), "Use tabs.\n").unwrap();
        let after = render_rules(&attached);
        assert_ne!(before, after);
        assert!(after.contains("```\nUse tabs.\n```"));
        // A file parsed on its own has no root: nothing is read.
        let alone = file(
            "alone",
            "---\nalwaysApply: true\n---\nSee @docs/style.md.\n",
        );
        assert_eq!(
            render_rules(&[&alone]),
            "## Rule `alone`\n\nSee @docs/style.md.\n"
        );
        assert_eq!(alone.references(), ["docs/style.md"]);
    }

    /// Parse, validate, compile, scan and render one text; checks every span is inside the
    /// text. Panics (failing the property) on any violation.
    fn exercise(text: &str) {
        let f = file("p", text);
        for issue in &f.issues {
            assert!(
                issue.span.offset() + issue.span.len() <= text.len(),
                "{issue:?}"
            );
        }
        let diagnostics = validate(std::slice::from_ref(&f), None);
        let _ = validate::tests::render(&diagnostics);
        for d in &diagnostics {
            let _ = d.flat();
        }
        for rule in CompiledRule::compile_all(std::slice::from_ref(&f)) {
            let _ = rule.scan("a.py", text);
            let _ = rule.definition_hash();
        }
        let _ = render_rules(&attached_rules(std::slice::from_ref(&f), &["a.py"], &["p"]));
    }

    /// Fragments that steer random input into the parser's deeper paths.
    fn fragment() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("---\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\n".to_owned()),
            Just("\u{feff}".to_owned()),
            Just("description: ".to_owned()),
            Just("globs: ".to_owned()),
            Just("alwaysApply: true\n".to_owned()),
            Just("<rule>\n".to_owned()),
            Just("</rule>\n".to_owned()),
            Just("```\n".to_owned()),
            Just("<example>\n".to_owned()),
            Just("name: ".to_owned()),
            Just("filters:\n".to_owned()),
            Just("actions:\n".to_owned()),
            Just("  - type: ".to_owned()),
            Just("    pattern: ".to_owned()),
            Just("    conditions:\n".to_owned()),
            Just("      - pattern: ".to_owned()),
            Just("- ".to_owned()),
            Just(": ".to_owned()),
            Just("|\n".to_owned()),
            Just(">-\n".to_owned()),
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{a,b}".to_owned()),
            Just("@docs/a.md ".to_owned()),
            Just("[x](mdc:".to_owned()),
            Just("<!--".to_owned()),
            Just("-->".to_owned()),
            Just("(?<=a)".to_owned()),
            Just("\u{202E}\u{200D}\u{E0041}🏴".to_owned()),
            Just("\\".to_owned()),
            "[ -~]{0,6}".prop_map(|s| s),
            "[ \t]{1,8}".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        #[test]
        fn no_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            exercise(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn no_panic_on_rule_shaped_text(parts in proptest::collection::vec(fragment(), 0..60)) {
            exercise(&parts.concat());
        }
    }
}
