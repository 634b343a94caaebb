//! JUnit XML test reports: parsed after a task with `junit "PATH"` runs, pass or fail.
//!
//! In: the text of a JUnit XML report as written by pytest (`--junitxml`, both the default
//! `xunit2` and the `xunit1` family), cargo-nextest (`[profile.*.junit]`), jest (`jest-junit`) or
//! Maven Surefire. The root element is `<testsuites>` or a lone `<testsuite>`; suites may nest.
//!
//! Out: a [`TestReport`]: every `<testcase>` as a [`TestCase`] (in file order) and [`Totals`]
//! counted from those cases, never copied from the suites' `tests=`/`failures=` attributes,
//! which the dialects fill in inconsistently (jest-junit counts `todo` tests in one place and not
//! the other). From a report: a plain-text summary ([`TestReport::render_summary`], no colours:
//! the cli adds them, with its GitHub Actions annotations) and a
//! serializable [`ReportSummary`] to store per run.
//!
//! Invariants: `totals.tests == cases.len()` and
//! `tests == passed + failed + errors + skipped`. A case holding both `<failure>` and `<error>`
//! counts once, as its first non-skip outcome. Surefire's `flakyFailure`/`rerunFailure`
//! elements do not change the outcome: a flaky test that passed on a rerun passed.
//!
//! File and line of a failure come from the case's `file`/`line` attributes (pytest `xunit1`,
//! jest-junit with `addFileAttribute`) or else from its failure text: a Rust panic location
//! (`panicked at src/lib.rs:34:9`), pytest's `tests/test_x.py:15: AssertionError` lines or a
//! JavaScript stack frame outside `node_modules`.

use std::{
    borrow::Cow,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, LazyLock},
};

use clab_model::source::SourceText;
use miette::{Diagnostic, NamedSource, SourceSpan};
use quick_xml::{
    XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Why a JUnit report could not be read.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The report file does not exist.
    #[error("JUnit report `{path}` does not exist")]
    #[diagnostic(
        code(clab::junit::missing),
        help("the task finished without writing it; check the `junit` path and the test command")
    )]
    Missing {
        /// The path that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The report file exists but cannot be read.
    #[error("cannot read JUnit report `{path}`")]
    #[diagnostic(code(clab::junit::read))]
    Read {
        /// The path that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The report is not well-formed XML.
    #[error("JUnit report `{name}` is not well-formed XML: {reason}")]
    #[diagnostic(code(clab::junit::malformed))]
    Malformed {
        /// How diagnostics name the report.
        name: String,
        /// What the XML reader objected to.
        reason: String,
        /// The report's text.
        #[source_code]
        src: Arc<NamedSource<SourceText>>,
        /// Where the reader stopped, or the element left open.
        #[label("{label}")]
        span: SourceSpan,
        /// What the label says.
        label: &'static str,
    },
    /// The report is XML but its root is neither `<testsuites>` nor `<testsuite>`.
    #[error("`{name}` is not a JUnit report: the root element is `<{root}>`")]
    #[diagnostic(
        code(clab::junit::not_junit),
        help("a JUnit report starts with `<testsuites>` or `<testsuite>`")
    )]
    NotJunit {
        /// How diagnostics name the report.
        name: String,
        /// The root element found (empty when the document has none).
        root: String,
        /// The report's text.
        #[source_code]
        src: Arc<NamedSource<SourceText>>,
        /// The root element.
        #[label("expected `<testsuites>` or `<testsuite>`")]
        span: SourceSpan,
    },
}

/// How one test case ended.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No `<failure>`, `<error>` or `<skipped>` child.
    Passed,
    /// A `<failure>` child: an assertion did not hold.
    Failed,
    /// An `<error>` child: the test could not run to an assertion (pytest fixture errors,
    /// Surefire unexpected exceptions).
    Error,
    /// A `<skipped>` child (pytest also reports `xfail` this way).
    Skipped,
}

/// One `<testcase>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// The `name` of the innermost enclosing `<testsuite>` (empty if none).
    pub suite: String,
    /// The `classname` attribute, when present.
    pub classname: Option<String>,
    /// The `name` attribute.
    pub name: String,
    /// Source file of the test or of its failure, when the report tells.
    pub file: Option<String>,
    /// Line in `file`, when the report tells.
    pub line: Option<u32>,
    /// Duration in seconds, when the report tells.
    pub time: Option<f64>,
    /// How the test ended.
    pub outcome: Outcome,
    /// The failure, error or skip message: the `message` attribute, or else the first non-empty
    /// line of the element's text.
    pub message: Option<String>,
    /// The full text of the `<failure>`/`<error>`/`<skipped>` element (traceback, panic output).
    pub text: Option<String>,
}

