//! A `<rule>` block compiled for scanning: what a `rule:NAME` check node runs.
//!
//! In: a [`RuleFile`] and one of its [`RuleBlock`]s, with the blocks it `extends`. Out: a
//! [`CompiledRule`] that says which files it takes as input ([`CompiledRule::selects`]) and
//! what it finds in one file's text ([`CompiledRule::try_scan`], pure, no I/O), plus a hash
//! of its definition for the cache.
//!
//! Semantics:
//! - Composition: a block with `extends: NAME` has NAME's filters and actions (and those NAME
//!   extends, transitively, root-most first) before its own. Globs stay those of its own file.
//! - Selection: the front matter globs (if any) AND any one of the path filters
//!   (`file_extension`, `file_path`/`path`, `file_name`; if any). Other filter types (`event`,
//!   `message`, `context`, unknown ones) are kept for display and select nothing.
//! - Candidacy: with `content` filters, a file is scanned only if one of them matches.
//! - Findings: `reject` gives errors, `suggest` and `warn` warnings. Each action condition's
//!   regex is searched line by line (first match per line and condition); an action without
//!   conditions reports once per candidate file at the first `content` match, and nothing
//!   when the rule has no `content` filter. Other action types report nothing.
//! - Patterns that match the empty string (`.*`, `^(?!…)`) would match every empty line:
//!   such conditions are left out, and such `content` filters gate nothing and anchor nothing.
//! - Patterns that do not compile are left out (the validator reports them); patterns with
//!   look-around or backreferences run on `fancy-regex`, bounded (see `pattern`): a search
//!   that cannot finish makes the scan a [`ScanError`], never a pass.

use std::time::Instant;

use serde::Serialize;

use super::{
    RuleFile,
    body::{Action, Filter, RuleBlock},
    pattern::{Incomplete, Pattern, PatternOptions},
    rule_diagnostic::Severity,
    rule_globs::RuleGlobs,
    rule_index::RuleIndex,
    scan_budget::ScanBudget,
    scan_error::ScanError,
};

/// Bump when the hashed encoding or the scanning semantics change. 2: filter options,
/// `extends` (the hashed filters and actions are the merged ones), bounded backtracking.
const DEFINITION_VERSION: u32 = 2;

/// A path filter that selects files.
#[derive(Clone, Debug)]
pub enum SelectFilter {
    /// `file_extension`: searched in the file name.
    Extension(Pattern),
    /// `file_path` / `path`: searched in the relative path.
    Path(Pattern),
    /// `file_name`: searched in the file name.
    Name(Pattern),
}

impl SelectFilter {
    fn pattern(&self) -> &Pattern {
        match self {
            SelectFilter::Extension(p) | SelectFilter::Name(p) | SelectFilter::Path(p) => p,
        }
    }

    fn selects(&self, path: &str, deadline: Option<Instant>) -> Result<bool, Incomplete> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let haystack = match self {
            SelectFilter::Extension(_) | SelectFilter::Name(_) => name,
            SelectFilter::Path(_) => path,
        };
        Ok(self.pattern().find(haystack, deadline)?.is_some())
    }
}

#[derive(Clone, Debug)]
struct CompiledAction {
    severity: Severity,
    /// The action had no `conditions` at all (not: all of them were left out).
    unconditioned: bool,
    message: Option<String>,
    conditions: Vec<(Pattern, Option<String>)>,
    /// All conditions as one multi-line regex over the whole text: when it finds nothing (as
    /// in most files), no line can match and the line-by-line search is skipped. `None` when
    /// a condition cannot be prefiltered that way (see [`prefilter`]).
    prefilter: Option<regex::Regex>,
}

