//! [`SourceText`]: a file's text as miette source code that never hands the renderer a line
//! it cannot draw.
//!
//! In: a file's text (behind an `Arc`) and the spans of a diagnostic. Out: the bytes miette's
//! renderer reads for each span.
//!
//! Why: miette's graphical handler pads each label with `format!("{:width$}")`, and a width
//! past 65,535 panics (issue 18: an error past column 65,535 of `tasks.kdl` ended clab with
//! exit 101); a 40 MB line under each of 2,000 diagnostics also printed 39 MB. So a span on a
//! long line is read as a window: at most [`WINDOW`] bytes before the span and after it, cut
//! at character boundaries, without context lines; a span longer than [`MAX_SPAN`] is shown
//! by its first [`MAX_SPAN`] bytes. Context lines are kept only while they are short.
//!
//! Where every line in reach is short, a span reads exactly as miette reads plain text, so
//! diagnostics of ordinary files render as they always did.
//!
//! Invariants: the bytes handed out are always a slice of the text at their true offsets (the
//! renderer places labels by offset), so a window starts and ends inside lines rather than
//! inserting markers; the line and column reported are the true ones (1-based in the header
//! miette prints), so `tasks.kdl:1:70015` still says where the problem is. No line longer
//! than [`LONG_LINE`] bytes reaches the renderer whole, and no slice of a longer line is
//! longer than `2 * WINDOW + MAX_SPAN` bytes.

use std::sync::{Arc, OnceLock};

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Bytes of a long line shown on each side of a span.
pub const WINDOW: usize = 80;

/// A line longer than this is read in a window around the span, never whole.
pub const LONG_LINE: usize = 400;

/// The longest part of one span that is shown.
pub const MAX_SPAN: usize = 160;

/// A file's text as miette source code, read in windows (see the module documentation).
/// Cloning shares the text and its line index.
#[derive(Clone, Default)]
pub struct SourceText {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    text: Arc<str>,
    /// Byte offsets where lines start, built on the first read.
    line_starts: OnceLock<Vec<usize>>,
}

impl SourceText {
    /// Source code over `text`.
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        SourceText {
            inner: Arc::new(Inner {
                text: text.into(),
                line_starts: OnceLock::new(),
            }),
        }
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The whole text, shared.
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.inner.text)
    }

    fn line_starts(&self) -> &[usize] {
        self.inner.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(
                    self.inner
                        .text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, b)| b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        })
    }

    /// 0-based index of the line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let starts = self.line_starts();
        match starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next.saturating_sub(1),
        }
    }

    /// Byte range of line `line` without its `\n` (and without a `\r` before it).
    fn line_range(&self, line: usize) -> (usize, usize) {
        let text = self.inner.text.as_bytes();
        let starts = self.line_starts();
        let start = starts[line];
        let mut end = starts.get(line + 1).map_or(text.len(), |next| next - 1);
        if end > start && text[end - 1] == b'\r' {
            end -= 1;
        }
        (start, end)
    }

    fn floor_boundary(&self, mut offset: usize) -> usize {
        let text = &self.inner.text;
        offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    fn ceil_boundary(&self, mut offset: usize) -> usize {
        let text = &self.inner.text;
        offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset += 1;
        }
        offset
    }
}

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceText")
            .field("len", &self.inner.text.len())
            .finish_non_exhaustive()
    }
}

