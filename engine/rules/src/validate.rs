//! Validation of parsed rule files: everything `clab rules validate` reports.
//!
//! In: [`RuleFile`]s (with the issues their parse found) and, optionally, the project's files
//! ([`ProjectFiles`]) for the checks that need them (`@file` references, globs that match
//! nothing). Out: [`RuleDiagnostic`]s sorted by file and position. Invariant: every error
//! is a real problem in the file; anything merely unusual is a warning. The checks and their
//! severities are listed in `docs/rules.md`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use miette::SourceSpan;

use super::{
    Error, RuleFile,
    known_types::{ACTION_TYPES, FILTER_TYPES, closest, listed},
    pattern::{Pattern, PatternOptions},
    reference::{Target, resolve},
    rule_diagnostic::{Issue, Kind, RuleDiagnostic, Severity},
    rule_globs::{compile_one, normalize},
    rule_index::{ExtendsProblem, RuleIndex},
};

/// The project the rules live in: its root and its files (relative, `/`-separated, sorted).
#[derive(Clone, Debug)]
pub struct ProjectFiles {
    root: PathBuf,
    files: Vec<String>,
}

impl ProjectFiles {
    /// List the project's files under `root`, honouring `.gitignore` and friends (hidden
    /// files such as `.github/` are included; `.git/` is not).
    pub fn walk(root: &Path) -> Result<ProjectFiles, Error> {
        let mut files = Vec::new();
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for entry in walker {
            let entry = entry.map_err(|err| Error::ReadDir {
                path: root.to_owned(),
                source: err
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            })?;
            if entry.file_type().is_some_and(|t| t.is_file()) {
                let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        files.sort();
        Ok(ProjectFiles {
            root: root.to_owned(),
            files,
        })
    }

    /// A project from a known file list (for tests and callers that already walked).
    pub fn from_paths(
        root: impl Into<PathBuf>,
        files: impl IntoIterator<Item = String>,
    ) -> ProjectFiles {
        let mut files: Vec<String> = files.into_iter().collect();
        files.sort();
        ProjectFiles {
            root: root.into(),
            files,
        }
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files, relative and sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }
}

/// Validate `files`: their parse issues plus every semantic check. Checks that need the
/// project's files run only when `project` is given.
pub fn validate(files: &[RuleFile], project: Option<&ProjectFiles>) -> Vec<RuleDiagnostic> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, (usize, SourceSpan)> = BTreeMap::new();
    let rule_index = RuleIndex::new(files);
    for (index, file) in files.iter().enumerate() {
        let mut issues = file.issues.clone();
        check_front_matter(file, project, &mut issues);
        check_invisible(file.source.text(), &mut issues);
        for comment in &file.body.comments {
            issues.push(
                Issue::new(Kind::HtmlComment, *comment, "html comment in the rule body")
                    .with_help("the model reads comments that rendered Markdown hides; make the text visible or remove it"),
            );
        }
        check_references(file, project, &mut issues);
        for block in &file.body.rules {
            if let Some(problem) = rule_index.chain(block).problem {
                issues.push(extends_issue(problem));
            }
            if let Some(name) = block.name.as_ref().filter(|n| !n.value.trim().is_empty()) {
                match names.get(name.value.trim()) {
                    Some(&(first, first_span)) => {
                        let other = &files[first];
                        let (line, _) = other.source.line_col(first_span.offset());
                        issues.push(
                            Issue::new(
                                Kind::DuplicateName,
                                name.span,
                                format!(
                                    "rule `{}` is already defined in `{}` at line {line}",
                                    name.value.trim(),
                                    other.source.name()
                                ),
                            )
                            .with_help(
                                "rule names name check nodes (`rule:NAME`) and must be unique",
                            ),
                        );
                    }
                    None => {
                        names.insert(name.value.trim().to_owned(), (index, name.span));
                    }
                }
            }
            for filter in &block.filters {
                let Some(kind) = &filter.kind else { continue };
                if !FILTER_TYPES.contains(&kind.value.as_str()) {
                    issues.push(unknown_type(
                        Kind::UnknownFilterType,
                        "filter",
                        kind,
                        FILTER_TYPES,
                    ));
                    continue;
                }
                if let Some(pattern) = &filter.pattern {
                    check_regex(pattern, filter.options, &mut issues);
                }
            }
            for action in &block.actions {
                if let Some(kind) = &action.kind
                    && !kind.value.trim().is_empty()
                    && !ACTION_TYPES.contains(&kind.value.as_str())
                {
                    issues.push(unknown_type(
                        Kind::UnknownActionType,
                        "action",
                        kind,
                        ACTION_TYPES,
                    ));
                }
                for condition in &action.conditions {
                    if let Some(pattern) = &condition.pattern {
                        let compiled = check_regex(pattern, PatternOptions::default(), &mut issues);
                        if compiled.is_some_and(|p| p.matches_empty()) {
                            issues.push(
                                Issue::new(
                                    Kind::MatchesEmpty,
                                    pattern.span,
                                    format!(
                                        "`{}` matches an empty line, so it would report every line; clab does not scan with it",
                                        pattern.value
                                    ),
                                )
                                .with_help("conditions are searched line by line; a pattern meant for the file path belongs in a `file_path` filter"),
                            );
                        }
                    }
                }
            }
        }
        issues.sort_by_key(|i| (i.span.offset(), i.kind));
        issues.dedup();
        out.extend(
            issues
                .into_iter()
                .map(|i| RuleDiagnostic::new(&file.source, i)),
        );
    }
    out
}

fn unknown_type(
    kind: Kind,
    what: &str,
    value: &clab_model::source::Spanned<String>,
    known: &[&str],
) -> Issue {
    // A typo (at most two edits from a known type, one for short words) is an error: the
    // author meant that type. Anything further off is a type of the author's own, which clab
    // ignores.
    let known_list = listed(known);
    match closest(&value.value, known) {
        Some(k) => Issue::new(
            kind,
            value.span,
            format!("unknown {what} type `{}`", value.value),
        )
        .with_help(format!("did you mean `{k}`?"))
        .with_severity(Severity::Error),
        None => Issue::new(
            kind,
            value.span,
            format!(
                "unknown {what} type `{}`; clab ignores this {what}",
                value.value
            ),
        )
        .with_help(format!("known {what} types: {known_list}"))
        .with_severity(Severity::Warning),
    }
}

/// The diagnostic for what cut an `extends` chain short.
fn extends_issue(problem: ExtendsProblem) -> Issue {
    match problem {
        ExtendsProblem::Unknown { name, best } => {
            let help = match best {
                Some(best) => format!("did you mean `{best}`?"),
                None => {
                    "`extends` takes the `name` of a `<rule>` block in any rule file".to_owned()
                }
            };
            Issue::new(
                Kind::UnknownExtends,
                name.span,
                format!("`extends` names no rule: `{}`", name.value.trim()),
            )
            .with_help(help)
        }
        ExtendsProblem::Cycle { extends, path } => {
            let path = path
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" → ");
            Issue::new(
                Kind::ExtendsCycle,
                extends.span,
                format!("`extends` goes round in a circle: {path}"),
            )
            .with_help("a rule cannot build on itself; remove one `extends` of the circle")
        }
    }
}

