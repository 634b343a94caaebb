//! What the rule parser and validator report: [`Issue`] (a problem found while reading one
//! file, without the file attached) and [`RuleDiagnostic`] (an issue with its file, a miette
//! diagnostic with source code and a label at the exact span).
//!
//! Every diagnostic has a [`Kind`] whose code is `clab::rules::KIND` and a fixed [`Severity`]
//! per kind, so `--format json` consumers can filter by code. [`FlatDiagnostic`] is the
//! serializable form: file, 1-based line and column, severity, code, message.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceCode, SourceSpan};
use serde::Serialize;

use clab_model::source::{SourceFile, SourceText};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule file does something other than its author meant; `clab rules validate` fails.
    Error,
    /// Legal but suspicious or not portable.
    Warning,
}

/// Every kind of problem the parser and validator report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The file has no front matter at all.
    MissingFrontMatter,
    /// The front matter is not `key: value` lines between `---` lines.
    FrontMatterSyntax,
    /// A front matter key other than `description`, `globs`, `alwaysApply`; a key of a
    /// `<rule>` block, filter, action or condition outside the schema; an unknown filter
    /// option.
    UnknownKey,
    /// A required field is missing or empty (`alwaysApply:` with no value, a rule without
    /// `name`, a filter without `pattern`, an action without `type`, …).
    MissingField,
    /// `description` spans several lines.
    MultilineDescription,
    /// A glob that does not compile.
    BadGlob,
    /// A glob that matches no file in the project.
    GlobMatchesNothing,
    /// `globs` quoted or in brackets.
    QuotedGlobs,
    /// `alwaysApply: true` together with globs (the globs are ignored).
    AlwaysApplyWithGlobs,
    /// A `<rule>` block that is not closed or does not read as YAML.
    RuleSyntax,
    /// A regex that compiles in neither `regex` nor `fancy-regex`.
    BadRegex,
    /// A regex that needs `fancy-regex` (look-around, backreferences).
    FancyRegex,
    /// A condition regex that matches the empty string, so it would report every line.
    MatchesEmpty,
    /// Two rules with the same name.
    DuplicateName,
    /// A filter type clab does not know: an error when it looks like a typo of a known type,
    /// else a warning (clab ignores the filter).
    UnknownFilterType,
    /// An action type clab does not know: an error when it looks like a typo of a known type,
    /// else a warning (clab ignores the action).
    UnknownActionType,
    /// An `@file` or `mdc:` reference to a file that does not exist.
    MissingFile,
    /// Zero-width, bidi-control or tag characters: text the reader cannot see.
    InvisibleUnicode,
    /// An HTML comment in the body (sent to the model, hidden in rendered Markdown).
    HtmlComment,
    /// A `version` that does not read as semver.
    BadVersion,
    /// `extends:` names no rule.
    UnknownExtends,
    /// `extends:` leads back to the rule itself.
    ExtendsCycle,
    /// An `@file` or `mdc:` reference to a path outside the project (never attached).
    OutsideRoot,
}

impl Kind {
    /// The snake_case name used in the diagnostic code.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MissingFrontMatter => "missing_front_matter",
            Kind::FrontMatterSyntax => "front_matter_syntax",
            Kind::UnknownKey => "unknown_key",
            Kind::MissingField => "missing_field",
            Kind::MultilineDescription => "multiline_description",
            Kind::BadGlob => "bad_glob",
            Kind::GlobMatchesNothing => "glob_matches_nothing",
            Kind::QuotedGlobs => "quoted_globs",
            Kind::AlwaysApplyWithGlobs => "always_apply_with_globs",
            Kind::RuleSyntax => "rule_syntax",
            Kind::BadRegex => "bad_regex",
            Kind::FancyRegex => "fancy_regex",
            Kind::MatchesEmpty => "matches_empty",
            Kind::DuplicateName => "duplicate_name",
            Kind::UnknownFilterType => "unknown_filter_type",
            Kind::UnknownActionType => "unknown_action_type",
            Kind::MissingFile => "missing_file",
            Kind::InvisibleUnicode => "invisible_unicode",
            Kind::HtmlComment => "html_comment",
            Kind::BadVersion => "bad_version",
            Kind::UnknownExtends => "unknown_extends",
            Kind::ExtendsCycle => "extends_cycle",
            Kind::OutsideRoot => "outside_root",
        }
    }

    /// The diagnostic code, `clab::rules::NAME`.
    pub fn code(self) -> String {
        format!("clab::rules::{}", self.name())
    }

    /// Whether a problem of this kind, at error severity, makes a rule do something other
    /// than what its file says: a regex or glob that does not compile, a block that does not
    /// read, a field or type that is missing or misspelt, a name used twice, an `extends`
    /// that names no rule or goes round in a circle. The compiler
    /// leaves such a part out, so `run` and `watch` refuse to start rather than run a rule
    /// that has quietly lost a filter or vanished (a rule file whose only problem is, say, an
    /// unknown front-matter key or a missing `@file` still runs).
    pub fn breaks_compilation(self) -> bool {
        matches!(
            self,
            Kind::FrontMatterSyntax
                | Kind::MissingField
                | Kind::BadGlob
                | Kind::RuleSyntax
                | Kind::BadRegex
                | Kind::DuplicateName
                | Kind::UnknownFilterType
                | Kind::UnknownActionType
                | Kind::UnknownExtends
                | Kind::ExtendsCycle
        )
    }

    /// The usual severity of this kind (see [`Issue::severity`] for the exceptions).
    pub fn severity(self) -> Severity {
        match self {
            Kind::FrontMatterSyntax
            | Kind::MissingField
            | Kind::BadGlob
            | Kind::RuleSyntax
            | Kind::BadRegex
            | Kind::DuplicateName
            | Kind::UnknownFilterType
            | Kind::UnknownActionType
            | Kind::MissingFile
            | Kind::InvisibleUnicode
            | Kind::UnknownExtends
            | Kind::ExtendsCycle
            | Kind::OutsideRoot => Severity::Error,
            Kind::MissingFrontMatter
            | Kind::UnknownKey
            | Kind::MultilineDescription
            | Kind::GlobMatchesNothing
            | Kind::QuotedGlobs
            | Kind::AlwaysApplyWithGlobs
            | Kind::FancyRegex
            | Kind::MatchesEmpty
            | Kind::HtmlComment
            | Kind::BadVersion => Severity::Warning,
        }
    }
}