impl SourceCode for SourceText {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text: &'a str = &self.inner.text;
        let start = span.offset();
        let end = start
            .checked_add(span.len())
            .filter(|&end| end <= text.len())
            .ok_or(MietteError::OutOfBounds)?;
        let start = self.floor_boundary(start);
        let end = self.ceil_boundary(end).max(start);
        let first_line = self.line_of(start);
        let last_line = if end > start {
            self.line_of(end - 1)
        } else {
            first_line
        };
        let (first_start, first_end) = self.line_range(first_line);
        let (last_start, last_end) = self.line_range(last_line);
        let long = |(s, e): (usize, usize)| e - s > LONG_LINE;
        if end - start > MAX_SPAN
            && (long((first_start, first_end)) || long((last_start, last_end)))
        {
            return Err(MietteError::OutOfBounds);
        }
        // Short lines all round: read exactly as miette reads plain text.
        let lines = self.line_starts().len();
        let mut context = first_line.saturating_sub(context_lines_before)
            ..=(last_line + context_lines_after).min(lines - 1);
        if !context.any(|line| long(self.line_range(line))) {
            return text.read_span(span, context_lines_before, context_lines_after);
        }
        let (data_start, line) = if start - first_start > WINDOW && long((first_start, first_end)) {
            (self.floor_boundary(start - WINDOW), first_line)
        } else {
            // Whole lines: the span's, and short ones before it.
            let mut line = first_line;
            while line > 0
                && first_line - (line - 1) <= context_lines_before
                && !long(self.line_range(line - 1))
            {
                line -= 1;
            }
            (self.line_range(line).0, line)
        };
        let data_end = if last_end.saturating_sub(end) > WINDOW && long((last_start, last_end)) {
            self.ceil_boundary(end + WINDOW)
        } else {
            let mut line = last_line;
            while line + 1 < lines
                && line + 1 - last_line <= context_lines_after
                && !long(self.line_range(line + 1))
            {
                line += 1;
            }
            self.line_range(line).1
        };
        let data_end = data_end.max(data_start);
        let column = text
            .get(first_start..start)
            .map_or(0, |before| before.chars().count());
        let data = &text.as_bytes()[data_start..data_end];
        let line_count = data.iter().filter(|&&b| b == b'\n').count() + 1;
        Ok(Box::new(MietteSpanContents::new(
            data,
            (data_start..data_end).into(),
            line,
            column,
            line_count,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource};

    #[derive(Debug, thiserror::Error, Diagnostic)]
    #[error("problem")]
    struct Problem {
        #[source_code]
        src: NamedSource<SourceText>,
        #[label("here")]
        span: SourceSpan,
        #[label("and here")]
        other: Option<SourceSpan>,
    }

    fn render(text: &str, span: impl Into<SourceSpan>, other: Option<SourceSpan>) -> String {
        let problem = Problem {
            src: NamedSource::new("tasks.kdl", SourceText::new(text)),
            span: span.into(),
            other,
        };
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_context_lines(2)
            .render_report(&mut out, &problem)
            .unwrap();
        out
    }

    #[test]
    fn a_short_file_renders_as_with_plain_text() {
        let text = "one\ntwo\nthree bad\nfour\nfive\nsix\n";
        let offset = text.find("bad").unwrap();
        let plain = {
            let problem = miette::MietteDiagnostic::new("problem")
                .with_label(miette::LabeledSpan::at(offset..offset + 3, "here"));
            let report = miette::Report::new(problem)
                .with_source_code(NamedSource::new("tasks.kdl", text.to_owned()));
            let mut out = String::new();
            GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
                .with_context_lines(2)
                .render_report(&mut out, report.as_ref())
                .unwrap();
            out
        };
        assert_eq!(render(text, offset..offset + 3, None), plain);
    }

    #[test]
    fn an_error_past_column_65535_renders_without_panicking_issue_18() {
        for column in [65_534, 65_536, 70_000, 1_000_000] {
            let text = format!("first\ntask \"a\" {{{}run 1 }}\nlast\n", " ".repeat(column));
            let offset = text.find("run 1").unwrap() + 4;
            let out = render(&text, offset..offset + 1, Some((6..10).into()));
            assert!(out.contains("here"), "{out}");
            assert!(
                out.contains(&format!("tasks.kdl:2:{}", column + 15)),
                "the true column is shown: {out}"
            );
            let longest = out.lines().map(|l| l.chars().count()).max().unwrap();
            assert!(longest < 400, "a line of {longest} characters was printed");
        }
    }

    #[test]
    fn long_spans_and_long_context_lines_are_cut() {
        let long = "x".repeat(100_000);
        let text = format!("{long}\nrun \"{long}\" 1\n{long}\n");
        let offset = text.find("run").unwrap() + 4;
        let out = render(&text, offset..offset + MAX_SPAN, None);
        assert!(out.contains("tasks.kdl:2:5"), "{out}");
        assert!(out.len() < 2_000, "{} bytes printed", out.len());
        // A span too long to show on a long line: no snippet, no panic.
        let out = render(&text, offset..offset + long.len() + 2, None);
        assert!(out.len() < 2_000, "{} bytes printed", out.len());
        // Two labels far apart on one long line are drawn apart.
        let far = text.rfind('1').unwrap();
        let out = render(&text, far..far + 1, Some((offset..offset + 1).into()));
        assert!(out.contains("here") && out.contains("and here"), "{out}");
        assert!(out.len() < 4_000, "{} bytes printed", out.len());
        // A span at the very end, an empty span, multi-byte characters at the cut.
        let wide = "é".repeat(50_000);
        let text = format!("{wide}!{wide}");
        let offset = text.find('!').unwrap();
        assert!(render(&text, offset..offset + 1, None).len() < 2_000);
        assert!(render(&text, text.len()..text.len(), None).len() < 2_000);
        assert!(render(&text, 1..2, None).len() < 2_000);
    }

    #[test]
    fn a_span_past_the_end_is_refused_not_a_panic() {
        let text = SourceText::new("abc");
        assert!(text.read_span(&(2..10).into(), 1, 1).is_err());
        assert!(text.read_span(&(3..3).into(), 1, 1).is_ok());
    }
}
