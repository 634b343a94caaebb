//! Coverage reports and the `fail-under` gate, for a task's `coverage "PATH" fail-under=N`.
//!
//! In: the text of a coverage report in one of three formats, told apart by content (never by
//! file extension, so `build/coverage.out` works): Cobertura XML (coverage.py `coverage xml`,
//! cargo-llvm-cov `--cobertura`, jest/istanbul `cobertura`), LCOV (`lcov.info` from jest,
//! cargo-llvm-cov `--lcov`, coverage.py `coverage lcov`) and coverage.py's JSON
//! (`coverage json`).
//!
//! Out: a [`CoverageReport`]: one [`FileCoverage`] per source file (sorted by path; records
//! for the same file, such as several Cobertura classes or LCOV records, are merged), each with
//! the line number and hit count of every statement, and the report's [`CoverageTotals`].
//! [`render_table`] prints it like `coverage report -m`; [`check_fail_under`] is the gate.
//!
//! Percentages are line coverage computed as coverage.py computes them for lines:
//! `100 * covered statements / statements`, and 100% for a file without statements. Branch
//! counts are read where the format has them (Cobertura `condition-coverage`, LCOV `BRDA`,
//! coverage.py JSON `num_branches`/`covered_branches`) and kept in [`BranchCounts`], but they
//! do not enter the percentage, the table or the gate. coverage.py itself, when run with
//! `branch = true`, folds branches into its own `Cover` column, so its number can be lower than
//! clab's for the same report; clab's number is the same for every format and tool.
//!
//! Invariants: every [`FileCoverage`] has `missed <= statements`; [`FileCoverage::missing`] is
//! sorted and free of duplicates; totals are the sums over all files.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use clab_model::source::SourceText;
use miette::{Diagnostic, NamedSource, SourceSpan};
use quick_xml::{
    XmlVersion,
    events::{BytesStart, Event},
};
use serde::{Deserialize, Serialize};

/// Why a coverage report could not be read or did not pass the gate.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The report file does not exist.
    #[error("coverage report `{path}` does not exist")]
    #[diagnostic(
        code(clab::coverage::missing),
        help(
            "the task finished without writing it; check the `coverage` path and the test command"
        )
    )]
    Missing {
        /// The path that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The report file exists but cannot be read.
    #[error("cannot read coverage report `{path}`")]
    #[diagnostic(code(clab::coverage::read))]
    Read {
        /// The path that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The content is none of the supported formats.
    #[error("`{name}` is not a coverage report clab can read")]
    #[diagnostic(code(clab::coverage::unknown_format), help("{hint}"))]
    UnknownFormat {
        /// How diagnostics name the report.
        name: String,
        /// What the content looked like instead.
        hint: String,
        /// The report's text.
        #[source_code]
        src: Arc<NamedSource<SourceText>>,
        /// Where the content starts.
        #[label("not Cobertura XML, LCOV or coverage.py JSON")]
        span: SourceSpan,
    },
    /// The report is in a known format but does not follow it.
    #[error("coverage report `{name}` is malformed {format}: {reason}")]
    #[diagnostic(code(clab::coverage::malformed))]
    Malformed {
        /// How diagnostics name the report.
        name: String,
        /// The format it was detected as.
        format: Format,
        /// What is wrong.
        reason: String,
        /// The report's text.
        #[source_code]
        src: Arc<NamedSource<SourceText>>,
        /// Where.
        #[label("here")]
        span: SourceSpan,
    },
    /// The report names no source file at all.
    #[error("coverage report `{name}` has no data: it measured no file")]
    #[diagnostic(
        code(clab::coverage::no_data),
        help("check what the coverage tool measures (for pytest-cov, the `--cov=` package)")
    )]
    NoData {
        /// How diagnostics name the report.
        name: String,
    },
    /// `fail-under` is not a percentage.
    #[error("fail-under={threshold} is not a percentage between 0 and 100")]
    #[diagnostic(code(clab::coverage::bad_threshold))]
    BadThreshold {
        /// The threshold given.
        threshold: f64,
    },
    /// Total coverage is under the threshold.
    #[error("coverage {}% is under fail-under={threshold}", floor_tenth(*total))]
    #[diagnostic(
        code(clab::coverage::fail_under),
        help("add tests for the missing lines listed above, or lower `fail-under`")
    )]
    FailUnder {
        /// The total line coverage, in percent.
        total: f64,
        /// The threshold, in percent.
        threshold: f64,
    },
}

/// A coverage report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Cobertura XML: a `<coverage>` root with `<class filename=…>` and `<line number hits>`.
    Cobertura,
    /// LCOV tracefile: `SF:`, `DA:line,hits`, `BRDA:` … `end_of_record`.
    Lcov,
    /// coverage.py's `coverage json`: `{"meta": …, "files": {path: {executed_lines, …}}}`.
    CoveragePyJson,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Cobertura => "Cobertura XML",
            Format::Lcov => "LCOV",
            Format::CoveragePyJson => "coverage.py JSON",
        })
    }
}

/// Branch counts of a file or of a whole report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchCounts {
    /// Branch destinations measured.
    pub total: u64,
    /// Branch destinations taken at least once.
    pub covered: u64,
}

/// Coverage of one source file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileCoverage {
    /// The path as the report gives it (see [`CoverageReport::relative_to`]).
    pub path: String,
    /// Line number → hit count, for every statement line.
    pub lines: BTreeMap<u32, u64>,
    /// Branch counts, when the report has them for this file.
    pub branches: Option<BranchCounts>,
}

