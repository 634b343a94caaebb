//! GitHub Actions workflow commands (`::error file=…,line=…,title=…::message`): the one place
//! clab builds them, for failed tasks, failed tests, rule findings and rule diagnostics.
//!
//! The escaping follows GitHub's workflow-command rules: in the message `%`, CR and LF are
//! percent-encoded; in property values `:` and `,` are too, since they separate properties.

use std::fmt;

/// How GitHub shows the annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// `::error`: a red annotation; the step's result does not change.
    Error,
    /// `::warning`: a yellow annotation.
    Warning,
}

impl Level {
    /// `error` for an error severity name, `warning` for anything else.
    pub(crate) fn from_severity(severity: &str) -> Level {
        if severity == "error" {
            Level::Error
        } else {
            Level::Warning
        }
    }
}

/// One workflow command; `Display` writes it as one line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Annotation<'a> {
    /// Error or warning.
    pub level: Level,
    /// The file, relative to the repository root, if known.
    pub file: Option<&'a str>,
    /// 1-based line in `file` (written only with a file).
    pub line: Option<usize>,
    /// 1-based column (written only with a line).
    pub col: Option<usize>,
    /// The annotation's title.
    pub title: &'a str,
    /// The message; may span lines.
    pub message: &'a str,
}

impl<'a> Annotation<'a> {
    /// An annotation with only a title and a message.
    pub(crate) fn new(level: Level, title: &'a str, message: &'a str) -> Annotation<'a> {
        Annotation {
            level,
            file: None,
            line: None,
            col: None,
            title,
            message,
        }
    }

    /// Place it at `file`, and at `line`/`col` when known.
    pub(crate) fn at(
        self,
        file: &'a str,
        line: Option<usize>,
        col: Option<usize>,
    ) -> Annotation<'a> {
        Annotation {
            file: Some(file),
            line,
            col,
            ..self
        }
    }
}

impl fmt::Display for Annotation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(f, "::{level} ")?;
        if let Some(file) = self.file {
            write!(f, "file={},", escape_property(file))?;
            if let Some(line) = self.line {
                write!(f, "line={line},")?;
                if let Some(col) = self.col {
                    write!(f, "col={col},")?;
                }
            }
        }
        write!(
            f,
            "title={}::{}",
            escape_property(self.title),
            escape_data(self.message)
        )
    }
}

/// Escape a workflow command's message: `%`, CR and LF.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a property value: as [`escape_data`], plus `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_workflow_command_rules() {
        assert_eq!(escape_data("50% a:b,c\r\n"), "50%25 a:b,c%0D%0A");
        assert_eq!(escape_property("50% a:b,c\r\n"), "50%25 a%3Ab%2Cc%0D%0A");
    }

    #[test]
    fn a_test_failure_is_placed_on_its_file_and_line() {
        let message = "AssertionError: expected%\nassert 3.5 == 3";
        let title = "test: tests.test_ops::test_div";
        let line = Annotation::new(Level::Error, title, message)
            .at("tests/test_ops.py", Some(15), None)
            .to_string();
        assert_eq!(
            line,
            "::error file=tests/test_ops.py,line=15,title=test%3A tests.test_ops%3A%3Atest_div::\
             AssertionError: expected%25%0Aassert 3.5 == 3"
        );
    }

    #[test]
    fn a_finding_has_a_column_and_a_warning_level() {
        let line = Annotation::new(Level::from_severity("warning"), "no-print", "print, here")
            .at("src/a,b.py", Some(3), Some(7))
            .to_string();
        assert_eq!(
            line,
            "::warning file=src/a%2Cb.py,line=3,col=7,title=no-print::print, here"
        );
    }

    #[test]
    fn without_a_file_line_and_column_are_not_written() {
        let mut annotation = Annotation::new(Level::Error, "clab task failed", "test exited 1");
        annotation.line = Some(4);
        annotation.col = Some(2);
        assert_eq!(
            annotation.to_string(),
            "::error title=clab task failed::test exited 1"
        );
        assert_eq!(Level::from_severity("error"), Level::Error);
    }
}
