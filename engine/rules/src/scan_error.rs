//! A scan that could not decide: a rule's backtracking pattern gave up on a file.
//!
//! In: the rule, the file, where and why the search stopped. Out: a typed error the rule
//! node reports as a failure (issue 18: it used to count as "0 findings" and was cached as a
//! success). [`ScanError::to_finding`] turns it into an error finding for callers that only
//! deal in findings.

use serde::Serialize;

use crate::{Finding, Incomplete, Severity};

/// A rule could not finish scanning a file, so it cannot say whether the file passes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error, miette::Diagnostic)]
#[error(
    "rule `{rule}` could not finish scanning `{path}`{}: `{pattern}` stopped because {reason}",
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
)]
#[diagnostic(
    code(clab::rules::scan_incomplete),
    help(
        "a pattern without look-around or backreferences runs on the linear-time `regex` engine and always finishes; otherwise avoid nested repetition such as `(a+)+`"
    )
)]
pub struct ScanError {
    /// The rule's name.
    pub rule: String,
    /// The file, relative to the project root.
    pub path: String,
    /// The 1-based line whose search stopped; `None` for a search over the whole text or
    /// the path (`content` and path filters).
    pub line: Option<usize>,
    /// The pattern that stopped, as written.
    pub pattern: String,
    /// Why it stopped.
    pub reason: Incomplete,
}

impl ScanError {
    /// The error as an error finding at its line (or line 1), column 1: a scan that could
    /// not decide fails the rule node like a `reject` finding does.
    pub fn to_finding(&self) -> Finding {
        Finding {
            rule: self.rule.clone(),
            path: self.path.clone(),
            line: self.line.unwrap_or(1),
            col: 1,
            message: self.to_string(),
            severity: Severity::Error,
        }
    }
}