/// Report a pattern that does not compile or needs `fancy-regex`; the compiled pattern.
fn check_regex(
    pattern: &clab_model::source::Spanned<String>,
    options: PatternOptions,
    issues: &mut Vec<Issue>,
) -> Option<Pattern> {
    let compiled = Pattern::compile_with(&pattern.value, options);
    match &compiled {
        Ok(p) if p.is_fancy() => issues.push(
            Issue::new(
                Kind::FancyRegex,
                pattern.span,
                format!(
                    "`{}` uses look-around or backreferences; it runs on `fancy-regex`",
                    pattern.value
                ),
            )
            .with_help(format!("such patterns backtrack; clab gives up on a line after {} backtracking steps or when the scan's time budget runs out, and the rule node fails; prefer a plain regex if you can", super::pattern::BACKTRACK_LIMIT)),
        ),
        Ok(_) => {}
        Err(err) => {
            let reason = err
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("")
                .trim_start_matches("error: ");
            let message = if reason.is_empty() {
                format!("`{}` is not a valid regex", pattern.value)
            } else {
                format!("`{}` is not a valid regex: {reason}", pattern.value)
            };
            issues.push(Issue::new(Kind::BadRegex, pattern.span, message));
        }
    }
    compiled.ok()
}

fn check_front_matter(file: &RuleFile, project: Option<&ProjectFiles>, issues: &mut Vec<Issue>) {
    let fm = &file.front_matter;
    if fm.span.is_none() {
        let start = if file.source.text().starts_with('\u{feff}') {
            3
        } else {
            0
        };
        issues.push(
            Issue::new(Kind::MissingFrontMatter, SourceSpan::from((start, 0)), "the file has no front matter")
                .with_help("start the file with `---`, `description:`, `globs:`, `alwaysApply:` and `---` lines; without them Cursor attaches the rule only when named"),
        );
    }
    for glob in &fm.globs {
        if let Err(err) = compile_one(&glob.value) {
            issues.push(Issue::new(
                Kind::BadGlob,
                glob.span,
                format!("`{}` is not a valid glob: {}", glob.value, err.kind()),
            ));
            continue;
        }
        let (_, negated) = normalize(&glob.value);
        if let Some(project) = project
            && !negated
            && let Ok(g) = compile_one(&glob.value)
        {
            let matcher = g.compile_matcher();
            if !project.files.iter().any(|f| matcher.is_match(f)) {
                issues.push(Issue::new(
                    Kind::GlobMatchesNothing,
                    glob.span,
                    format!("`{}` matches no file in the project", glob.value),
                ));
            }
        }
    }
    if let Some(always) = &fm.always_apply
        && always.value
        && !fm.globs.is_empty()
    {
        let span = fm.globs_span.unwrap_or(always.span);
        issues.push(
            Issue::new(
                Kind::AlwaysApplyWithGlobs,
                span,
                "`alwaysApply: true` makes `globs` irrelevant",
            )
            .with_help("remove the globs, or set `alwaysApply: false` to attach the rule by glob"),
        );
    }
}