impl TestCase {
    /// How the summary names the case: `classname::name`, or just `name` when the classname is
    /// absent or already part of the name (jest-junit repeats it).
    pub fn id(&self) -> String {
        match &self.classname {
            Some(class) if !class.is_empty() && !self.name.starts_with(class.as_str()) => {
                format!("{class}::{}", self.name)
            }
            _ => self.name.clone(),
        }
    }
}

/// Counts over all cases of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Totals {
    /// Number of test cases.
    pub tests: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Cases with a `<failure>`.
    pub failed: usize,
    /// Cases with an `<error>`.
    pub errors: usize,
    /// Cases with a `<skipped>`.
    pub skipped: usize,
    /// Wall time in seconds: the root element's `time`, else the sum of the outermost suites'
    /// times, else the sum of the cases' times.
    pub time: f64,
}

impl Totals {
    /// True when no case failed or errored.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }
}

/// A parsed JUnit report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    /// Counts over `cases`.
    pub totals: Totals,
    /// Every test case, in file order.
    pub cases: Vec<TestCase>,
}

/// A failed or errored case, as stored per run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailureRecord {
    /// [`TestCase::id`].
    pub id: String,
    /// [`Outcome::Failed`] or [`Outcome::Error`].
    pub outcome: Outcome,
    /// The failure message.
    pub message: Option<String>,
    /// Source file, when known.
    pub file: Option<String>,
    /// Line, when known.
    pub line: Option<u32>,
}

/// A test and its duration, as stored per run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlowTest {
    /// [`TestCase::id`].
    pub id: String,
    /// Duration in seconds.
    pub time: f64,
}

/// What is kept of a report per run (for `clab history`/`clab stats`): totals, failures and
/// the slowest tests, without the full failure texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportSummary {
    /// Counts.
    pub totals: Totals,
    /// Failed and errored cases, in file order.
    pub failures: Vec<FailureRecord>,
    /// The slowest cases, slowest first.
    pub slowest: Vec<SlowTest>,
}

/// Read and parse the JUnit report at `path`; diagnostics name it by its path as given.
pub fn parse(path: &Path) -> Result<TestReport, Error> {
    let text = std::fs::read(path).map_err(|source| {
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
    let text = String::from_utf8_lossy(&text);
    parse_str(&text, &path.display().to_string())
}

/// Parse the text of a JUnit report; `name` is how diagnostics name it.
pub fn parse_str(text: &str, name: &str) -> Result<TestReport, Error> {
    let mut parser = Parser::default();
    let mut reader = quick_xml::Reader::from_str(text);
    let malformed = |reason: String, at: u64| Error::Malformed {
        name: name.to_owned(),
        reason,
        src: Arc::new(NamedSource::new(name, SourceText::new(text))),
        span: point_span(text, at),
        label: "here",
    };
    // Open elements: name and the span of the start tag, to point at an unclosed one.
    let mut open: Vec<(String, SourceSpan)> = Vec::new();
    let mut seen_root = false;
    loop {
        let before = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|err| malformed(err.to_string(), reader.error_position()))?;
        let after = reader.buffer_position();
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let tag = e.local_name().as_ref().to_owned();
                if !seen_root {
                    seen_root = true;
                    if tag != "testsuites" && tag != "testsuite" {
                        return Err(Error::NotJunit {
                            name: name.to_owned(),
                            root: tag,
                            src: Arc::new(NamedSource::new(name, SourceText::new(text))),
                            span: range_span(before, after),
                        });
                    }
                }
                let attrs = Attrs::read(e).map_err(|err| malformed(err, before))?;
                parser.start(&tag, &attrs);
                if empty {
                    parser.end(&tag);
                } else {
                    open.push((tag, range_span(before, after)));
                }
            }
            Event::End(ref e) => {
                open.pop();
                parser.end(e.local_name().as_ref());
            }
            Event::Text(t) => parser.text(&t.xml10_content()),
            Event::CData(t) => parser.text(&t),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(malformed(format!("unknown entity `&{};`", &*r), before));
                        }
                    },
                    Err(err) => return Err(malformed(err.to_string(), before)),
                };
                parser.text(&resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(Error::NotJunit {
            name: name.to_owned(),
            root: String::new(),
            src: Arc::new(NamedSource::new(name, SourceText::new(text))),
            span: point_span(text, 0),
        });
    }
    if let Some((tag, span)) = open.pop() {
        return Err(Error::Malformed {
            name: name.to_owned(),
            reason: format!("the document ends before `<{tag}>` is closed"),
            src: Arc::new(NamedSource::new(name, SourceText::new(text))),
            span,
            label: "opened here, never closed",
        });
    }
    Ok(parser.finish())
}