/// One regex that matches somewhere in a text whenever any of `conditions` matches one of its
/// lines: each condition in multi-line CRLF mode (`^`/`$` at line ends, `\r\n` respected),
/// joined with `|`. A match of this regex may span lines where a condition cannot, so it only
/// says where to look, never what was found. Conditions on `fancy-regex`, or anchored with
/// `\A`/`\z` (which mean "line start/end" line by line but "text start/end" here), get none.
fn prefilter(conditions: &[(Pattern, Option<String>)]) -> Option<regex::Regex> {
    let mut parts = Vec::with_capacity(conditions.len());
    for (pattern, _) in conditions {
        // Conditions have no options, so the linear regex's source is the whole pattern.
        let re = pattern.linear()?;
        if !pattern.options().is_empty() {
            return None;
        }
        let source = re.as_str();
        if source.contains("\\A") || source.contains("\\z") {
            return None;
        }
        parts.push(format!("(?mR:{source})"));
    }
    if parts.is_empty() {
        return None;
    }
    regex::Regex::new(&parts.join("|")).ok()
}

/// One thing a rule found in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's name.
    pub rule: String,
    /// The scanned file, relative to the project root.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What to tell the user.
    pub message: String,
    /// `error` for `reject`, `warning` for `suggest`/`warn`.
    pub severity: Severity,
}

/// `(type, message, [(pattern, message)])` of one action, as hashed.
type ActionDefinition<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// `(type, pattern, options)` of one filter, as hashed.
type FilterDefinition<'a> = (&'a str, &'a str, PatternOptions);

/// The canonical, hashed form of a rule's definition.
#[derive(Serialize)]
struct Definition<'a> {
    version: u32,
    name: &'a str,
    globs: Vec<&'a str>,
    filters: Vec<FilterDefinition<'a>>,
    actions: Vec<ActionDefinition<'a>>,
}

/// A rule ready to select and scan files.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// The `<rule>` name; the check node is `rule:NAME`.
    pub name: String,
    /// The id of the file the rule is in.
    pub file_id: String,
    /// The rules it builds on through `extends`, nearest first (empty without `extends`).
    pub extends: Vec<String>,
    /// Filter types that select nothing (`event`, …), as `(type, pattern)`, for display.
    pub inert_filters: Vec<(String, String)>,
    globs: RuleGlobs,
    selectors: Vec<SelectFilter>,
    /// `content` filters, each with whether it can anchor an unconditioned action (it does
    /// not match the empty string).
    content: Vec<(Pattern, bool)>,
    actions: Vec<CompiledAction>,
    /// Some pattern runs on `fancy-regex`, so scans need a deadline.
    backtracks: bool,
    hash: blake3::Hash,
    /// The hash of what decides [`selects`](Self::selects): globs and path filters.
    selection: blake3::Hash,
}

impl CompiledRule {
    /// Compile one block of `file` on its own; `None` when the block has no name. Its
    /// `extends` is not followed: [`compile_all`](Self::compile_all) resolves it.
    pub fn compile(file: &RuleFile, block: &RuleBlock) -> Option<CompiledRule> {
        CompiledRule::compile_extending(file, block, &[])
    }