fn check_references(file: &RuleFile, project: Option<&ProjectFiles>, issues: &mut Vec<Issue>) {
    let root = project.map(ProjectFiles::root).or(file.root());
    for r in &file.body.references {
        if resolve(root, file.source.name(), &r.path.value) == Target::Outside {
            issues.push(
                Issue::new(
                    Kind::OutsideRoot,
                    r.path.span,
                    format!(
                        "`{}` is outside the project; clab does not attach it to the rule's context",
                        r.path.value
                    ),
                )
                .with_help("reference files inside the project, relative to its root or to the rule file's folder"),
            );
        }
    }
    let Some(project) = project else {
        return;
    };
    let folder = file.source.path().parent().map(Path::to_owned);
    for r in &file.body.references {
        if resolve(Some(&project.root), file.source.name(), &r.path.value) == Target::Outside {
            continue;
        }
        let rel = r.path.value.trim_start_matches("./");
        let rel_root = rel.trim_start_matches('/');
        let exists = project.root.join(rel_root).exists()
            || folder.as_ref().is_some_and(|f| f.join(rel).exists());
        if !exists {
            issues.push(
                Issue::new(
                    Kind::MissingFile,
                    r.path.span,
                    format!("`{}` does not exist", r.path.value),
                )
                .with_help(
                    "paths are looked up from the project root and from the rule file's folder",
                ),
            );
        }
    }
}

/// Invisible characters: `(start, end)` byte ranges of runs and the characters in each.
fn invisible_runs(text: &str) -> Vec<(usize, usize, Vec<char>)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut runs: Vec<(usize, usize, Vec<char>)> = Vec::new();
    let mut in_flag_tags = false;
    for (k, &(at, c)) in chars.iter().enumerate() {
        if c == '\u{1F3F4}' {
            in_flag_tags = true;
            continue;
        }
        let is_tag = ('\u{E0000}'..='\u{E007F}').contains(&c);
        if in_flag_tags && is_tag {
            // Subdivision flags (England, Scotland, …) are spelled with tag characters.
            if c == '\u{E007F}' {
                in_flag_tags = false;
            }
            continue;
        }
        in_flag_tags = false;
        if !is_invisible(c) || (at == 0 && c == '\u{feff}') {
            continue;
        }
        if (c == '\u{200C}' || c == '\u{200D}') && joins_visible(&chars, k) {
            continue;
        }
        let end = at + c.len_utf8();
        match runs.last_mut() {
            Some(run) if run.1 == at => {
                run.1 = end;
                run.2.push(c);
            }
            _ => runs.push((at, end, vec![c])),
        }
    }
    runs
}

