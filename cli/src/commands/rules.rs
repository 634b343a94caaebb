//! `clab rules validate|list|show|new`: Cursor rule files (`*.mdc`) from the command line.
//!
//! In: the rules directories named by tasks.kdl's `rules "DIR" …` nodes (default
//! `.cursor/rules`), relative to the project root. Without a tasks.kdl, the current directory
//! (or `-C DIR`) is the root and the default directory is used, so the commands also work in a
//! repository that has only `.cursor/rules`. Out: diagnostics on stderr (rendered by miette),
//! tables and details on stdout, and an exit code: 0 clean, 1 a rule error (or an I/O error),
//! 2 a usage problem (unknown id, bad name, a file that exists). Parsing and checking live in
//! `clab_rules`; this module only finds the files and prints.

use clab_graph::project::Project;
use clab_rules::{
    DEFAULT_RULES_DIR, NewRule, ProjectFiles, RuleDiagnostic, RuleFile, RuleType, Severity,
};
use clab_syntax::TaskFile;
use serde::Serialize;
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use crate::{
    args::{Args, RuleTypeArg, RulesCommand, RulesFormat},
    exit::{Done, Failure},
};

/// The widest a `clab rules list` cell gets before it is cut with `…`.
const MAX_CELL: usize = 40;

/// Run a `clab rules` subcommand.
pub(super) fn rules(args: &Args, command: &RulesCommand) -> Result<Done, Failure> {
    let location = locate(args)?;
    match command {
        RulesCommand::Validate { format } => validate(&location, *format, args.verbose > 0),
        RulesCommand::List => list(&location),
        RulesCommand::Show { id } => show(&location, id),
        RulesCommand::New {
            name,
            rule_type,
            globs,
            description,
        } => new(&location, name, *rule_type, globs, description.as_deref()),
    }
}

/// Where the rule files are: the project root and the rules directories relative to it.
#[derive(Clone, Debug)]
pub(super) struct Location {
    /// The project root (the folder of tasks.kdl, else the working directory).
    pub root: PathBuf,
    /// The rules directories, relative to the root, as written in tasks.kdl.
    pub dirs: Vec<String>,
}

impl Location {
    /// The rules directories named in a tasks file, or the default.
    pub(super) fn of(root: &Path, file: &TaskFile) -> Location {
        let mut dirs: Vec<String> = file.rules_dirs.iter().map(|d| d.value.clone()).collect();
        if dirs.is_empty() {
            dirs.push(DEFAULT_RULES_DIR.to_owned());
        }
        Location {
            root: root.to_owned(),
            dirs,
        }
    }

    /// The directories for display: `.cursor/rules` or `rules, more-rules`.
    pub(super) fn display(&self) -> String {
        self.dirs.join(", ")
    }

    /// Read and parse every rule file.
    pub(super) fn discover(&self) -> Result<Vec<RuleFile>, clab_rules::Error> {
        let dirs: Vec<&Path> = self.dirs.iter().map(Path::new).collect();
        clab_rules::discover(&self.root, &dirs)
    }
}

/// Find the rules: from tasks.kdl when there is one, else the working directory.
fn locate(args: &Args) -> Result<Location, Failure> {
    let dir = args.directory.clone().unwrap_or_else(|| PathBuf::from("."));
    match Project::discover(&dir, args.file.as_deref()) {
        Ok(project) => Ok(Location::of(&project.root, &project.parse()?)),
        // No tasks.kdl anywhere up the tree: a plain repository with `.cursor/rules`.
        Err(clab_graph::project::Error::NoTasksFile { .. }) if args.file.is_none() => {
            let root = std::path::absolute(&dir).map_err(|source| {
                Failure::Engine(clab_graph::project::Error::Io {
                    path: dir.display().to_string(),
                    source,
                })
            })?;
            Ok(Location {
                root,
                dirs: vec![DEFAULT_RULES_DIR.to_owned()],
            })
        }
        Err(err) => Err(err.into()),
    }
}