    /// Compile `block` of `file` with the filters and actions of `parents` (nearest first)
    /// before its own: the root-most ancestor's come first.
    fn compile_extending(
        file: &RuleFile,
        block: &RuleBlock,
        parents: &[&RuleBlock],
    ) -> Option<CompiledRule> {
        let name = block
            .name
            .as_ref()
            .map(|n| n.value.trim())
            .filter(|n| !n.is_empty())?;
        let lineage: Vec<&RuleBlock> = parents.iter().rev().copied().chain([block]).collect();
        let filters: Vec<&Filter> = lineage.iter().flat_map(|b| &b.filters).collect();
        let declared: Vec<&Action> = lineage.iter().flat_map(|b| &b.actions).collect();
        let (globs, _) = RuleGlobs::compile(&file.front_matter.globs);
        let mut selectors = Vec::new();
        let mut content = Vec::new();
        let mut inert_filters = Vec::new();
        for filter in &filters {
            let (Some(kind), Some(pattern)) = (&filter.kind, &filter.pattern) else {
                continue;
            };
            let compiled = Pattern::compile_with(&pattern.value, filter.options);
            match (kind.value.as_str(), compiled) {
                ("file_extension", Ok(p)) => selectors.push(SelectFilter::Extension(p)),
                ("file_path" | "path", Ok(p)) => selectors.push(SelectFilter::Path(p)),
                ("file_name", Ok(p)) => selectors.push(SelectFilter::Name(p)),
                ("content", Ok(p)) => {
                    let anchors = !p.matches_empty();
                    content.push((p, anchors));
                }
                ("file_extension" | "file_path" | "path" | "file_name" | "content", Err(_)) => {}
                (other, _) => inert_filters.push((other.to_owned(), pattern.value.clone())),
            }
        }
        let mut actions = Vec::new();
        for action in &declared {
            let severity = match action.kind.as_ref().map(|k| k.value.as_str()) {
                Some("reject") => Severity::Error,
                Some("suggest" | "warn") => Severity::Warning,
                _ => continue,
            };
            let conditions = action
                .conditions
                .iter()
                .filter_map(|c| {
                    let pattern = Pattern::compile(&c.pattern.as_ref()?.value).ok()?;
                    let pattern = (!pattern.matches_empty()).then_some(pattern)?;
                    Some((pattern, c.message.as_ref().map(|m| m.value.clone())))
                })
                .collect::<Vec<_>>();
            actions.push(CompiledAction {
                severity,
                unconditioned: action.conditions.is_empty(),
                message: action.message.as_ref().map(|m| m.value.clone()),
                prefilter: prefilter(&conditions),
                conditions,
            });
        }
        let definition = Definition {
            version: DEFINITION_VERSION,
            name,
            globs: file
                .front_matter
                .globs
                .iter()
                .map(|g| g.value.as_str())
                .collect(),
            filters: filters
                .iter()
                .map(|f| (opt(&f.kind), opt(&f.pattern), f.options))
                .collect(),
            actions: declared
                .iter()
                .map(|a| {
                    let conditions = a
                        .conditions
                        .iter()
                        .map(|c| (opt(&c.pattern), opt(&c.message)))
                        .collect();
                    (opt(&a.kind), opt(&a.message), conditions)
                })
                .collect(),
        };
        // Serializing plain structs, strings and vectors cannot fail; an empty encoding would
        // only make the hash constant, never wrong about equality of equal rules.
        let encoded = serde_json::to_vec(&definition).unwrap_or_default();
        let selecting: Vec<_> = definition
            .filters
            .iter()
            .filter(|(kind, _, _)| {
                matches!(*kind, "file_extension" | "file_path" | "path" | "file_name")
            })
            .collect();
        let selection = serde_json::to_vec(&(&definition.globs, selecting)).unwrap_or_default();
        let backtracks = selectors.iter().any(|s| s.pattern().is_fancy())
            || content.iter().any(|(p, _)| p.is_fancy())
            || actions
                .iter()
                .any(|a| a.conditions.iter().any(|(p, _)| p.is_fancy()));
        Some(CompiledRule {
            name: name.to_owned(),
            file_id: file.id.clone(),
            extends: parents
                .iter()
                .filter_map(|b| b.name.as_ref().map(|n| n.value.trim().to_owned()))
                .collect(),
            inert_filters,
            globs,
            selectors,
            content,
            actions,
            backtracks,
            hash: blake3::hash(&encoded),
            selection: blake3::hash(&selection),
        })
    }

    /// Every named rule in `files`, in file order, each with the filters and actions of the
    /// rules it `extends` (transitively) before its own. An `extends` that names no rule, or
    /// leads back to the rule, is followed as far as it goes (validation reports it).
    pub fn compile_all(files: &[RuleFile]) -> Vec<CompiledRule> {
        let index = RuleIndex::new(files);
        files
            .iter()
            .flat_map(|f| {
                let index = &index;
                f.body.rules.iter().filter_map(move |b| {
                    CompiledRule::compile_extending(f, b, &index.chain(b).parents)
                })
            })
            .collect()
    }

    /// Whether scanning can report anything: some `reject`/`suggest`/`warn` action with
    /// conditions, or with a `content` filter to anchor it.
    pub fn is_check(&self) -> bool {
        let anchored = self.content.iter().any(|(_, anchors)| *anchors);
        self.actions
            .iter()
            .any(|a| !a.conditions.is_empty() || (a.unconditioned && anchored))
    }

    /// blake3 over a canonical encoding of the rule's definition (name, globs, filters with
    /// their options, actions; those it extends included): changes exactly when the rule's
    /// behaviour may change.
    pub fn definition_hash(&self) -> blake3::Hash {
        self.hash
    }