impl FileCoverage {
    /// Number of statements (executable lines).
    pub fn statements(&self) -> u64 {
        self.lines.len() as u64
    }

    /// Statements never executed.
    pub fn missed(&self) -> u64 {
        self.lines.values().filter(|&&hits| hits == 0).count() as u64
    }

    /// Line numbers never executed, ascending.
    pub fn missing(&self) -> Vec<u32> {
        self.lines
            .iter()
            .filter(|&(_, &hits)| hits == 0)
            .map(|(&line, _)| line)
            .collect()
    }

    /// Line coverage in percent; 100 for a file without statements.
    pub fn percent(&self) -> f64 {
        percent(self.statements(), self.missed())
    }

    /// The missing lines collapsed into ranges, like coverage.py: `7, 14-16, 20-23`.
    pub fn missing_ranges(&self) -> String {
        let statements: Vec<u32> = self.lines.keys().copied().collect();
        collapse_ranges(&statements, &self.missing())
    }
}

/// Sums over all files of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageTotals {
    /// Number of files.
    pub files: usize,
    /// Statements in all files.
    pub statements: u64,
    /// Statements never executed.
    pub missed: u64,
    /// Branch counts summed over the files that have them; `None` when none has.
    pub branches: Option<BranchCounts>,
}

impl CoverageTotals {
    /// Line coverage in percent; 100 when there are no statements.
    pub fn percent(&self) -> f64 {
        percent(self.statements, self.missed)
    }
}

/// A parsed coverage report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoverageReport {
    /// The detected format.
    pub format: Format,
    /// Source directories the report declares (Cobertura `<source>`); file paths are relative
    /// to them.
    pub sources: Vec<String>,
    /// One entry per file, sorted by path.
    pub files: Vec<FileCoverage>,
    /// Sums over `files`.
    pub totals: CoverageTotals,
}

/// How [`render_table`] prints a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Add a `Missing` column with the missing line ranges (`show-missing`, coverage.py `-m`).
    pub show_missing: bool,
    /// Leave out files at 100% (`skip-covered`) and say how many were left out.
    pub skip_covered: bool,
    /// Digits after the decimal point in the `Cover` column (coverage.py's `precision`).
    pub precision: usize,
}

fn percent(statements: u64, missed: u64) -> f64 {
    if statements == 0 {
        100.0
    } else {
        100.0 * (statements - missed.min(statements)) as f64 / statements as f64
    }
}

/// `pc` rounded down to one decimal, for messages that must not round 69.96 up to 70.0.
fn floor_tenth(pc: f64) -> String {
    format!("{:.1}", (pc * 10.0).floor() / 10.0)
}

/// A percentage as coverage.py displays it: rounded to `precision` digits, except that a
/// value above 0 never shows as 0 and a value under 100 never shows as 100.
pub fn format_percent(pc: f64, precision: usize) -> String {
    let step = 10f64.powi(-i32::try_from(precision).unwrap_or(0));
    let shown = if pc > 0.0 && pc < step {
        step
    } else if pc < 100.0 && pc > 100.0 - step {
        100.0 - step
    } else {
        pc
    };
    format!("{shown:.precision$}%")
}

/// Collapse `missing` line numbers into ranges the way coverage.py does: a range goes on
/// across lines that are not statements, so with statements 1, 2, 5, 6 and 1, 2, 5 missing the
/// result is `1-5`. Lines in `missing` that are not in `statements` count as statements;
/// neither slice needs to be sorted.
pub fn collapse_ranges(statements: &[u32], missing: &[u32]) -> String {
    let missing_set: BTreeSet<u32> = missing.iter().copied().collect();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut current: Option<(u32, u32)> = None;
    let all: BTreeSet<u32> = statements.iter().chain(missing).copied().collect();
    for line in all {
        if missing_set.contains(&line) {
            current = Some(match current {
                Some((start, _)) => (start, line),
                None => (line, line),
            });
        } else if let Some(range) = current.take() {
            ranges.push(range);
        }
    }
    ranges.extend(current);
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The gate: `Ok` when `total` (percent) reaches `threshold` (percent, 0–100), else
/// [`Error::FailUnder`]. The comparison is exact: 69.96% is under 70.
pub fn check_fail_under(total: f64, threshold: f64) -> Result<(), Error> {
    if !(0.0..=100.0).contains(&threshold) {
        return Err(Error::BadThreshold { threshold });
    }
    if total < threshold {
        return Err(Error::FailUnder { total, threshold });
    }
    Ok(())
}

/// A report as a `coverage report` table (`-m` with `show_missing`), as data: the rows to
/// show, the total, and how many fully covered files `skip_covered` left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Table {
    /// One row per file shown, by path.
    pub rows: Vec<TableRow>,
    /// The `TOTAL` row (its `missing` is empty).
    pub total: TableRow,
    /// Files at 100% left out by `skip_covered`.
    pub skipped: usize,
    /// Whether [`Table::render`] adds the `Missing` column.
    pub show_missing: bool,
    /// Digits after the decimal point in the `Cover` column.
    pub precision: usize,
}

/// One row of a [`Table`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TableRow {
    /// The file's path (or `TOTAL`).
    pub name: String,
    /// Statements.
    pub statements: u64,
    /// Statements not run.
    pub missed: u64,
    /// Line coverage in percent.
    pub percent: f64,
    /// Missing line ranges (`3-5, 9`).
    pub missing: String,
}