/// Zero-width (non-)joiners between two visible non-ASCII characters shape emoji sequences
/// and Persian or Indic words; they are not hiding anything.
fn joins_visible(chars: &[(usize, char)], k: usize) -> bool {
    let visible = |c: char| !c.is_ascii() && !is_invisible(c) && !c.is_whitespace();
    let prev = k.checked_sub(1).and_then(|p| chars.get(p)).map(|&(_, c)| c);
    let next = chars.get(k + 1).map(|&(_, c)| c);
    prev.is_some_and(visible) && next.is_some_and(visible)
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

fn char_name(c: char) -> &'static str {
    match c {
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{E0000}'..='\u{E007F}' => "TAG",
        _ => "INVISIBLE FORMAT CHARACTER",
    }
}

fn check_invisible(text: &str, issues: &mut Vec<Issue>) {
    for (start, end, chars) in invisible_runs(text) {
        let (line, col) = clab_model::source::line_col(text, start);
        let mut listed: Vec<String> = chars
            .iter()
            .take(6)
            .map(|c| format!("U+{:04X} {}", u32::from(*c), char_name(*c)))
            .collect();
        if chars.len() > 6 {
            listed.push(format!("{} more", chars.len() - 6));
        }
        let hidden: String = chars
            .iter()
            .filter_map(|&c| {
                let v = u32::from(c);
                (0xE0020..=0xE007E)
                    .contains(&v)
                    .then(|| char::from_u32(v - 0xE0000))
                    .flatten()
            })
            .collect();
        let mut message = format!(
            "{} invisible character{} at line {line}, column {col}: {}",
            chars.len(),
            if chars.len() == 1 { "" } else { "s" },
            listed.join(", ")
        );
        if !hidden.is_empty() {
            message.push_str(&format!("; tag characters spell `{hidden}`"));
        }
        issues.push(
            Issue::new(Kind::InvisibleUnicode, SourceSpan::from((start, end - start)), message)
                .with_help("invisible characters can hide instructions from reviewers (the \"rules file backdoor\"); delete them"),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::FlatDiagnostic;
    use clab_model::source::SourceFile;

    fn file(id: &str, text: &str) -> RuleFile {
        RuleFile::parse(
            id,
            SourceFile::new(format!("{id}.mdc"), format!("{id}.mdc"), text),
        )
    }

    fn codes(files: &[RuleFile], project: Option<&ProjectFiles>) -> Vec<(String, String)> {
        validate(files, project)
            .into_iter()
            .map(|d| (d.issue.kind.name().to_owned(), d.issue.message))
            .collect()
    }

    #[test]
    fn clean_file_has_no_diagnostics() {
        let f = file(
            "ok",
            "---\ndescription: d\nglobs: *.py\nalwaysApply: false\n---\n<rule>\nname: ok\nfilters:\n  - type: content\n    pattern: x\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"y\"\n        message: m\n</rule>\n",
        );
        assert_eq!(codes(&[f], None), vec![]);
    }

    #[test]
    fn semantic_checks() {
        let f = file(
            "bad",
            "---\nglobs: a[, *.rs\nalwaysApply: true\n---\n<!-- hi -->\n<rule>\nname: dup\nfilters:\n  - type: file_extention\n    pattern: x\n  - type: content\n    pattern: \"(?<=a)b\"\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"(\"\n        message: m\n</rule>\n",
        );
        let g = file("g", "---\n---\n<rule>\nname: dup\n</rule>\n");
        let got = codes(&[f, g], None);
        let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "bad_glob",
                "always_apply_with_globs",
                "html_comment",
                "unknown_filter_type",
                "fancy_regex",
                "bad_regex",
                "duplicate_name"
            ],
            "{got:#?}"
        );
        assert_eq!(
            got[6].1,
            "rule `dup` is already defined in `bad.mdc` at line 7"
        );
    }

    #[test]
    fn project_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("docs/a.md"), "").unwrap();
        let project = ProjectFiles::from_paths(dir.path(), ["docs/a.md".to_owned()]);
        let f = RuleFile::parse(
            "r",
            SourceFile::new(
                dir.path().join("r.mdc"),
                "r.mdc",
                "---\nglobs: *.md, *.rs, !x.md\n---\nSee @docs/a.md and @docs/b.md.\n",
            ),
        );
        let got = codes(&[f], Some(&project));
        assert_eq!(
            got,
            vec![
                (
                    "glob_matches_nothing".to_owned(),
                    "`*.rs` matches no file in the project".to_owned()
                ),
                (
                    "missing_file".to_owned(),
                    "`docs/b.md` does not exist".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn invisible_unicode_is_an_error_but_emoji_joiners_are_not() {
        let f = file(
            "u",
            "---\ndescription: ok\n---\nBe nice.\u{200B}\u{202E}x\nfamily 👨\u{200D}👩 ok\nflag 🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}\n\u{E0068}\u{E0069}\n",
        );
        let got = codes(&[f], None);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(
            got[0].1,
            "2 invisible characters at line 4, column 9: U+200B ZERO WIDTH SPACE, U+202E RIGHT-TO-LEFT OVERRIDE"
        );
        assert!(
            got[1].1.ends_with("tag characters spell `hi`"),
            "{}",
            got[1].1
        );
    }

    #[test]
    fn missing_front_matter_is_a_warning() {
        let got = validate(&[file("n", "# no front matter\n")], None);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].issue.kind, Kind::MissingFrontMatter);
        assert_eq!(got[0].severity(), Severity::Warning);
    }

    /// Every `.mdc` and `.mdc.md` under `dir`, sorted.
    fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                corpus_files(&path, out);
            } else if path.to_string_lossy().ends_with(".mdc")
                || path.to_string_lossy().ends_with(".mdc.md")
            {
                out.push(path);
            }
        }
    }

    /// The measurement in `docs/rules.md`: parse and validate every file of the shared corpus,
    /// print the time and the findings by kind (and every error, for spot checks).
    /// `CLAB_MDC_CORPUS=/work/shared/corpus/mdc cargo test -p clab-rules --lib validate::tests::corpus_tally -- --ignored --nocapture`
    #[test]
    #[ignore = "needs the shared corpus; run by hand"]
    fn corpus_tally() {
        let root = std::env::var("CLAB_MDC_CORPUS")
            .unwrap_or_else(|_| "/work/shared/corpus/mdc".to_owned());
        let root = PathBuf::from(root);
        let mut paths = Vec::new();
        corpus_files(&root, &mut paths);
        paths.sort();
        let started = std::time::Instant::now();
        let mut files = Vec::new();
        for path in &paths {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            let source = SourceFile::read(path, name.clone()).unwrap();
            files.push(RuleFile::parse(name, source));
        }
        let parsed = started.elapsed();
        // Duplicate names are checked per rule set (a `rules` folder, or a drafts folder), as
        // `discover` would see them; the drafts copy `.cursor/rules`.
        let set_of = |f: &RuleFile| {
            let parts: Vec<&str> = f.id.split('/').collect();
            let end = parts
                .iter()
                .position(|p| {
                    matches!(
                        *p,
                        "rules" | "cursor_rules" | "cursor_rules_v2" | "disabled"
                    )
                })
                .unwrap_or(0);
            parts[..=end].join("/")
        };
        let mut sets: BTreeMap<String, Vec<RuleFile>> = BTreeMap::new();
        for f in &files {
            sets.entry(set_of(f)).or_default().push(f.clone());
        }
        let diagnostics: Vec<RuleDiagnostic> =
            sets.values().flat_map(|set| validate(set, None)).collect();
        let total = started.elapsed();
        println!(
            "rule sets: {:?}",
            sets.iter()
                .map(|(k, v)| (k.as_str(), v.len()))
                .collect::<Vec<_>>()
        );
        let mut by_kind: BTreeMap<(String, &str), usize> = BTreeMap::new();
        for d in &diagnostics {
            let sev = match d.severity() {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            *by_kind
                .entry((d.issue.kind.name().to_owned(), sev))
                .or_default() += 1;
        }
        // The hidden-corpus guarantee: every diagnostic points into its file and renders.
        for d in &diagnostics {
            let text = d.file.text();
            let (offset, len) = (d.issue.span.offset(), d.issue.span.len());
            assert!(
                offset + len <= text.len()
                    && text.is_char_boundary(offset)
                    && text.is_char_boundary(offset + len),
                "{d:?}"
            );
        }
        assert!(!render(&diagnostics).contains("<render failed>"));
        let versions: usize = files
            .iter()
            .flat_map(|f| &f.body.rules)
            .filter(|b| b.version.is_some())
            .count();
        let extending: usize = files
            .iter()
            .flat_map(|f| &f.body.rules)
            .filter(|b| b.extends.is_some())
            .count();
        let with_options: usize = files
            .iter()
            .flat_map(|f| &f.body.rules)
            .flat_map(|b| &b.filters)
            .filter(|f| !f.options.is_empty())
            .count();
        println!(
            "blocks with a version: {versions}, with extends: {extending}; filters with options: {with_options}"
        );
        let blocks: usize = files.iter().map(|f| f.body.rules.len()).sum();
        let compiled = super::super::CompiledRule::compile_all(&files);
        // Scanning speed: every compiled rule over every corpus file's text, as if the corpus
        // were the project.
        let scan_started = std::time::Instant::now();
        let mut scanned = 0;
        let mut findings: BTreeMap<String, usize> = BTreeMap::new();
        for rule in &compiled {
            for f in &files {
                let path = f.id.trim_end_matches(".md");
                if rule.selects(path) {
                    scanned += 1;
                    match rule.try_scan(path, f.source.text()) {
                        Ok(found) => {
                            for finding in found {
                                *findings.entry(finding.rule).or_default() += 1;
                            }
                        }
                        Err(err) => println!("scan error: {err}"),
                    }
                }
            }
        }
        println!(
            "scan: {} rules x {} files, {scanned} selected pairs, {} findings from {} rules in {:?}",
            compiled.len(),
            files.len(),
            findings.values().sum::<usize>(),
            findings.len(),
            scan_started.elapsed()
        );
        println!("findings by rule: {findings:?}");
        println!(
            "files: {}, rule blocks: {blocks}, compiled rules: {}",
            files.len(),
            compiled.len()
        );
        println!("parse: {parsed:?}, parse+validate: {total:?}");
        let mut types: BTreeMap<super::super::RuleType, usize> = BTreeMap::new();
        for f in &files {
            *types.entry(f.rule_type()).or_default() += 1;
        }
        println!("types: {types:?}");
        for ((kind, sev), n) in &by_kind {
            println!("| `{kind}` | {sev} | {n} |");
        }
        for d in &diagnostics {
            let flat = d.flat();
            if std::env::var("CLAB_SHOW").is_ok_and(|k| k == "all" || flat.code.ends_with(&k)) {
                println!(
                    "{}:{}:{} {} {}",
                    flat.file, flat.line, flat.col, flat.code, flat.message
                );
            }
        }
        // The project checks on the one set whose project folder exists in the corpus (it holds
        // only rule files, so globs over source files are expected to match nothing).
        if let Some(set) = sets.get("codegen-lab/.cursor/rules")
            && let Ok(project) = ProjectFiles::walk(&root.join("codegen-lab"))
        {
            for d in validate(set, Some(&project)) {
                if matches!(d.issue.kind, Kind::MissingFile | Kind::GlobMatchesNothing) {
                    let f = d.flat();
                    println!(
                        "project check: {}:{}:{} {} {}",
                        f.file, f.line, f.col, f.code, f.message
                    );
                }
            }
        }
        if std::env::var("CLAB_SHOW").is_ok_and(|k| k == "refs") {
            for f in &files {
                for r in &f.body.references {
                    println!("{}: {:?} {}", f.id, r.style, r.path.value);
                }
            }
        }
        if std::env::var("CLAB_SHOW").is_ok_and(|k| k == "blocks") {
            for f in &files {
                let tags = f
                    .source
                    .text()
                    .lines()
                    .filter(|l| l.starts_with("<rule>"))
                    .count();
                if tags != f.body.rules.len() {
                    println!(
                        "{}: {tags} `<rule>` lines, {} blocks",
                        f.id,
                        f.body.rules.len()
                    );
                }
            }
        }
        assert_eq!(files.len(), paths.len());
    }

    /// Render diagnostics the way the snapshots show them: colorless, 100 columns.
    pub(crate) fn render(diagnostics: &[RuleDiagnostic]) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(100);
        let mut out = String::new();
        for d in diagnostics {
            if handler.render_report(&mut out, d).is_err() {
                out.push_str("<render failed>\n");
            }
            out.push('\n');
        }
        out
    }

    fn snapshot_of(text: &str) -> String {
        render(&validate(&[file("rules/case", text)], None))
    }

    #[test]
    fn snapshot_bad_regex() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\nglobs: *.py\n---\n<rule>\nname: r\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"print\\\\((\"\n        message: no print\n</rule>\n"
        ));
    }

    #[test]
    fn snapshot_bad_glob() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\nglobs: src/**/*.{ts,tsx}, lib/[a-\n---\nbody\n"
        ));
    }

    #[test]
    fn snapshot_duplicate_name() {
        let a = file(
            "a",
            "---\ndescription: a\n---\n<rule>\nname: no-print\n</rule>\n",
        );
        let b = file(
            "python/b",
            "---\ndescription: b\n---\nIntro.\n\n<rule>\nname: no-print\n</rule>\n",
        );
        insta::assert_snapshot!(render(&validate(&[a, b], None)));
    }

    #[test]
    fn snapshot_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("present.md"), "").unwrap();
        let project = ProjectFiles::from_paths(dir.path(), ["present.md".to_owned()]);
        let f = RuleFile::parse(
            "refs",
            SourceFile::new(
                dir.path().join(".cursor/rules/refs.mdc"),
                ".cursor/rules/refs.mdc",
                "---\ndescription: d\n---\nFollow @present.md and @docs/missing.md.\nSee [layout](mdc:src/gone.py).\n",
            ),
        );
        insta::assert_snapshot!(render(&validate(&[f], Some(&project))));
    }

    #[test]
    fn snapshot_unknown_filter_type() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\n---\n<rule>\nname: r\nfilters:\n  - type: file_extention\n    pattern: \"\\\\.py$\"\n  - type: file_size\n    max: 10\n</rule>\n"
        ));
    }

    #[test]
    fn snapshot_invisible_unicode() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: Python style\n---\nAlways use type hints.\u{200B}\u{202E}\u{2066}\nAlso\u{E0069}\u{E0067}\u{E006E}\u{E006F}\u{E0072}\u{E0065} this.\n"
        ));
    }

    #[test]
    fn snapshot_unknown_keys_and_misspelt_filter_type() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\nglobs: *.py\n---\n<rule>\nname: r\nfilter:\n  - type: content\nfilters:\n  - type: file_extention\n    pattern: \"\\\\.py$\"\n  - type: content\n    patern: x\n    pattern: \"print\"\n    options:\n      case_insensitve: true\n      whole_word: maybe\n  - type: file_size\n    max: 10\nactions:\n  - type: reject\n    mesage: no\n    conditions:\n      - pattern: \"print\\\\(\"\n        negated: true\n  - type: analyze\n    script: x\n</rule>\n"
        ));
    }

    #[test]
    fn snapshot_bad_version() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\n---\n<rule>\nname: a\nversion: 1.x\n</rule>\n<rule>\nname: b\nmetadata:\n  version: 1.0\n  priority: high\n</rule>\n"
        ));
    }

    #[test]
    fn snapshot_extends_unknown_and_cycle() {
        let base = file(
            "base",
            "---\ndescription: base\n---\n<rule>\nname: python-base\nactions:\n  - type: warn\n    message: m\n</rule>\n",
        );
        let other = file(
            "python/other",
            "---\ndescription: other\n---\n<rule>\nname: typo\nextends: pyhton-base\n</rule>\n\n<rule>\nname: a\nextends: b\n</rule>\n<rule>\nname: b\nextends: a\n</rule>\n<rule>\nname: ok\nextends: python-base\n</rule>\n",
        );
        insta::assert_snapshot!(render(&validate(&[base, other], None)));
    }

    #[test]
    fn snapshot_outside_root() {
        insta::assert_snapshot!(snapshot_of(
            "---\ndescription: d\n---\nSee @../../../etc/passwd.md, @~/.ssh/notes.md and [x](mdc:../../../secret.md); @docs/in.md is fine.\n"
        ));
    }

    #[test]
    fn extends_problems_break_compilation_and_unknown_keys_do_not() {
        let broken = file(
            "b",
            "---\ndescription: d\n---\n<rule>\nname: b\nextends: nothing\n</rule>\n",
        );
        let errors = crate::check_compiles(&[broken]).unwrap_err().errors;
        assert_eq!(errors[0].issue.kind, Kind::UnknownExtends);
        let unknown = file(
            "u",
            "---\ndescription: d\n---\n<rule>\nname: u\nowner: me\nversion: 2\n</rule>\n",
        );
        assert!(crate::check_compiles(std::slice::from_ref(&unknown)).is_ok());
        assert_eq!(
            unknown.body.rules[0]
                .version
                .as_ref()
                .map(|v| v.value.to_string()),
            Some("2.0.0".to_owned())
        );
    }

    /// The copied corpus fixtures (`engine/rules/tests/fixtures/rules/corpus/`): every diagnostic,
    /// flat, per rule set. A change here is a change in what users see on real files.
    #[test]
    fn corpus_fixtures() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules/corpus");
        let mut out = String::new();
        let mut count = 0;
        for set in ["awesome-cursorrules", "codegen-lab", "codegen-lab-drafts"] {
            let found = crate::discover(&root, &[Path::new(set)]).unwrap();
            count += found.len();
            for d in validate(&found, None) {
                let f = d.flat();
                out.push_str(&format!(
                    "{}:{}:{} {:?} {} {}\n",
                    f.file, f.line, f.col, f.severity, f.code, f.message
                ));
            }
        }
        assert_eq!(count, 26);
        insta::assert_snapshot!(out);
    }

    #[test]
    fn corpus_fixture_uv_rule_scans() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules/corpus");
        let found = crate::discover(&root, &[Path::new("codegen-lab")]).unwrap();
        let rules = super::super::CompiledRule::compile_all(&found);
        let uv = rules.iter().find(|r| r.name == "uv").unwrap();
        assert!(uv.selects("src/pkg/a.py"));
        assert!(uv.selects("Makefile"));
        assert!(!uv.selects("README.md"));
        let findings = uv.scan("src/pkg/a.py", "import os\n# then pip install requests\n");
        assert_eq!(findings.len(), 1);
        assert_eq!((findings[0].line, findings[0].col), (2, 8));
        assert_eq!(findings[0].message, "UV Best Practices");
        let location = rules
            .iter()
            .find(|r| r.name == "cursor_rules_location")
            .unwrap();
        assert!(location.is_check());
    }

    #[test]
    fn project_walk_honours_gitignore_and_keeps_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
        std::fs::write(dir.path().join(".github/workflows/ci.yml"), "").unwrap();
        std::fs::write(dir.path().join("target/out.py"), "").unwrap();
        std::fs::write(dir.path().join("a.py"), "").unwrap();
        let project = ProjectFiles::walk(dir.path()).unwrap();
        assert_eq!(
            project.files(),
            [".github/workflows/ci.yml", ".gitignore", "a.py"]
        );
    }

    #[test]
    fn json_forms() {
        let f = file(
            "j",
            "---\ndescription: d\nglobs: \"*.py\"\n---\n<rule>\nname: j\nfilters:\n  - type: content\n    pattern: \"(\"\n</rule>\n",
        );
        let diagnostics = validate(&[f], None);
        let flat: Vec<FlatDiagnostic> = diagnostics.iter().map(RuleDiagnostic::flat).collect();
        insta::assert_json_snapshot!(flat);
        let mut miette_json = String::new();
        miette::JSONReportHandler::new()
            .render_report(&mut miette_json, &diagnostics[1])
            .unwrap();
        insta::assert_snapshot!(miette_json);
    }
}