    /// Whether everything the rule can find comes from actions with a whole-text prefilter
    /// (no content filter, no action without conditions): then a text no prefilter matches
    /// holds nothing for it.
    pub fn is_prefiltered(&self) -> bool {
        self.content.is_empty()
            && self
                .actions
                .iter()
                .all(|action| !action.unconditioned && action.prefilter.is_some())
    }

    /// Equal for rules that select the same files (same globs and path filters), so a caller
    /// can decide selection once for all of them.
    pub fn selection_id(&self) -> blake3::Hash {
        self.selection
    }

    /// Whether this rule takes `rel_path` (relative, `/`-separated) as input. A path filter
    /// on `fancy-regex` that cannot decide selects the file, so that
    /// [`try_scan_selected`](Self::try_scan_selected) reports the error (see
    /// [`try_selects`](Self::try_selects)).
    pub fn selects(&self, rel_path: &str) -> bool {
        self.try_selects(rel_path).unwrap_or(true)
    }

    /// Whether this rule takes `rel_path` as input; an error when a path filter that could
    /// select it cannot decide (none of the others selects it).
    pub fn try_selects(&self, rel_path: &str) -> Result<bool, ScanError> {
        self.selects_within(rel_path, self.deadline(ScanBudget::default()))
    }

    /// The deadline of a scan starting now; `None` (no clock read) when every pattern is
    /// linear.
    fn deadline(&self, budget: ScanBudget) -> Option<Instant> {
        if self.backtracks {
            budget.deadline()
        } else {
            None
        }
    }