/// The table of `report` under `options`.
pub fn table(report: &CoverageReport, options: TableOptions) -> Table {
    let rows: Vec<TableRow> = report
        .files
        .iter()
        .filter(|f| !(options.skip_covered && f.missed() == 0))
        .map(|file| TableRow {
            name: file.path.clone(),
            statements: file.statements(),
            missed: file.missed(),
            percent: file.percent(),
            missing: file.missing_ranges(),
        })
        .collect();
    let t = &report.totals;
    Table {
        skipped: report.files.len() - rows.len(),
        rows,
        total: TableRow {
            name: "TOTAL".to_owned(),
            statements: t.statements,
            missed: t.missed,
            percent: t.percent(),
            missing: String::new(),
        },
        show_missing: options.show_missing,
        precision: options.precision,
    }
}

/// Print a report like `coverage report` (`-m` with `show_missing`): [`Table::render`] of
/// [`table`].
pub fn render_table(report: &CoverageReport, options: TableOptions) -> String {
    table(report, options).render()
}

impl Table {
    /// A header, a row per file, a rule and the `TOTAL` row, columns aligned; no colours.
    pub fn render(&self) -> String {
        let name_width = self
            .rows
            .iter()
            .map(|row| row.name.chars().count())
            .chain(["Name".len(), "TOTAL".len()])
            .max()
            .unwrap_or(5);
        // As coverage.py: room for "100%" plus the decimals and two spaces, at least " Cover".
        let decimals = if self.precision > 0 {
            self.precision + 1
        } else {
            0
        };
        let cover_width = ("100%".len() + decimals + 2).max(" Cover".len());
        let line = |name: &str, stmts: &str, miss: &str, cover: &str, missing: &str| {
            let mut s = format!("{name:<name_width$} {stmts:>7} {miss:>6} {cover:>cover_width$}");
            if self.show_missing {
                let _ = write!(s, "   {missing}");
            }
            s.trim_end().to_owned()
        };
        let row_line = |row: &TableRow| {
            line(
                &row.name,
                &row.statements.to_string(),
                &row.missed.to_string(),
                &format_percent(row.percent, self.precision),
                &row.missing,
            )
        };
        let header = line("Name", "Stmts", "Miss", "Cover", "Missing");
        let rule = "-".repeat(header.chars().count());
        let mut out = String::new();
        out.push_str(&header);
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&row_line(row));
            out.push('\n');
        }
        if !self.rows.is_empty() {
            out.push_str(&rule);
            out.push('\n');
        }
        out.push_str(&row_line(&self.total));
        out.push('\n');
        if self.skipped > 0 {
            let files = if self.skipped == 1 { "file" } else { "files" };
            let _ = write!(
                out,
                "\n{} {files} skipped due to complete coverage.\n",
                self.skipped
            );
        }
        out
    }
}

/// Tell the format of a report from its content: a `<coverage>` XML root is Cobertura, a JSON
/// object with `meta` and `files` is coverage.py's, a first record `TN:`, `SF:` or `VER:` is
/// LCOV. `None` for anything else.
pub fn detect(text: &str) -> Option<Format> {
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with('<') {
        return matches!(xml_root(body), Some(ref root) if root == "coverage")
            .then_some(Format::Cobertura);
    }
    if body.starts_with('{') {
        let is_coveragepy = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(value) => {
                value.get("meta").is_some() && value.get("files").is_some_and(|f| f.is_object())
            }
            // A broken file still counts as coverage.py's when it names both keys, so that
            // the error says where it is broken rather than that the format is unknown.
            Err(_) => body.contains("\"meta\"") && body.contains("\"files\""),
        };
        return is_coveragepy.then_some(Format::CoveragePyJson);
    }
    let first = body.lines().next()?.trim();
    ["TN:", "SF:", "VER:"]
        .iter()
        .any(|p| first.starts_with(p))
        .then_some(Format::Lcov)
}