/// A zero-width span at byte `at` (clamped into the text).
fn point_span(text: &str, at: u64) -> SourceSpan {
    let at = usize::try_from(at).unwrap_or(usize::MAX).min(text.len());
    SourceSpan::from((at, 0))
}

/// The span between two reader positions.
fn range_span(from: u64, to: u64) -> SourceSpan {
    let from = usize::try_from(from).unwrap_or(0);
    let to = usize::try_from(to).unwrap_or(from);
    SourceSpan::from((from, to.saturating_sub(from)))
}

/// The attributes of one element, unescaped, in document order.
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn read(e: &BytesStart<'_>) -> Result<Self, String> {
        let mut out = Vec::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|err| err.to_string())?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| err.to_string())?;
            out.push((
                attr.key.local_name().as_ref().to_owned(),
                value.into_owned(),
            ));
        }
        Ok(Attrs(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The event-driven state of one parse.
#[derive(Default)]
struct Parser {
    /// Names of the open `<testsuite>` elements.
    suites: Vec<String>,
    /// The `time` of the root element.
    root_time: Option<f64>,
    /// The sum of the `time`s of the outermost `<testsuite>` elements.
    outer_suites_time: Option<f64>,
    root_seen: bool,
    cases: Vec<TestCase>,
    /// The open `<testcase>`, if any.
    current: Option<TestCase>,
    /// Text of the open `<failure>`/`<error>`/`<skipped>` that decided the outcome.
    collecting: Option<(String, String)>,
}

impl Parser {
    fn start(&mut self, tag: &str, attrs: &Attrs) {
        if !self.root_seen {
            self.root_seen = true;
            self.root_time = attrs.get("time").and_then(parse_seconds);
        }
        match tag {
            "testsuite" => {
                if self.suites.is_empty()
                    && let Some(time) = attrs.get("time").and_then(parse_seconds)
                {
                    *self.outer_suites_time.get_or_insert(0.0) += time;
                }
                self.suites
                    .push(attrs.get("name").unwrap_or_default().to_owned());
            }
            "testcase" => {
                self.current = Some(TestCase {
                    suite: self.suites.last().cloned().unwrap_or_default(),
                    classname: attrs.get("classname").map(str::to_owned),
                    name: attrs.get("name").unwrap_or_default().to_owned(),
                    file: attrs.get("file").map(str::to_owned),
                    line: attrs.get("line").and_then(|l| l.trim().parse().ok()),
                    time: attrs.get("time").and_then(parse_seconds),
                    outcome: Outcome::Passed,
                    message: None,
                    text: None,
                });
            }
            "failure" | "error" | "skipped" => {
                let Some(case) = self.current.as_mut() else {
                    return;
                };
                let outcome = match tag {
                    "failure" => Outcome::Failed,
                    "error" => Outcome::Error,
                    _ => Outcome::Skipped,
                };
                // The first failure or error wins; a skip never overrides one.
                let decides = match case.outcome {
                    Outcome::Passed => true,
                    Outcome::Skipped => outcome != Outcome::Skipped,
                    Outcome::Failed | Outcome::Error => false,
                };
                if decides {
                    case.outcome = outcome;
                    case.message = attrs
                        .get("message")
                        .filter(|m| !m.trim().is_empty())
                        .map(str::to_owned);
                    case.text = None;
                    self.collecting = Some((tag.to_owned(), String::new()));
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some((_, buf)) = self.collecting.as_mut() {
            buf.push_str(text);
        }
    }

    fn end(&mut self, tag: &str) {
        match tag {
            "testsuite" => {
                self.suites.pop();
            }
            "testcase" => {
                if let Some(mut case) = self.current.take() {
                    locate(&mut case);
                    self.cases.push(case);
                }
            }
            _ => {
                if self.collecting.as_ref().is_some_and(|(t, _)| t == tag)
                    && let Some((_, text)) = self.collecting.take()
                    && let Some(case) = self.current.as_mut()
                {
                    let trimmed = text.trim_end();
                    if !trimmed.trim().is_empty() {
                        if case.message.is_none() {
                            case.message = trimmed
                                .lines()
                                .map(str::trim)
                                .find(|l| !l.is_empty())
                                .map(str::to_owned);
                        }
                        case.text = Some(trimmed.to_owned());
                    }
                }
            }
        }
    }

    fn finish(self) -> TestReport {
        let mut totals = Totals {
            tests: self.cases.len(),
            ..Totals::default()
        };
        for case in &self.cases {
            match case.outcome {
                Outcome::Passed => totals.passed += 1,
                Outcome::Failed => totals.failed += 1,
                Outcome::Error => totals.errors += 1,
                Outcome::Skipped => totals.skipped += 1,
            }
        }
        totals.time = self
            .root_time
            .or(self.outer_suites_time)
            .unwrap_or_else(|| self.cases.iter().filter_map(|c| c.time).sum());
        TestReport {
            totals,
            cases: self.cases,
        }
    }
}

/// Seconds from a `time` attribute; Surefire may write `1,234.5` in some locales.
fn parse_seconds(value: &str) -> Option<f64> {
    let value: Cow<'_, str> = if value.contains(',') {
        Cow::Owned(value.replace(',', ""))
    } else {
        Cow::Borrowed(value)
    };
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
}

static RUST_PANIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"panicked at ([^\s:][^:\n]*):(\d+):\d+").expect("a valid constant regex")
});
static PYTEST_LOCATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^([^\s:<>][^:\n]*):(\d+): [A-Za-z_]").expect("a valid constant regex")
});
static JS_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"at (?:[^\n(]*\()?([^\s():]+\.[cm]?[jt]sx?):(\d+):\d+\)?")
        .expect("a valid constant regex")
});