/// A problem in one file, before the file is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// What kind of problem.
    pub kind: Kind,
    /// How bad; the kind's own severity unless a check knows better (an unknown type that
    /// looks like a typo of a known one is an error, any other unknown type a warning).
    pub severity: Severity,
    /// Where it is.
    pub span: SourceSpan,
    /// One lowercase line, names in backticks, no trailing period.
    pub message: String,
    /// How to fix it, if there is something useful to say.
    pub help: Option<String>,
}

impl Issue {
    /// An issue without help.
    pub fn new(kind: Kind, span: SourceSpan, message: impl Into<String>) -> Self {
        Issue {
            kind,
            severity: kind.severity(),
            span,
            message: message.into(),
            help: None,
        }
    }

    /// Override the kind's severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Add a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// An issue in a rule file, renderable by miette with the file's text and a label at the span.
#[derive(Debug)]
pub struct RuleDiagnostic {
    /// The problem.
    pub issue: Issue,
    /// The file it is in.
    pub file: SourceFile,
    /// The file's text as miette source code (the `#[source_code]` of this diagnostic).
    source: NamedSource<SourceText>,
}

impl Clone for RuleDiagnostic {
    fn clone(&self) -> Self {
        RuleDiagnostic::new(&self.file, self.issue.clone())
    }
}

impl RuleDiagnostic {
    /// Attach `issue` to `file`.
    pub fn new(file: &SourceFile, issue: Issue) -> Self {
        RuleDiagnostic {
            issue,
            file: file.clone(),
            source: file.source_code(),
        }
    }

    /// The issue's severity.
    pub fn severity(&self) -> Severity {
        self.issue.severity
    }

    /// The flat, serializable form.
    pub fn flat(&self) -> FlatDiagnostic {
        let (line, col) = self.file.line_col(self.issue.span.offset());
        FlatDiagnostic {
            file: self.file.name().to_owned(),
            line,
            col,
            severity: self.severity(),
            code: self.issue.kind.code(),
            message: self.issue.message.clone(),
        }
    }
}

impl fmt::Display for RuleDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.issue.message)
    }
}

impl std::error::Error for RuleDiagnostic {}

impl miette::Diagnostic for RuleDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.issue.kind.code()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.issue
            .help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display + 'a>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = label_for(self.issue.kind);
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(label.to_owned()),
            self.issue.span,
        ))))
    }
}

fn label_for(kind: Kind) -> &'static str {
    match kind {
        Kind::MissingFrontMatter => "expected `---` here",
        Kind::FrontMatterSyntax => "here",
        Kind::UnknownKey => "unknown key",
        Kind::MissingField => "missing or empty",
        Kind::MultilineDescription => "several lines",
        Kind::BadGlob => "bad glob",
        Kind::GlobMatchesNothing => "matches no file",
        Kind::QuotedGlobs => "quoted",
        Kind::AlwaysApplyWithGlobs => "globs ignored",
        Kind::RuleSyntax => "here",
        Kind::BadRegex => "bad regex",
        Kind::FancyRegex => "needs fancy-regex",
        Kind::MatchesEmpty => "matches an empty line",
        Kind::DuplicateName => "duplicate",
        Kind::UnknownFilterType => "unknown filter type",
        Kind::UnknownActionType => "unknown action type",
        Kind::MissingFile => "no such file",
        Kind::InvisibleUnicode => "invisible",
        Kind::HtmlComment => "comment",
        Kind::BadVersion => "not semver",
        Kind::UnknownExtends => "no such rule",
        Kind::ExtendsCycle => "cycle",
        Kind::OutsideRoot => "outside the project",
    }
}

/// The flat form of a diagnostic, for `--format json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlatDiagnostic {
    /// The rule file, as diagnostics name it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// `error` or `warning`.
    pub severity: Severity,
    /// `clab::rules::KIND`.
    pub code: String,
    /// The message.
    pub message: String,
}