    fn selects_within(&self, rel_path: &str, deadline: Option<Instant>) -> Result<bool, ScanError> {
        let rel_path = rel_path.trim_start_matches("./");
        if !self.globs.is_empty() && !self.globs.matches(rel_path) {
            return Ok(false);
        }
        if self.selectors.is_empty() {
            return Ok(true);
        }
        let mut undecided = None;
        for selector in &self.selectors {
            match selector.selects(rel_path, deadline) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(reason) => {
                    undecided.get_or_insert_with(|| {
                        self.scan_error(rel_path, None, selector.pattern(), reason)
                    });
                }
            }
        }
        undecided.map_or(Ok(false), Err)
    }

    /// The whole-text prefilter of each action, as regex source (`None`: the action has
    /// none and is always searched line by line). A caller may run them all at once, for many
    /// rules, and pass the answers to [`scan_selected`](Self::scan_selected).
    pub fn prefilters(&self) -> Vec<Option<&str>> {
        self.actions
            .iter()
            .map(|action| action.prefilter.as_ref().map(regex::Regex::as_str))
            .collect()
    }

    /// Scan one file's text; pure and without I/O. Files the rule does not select yield
    /// nothing. A scan that cannot decide is an error (see [`ScanError`]), within the
    /// default [`ScanBudget`].
    pub fn try_scan(&self, rel_path: &str, text: &str) -> Result<Vec<Finding>, ScanError> {
        let deadline = self.deadline(ScanBudget::default());
        if !self.selects_within(rel_path, deadline)? {
            return Ok(Vec::new());
        }
        self.scan_until(rel_path, text, None, deadline)
    }

    /// [`try_scan`](Self::try_scan) for a file the caller knows the rule selects, within
    /// `budget`. `prefiltered`, when given, holds for each action whether its prefilter (see
    /// [`prefilters`](Self::prefilters)) matches `text`, so it is not run again. A path
    /// filter that could not decide in [`selects`](Self::selects) is tried again here, so
    /// its error is reported.
    pub fn try_scan_selected(
        &self,
        rel_path: &str,
        text: &str,
        prefiltered: Option<&[bool]>,
        budget: ScanBudget,
    ) -> Result<Vec<Finding>, ScanError> {
        let deadline = self.deadline(budget);
        if self.selectors.iter().any(|s| s.pattern().is_fancy()) {
            self.selects_within(rel_path, deadline)?;
        }
        self.scan_until(rel_path, text, prefiltered, deadline)
    }

    /// [`try_scan`](Self::try_scan), with a scan that cannot decide reported as an error
    /// finding ([`ScanError::to_finding`]): never a pass.
    pub fn scan(&self, rel_path: &str, text: &str) -> Vec<Finding> {
        self.try_scan(rel_path, text)
            .unwrap_or_else(|err| vec![err.to_finding()])
    }

    /// [`try_scan_selected`](Self::try_scan_selected) within the default budget, with a scan
    /// that cannot decide reported as an error finding ([`ScanError::to_finding`]): never a
    /// pass.
    pub fn scan_selected(
        &self,
        rel_path: &str,
        text: &str,
        prefiltered: Option<&[bool]>,
    ) -> Vec<Finding> {
        self.try_scan_selected(rel_path, text, prefiltered, ScanBudget::default())
            .unwrap_or_else(|err| vec![err.to_finding()])
    }

    fn scan_until(
        &self,
        rel_path: &str,
        text: &str,
        prefiltered: Option<&[bool]>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Finding>, ScanError> {
        let mut findings = Vec::new();
        let anchor = if self.content.is_empty() {
            None
        } else {
            // Every content filter is searched: one that cannot decide might have matched,
            // or matched first.
            let mut any = false;
            let mut first: Option<usize> = None;
            for (pattern, anchors) in &self.content {
                let found = pattern
                    .find(text, deadline)
                    .map_err(|reason| self.scan_error(rel_path, None, pattern, reason))?;
                if let Some((start, _)) = found {
                    any = true;
                    // `.*`-like filters let every file through but anchor nothing.
                    if *anchors {
                        first = Some(first.map_or(start, |f| f.min(start)));
                    }
                }
            }
            if !any {
                return Ok(findings);
            }
            first
        };
        for (nth, action) in self.actions.iter().enumerate() {
            if action.unconditioned {
                if let Some(at) = anchor {
                    let (line, col) = clab_model::source::line_col(text, at);
                    findings.push(self.finding(rel_path, line, col, action, None));
                }
                continue;
            }
            let may_match = match prefiltered.and_then(|known| known.get(nth)) {
                Some(&known) => known,
                None => action.prefilter.as_ref().is_none_or(|re| re.is_match(text)),
            };
            if !may_match {
                continue;
            }
            for (index, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                for (pattern, message) in &action.conditions {
                    let found = pattern.find(line, deadline).map_err(|reason| {
                        self.scan_error(rel_path, Some(index + 1), pattern, reason)
                    })?;
                    if let Some((start, _)) = found {
                        let col = line[..start].chars().count() + 1;
                        findings.push(self.finding(
                            rel_path,
                            index + 1,
                            col,
                            action,
                            message.as_deref(),
                        ));
                    }
                }
            }
        }
        Ok(findings)
    }

    fn scan_error(
        &self,
        path: &str,
        line: Option<usize>,
        pattern: &Pattern,
        reason: Incomplete,
    ) -> ScanError {
        ScanError {
            rule: self.name.clone(),
            path: path.to_owned(),
            line,
            pattern: pattern.as_str().to_owned(),
            reason,
        }
    }

    fn finding(
        &self,
        path: &str,
        line: usize,
        col: usize,
        action: &CompiledAction,
        message: Option<&str>,
    ) -> Finding {
        let message = message
            .or(action.message.as_deref())
            .map(first_line)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("matches rule `{}`", self.name));
        Finding {
            rule: self.name.clone(),
            path: path.to_owned(),
            line,
            col,
            message,
            severity: action.severity,
        }
    }
}

fn opt(field: &Option<clab_model::source::Spanned<String>>) -> &str {
    field.as_ref().map_or("", |f| f.value.as_str())
}