/// The local name of the first element of an XML document, if it parses that far.
fn xml_root(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => return Some(e.local_name().as_ref().to_owned()),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Read and parse the coverage report at `path`; diagnostics name it by its path as given.
pub fn parse(path: &Path) -> Result<CoverageReport, Error> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Missing {
                path: path.to_owned(),
                source,
            }
        } else {
            Error::Read {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    parse_str(
        &String::from_utf8_lossy(&bytes),
        &path.display().to_string(),
    )
}

/// Parse the text of a coverage report, detecting its format; `name` is how diagnostics name it.
pub fn parse_str(text: &str, name: &str) -> Result<CoverageReport, Error> {
    let src = || Arc::new(NamedSource::new(name, SourceText::new(text)));
    let Some(format) = detect(text) else {
        let body = text.trim_start_matches('\u{feff}').trim_start();
        let start = text.len() - body.len();
        let first_line = body.lines().next().unwrap_or_default().len();
        let hint = if body.is_empty() {
            "the file is empty".to_owned()
        } else if body.starts_with('<') {
            match xml_root(body) {
                Some(root) if root == "testsuites" || root == "testsuite" => {
                    "this is a JUnit test report; give it to `junit`, not `coverage`".to_owned()
                }
                Some(root) => {
                    format!("an XML report must have a `<coverage>` root, not `<{root}>`")
                }
                None => "the file starts like XML but is not well-formed".to_owned(),
            }
        } else if body.starts_with('{') {
            "a JSON report must be coverage.py's (`coverage json`), with `meta` and `files`"
                .to_owned()
        } else {
            "expected Cobertura XML, LCOV (`SF:` records) or coverage.py JSON".to_owned()
        };
        return Err(Error::UnknownFormat {
            name: name.to_owned(),
            hint,
            src: src(),
            span: SourceSpan::from((start, first_line)),
        });
    };
    let malformed = |reason: String, span: SourceSpan| Error::Malformed {
        name: name.to_owned(),
        format,
        reason,
        src: src(),
        span,
    };
    let mut acc = Accumulator::default();
    match format {
        Format::Cobertura => parse_cobertura(text, &mut acc).map_err(|(r, s)| malformed(r, s))?,
        Format::Lcov => parse_lcov(text, &mut acc).map_err(|(r, s)| malformed(r, s))?,
        Format::CoveragePyJson => parse_json(text, &mut acc).map_err(|(r, s)| malformed(r, s))?,
    }
    if acc.files.is_empty() {
        return Err(Error::NoData {
            name: name.to_owned(),
        });
    }
    Ok(acc.finish(format))
}

/// Files being collected; records for one path merge.
#[derive(Default)]
struct Accumulator {
    sources: Vec<String>,
    files: BTreeMap<String, FileCoverage>,
}

impl Accumulator {
    fn file(&mut self, path: &str) -> &mut FileCoverage {
        self.files
            .entry(path.to_owned())
            .or_insert_with(|| FileCoverage {
                path: path.to_owned(),
                lines: BTreeMap::new(),
                branches: None,
            })
    }

    fn finish(self, format: Format) -> CoverageReport {
        let files: Vec<FileCoverage> = self.files.into_values().collect();
        CoverageReport {
            format,
            sources: self.sources,
            totals: totals_of(&files),
            files,
        }
    }
}

fn totals_of(files: &[FileCoverage]) -> CoverageTotals {
    let mut totals = CoverageTotals {
        files: files.len(),
        ..CoverageTotals::default()
    };
    for file in files {
        totals.statements += file.statements();
        totals.missed += file.missed();
        if let Some(b) = file.branches {
            let sum = totals.branches.get_or_insert_with(BranchCounts::default);
            sum.total += b.total;
            sum.covered += b.covered;
        }
    }
    totals
}

fn add_hits(file: &mut FileCoverage, line: u32, hits: u64) {
    let entry = file.lines.entry(line).or_insert(0);
    *entry = entry.saturating_add(hits);
}

fn add_branches(file: &mut FileCoverage, covered: u64, total: u64) {
    let b = file.branches.get_or_insert_with(BranchCounts::default);
    b.total += total;
    b.covered += covered.min(total);
}

type Problem = (String, SourceSpan);

fn xml_attr(e: &BytesStart<'_>, key: &str) -> Result<Option<String>, String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| err.to_string())?;
        if attr.key.local_name().as_ref() == key {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| err.to_string())?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// `(covered/total)` out of a Cobertura `condition-coverage="50% (1/2)"`.
fn condition_coverage(value: &str) -> Option<(u64, u64)> {
    let inner = value.split_once('(')?.1.split_once(')')?.0;
    let (covered, total) = inner.split_once('/')?;
    Some((covered.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn parse_cobertura(text: &str, acc: &mut Accumulator) -> Result<(), Problem> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut class_file: Option<String> = None;
    // `<line>`s under `<methods>` repeat lines of the class (istanbul, cargo-llvm-cov): skip.
    let mut methods_depth = 0usize;
    let mut in_source = false;
    let mut open = 0usize;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|err| {
            let at = usize::try_from(reader.error_position())
                .unwrap_or(0)
                .min(text.len());
            (err.to_string(), SourceSpan::from((at, 0)))
        })?;
        let after = reader.buffer_position();
        let span = || {
            let from = usize::try_from(before).unwrap_or(0);
            let to = usize::try_from(after).unwrap_or(from);
            SourceSpan::from((from, to.saturating_sub(from)))
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if !empty {
                    open += 1;
                }
                match e.local_name().as_ref() {
                    "methods" if !empty => methods_depth += 1,
                    "source" if !empty => in_source = true,
                    "class" => {
                        let file = xml_attr(e, "filename").map_err(|r| (r, span()))?;
                        let Some(file) = file else {
                            return Err(("a `<class>` has no `filename`".to_owned(), span()));
                        };
                        acc.file(&file);
                        class_file = (!empty).then_some(file);
                    }
                    "line" if methods_depth == 0 => {
                        let Some(file) = class_file.clone() else {
                            continue;
                        };
                        let number = xml_attr(e, "number").map_err(|r| (r, span()))?;
                        let hits = xml_attr(e, "hits").map_err(|r| (r, span()))?;
                        let number: u32 = match number.as_deref().map(|n| n.trim().parse()) {
                            Some(Ok(n)) => n,
                            _ => {
                                return Err((
                                    "a `<line>` needs a positive `number`".to_owned(),
                                    span(),
                                ));
                            }
                        };
                        let hits: u64 = match hits.as_deref().map(|h| h.trim().parse::<f64>()) {
                            Some(Ok(h)) if h >= 0.0 && h.is_finite() => h as u64,
                            _ => {
                                return Err((
                                    "a `<line>` needs a non-negative `hits`".to_owned(),
                                    span(),
                                ));
                            }
                        };
                        let branch = xml_attr(e, "branch").map_err(|r| (r, span()))?;
                        let condition =
                            xml_attr(e, "condition-coverage").map_err(|r| (r, span()))?;
                        let f = acc.file(&file);
                        add_hits(f, number, hits);
                        if branch.as_deref() == Some("true")
                            && let Some((covered, total)) =
                                condition.as_deref().and_then(condition_coverage)
                        {
                            add_branches(f, covered, total);
                        }
                    }
                    _ => {}
                }
            }
            Event::End(ref e) => {
                open = open.saturating_sub(1);
                match e.local_name().as_ref() {
                    "methods" => methods_depth = methods_depth.saturating_sub(1),
                    "class" => class_file = None,
                    "source" => in_source = false,
                    _ => {}
                }
            }
            Event::Text(t) if in_source => {
                let source = t.xml10_content().trim().to_owned();
                if !source.is_empty() {
                    acc.sources.push(source);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if open > 0 {
        return Err((
            "the document ends inside an element".to_owned(),
            SourceSpan::from((text.len(), 0)),
        ));
    }
    Ok(())
}

fn parse_lcov(text: &str, acc: &mut Accumulator) -> Result<(), Problem> {
    let mut current: Option<String> = None;
    let mut offset = 0usize;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let span = SourceSpan::from((start, line.len()));
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed == "end_of_record" {
            current = None;
            continue;
        }
        let Some((tag, value)) = trimmed.split_once(':') else {
            return Err((format!("`{trimmed}` is not an LCOV record"), span));
        };
        match tag {
            "SF" => {
                acc.file(value);
                current = Some(value.to_owned());
            }
            "DA" | "BRDA" => {
                let Some(file) = current.clone() else {
                    return Err((format!("a `{tag}` record outside an `SF:` section"), span));
                };
                let fields: Vec<&str> = value.split(',').collect();
                let f = acc.file(&file);
                if tag == "DA" {
                    let parsed = match fields.as_slice() {
                        [line, hits] | [line, hits, _] => line
                            .parse::<u32>()
                            .ok()
                            .zip(hits.parse::<i64>().ok().map(|h| h.max(0) as u64)),
                        _ => None,
                    };
                    let Some((number, hits)) = parsed else {
                        return Err(("expected `DA:<line>,<hits>`".to_owned(), span));
                    };
                    add_hits(f, number, hits);
                } else {
                    let taken = match fields.as_slice() {
                        [_, _, _, taken] => match *taken {
                            "-" => Some(0),
                            t => t.parse::<u64>().ok(),
                        },
                        _ => None,
                    };
                    let Some(taken) = taken else {
                        return Err((
                            "expected `BRDA:<line>,<block>,<branch>,<taken>`".to_owned(),
                            span,
                        ));
                    };
                    add_branches(f, u64::from(taken > 0), 1);
                }
            }
            // Test names, function records and the producer's own counts (recomputed here).
            _ => {}
        }
    }
    Ok(())
}

/// The parts of coverage.py's JSON report clab reads (format 2 and 3).
#[derive(Deserialize)]
struct PyJson {
    files: BTreeMap<String, PyJsonFile>,
}

#[derive(Deserialize)]
struct PyJsonFile {
    #[serde(default)]
    executed_lines: Vec<u32>,
    #[serde(default)]
    missing_lines: Vec<u32>,
    #[serde(default)]
    summary: Option<PyJsonSummary>,
}

#[derive(Deserialize)]
struct PyJsonSummary {
    num_branches: Option<u64>,
    covered_branches: Option<u64>,
}

fn parse_json(text: &str, acc: &mut Accumulator) -> Result<(), Problem> {
    let report: PyJson = serde_json::from_str(text).map_err(|err| {
        let at = offset_of(text, err.line(), err.column());
        (err.to_string(), SourceSpan::from((at, 0)))
    })?;
    for (path, data) in report.files {
        let f = acc.file(&path);
        for line in data.executed_lines {
            add_hits(f, line, 1);
        }
        for line in data.missing_lines {
            add_hits(f, line, 0);
        }
        if let Some(PyJsonSummary {
            num_branches: Some(total),
            covered_branches: Some(covered),
        }) = data.summary
        {
            add_branches(f, covered, total);
        }
    }
    Ok(())
}

/// Byte offset of a 1-based line and column (as serde_json reports them).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

impl CoverageReport {
    /// Total line coverage in percent.
    pub fn percent(&self) -> f64 {
        self.totals.percent()
    }

    /// Rewrite file paths relative to the project `root`: an absolute path under `root` loses
    /// the prefix; a relative path under a single declared absolute `<source>` inside `root`
    /// (coverage.py writes `fmt.py` under `/proj/calc`) becomes `calc/fmt.py`. Paths that fit
    /// neither are kept. Files that end up with the same path merge.
    pub fn relative_to(&mut self, root: &Path) {
        let source = match self.sources.as_slice() {
            [one] if Path::new(one).is_absolute() => Some(PathBuf::from(one)),
            _ => None,
        };
        let mut merged: BTreeMap<String, FileCoverage> = BTreeMap::new();
        for mut file in std::mem::take(&mut self.files) {
            let path = Path::new(&file.path);
            let full = if path.is_absolute() {
                Some(path.to_path_buf())
            } else {
                source.as_ref().map(|s| s.join(path))
            };
            if let Some(rel) = full.as_deref().and_then(|f| f.strip_prefix(root).ok()) {
                file.path = rel.display().to_string();
            }
            match merged.get_mut(&file.path) {
                Some(existing) => {
                    for (line, hits) in file.lines {
                        add_hits(existing, line, hits);
                    }
                    if let Some(b) = file.branches {
                        add_branches(existing, b.covered, b.total);
                    }
                }
                None => {
                    merged.insert(file.path.clone(), file);
                }
            }
        }
        self.files = merged.into_values().collect();
        self.totals = totals_of(&self.files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/coverage")
            .join(name)
    }

    fn load(name: &str) -> CoverageReport {
        match parse(&fixture(name)) {
            Ok(report) => report,
            Err(err) => panic!("{name}: {err}"),
        }
    }

    /// Path, statements, missed, missing ranges of every file.
    fn rows(report: &CoverageReport) -> Vec<(String, u64, u64, String)> {
        report
            .files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    f.statements(),
                    f.missed(),
                    f.missing_ranges(),
                )
            })
            .collect()
    }

    fn row(path: &str, stmts: u64, miss: u64, missing: &str) -> (String, u64, u64, String) {
        (path.to_owned(), stmts, miss, missing.to_owned())
    }

    fn render(err: &Error) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(90);
        let mut out = String::new();
        let _ = handler.render_report(&mut out, err);
        out
    }

    fn render_json(err: &Error) -> String {
        let mut out = String::new();
        let _ = miette::JSONReportHandler::new().render_report(&mut out, err);
        out
    }

    /// What `coverage report -m` printed for the coverage.py fixtures.
    fn coveragepy_rows() -> Vec<(String, u64, u64, String)> {
        vec![
            row("calc/__init__.py", 0, 0, ""),
            row("calc/fmt.py", 6, 3, "6-8"),
            row("calc/ops.py", 17, 8, "7, 14-16, 20-23"),
        ]
    }

    #[test]
    fn coveragepy_xml_matches_coverage_report() {
        let mut r = load("coveragepy.xml");
        assert_eq!(r.format, Format::Cobertura);
        assert_eq!(r.sources, ["/tmp/pyfx/calc"]);
        r.relative_to(Path::new("/tmp/pyfx"));
        assert_eq!(rows(&r), coveragepy_rows());
        assert_eq!((r.totals.statements, r.totals.missed), (23, 11));
        assert_eq!(format_percent(r.percent(), 0), "52%");
        assert_eq!(r.totals.branches, None);
    }

    #[test]
    fn coveragepy_json_matches_coverage_report() {
        let r = load("coveragepy.json");
        assert_eq!(r.format, Format::CoveragePyJson);
        assert_eq!(rows(&r), coveragepy_rows());
        assert!((r.percent() - 52.173_913).abs() < 1e-4);
    }

    #[test]
    fn coveragepy_lcov_matches_coverage_report() {
        let r = load("coveragepy.lcov");
        assert_eq!(r.format, Format::Lcov);
        assert_eq!(rows(&r), coveragepy_rows());
    }

    #[test]
    fn branch_counts_are_kept_but_do_not_change_the_percentage() {
        let xml = load("coveragepy-branch.xml");
        let json = load("coveragepy-branch.json");
        // coverage.py: 8 branches, 2 covered over the whole report.
        assert_eq!(
            xml.totals.branches,
            Some(BranchCounts {
                total: 8,
                covered: 2
            })
        );
        assert_eq!(
            json.totals.branches,
            Some(BranchCounts {
                total: 8,
                covered: 2
            })
        );
        assert_eq!(xml.percent(), load("coveragepy.xml").percent());
        assert_eq!(json.percent(), xml.percent());
    }

    #[test]
    fn jest_cobertura_skips_method_lines() {
        let r = load("jest-cobertura.xml");
        assert_eq!(rows(&r), [row("math.js", 9, 5, "9-17")]);
        assert_eq!(
            r.totals.branches,
            Some(BranchCounts {
                total: 4,
                covered: 1
            })
        );
        // jest printed 44.44 for `% Lines`.
        assert_eq!(format_percent(r.percent(), 2), "44.44%");
    }

    #[test]
    fn jest_lcov_agrees_with_its_cobertura() {
        let r = load("jest.lcov");
        assert_eq!(rows(&r), [row("math.js", 9, 5, "9-17")]);
        assert_eq!(
            r.totals.branches,
            Some(BranchCounts {
                total: 4,
                covered: 1
            })
        );
    }

    #[test]
    fn llvm_cov_formats_agree() {
        let mut lcov = load("llvm-cov.lcov");
        let mut xml = load("llvm-cov-cobertura.xml");
        lcov.relative_to(Path::new("/tmp/nxfx"));
        xml.relative_to(Path::new("/tmp/nxfx"));
        // cargo llvm-cov report: 24 lines, 9 missed, 62.50%.
        let expected = [row("src/lib.rs", 24, 9, "9, 13-16, 35-41")];
        assert_eq!(rows(&lcov), expected);
        assert_eq!(rows(&xml), expected);
        assert_eq!(format_percent(lcov.percent(), 2), "62.50%");
    }

    #[test]
    fn detection_is_by_content_not_extension() {
        let cases = [
            ("coveragepy.xml", Some(Format::Cobertura)),
            ("llvm-cov-cobertura.xml", Some(Format::Cobertura)),
            ("coveragepy.json", Some(Format::CoveragePyJson)),
            ("jest.lcov", Some(Format::Lcov)),
            ("llvm-cov.lcov", Some(Format::Lcov)),
        ];
        for (name, format) in cases {
            let text = std::fs::read_to_string(fixture(name)).unwrap_or_default();
            assert_eq!(detect(&text), format, "{name}");
            // The same content under a misleading name parses the same way.
            let renamed = parse_str(&text, "build/coverage.txt")
                .map(|r| r.format)
                .ok();
            assert_eq!(renamed, format, "{name}");
        }
        assert_eq!(
            detect("\u{feff}  SF:a.rs\nDA:1,1\nend_of_record\n"),
            Some(Format::Lcov)
        );
        assert_eq!(detect("{\"totals\": {}}"), None);
        assert_eq!(detect("<testsuites/>"), None);
        assert_eq!(detect("hello"), None);
        assert_eq!(detect(""), None);
    }

    #[test]
    fn missing_line_ranges() {
        assert_eq!(
            collapse_ranges(&[1, 2, 3, 4, 5, 6, 9], &[3, 4, 5, 9]),
            "3-5, 9"
        );
        // Nothing between 5 and 9 is a statement, so coverage.py writes one range.
        assert_eq!(collapse_ranges(&[1, 2, 3, 4, 5, 9], &[3, 4, 5, 9]), "3-9");
        // A range goes on across lines that are not statements.
        assert_eq!(collapse_ranges(&[1, 2, 5, 6], &[1, 2, 5]), "1-5");
        assert_eq!(collapse_ranges(&[1, 2, 3], &[1, 3]), "1, 3");
        assert_eq!(collapse_ranges(&[1, 2, 3], &[]), "");
        assert_eq!(collapse_ranges(&[4, 5, 6, 7], &[4, 5, 7]), "4-5, 7");
    }

    #[test]
    fn percent_display_never_rounds_to_the_ends() {
        assert_eq!(format_percent(99.6, 0), "99%");
        assert_eq!(format_percent(0.2, 0), "1%");
        assert_eq!(format_percent(100.0, 0), "100%");
        assert_eq!(format_percent(0.0, 1), "0.0%");
        assert_eq!(format_percent(64.28, 1), "64.3%");
    }

    #[test]
    fn gate_below_and_above_threshold() {
        assert!(check_fail_under(70.0, 70.0).is_ok());
        assert!(check_fail_under(97.3, 70.0).is_ok());
        assert!(check_fail_under(0.0, 0.0).is_ok());
        let Err(err) = check_fail_under(64.285_714, 70.0) else {
            panic!("64% passed a 70% gate")
        };
        assert_eq!(err.to_string(), "coverage 64.2% is under fail-under=70");
        // Never shown as 70.0% when it is under 70.
        let Err(err) = check_fail_under(69.96, 70.0) else {
            panic!("69.96% passed a 70% gate")
        };
        assert_eq!(err.to_string(), "coverage 69.9% is under fail-under=70");
        let Err(err) = check_fail_under(99.99, 100.0) else {
            panic!("99.99% passed 100")
        };
        assert_eq!(err.to_string(), "coverage 99.9% is under fail-under=100");
        insta::assert_snapshot!("fail_under", render(&err));
        insta::assert_snapshot!("fail_under_json", render_json(&err));
        assert!(matches!(
            check_fail_under(50.0, 120.0),
            Err(Error::BadThreshold { .. })
        ));
        assert!(matches!(
            check_fail_under(50.0, f64::NAN),
            Err(Error::BadThreshold { .. })
        ));
    }

    #[test]
    fn gate_on_a_real_report() {
        let r = load("coveragepy.xml");
        assert!(check_fail_under(r.percent(), 50.0).is_ok());
        assert!(matches!(
            check_fail_under(r.percent(), 70.0),
            Err(Error::FailUnder { .. })
        ));
    }

    #[test]
    fn table_like_coverage_report() {
        let mut r = load("coveragepy.xml");
        r.relative_to(Path::new("/tmp/pyfx"));
        let plain = TableOptions::default();
        let missing = TableOptions {
            show_missing: true,
            ..plain
        };
        let skip = TableOptions {
            show_missing: true,
            skip_covered: true,
            ..plain
        };
        insta::assert_snapshot!("table_plain", render_table(&r, plain));
        insta::assert_snapshot!("table_missing", render_table(&r, missing));
        insta::assert_snapshot!("table_skip_covered", render_table(&r, skip));
        insta::assert_snapshot!(
            "table_precision",
            render_table(
                &load("jest-cobertura.xml"),
                TableOptions {
                    precision: 2,
                    ..missing
                }
            )
        );
    }

    #[test]
    fn table_matches_coverage_py_output_byte_for_byte() {
        let mut r = load("coveragepy.json");
        r.relative_to(Path::new("/tmp/pyfx"));
        let table = render_table(
            &r,
            TableOptions {
                show_missing: true,
                ..TableOptions::default()
            },
        );
        // Printed by `coverage report -m` (coverage.py 7.17.3) for the same data.
        let expected = "\
Name               Stmts   Miss  Cover   Missing
------------------------------------------------
calc/__init__.py       0      0   100%
calc/fmt.py            6      3    50%   6-8
calc/ops.py           17      8    53%   7, 14-16, 20-23
------------------------------------------------
TOTAL                 23     11    52%
";
        assert_eq!(table, expected);
    }

    #[test]
    fn report_serializes() {
        let r = load("jest.lcov");
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: Option<CoverageReport> = serde_json::from_str(&json).ok();
        assert_eq!(back, Some(r));
    }

    #[test]
    fn merged_records_for_one_file() {
        let text =
            "SF:a.py\nDA:1,1\nDA:2,0\nend_of_record\nSF:a.py\nDA:2,3\nDA:3,0\nend_of_record\n";
        let r = parse_str(text, "merged.lcov").map(|r| rows(&r)).ok();
        assert_eq!(r, Some(vec![row("a.py", 3, 1, "3")]));
    }

    #[test]
    fn missing_report() {
        let Err(err) = parse(Path::new("build/nope.xml")) else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::Missing { .. }));
        insta::assert_snapshot!("missing", render(&err));
    }

    #[test]
    fn junit_given_to_coverage() {
        let text = "<?xml version=\"1.0\"?>\n<testsuites name=\"pytest tests\">\n</testsuites>\n";
        let Err(err) = parse_str(text, "build/junit.xml") else {
            panic!("expected an error")
        };
        insta::assert_snapshot!("junit_given", render(&err));
    }

    #[test]
    fn unknown_text_format() {
        let Err(err) = parse_str("Name  Stmts  Miss  Cover\n", "build/cov.txt") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::UnknownFormat { .. }));
        insta::assert_snapshot!("unknown_format", render(&err));
    }

    #[test]
    fn malformed_lcov_points_at_the_line() {
        let text = "TN:\nSF:src/a.rs\nDA:1,1\nDA:two,0\nend_of_record\n";
        let Err(err) = parse_str(text, "build/lcov.info") else {
            panic!("expected an error")
        };
        insta::assert_snapshot!("malformed_lcov", render(&err));
        insta::assert_snapshot!("malformed_lcov_json", render_json(&err));
    }

    #[test]
    fn malformed_cobertura_points_at_the_element() {
        let text = "<coverage>\n <packages><package><classes>\n  <class filename=\"a.py\"><lines>\n   <line number=\"1\"/>\n";
        let Err(err) = parse_str(text, "build/coverage.xml") else {
            panic!("expected an error")
        };
        insta::assert_snapshot!("malformed_cobertura", render(&err));
    }

    #[test]
    fn malformed_json_points_at_the_position() {
        let text = "{\"meta\": {}, \"files\": {\"a.py\": {\"executed_lines\": [1, \"x\"]}}}";
        let Err(err) = parse_str(text, "build/coverage.json") else {
            panic!("expected an error")
        };
        assert!(matches!(
            err,
            Error::Malformed {
                format: Format::CoveragePyJson,
                ..
            }
        ));
        insta::assert_snapshot!("malformed_json", render(&err));
    }

    #[test]
    fn report_without_files_is_no_data() {
        let text = "<?xml version=\"1.0\" ?>\n<coverage line-rate=\"1\"><sources/><packages/></coverage>\n";
        let Err(err) = parse_str(text, "build/coverage.xml") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::NoData { .. }));
        insta::assert_snapshot!("no_data", render(&err));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            if let Ok(r) = parse_str(&text, "x") {
                let _ = render_table(&r, TableOptions { show_missing: true, ..TableOptions::default() });
            }
        }

        #[test]
        fn report_like_documents_keep_the_invariants(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "SF:a.py\n", "SF:/r/b.rs\n", "DA:1,0\n", "DA:2,5\n", "DA:3,-1\n", "DA:x\n",
                "BRDA:1,0,0,-\n", "BRDA:1,0,1,2\n", "LF:9\n", "end_of_record\n", "\n",
                "<coverage>", "</coverage>", "<class filename=\"a.py\">", "</class>",
                "<methods>", "</methods>", "<line number=\"4\" hits=\"0\"/>",
                "<line number=\"5\" hits=\"1\" branch=\"true\" condition-coverage=\"50% (1/2)\"/>",
                "<source>/r</source>",
            ]), 0..40),
        ) {
            if let Ok(mut r) = parse_str(&parts.concat(), "x") {
                r.relative_to(Path::new("/r"));
                let sum: u64 = r.files.iter().map(FileCoverage::statements).sum();
                proptest::prop_assert_eq!(r.totals.statements, sum);
                proptest::prop_assert!(r.totals.missed <= r.totals.statements);
                let pc = r.percent();
                proptest::prop_assert!((0.0..=100.0).contains(&pc));
                for f in &r.files {
                    proptest::prop_assert_eq!(f.missing().len() as u64, f.missed());
                }
            }
        }

        #[test]
        fn ranges_cover_exactly_the_missing_lines(
            lines in proptest::collection::btree_map(1u32..60, proptest::bool::ANY, 0..40),
        ) {
            let statements: Vec<u32> = lines.keys().copied().collect();
            let missing: Vec<u32> = lines.iter().filter(|(_, m)| **m).map(|(l, _)| *l).collect();
            let text = collapse_ranges(&statements, &missing);
            // Expand the ranges back over the statements: exactly the missing ones come back.
            let mut back = Vec::new();
            for part in text.split(", ").filter(|p| !p.is_empty()) {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let (a, b): (u32, u32) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                back.extend(statements.iter().copied().filter(|l| (a..=b).contains(l)));
            }
            proptest::prop_assert_eq!(back, missing);
        }
    }
}