/// Fill in `file`/`line` of a failed or errored case from its failure text when the report's
/// attributes do not give both.
fn locate(case: &mut TestCase) {
    if case.line.is_some() || !matches!(case.outcome, Outcome::Failed | Outcome::Error) {
        return;
    }
    let text = [case.message.as_deref(), case.text.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    let found = |re: &Regex| -> Vec<(String, u32)> {
        re.captures_iter(&text)
            .filter_map(|c| {
                Some((
                    c.get(1)?.as_str().to_owned(),
                    c.get(2)?.as_str().parse().ok()?,
                ))
            })
            .collect()
    };
    let rust = found(&RUST_PANIC);
    let pytest = found(&PYTEST_LOCATION);
    let js: Vec<_> = found(&JS_FRAME)
        .into_iter()
        .filter(|(p, _)| !p.contains("node_modules") && !p.starts_with("node:"))
        .collect();
    if let Some(file) = case.file.clone() {
        // The report names the test file: take the first frame in it.
        let hit = rust
            .iter()
            .chain(pytest.iter().rev())
            .chain(js.iter())
            .find(|(p, _)| same_file(p, &file));
        if let Some((_, line)) = hit {
            case.line = Some(*line);
        }
        return;
    }
    // pytest lists frames outermost first, so its last location is where it failed; a JS
    // stack lists the innermost frame first.
    let hit = rust
        .first()
        .or(pytest.last())
        .or(js.first())
        .map(|(p, l)| (p.trim_start_matches("./").to_owned(), *l));
    if let Some((file, line)) = hit {
        case.file = Some(file);
        case.line = Some(line);
    }
}

/// True when `found` (maybe absolute) and `declared` (maybe relative) name the same file.
fn same_file(found: &str, declared: &str) -> bool {
    let declared = declared.trim_start_matches("./");
    let found = found.trim_start_matches("./");
    found == declared || found.ends_with(&format!("/{declared}"))
}

impl TestReport {
    /// The `n` slowest cases that report a time, slowest first (ties keep file order).
    pub fn slowest(&self, n: usize) -> Vec<&TestCase> {
        let mut timed: Vec<&TestCase> = self.cases.iter().filter(|c| c.time.is_some()).collect();
        timed.sort_by(|a, b| b.time.unwrap_or(0.0).total_cmp(&a.time.unwrap_or(0.0)));
        timed.truncate(n);
        timed
    }

    /// Failed and errored cases, in file order.
    pub fn failures(&self) -> impl Iterator<Item = &TestCase> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed | Outcome::Error))
    }

    /// What to store per run: totals, failures, and the `slowest` slowest tests.
    pub fn summary(&self, slowest: usize) -> ReportSummary {
        ReportSummary {
            totals: self.totals,
            failures: self
                .failures()
                .map(|c| FailureRecord {
                    id: c.id(),
                    outcome: c.outcome,
                    message: c.message.clone(),
                    file: c.file.clone(),
                    line: c.line,
                })
                .collect(),
            slowest: self
                .slowest(slowest)
                .into_iter()
                .map(|c| SlowTest {
                    id: c.id(),
                    time: c.time.unwrap_or(0.0),
                })
                .collect(),
        }
    }

    /// A plain-text summary (no colours) of this report with the `slowest` slowest tests:
    /// [`ReportSummary::render`] of [`TestReport::summary`].
    pub fn render_summary(&self, slowest: usize) -> String {
        self.summary(slowest).render()
    }
}

