//! Source files and spans.
//!
//! Every user-facing diagnostic points into a [`SourceFile`]: `tasks.kdl`, a rule file, a
//! prompt. The text sits behind an `Arc` so errors can carry it cheaply as miette source code
//! ([`SourceFile::source_code`], read in windows by [`SourceText`] so that no line is too long
//! to draw), and [`Spanned`] values keep the byte range they were parsed from all the way to
//! the last error that mentions them.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use miette::{NamedSource, SourceSpan};

pub use crate::source_text::SourceText;

/// A file's text together with the path it was read from.
#[derive(Clone, Default)]
pub struct SourceFile {
    path: PathBuf,
    name: String,
    text: SourceText,
}

impl SourceFile {
    /// A source file from text already in memory; `name` is how diagnostics show it.
    pub fn new(
        path: impl Into<PathBuf>,
        name: impl Into<String>,
        text: impl Into<Arc<str>>,
    ) -> Self {
        SourceFile {
            path: path.into(),
            name: name.into(),
            text: SourceText::new(text),
        }
    }

    /// Read a file as UTF-8 (invalid sequences are replaced, so a stray byte in a rule file
    /// still yields a diagnostic instead of an I/O error).
    pub fn read(path: &Path, name: impl Into<String>) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        Ok(SourceFile::new(path, name, lossy(bytes)))
    }

    /// [`read`](Self::read), refusing a file of more than `limit` bytes without reading it
    /// (an error of kind `FileTooLarge` that names the size and the limit): a 50 MB
    /// `tasks.kdl` is a mistake, and reading it whole costs memory before any check runs.
    pub fn read_at_most(path: &Path, name: impl Into<String>, limit: u64) -> std::io::Result<Self> {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let too_large = |size: u64| {
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("the file is {size} bytes, more than the limit of {limit}"),
            )
        };
        if size > limit {
            return Err(too_large(size));
        }
        // The file may grow while it is read: read one byte past the limit at most.
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(SourceFile::new(path, name, lossy(bytes)))
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name diagnostics show: usually the path relative to the project root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        self.text.text()
    }

    /// The text as miette source code, for `#[source_code]` fields, read in windows so that
    /// any span renders (see [`SourceText`]).
    pub fn source_code(&self) -> NamedSource<SourceText> {
        NamedSource::new(self.name.clone(), self.text.clone())
    }

    /// 1-based line and column of a byte offset (columns count characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text(), offset)
    }
}

/// Bytes as text; invalid UTF-8 sequences are replaced.
fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// 1-based line and column of byte `offset` in `text`; columns count characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A value with the span of source text it came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spanned<T> {
    /// The parsed value.
    pub value: T,
    /// Where it stands in its source file.
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    /// Pair a value with its span.
    pub fn new(value: T, span: impl Into<SourceSpan>) -> Self {
        Spanned {
            value,
            span: span.into(),
        }
    }

    /// Apply `f` to the value and keep the span.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned {
            value: f(self.value),
            span: self.span,
        }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 100), (3, 2));
    }

    #[test]
    fn read_at_most_refuses_a_larger_file_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.kdl");
        std::fs::write(&path, "x".repeat(101)).unwrap();
        let err = SourceFile::read_at_most(&path, "tasks.kdl", 100).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("101 bytes"), "{err}");
        let file = SourceFile::read_at_most(&path, "tasks.kdl", 101).unwrap();
        assert_eq!(file.text().len(), 101);
    }
}
