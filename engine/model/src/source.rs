//! Source files and spans.
//!
//! Every user-facing diagnostic points into a [`SourceFile`]: `tasks.kdl`, a rule file, a
//! prompt. The text sits behind an `Arc` so errors can carry it cheaply as miette source code,
//! and [`Spanned`] values keep the byte range they were parsed from all the way to the last
//! error that mentions them.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use miette::{NamedSource, SourceSpan};

/// A file's text together with the path it was read from.
#[derive(Clone, Default)]
pub struct SourceFile {
    path: PathBuf,
    name: String,
    text: Arc<str>,
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
            text: text.into(),
        }
    }

    /// Read a file as UTF-8 (invalid sequences are replaced, so a stray byte in a rule file
    /// still yields a diagnostic instead of an I/O error).
    pub fn read(path: &Path, name: impl Into<String>) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        Ok(SourceFile::new(path, name, text))
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
        &self.text
    }

    /// The text as miette source code, for `#[source_code]` fields.
    pub fn named_source(&self) -> NamedSource<Arc<str>> {
        NamedSource::new(self.name.clone(), Arc::clone(&self.text))
    }

    /// 1-based line and column of a byte offset (columns count characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
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
}