/// The plain-text rendering of a summary, for the cli (it adds colours and prefixes).
impl ReportSummary {
    /// One totals line, each failure with its location and message (indented), then the
    /// slowest tests, if any.
    pub fn render(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "{} {}, {} passed, {} failed, {} {}, {} skipped in {:.2}s\n",
            t.tests,
            plural(t.tests, "test", "tests"),
            t.passed,
            t.failed,
            t.errors,
            plural(t.errors, "error", "errors"),
            t.skipped,
            t.time,
        );
        for case in &self.failures {
            let kind = if case.outcome == Outcome::Error {
                "error"
            } else {
                "failed"
            };
            let _ = write!(out, "{kind} {}", case.id);
            match (&case.file, case.line) {
                (Some(file), Some(line)) => {
                    let _ = write!(out, " ({file}:{line})");
                }
                (Some(file), None) => {
                    let _ = write!(out, " ({file})");
                }
                _ => {}
            }
            out.push('\n');
            if let Some(message) = &case.message {
                for line in message.lines().filter(|l| !l.trim().is_empty()) {
                    let _ = writeln!(out, "    {}", line.trim_end());
                }
            }
        }
        if !self.slowest.is_empty() {
            out.push_str("slowest:\n");
            for case in &self.slowest {
                let _ = writeln!(out, "  {:>8.3}s  {}", case.time, case.id);
            }
        }
        out
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/junit")
            .join(name)
    }

    fn load(name: &str) -> TestReport {
        match parse(&fixture(name)) {
            Ok(report) => report,
            Err(err) => panic!("{name}: {err}"),
        }
    }

    fn case<'a>(report: &'a TestReport, name: &str) -> &'a TestCase {
        match report.cases.iter().find(|c| c.name == name) {
            Some(case) => case,
            None => panic!("no case `{name}`"),
        }
    }

    fn counts(t: &Totals) -> [usize; 5] {
        [t.tests, t.passed, t.failed, t.errors, t.skipped]
    }

    /// Render a diagnostic the way the cli does, without colours, at a fixed width.
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

    #[test]
    fn pytest_default_family() {
        let r = load("pytest.xml");
        // 2 failed, 4 passed, 1 skipped, 1 xfailed (a skip), 1 error.
        assert_eq!(counts(&r.totals), [9, 4, 2, 1, 2]);
        assert!((r.totals.time - 0.240).abs() < 1e-9);
        let wrong = case(&r, "test_div_wrong");
        assert_eq!(wrong.outcome, Outcome::Failed);
        assert_eq!(wrong.suite, "pytest");
        assert_eq!(wrong.id(), "tests.test_ops::test_div_wrong");
        assert_eq!(
            wrong.message.as_deref(),
            Some(
                "AssertionError: integer division expected\nassert 3.5 == 3\n +  where 3.5 = div(7, 2)"
            )
        );
        // No file attribute in xunit2: located from the traceback's last frame.
        assert_eq!(wrong.file.as_deref(), Some("tests/test_ops.py"));
        assert_eq!(wrong.line, Some(15));
        let fixture_error = case(&r, "test_uses_broken_fixture");
        assert_eq!(fixture_error.outcome, Outcome::Error);
        assert_eq!(
            (fixture_error.file.as_deref(), fixture_error.line),
            (Some("tests/test_ops.py"), Some(29))
        );
        let skipped = case(&r, "test_clamp_high");
        assert_eq!(skipped.outcome, Outcome::Skipped);
        assert_eq!(skipped.message.as_deref(), Some("clamp high not ready"));
        assert_eq!(skipped.file, None, "skips are not located");
        assert_eq!(case(&r, "test_expected_failure").outcome, Outcome::Skipped);
        assert_eq!(case(&r, "test_add").outcome, Outcome::Passed);
    }

    #[test]
    fn pytest_xunit1_has_file_and_line_attributes() {
        let r = load("pytest-xunit1.xml");
        assert_eq!(counts(&r.totals), [9, 4, 2, 1, 2]);
        let c = case(&r, "test_money_compare");
        assert_eq!(c.file.as_deref(), Some("tests/test_fmt.py"));
        // The attribute (the test's `def` line) wins over the traceback.
        assert_eq!(c.line, Some(7));
        assert_eq!(case(&r, "test_add").line, Some(5));
    }

    #[test]
    fn nextest_report() {
        let r = load("nextest.xml");
        assert_eq!(counts(&r.totals), [3, 2, 1, 0, 0]);
        let c = case(&r, "tests::adds_wrong");
        assert_eq!(c.suite, "nxfx");
        assert_eq!(c.id(), "nxfx::tests::adds_wrong");
        assert_eq!(
            c.message.as_deref(),
            Some("thread 'tests::adds_wrong' (14846) panicked at src/lib.rs:34:9")
        );
        assert!(
            c.text
                .as_deref()
                .is_some_and(|t| t.contains("two plus two"))
        );
        assert_eq!((c.file.as_deref(), c.line), (Some("src/lib.rs"), Some(34)));
    }

    #[test]
    fn jest_report() {
        let r = load("jest.xml");
        // jest-junit writes `todo` tests as passing cases and counts 4 tests at the root for 5
        // cases; clab counts the cases.
        assert_eq!(counts(&r.totals), [5, 3, 1, 0, 1]);
        let c = case(&r, "add adds negative numbers");
        assert_eq!(c.id(), "add adds negative numbers");
        assert_eq!(
            c.message.as_deref(),
            Some("Error: expect(received).toBe(expected) // Object.is equality")
        );
        // The file attribute plus the first stack frame in that file.
        assert_eq!((c.file.as_deref(), c.line), (Some("math.test.js"), Some(9)));
    }

    #[test]
    fn surefire_report() {
        let r = load("surefire.xml");
        assert_eq!(counts(&r.totals), [5, 2, 1, 1, 1]);
        let f = case(&r, "dividesByZero");
        assert_eq!(f.id(), "com.example.CalculatorTest::dividesByZero");
        assert_eq!(f.message.as_deref(), Some("expected: <0> but was: <1>"));
        let e = case(&r, "parsesInput");
        assert_eq!(e.outcome, Outcome::Error);
        assert_eq!(e.message.as_deref(), Some("For input string: \"x\""));
        // A flaky test that passed on a rerun passed.
        assert_eq!(case(&r, "retriesNetwork").outcome, Outcome::Passed);
        assert_eq!(r.totals.time, 1234.5);
    }

    #[test]
    fn slowest_orders_by_time() {
        let r = load("pytest.xml");
        let slow: Vec<_> = r.slowest(2).iter().map(|c| c.name.as_str()).collect();
        // Ties keep file order.
        assert_eq!(slow, ["test_money_compare", "test_money"]);
        assert_eq!(r.slowest(100).len(), 9);
        assert!(r.slowest(0).is_empty());
    }

    #[test]
    fn summary_renders_plain_text() {
        insta::assert_snapshot!("pytest_summary", load("pytest.xml").render_summary(3));
        insta::assert_snapshot!("nextest_summary", load("nextest.xml").render_summary(0));
    }

    #[test]
    fn summary_serializes() {
        let summary = load("nextest.xml").summary(2);
        insta::assert_json_snapshot!("nextest_summary_json", summary);
        let json = serde_json::to_string(&summary).unwrap_or_default();
        let back: Result<ReportSummary, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(summary));
    }

    #[test]
    fn nested_suites_and_lone_testsuite_root() {
        let text = r#"<?xml version="1.0"?>
<testsuite name="outer" time="2.5">
  <testsuite name="inner">
    <testcase classname="a.B" name="one" time="1"/>
  </testsuite>
  <testcase classname="a.C" name="two" time="0.5"><skipped/></testcase>
</testsuite>"#;
        let r = parse_str(text, "nested.xml").map_err(|e| e.to_string());
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(counts(&r.totals), [2, 1, 0, 0, 1]);
        assert_eq!(r.cases[0].suite, "inner");
        assert_eq!(r.cases[1].suite, "outer");
        assert_eq!(r.totals.time, 2.5);
    }

    #[test]
    fn time_falls_back_to_sum_of_cases() {
        let r = parse_str(
            r#"<testsuites><testsuite name="s"><testcase name="a" time="0.25"/><testcase name="b" time="0.5"/></testsuite></testsuites>"#,
            "t.xml",
        );
        assert_eq!(r.map(|r| r.totals.time).ok(), Some(0.75));
    }

    #[test]
    fn failure_without_message_uses_first_text_line_and_cdata() {
        let r = parse_str(
            "<testsuite><testcase name=\"a\"><failure><![CDATA[\n  boom <here>\nmore]]></failure></testcase></testsuite>",
            "t.xml",
        );
        let c = r.map(|r| r.cases[0].clone()).ok();
        assert_eq!(
            c.as_ref().and_then(|c| c.message.as_deref()),
            Some("boom <here>")
        );
        assert_eq!(
            c.as_ref().and_then(|c| c.text.as_deref()),
            Some("\n  boom <here>\nmore")
        );
    }

    #[test]
    fn missing_report_is_a_clear_error() {
        let err = parse(Path::new("build/does-not-exist.xml"));
        let Err(err) = err else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::Missing { .. }));
        insta::assert_snapshot!("missing", render(&err));
    }

    #[test]
    fn malformed_report_points_at_the_problem() {
        let text = "<testsuites>\n  <testsuite name=\"s\">\n    <testcase name=\"a\">\n  </testsuite>\n</testsuites>\n";
        let Err(err) = parse_str(text, "build/junit.xml") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::Malformed { .. }));
        insta::assert_snapshot!("malformed", render(&err));
        insta::assert_snapshot!("malformed_json", render_json(&err));
    }

    #[test]
    fn truncated_report_is_malformed() {
        let text = "<testsuites>\n  <testsuite name=\"s\">\n    <testcase name=\"a\"/>\n";
        let Err(err) = parse_str(text, "build/junit.xml") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::Malformed { .. }));
        insta::assert_snapshot!("truncated", render(&err));
    }

    #[test]
    fn coverage_file_is_not_a_junit_report() {
        let text = "<?xml version=\"1.0\" ?>\n<coverage line-rate=\"0.5\">\n</coverage>\n";
        let Err(err) = parse_str(text, "build/coverage.xml") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::NotJunit { ref root, .. } if root == "coverage"));
        insta::assert_snapshot!("not_junit", render(&err));
    }

    #[test]
    fn empty_file_is_not_a_junit_report() {
        let Err(err) = parse_str("", "empty.xml") else {
            panic!("expected an error")
        };
        assert!(matches!(err, Error::NotJunit { ref root, .. } if root.is_empty()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = parse_str(&text, "x.xml");
        }

        #[test]
        fn junit_like_documents_keep_the_invariants(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "<testsuites>", "</testsuites>", "<testsuite name=\"s\" time=\"1\">",
                "</testsuite>", "<testcase name=\"a\" classname=\"c\" time=\"0.1\">",
                "</testcase>", "<testcase name=\"b\" file=\"x.py\"/>",
                "<failure message=\"m\">", "</failure>", "<error>", "</error>", "<skipped/>",
                "<flakyFailure>", "</flakyFailure>", "text", "&amp;", "&#10;", "&bogus;",
                "<![CDATA[x]]>", "panicked at src/a.rs:3:4", "tests/x.py:7: E", "\n",
            ]), 0..40),
        ) {
            if let Ok(r) = parse_str(&parts.concat(), "x.xml") {
                let t = r.totals;
                proptest::prop_assert_eq!(t.tests, r.cases.len());
                proptest::prop_assert_eq!(t.tests, t.passed + t.failed + t.errors + t.skipped);
                proptest::prop_assert!(t.time >= 0.0);
                proptest::prop_assert_eq!(r.failures().count(), t.failed + t.errors);
            }
        }
    }
}