/// Print an error from the rules library and say how the command ends: 2 for what the user
/// asked for (a bad name, a file that exists), 1 for the file system.
pub(super) fn stop(err: clab_rules::Error) -> Done {
    let usage = matches!(
        err,
        clab_rules::Error::Exists { .. }
            | clab_rules::Error::BadName { .. }
            | clab_rules::Error::MissingGlobs
    );
    eprintln!("{:?}", miette::Report::new(err));
    if usage { Done::Usage } else { Done::TaskFailed }
}

/// Counts over a set of rule files and their diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Summary {
    /// Rule files read.
    pub files: usize,
    /// `<rule>` blocks in them.
    pub rules: usize,
    /// Diagnostics with severity error.
    pub errors: usize,
    /// Diagnostics with severity warning.
    pub warnings: usize,
}

impl Summary {
    /// Count `files` and `diagnostics`.
    pub(super) fn of(files: &[RuleFile], diagnostics: &[RuleDiagnostic]) -> Summary {
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .count();
        Summary {
            files: files.len(),
            rules: files.iter().map(|f| f.body.rules.len()).sum(),
            errors,
            warnings: diagnostics.len() - errors,
        }
    }

    /// `.cursor/rules: 3 files, 2 rules, 1 error, 2 warnings` (or `…, no problems`).
    pub(super) fn line(&self, dirs: &str) -> String {
        let problems = if self.errors + self.warnings == 0 {
            "no problems".to_owned()
        } else {
            format!(
                "{}, {}",
                plural(self.errors, "error"),
                plural(self.warnings, "warning")
            )
        };
        format!(
            "{dirs}: {}, {}, {problems}",
            plural(self.files, "file"),
            plural(self.rules, "rule")
        )
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Discover and validate every rule file (with the project's files, for `@file` references
/// and globs that match nothing).
pub(super) fn check_all(
    location: &Location,
) -> Result<(Vec<RuleFile>, Vec<RuleDiagnostic>), clab_rules::Error> {
    let files = location.discover()?;
    let project = ProjectFiles::walk(&location.root)?;
    let diagnostics = clab_rules::validate(&files, Some(&project));
    Ok((files, diagnostics))
}

/// Render diagnostics to stderr, and as workflow commands when running in GitHub Actions
/// (on stdout, or on stderr when stdout carries JSON).
pub(super) fn report(diagnostics: &[RuleDiagnostic], annotations_on_stderr: bool) {
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    for diagnostic in diagnostics {
        eprintln!("{:?}", miette::Report::new(diagnostic.clone()));
        if github {
            let line = annotation(diagnostic);
            if annotations_on_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}

/// `::error file=…,line=…,col=…,title=CODE::MESSAGE` (or `::warning`).
fn annotation(diagnostic: &RuleDiagnostic) -> String {
    use crate::render::annotation::{Annotation, Level};
    let flat = diagnostic.flat();
    let level = match flat.severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
    };
    Annotation::new(level, &flat.code, &flat.message)
        .at(&flat.file, Some(flat.line), Some(flat.col))
        .to_string()
}

/// The `--format json` document.
#[derive(Serialize)]
struct ValidateJson<'a> {
    root: String,
    dirs: &'a [String],
    summary: Summary,
    diagnostics: Vec<clab_rules::FlatDiagnostic>,
}

fn validate(location: &Location, format: RulesFormat, timing: bool) -> Result<Done, Failure> {
    let start = std::time::Instant::now();
    let files = match location.discover() {
        Ok(files) => files,
        Err(err) => return Ok(stop(err)),
    };
    let read = start.elapsed();
    let project = match ProjectFiles::walk(&location.root) {
        Ok(project) => project,
        Err(err) => return Ok(stop(err)),
    };
    let walked = start.elapsed();
    let diagnostics = clab_rules::validate(&files, Some(&project));
    if timing {
        // `-v`: where the time goes (the numbers in docs/rules.md come from here).
        eprintln!(
            "read and parsed {} in {:.1?}, listed {} project files in {:.1?}, validated in {:.1?}",
            plural(files.len(), "rule file"),
            read,
            project.files().len(),
            walked - read,
            start.elapsed() - walked,
        );
    }
    let summary = Summary::of(&files, &diagnostics);
    match format {
        RulesFormat::Human => {
            report(&diagnostics, false);
            println!("{}", summary.line(&location.display()));
        }
        RulesFormat::Json => {
            let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
            if github {
                for diagnostic in &diagnostics {
                    eprintln!("{}", annotation(diagnostic));
                }
            }
            let document = ValidateJson {
                root: location.root.display().to_string(),
                dirs: &location.dirs,
                summary,
                diagnostics: diagnostics.iter().map(RuleDiagnostic::flat).collect(),
            };
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &document).map_err(std::io::Error::from)?;
            writeln!(out)?;
            eprintln!("{}", summary.line(&location.display()));
        }
    }
    Ok(if summary.errors > 0 {
        Done::TaskFailed
    } else {
        Done::Success
    })
}

/// `file_extension, content×2`: each distinct item once, with a count when repeated.
fn short_form<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(seen, _)| *seen == item) {
            Some((_, n)) => *n += 1,
            None => counts.push((item, 1)),
        }
    }
    counts
        .iter()
        .map(|(item, n)| {
            if *n == 1 {
                (*item).to_owned()
            } else {
                format!("{item}×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cut `text` to `MAX_CELL` characters with `…`; `-` when empty.
fn cell(text: String) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    if text.chars().count() <= MAX_CELL {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_CELL - 1).collect();
    cut.push('…');
    cut
}

/// One row of `clab rules list`.
fn row(file: &RuleFile) -> [String; 6] {
    let blocks = &file.body.rules;
    let globs: Vec<&str> = file
        .front_matter
        .globs
        .iter()
        .map(|g| g.value.as_str())
        .collect();
    let names: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.name.as_ref().map(|n| n.value.trim()))
        .filter(|n| !n.is_empty())
        .collect();
    let filters = short_form(
        blocks
            .iter()
            .flat_map(|b| &b.filters)
            .map(|f| f.kind.as_ref().map_or("?", |k| k.value.trim())),
    );
    let mut actions: Vec<String> = Vec::new();
    for action in blocks.iter().flat_map(|b| &b.actions) {
        let kind = action.kind.as_ref().map_or("?", |k| k.value.trim());
        match action.conditions.len() {
            0 => actions.push(kind.to_owned()),
            n => actions.push(format!("{kind} ({n})")),
        }
    }
    [
        cell(file.id.clone()),
        file.rule_type().as_str().to_owned(),
        cell(globs.join(", ")),
        cell(names.join(", ")),
        cell(filters),
        cell(actions.join(", ")),
    ]
}

fn list(location: &Location) -> Result<Done, Failure> {
    let files = match location.discover() {
        Ok(files) => files,
        Err(err) => return Ok(stop(err)),
    };
    let mut out = std::io::stdout().lock();
    if files.is_empty() {
        writeln!(out, "no rule files in `{}`", location.display())?;
        return Ok(Done::Success);
    }
    let header = ["ID", "TYPE", "GLOBS", "RULES", "FILTERS", "ACTIONS"].map(str::to_owned);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(files.iter().map(row))
        .collect();
    let mut widths = [0usize; 6];
    for r in &rows {
        for (width, text) in widths.iter_mut().zip(r) {
            *width = (*width).max(text.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, text) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(text);
            let pad = widths[i] - text.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    let mut by_type: BTreeMap<RuleType, usize> = BTreeMap::new();
    for file in &files {
        *by_type.entry(file.rule_type()).or_default() += 1;
    }
    let types: Vec<String> = by_type
        .iter()
        .map(|(t, n)| format!("{n} {}", t.as_str()))
        .collect();
    let summary = Summary::of(&files, &[]);
    writeln!(
        out,
        "{}, {} ({})",
        plural(summary.files, "file"),
        plural(summary.rules, "rule"),
        types.join(", ")
    )?;
    Ok(Done::Success)
}

/// The file `id` names: its exact id, else the one file whose last id segment or `<rule>`
/// name it is.
fn find<'a>(files: &'a [RuleFile], id: &str, location: &Location) -> Result<&'a RuleFile, Failure> {
    if let Some(file) = files.iter().find(|f| f.id == id) {
        return Ok(file);
    }
    let named: Vec<&RuleFile> = files.iter().filter(|f| f.is_named(id)).collect();
    match named.as_slice() {
        [file] => Ok(file),
        [] => {
            let mut candidates: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
            candidates.extend(
                files
                    .iter()
                    .flat_map(|f| &f.body.rules)
                    .filter_map(|b| b.name.as_ref().map(|n| n.value.trim())),
            );
            let help = match clab_syntax::did_you_mean(id, candidates) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "`clab rules list` shows the rules".to_owned(),
            };
            Err(Failure::Usage(format!(
                "no rule `{id}` in `{}`\n  help: {help}",
                location.display()
            )))
        }
        several => {
            let ids: Vec<String> = several.iter().map(|f| format!("`{}`", f.id)).collect();
            Err(Failure::Usage(format!(
                "`{id}` names several rule files: {}\n  help: give the full id",
                ids.join(", ")
            )))
        }
    }
}

fn show(location: &Location, id: &str) -> Result<Done, Failure> {
    let (files, diagnostics) = match check_all(location) {
        Ok(found) => found,
        Err(err) => return Ok(stop(err)),
    };
    let file = find(&files, id, location)?;
    let mine: Vec<RuleDiagnostic> = diagnostics
        .into_iter()
        .filter(|d| d.file.path() == file.source.path())
        .collect();
    let mut out = std::io::stdout().lock();
    write_show(file, &location.root, &mine, &mut out)?;
    Ok(Done::Success)
}

/// The details `clab rules show` prints for one file.
fn write_show(
    file: &RuleFile,
    root: &Path,
    diagnostics: &[RuleDiagnostic],
    out: &mut impl Write,
) -> std::io::Result<()> {
    let fm = &file.front_matter;
    let line_of = |offset: usize| file.source.line_col(offset).0;
    writeln!(out, "{} ({})", file.id, file.source.name())?;
    writeln!(out, "type:         {}", file.rule_type().as_str())?;
    let description = fm.description.as_ref().map_or("", |d| d.value.as_str());
    writeln!(out, "description:  {}", or_dash(description))?;
    let globs: Vec<&str> = fm.globs.iter().map(|g| g.value.as_str()).collect();
    writeln!(out, "globs:        {}", or_dash(&globs.join(", ")))?;
    let always = fm
        .always_apply
        .as_ref()
        .map_or("-", |a| if a.value { "true" } else { "false" });
    writeln!(out, "alwaysApply:  {always}")?;
    for (key, value) in &fm.unknown {
        writeln!(out, "unknown key:  {}: {}", key.value, value.value)?;
    }
    if !file.body.references.is_empty() {
        let folder = file.source.path().parent();
        let refs: Vec<String> = file
            .body
            .references
            .iter()
            .map(|r| {
                let rel = r.path.value.trim_start_matches("./");
                let exists = root.join(rel.trim_start_matches('/')).exists()
                    || folder.is_some_and(|f| f.join(rel).exists());
                if exists {
                    r.path.value.clone()
                } else {
                    format!("{} (missing)", r.path.value)
                }
            })
            .collect();
        writeln!(out, "references:   {}", refs.join(", "))?;
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if diagnostics.is_empty() {
        writeln!(out, "problems:     none")?;
    } else {
        writeln!(
            out,
            "problems:     {}, {} (`clab rules validate` shows them)",
            plural(errors, "error"),
            plural(warnings, "warning")
        )?;
    }
    for block in &file.body.rules {
        writeln!(out)?;
        let name = block.name.as_ref().map_or("(no name)", |n| n.value.trim());
        writeln!(out, "<rule> {name} (line {})", line_of(block.tag.offset()))?;
        if let Some(d) = block.description.as_ref().filter(|d| !d.value.is_empty()) {
            writeln!(out, "  description: {}", first_line(&d.value))?;
        }
        if !block.filters.is_empty() {
            writeln!(out, "  filters:")?;
            for filter in &block.filters {
                let kind = filter.kind.as_ref().map_or("?", |k| k.value.trim());
                let pattern = filter.pattern.as_ref().map_or("", |p| p.value.as_str());
                writeln!(out, "    {kind:<15} {pattern}")?;
            }
        }
        if !block.actions.is_empty() {
            writeln!(out, "  actions:")?;
            for action in &block.actions {
                let kind = action.kind.as_ref().map_or("?", |k| k.value.trim());
                let message = action
                    .message
                    .as_ref()
                    .map_or(String::new(), |m| first_line(&m.value));
                if message.is_empty() {
                    writeln!(out, "    {kind}")?;
                } else {
                    writeln!(out, "    {kind}: {message}")?;
                }
                for condition in &action.conditions {
                    let pattern = condition.pattern.as_ref().map_or("", |p| p.value.as_str());
                    let message = condition
                        .message
                        .as_ref()
                        .map_or(String::new(), |m| first_line(&m.value));
                    if message.is_empty() {
                        writeln!(out, "      when /{pattern}/")?;
                    } else {
                        writeln!(out, "      when /{pattern}/ → {message}")?;
                    }
                }
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "--- body")?;
    let body = file.body_text().trim_matches('\n');
    writeln!(out, "{body}")?;
    Ok(())
}

fn or_dash(text: &str) -> &str {
    if text.trim().is_empty() { "-" } else { text }
}

/// The first non-empty line of a Markdown message, `#` stripped.
fn first_line(text: &str) -> String {
    text.lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

fn new(
    location: &Location,
    name: &str,
    rule_type: Option<RuleTypeArg>,
    globs: &[String],
    description: Option<&str>,
) -> Result<Done, Failure> {
    let rule_type = match rule_type {
        Some(RuleTypeArg::Always) => RuleType::Always,
        Some(RuleTypeArg::Auto) => RuleType::AutoAttached,
        Some(RuleTypeArg::Agent) => RuleType::AgentRequested,
        Some(RuleTypeArg::Manual) => RuleType::Manual,
        None if !globs.is_empty() => RuleType::AutoAttached,
        None if description.is_some() => RuleType::AgentRequested,
        None => RuleType::Manual,
    };
    let globs: Vec<&str> = globs.iter().map(String::as_str).collect();
    let rule = NewRule {
        name,
        rule_type,
        globs: &globs,
        description,
    };
    // `locate` always yields at least one directory.
    let dir = location
        .dirs
        .first()
        .map_or(DEFAULT_RULES_DIR, String::as_str);
    let path = match clab_rules::write_new_rule(&location.root.join(dir), &rule) {
        Ok(path) => path,
        Err(err) => return Ok(stop(err)),
    };
    // Validate the new file among the others, last, so that a `<rule>` name it shares with
    // an existing rule is reported on the new file.
    let mut files = match location.discover() {
        Ok(files) => files,
        Err(err) => return Ok(stop(err)),
    };
    if let Some(at) = files.iter().position(|f| f.source.path() == path) {
        let new_file = files.remove(at);
        files.push(new_file);
    }
    let project = match ProjectFiles::walk(&location.root) {
        Ok(project) => project,
        Err(err) => return Ok(stop(err)),
    };
    let mine: Vec<RuleDiagnostic> = clab_rules::validate(&files, Some(&project))
        .into_iter()
        .filter(|d| d.file.path() == path)
        .collect();
    report(&mine, false);
    let shown = path.strip_prefix(&location.root).unwrap_or(&path);
    println!(
        "created `{}` ({})",
        shown.display().to_string().replace('\\', "/"),
        rule_type.as_str()
    );
    let failed = mine.iter().any(|d| d.severity() == Severity::Error);
    Ok(if failed {
        Done::TaskFailed
    } else {
        Done::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_count_repeats() {
        assert_eq!(
            short_form(["content", "file_extension", "content"]),
            "content×2, file_extension"
        );
        assert_eq!(short_form([]), "");
    }

    #[test]
    fn cells_are_cut_with_an_ellipsis() {
        assert_eq!(cell(String::new()), "-");
        let long = "x".repeat(50);
        let cut = cell(long);
        assert_eq!(cut.chars().count(), MAX_CELL);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn summary_lines() {
        let mut s = Summary {
            files: 1,
            rules: 0,
            errors: 0,
            warnings: 0,
        };
        assert_eq!(s.line("r"), "r: 1 file, 0 rules, no problems");
        s.errors = 2;
        s.warnings = 1;
        assert_eq!(s.line("r"), "r: 1 file, 0 rules, 2 errors, 1 warning");
    }
}