/// The first non-empty line of a (possibly Markdown) message, without heading marks.
fn first_line(message: &str) -> String {
    message
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clab_model::source::SourceFile;

    /// A rule file with one `<rule>` block, `uv`, that has every kind of filter and action.
    pub(crate) const UV: &str = r#"---
description: uv
globs: *.py, pyproject.toml, Makefile
---
<rule>
name: no-pip
filters:
  - type: file_extension
    pattern: "\\.py$"
  - type: file_path
    pattern: "(Makefile|.*\\.mk)$"
  - type: content
    pattern: "pip install"
  - type: event
    pattern: file_create
actions:
  - type: reject
    conditions:
      - pattern: "(?<!uv )pip install"
        message: "Use `uv add` instead of pip install"
  - type: suggest
    message: |
      # Prefer uv
      More text.
</rule>
"#;

    /// The first rule of a rule file's `text`, which must parse without issues.
    pub(crate) fn compile(text: &str) -> CompiledRule {
        let file = RuleFile::parse("uv", SourceFile::new("uv.mdc", "uv.mdc", text));
        assert!(file.issues.is_empty(), "{:?}", file.issues);
        CompiledRule::compile(&file, &file.body.rules[0]).unwrap()
    }

    /// Texts the prefilter tests scan.
    pub(crate) const PREFILTER_TEXTS: [&str; 5] = [
        "import os\nx = 1\n",
        "x = 1\r\nimport os\r\nfoo\r\n",
        "a  b\nfoo;\nbar\n\n",
        "nothing here\n",
        "x\ty\n  foo  \n",
    ];
    /// Condition patterns that all have a prefilter.
    pub(crate) const PREFILTER_PATTERNS: [&str; 7] = [
        r"^import",
        r"foo$",
        r"a\s+b",
        r"\bx\b",
        r"[^;]+;",
        r"^\s*foo\s*$",
        r"o\n?s",
    ];

    /// A rule with one reject condition `pattern` over every `.py` file.
    pub(crate) fn condition_rule(pattern: &str) -> CompiledRule {
        let pattern = pattern.replace('\\', "\\\\").replace('"', "\\\"");
        compile(&format!(
            "---\nglobs: *.py\n---\n<rule>\nname: r\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"{pattern}\"\n        message: m\n</rule>\n"
        ))
    }

    #[test]
    fn the_whole_text_prefilter_never_changes_findings() {
        let (texts, patterns) = (PREFILTER_TEXTS, PREFILTER_PATTERNS);
        for pattern in patterns {
            let rule = condition_rule(pattern);
            assert!(
                rule.actions[0].prefilter.is_some(),
                "{pattern} has a prefilter"
            );
            let mut plain = rule.clone();
            plain.actions[0].prefilter = None;
            for text in texts {
                assert_eq!(
                    rule.scan("a.py", text),
                    plain.scan("a.py", text),
                    "{pattern:?} on {text:?}"
                );
            }
        }
        assert!(condition_rule(r"\Aimport").actions[0].prefilter.is_none());
        assert!(
            condition_rule(r"(?<!uv )pip").actions[0]
                .prefilter
                .is_none()
        );
    }

    #[test]
    fn selects_by_globs_and_any_path_filter() {
        let rule = compile(UV);
        assert!(rule.selects("src/a.py"));
        assert!(rule.selects("Makefile"));
        assert!(
            !rule.selects("pyproject.toml"),
            "globs match but no path filter does"
        );
        assert!(!rule.selects("a.rs"));
        assert_eq!(
            rule.inert_filters,
            vec![("event".to_owned(), "file_create".to_owned())]
        );
        assert!(rule.is_check());
    }

    #[test]
    fn scan_reports_lines_columns_and_severities() {
        let rule = compile(UV);
        let text = "import os\r\n  x = 'pip install a'\nuv pip install b\n";
        let findings = rule.scan("a.py", text);
        let got: Vec<_> = findings
            .iter()
            .map(|f| (f.line, f.col, f.severity, f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, 8, Severity::Error, "Use `uv add` instead of pip install"),
                (2, 8, Severity::Warning, "Prefer uv"),
            ]
        );
        assert!(
            rule.scan("a.py", "nothing here\n").is_empty(),
            "content filter gates the file"
        );
        assert!(rule.scan("a.rs", text).is_empty());
    }

    #[test]
    fn hash_changes_with_the_definition_only() {
        let a = compile(UV);
        let b = compile(&format!("{UV}\nProse after the block.\n"));
        let c = compile(&UV.replace("instead of", "not"));
        assert_eq!(a.definition_hash(), b.definition_hash());
        assert_ne!(a.definition_hash(), c.definition_hash());
    }

    #[test]
    fn empty_matching_patterns_do_not_flood() {
        let text = "---\nglobs: *.mdc\n---\n<rule>\nname: loc\nfilters:\n  - type: content\n    pattern: \".*\"\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"^(?!\\\\./\\\\.cursor/rules/)\"\n        message: wrong place\n  - type: suggest\n    message: use tags\n</rule>\n";
        let file = RuleFile::parse("loc", SourceFile::new("loc.mdc", "loc.mdc", text));
        let rule = CompiledRule::compile(&file, &file.body.rules[0]).unwrap();
        assert!(!rule.is_check());
        assert!(rule.scan("a.mdc", "one\n\ntwo\n").is_empty());
    }

    /// A base rule for Python files and a rule in another file that extends it.
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
globs: *.py, *.rs
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

    fn files(texts: &[(&str, &str)]) -> Vec<RuleFile> {
        texts
            .iter()
            .map(|(id, text)| {
                let name = format!(".cursor/rules/{id}.mdc");
                RuleFile::parse(*id, SourceFile::new(&name, &name, *text))
            })
            .collect()
    }

    fn messages(findings: &[Finding]) -> Vec<(usize, &str)> {
        findings
            .iter()
            .map(|f| (f.line, f.message.as_str()))
            .collect()
    }

    #[test]
    fn a_child_rule_via_extends_finds_its_parents_filter_plus_its_own_condition() {
        let rules = CompiledRule::compile_all(&files(&[("child", CHILD), ("base", BASE)]));
        let child = rules.iter().find(|r| r.name == "no-shell").unwrap();
        let base = rules.iter().find(|r| r.name == "python-base").unwrap();
        assert_eq!(child.extends, ["python-base"]);
        let text = "import subprocess\nsubprocess.run('ls', shell=True)\nos.system('ls')\n";
        // The parent's condition and the child's own, in the parent's files.
        assert_eq!(
            messages(&child.scan("src/a.py", text)),
            [
                (3, "Use subprocess.run, not os.system"),
                (2, "Pass a list, not shell=True"),
            ]
        );
        assert_eq!(
            messages(&base.scan("src/a.py", text)),
            [(3, "Use subprocess.run, not os.system")]
        );
        // The parent's filters hold: its content filter gates the file, its extension
        // filter keeps out the child's own `*.rs` glob.
        assert!(child.scan("src/b.py", "x(shell=True)\n").is_empty());
        assert!(child.selects("src/a.py") && !child.selects("src/a.rs"));
        // Compiled alone, the child has no filters and only its own condition.
        let alone = files(&[("child", CHILD)]);
        let alone = CompiledRule::compile(&alone[0], &alone[0].body.rules[0]).unwrap();
        assert!(alone.extends.is_empty());
        assert_eq!(
            messages(&alone.scan("src/b.py", "x(shell=True)\n")),
            [(1, "Pass a list, not shell=True")]
        );
        // A change in the parent changes the child's definition.
        let edited = BASE.replace("os\\\\.system", "os\\\\.popen");
        let again = CompiledRule::compile_all(&files(&[("child", CHILD), ("base", &edited)]));
        let child_again = again.iter().find(|r| r.name == "no-shell").unwrap();
        assert_ne!(child.definition_hash(), child_again.definition_hash());
    }

    #[test]
    fn extends_chains_are_transitive_and_cycles_end() {
        let grandchild = "---\nglobs: *.py\n---\n<rule>\nname: strict\nextends: no-shell\nactions:\n  - type: warn\n    conditions:\n      - pattern: \"eval\\\\(\"\n        message: no eval\n</rule>\n";
        let rules = CompiledRule::compile_all(&files(&[
            ("base", BASE),
            ("child", CHILD),
            ("strict", grandchild),
        ]));
        let strict = rules.iter().find(|r| r.name == "strict").unwrap();
        assert_eq!(strict.extends, ["no-shell", "python-base"]);
        let text = "import os\nos.system(eval('x'))\n";
        assert_eq!(
            messages(&strict.scan("a.py", text)),
            [(2, "Use subprocess.run, not os.system"), (2, "no eval")]
        );
        let cycle = "<rule>\nname: a\nextends: b\nactions:\n  - type: warn\n    conditions:\n      - pattern: A\n</rule>\n<rule>\nname: b\nextends: a\nactions:\n  - type: warn\n    conditions:\n      - pattern: B\n</rule>\n";
        let rules = CompiledRule::compile_all(&files(&[("cycle", cycle)]));
        assert_eq!(messages(&rules[0].scan("x", "B\nA\n")).len(), 2);
        assert_eq!(rules[0].extends, ["b"]);
    }

    #[test]
    fn filter_options_are_honoured_when_scanning() {
        let text = r#"---
globs: *.py
---
<rule>
name: todo
filters:
  - type: content
    pattern: "todo"
    options:
      case_insensitive: true
      whole_word: true
actions:
  - type: warn
    message: has a todo
</rule>
"#;
        let rule = compile(text);
        assert_eq!(
            messages(&rule.scan("a.py", "x\n# TODO: y\n")),
            [(2, "has a todo")]
        );
        assert!(rule.scan("a.py", "todos = []\n").is_empty(), "whole word");
        let plain = compile(&text.replace("      case_insensitive: true\n", ""));
        assert!(plain.scan("a.py", "# TODO: y\n").is_empty());
        assert_ne!(plain.definition_hash(), rule.definition_hash());
    }

    #[test]
    fn backtrack_limit_is_an_error_not_a_pass_issue_18() {
        // Issue 18, 3(a): this scan reported "0 findings", exited 0 and was cached.
        let rule = condition_rule("((?=a)a+)+b|!");
        let text = format!("ok\n{}!\n", "a".repeat(25));
        let err = rule.try_scan("a.py", &text).unwrap_err();
        assert_eq!(
            (err.line, err.reason, err.pattern.as_str()),
            (Some(2), Incomplete::BacktrackLimit, "((?=a)a+)+b|!")
        );
        // The findings-only API never passes either: the error is an error finding.
        let findings = rule.scan("a.py", &text);
        assert_eq!(findings, [err.to_finding()]);
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(rule.scan_selected("a.py", &text, None), [err.to_finding()]);
        // A text it can decide is scanned as before.
        assert_eq!(messages(&rule.scan("a.py", "x!\n")), [(1, "m")]);
    }

    #[test]
    fn a_backtracking_scan_is_bounded_in_time_issue_18() {
        // Issue 18, 4: this pattern over 100k characters scanned for 20 s.
        let rule = condition_rule("(?=a)(a+)+$");
        let text = format!("{}!\n", "a".repeat(100_000));
        let started = Instant::now();
        let budget = ScanBudget::new(std::time::Duration::from_millis(200));
        let err = rule
            .try_scan_selected("a.py", &text, None, budget)
            .unwrap_err();
        assert_eq!((err.line, err.reason), (Some(1), Incomplete::TimeLimit));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_path_filter_that_cannot_decide_selects_and_then_fails_the_scan() {
        let text = "---\n---\n<rule>\nname: p\nfilters:\n  - type: file_path\n    pattern: \"((?=a)a+)+b\"\nactions:\n  - type: reject\n    conditions:\n      - pattern: x\n</rule>\n";
        let rule = compile(text);
        let path = format!("{}.py", "a".repeat(30));
        assert!(rule.try_selects(&path).is_err());
        assert!(rule.selects(&path));
        let err = rule
            .try_scan_selected(&path, "y\n", None, ScanBudget::default())
            .unwrap_err();
        assert_eq!((err.line, err.reason), (None, Incomplete::BacktrackLimit));
        assert_eq!(rule.try_selects("b.py").map_err(|e| e.reason), Ok(false));
    }

    #[test]
    fn snapshot_scan_incomplete() {
        let rule = condition_rule("((?=a)a+)+b|!");
        let err = rule
            .try_scan("src/a.py", &format!("{}!", "a".repeat(25)))
            .unwrap_err();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(100);
        let mut out = String::new();
        handler.render_report(&mut out, &err).unwrap();
        insta::assert_snapshot!(out);
    }
}
