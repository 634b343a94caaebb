//! A fast path for reading `tasks.kdl`: a hand-written KDL v2 parser for the subset task files
//! use, which builds the same [`Tree`] as converting [`KdlDocument::parse`]'s document
//! ([`Tree::from_document`]).
//!
//! Why it exists: the `kdl` crate (6.7, a winnow parser that keeps every byte of formatting)
//! reads about 2 MB/s — ~190 ms for a 2,000-task file — and that parse sits on the critical
//! path of every cold `clab run`. This parser reads the same file in a few milliseconds.
//!
//! In: the text of a `tasks.kdl` (or one node of it, [`read_into`]). Out: a [`Tree`] whose
//! node names, entries (values, property names), children and every span (document,
//! children, node, node name, property name, entry) equal those `KdlDocument::parse` gives
//! for the same text; or [`Fast::Outside`] as soon as the text leaves the subset or is
//! malformed, and the caller parses it again with the `kdl` crate, which also reports any
//! errors. The invariant: never a tree where the crate fails, never a different value.
//! Formatting (whitespace, comments, value representations) is not kept: nothing downstream
//! prints the document back. Names and strings without escapes borrow the text.
//!
//! The subset:
//! - a leading BOM; spaces and tabs; `\n` and `\r\n`; `;`; `//` and (nested) `/* */`
//!   comments; `\` line continuations;
//! - node names and property keys: quoted strings, or plain identifiers made of ASCII letters,
//!   digits, `_`, `-` and `.` that start with a letter or `_` and are not `true`, `false`,
//!   `null`, `inf` or `nan`;
//! - values: quoted strings with the escapes `\" \\ \b \f \n \r \t \s \u{…}`; `#true`,
//!   `#false`, `#null`; decimal integers and floats (sign, `_` separators, exponent);
//! - single-line raw strings `#"…"#` (any number of `#`), taken verbatim;
//! - `key=value` properties (node space allowed around `=`) and nested `{ … }` blocks.
//!
//! Blocks nest at most [`MAX_DEPTH`](crate::MAX_DEPTH) deep: the parser recurses once per
//! block, and 4,000 nested braces overflowed the stack (issue 18). A deeper `{` ends the read
//! with [`Fast::TooDeep`] at its offset — the same `{` the `outline` scan finds for the crate.
//!
//! Everything else returns `None`: identifier values, multi-line strings, whitespace
//! escapes, hex/octal/binary numbers, `#inf`/`#nan`, type annotations, `/-` slashdash
//! comments, other Unicode spaces and newlines, and the code points KDL disallows.
//!
//! The spans, as `kdl` 6.7.1's v2 parser assigns them (byte offsets into the whole text, so a
//! BOM counts):
//! - an entry spans its value, or a property from the first byte of its key to the last of its
//!   value; leading space is not included;
//! - a node or property name spans its text, quotes included;
//! - a node spans from its name through its children block's `}` *and* the node space after
//!   it (spaces, `/* */` comments, line continuations), up to but excluding its terminator
//!   (`;`, newline or `//` comment), the `}` closing its parent, or the end of the text;
//! - a document (the file or a children block) spans from its first node to the end of its
//!   last node (so from after the line space following `{`), and is empty — at the offset
//!   where its first node would start — when it has no nodes.

use std::{borrow::Cow, ops::Range};

#[cfg(test)]
use kdl::KdlDocument;
use miette::SourceSpan;

use crate::tree::{Builder, Entry, List, Name, Span, Tree, Value};

/// Plain identifiers KDL reads as something else.
const KEYWORDS: &[&str] = &["true", "false", "null", "inf", "nan"];

/// What the fast path made of a text.
#[derive(Debug)]
pub(super) enum Fast<T> {
    /// The text is inside the subset: what was read.
    Read(T),
    /// A block nests deeper than `MAX_DEPTH`: the offset of its `{`.
    TooDeep(usize),
    /// The text leaves the subset (or is malformed): ask the `kdl` crate.
    Outside,
}

/// Read `text` if it is inside the subset and nests no deeper than `MAX_DEPTH`.
pub(super) fn read(text: &str) -> Fast<Tree<'_>> {
    // Room for the nodes and entries of a file like `bench/gen.py`'s (it has 32 bytes of
    // text per node in a block, 96 per top-level node and 15 per entry), so that the vectors
    // are not grown by doubling: pages reserved but never written cost nothing.
    let len = text.len();
    let mut builder = Builder::with_capacity(len / 24, len / 64, len / 12);
    match read_into(text, 0..text.len(), &mut builder) {
        Fast::Read(span) => Fast::Read(builder.finish(span)),
        Fast::TooDeep(at) => Fast::TooDeep(at),
        Fast::Outside => Fast::Outside,
    }
}

/// Read the nodes of `text[range]` (as if it were a whole text: a BOM may open it) onto
/// the top level of `builder`, spans in the whole `text`; `Read` holds the span of the nodes
/// read. Unless the text was read, `builder` is left as it was.
pub(super) fn read_into<'a>(
    text: &'a str,
    range: Range<usize>,
    builder: &mut Builder<'a>,
) -> Fast<SourceSpan> {
    let (Some(text), Some(rest)) = (text.get(..range.end), text.get(range.clone())) else {
        return Fast::Outside;
    };
    // Spans are `u32` (see `tree`).
    if u32::try_from(text.len()).is_err() {
        return Fast::Outside;
    }
    let mark = builder.mark();
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: range.start,
        depth: 0,
        too_deep: None,
        builder,
    };
    if rest.starts_with('\u{feff}') {
        parser.pos += '\u{feff}'.len_utf8();
    }
    let span = parser.nodes(Block::File);
    let outcome = match (span, parser.too_deep) {
        (_, Some(at)) => Fast::TooDeep(at),
        (Some(span), None) if parser.pos == text.len() => return Fast::Read(span.into()),
        _ => Fast::Outside,
    };
    builder.rollback(mark);
    outcome
}

/// Parse `text` if it is inside the subset; `None` means "ask the `kdl` crate" (or too deep).
#[cfg(test)]
pub(super) fn parse(text: &str) -> Option<Tree<'_>> {
    match read(text) {
        Fast::Read(tree) => Some(tree),
        Fast::TooDeep(_) | Fast::Outside => None,
    }
}

/// Where a list of nodes sits, which decides how it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// The whole file: ends at the end of the text; a `}` is an error.
    File,
    /// A `{ … }` block: ends at its `}`; the end of the text is an error.
    Children,
}

/// A cursor over the text. Every method returns `None` when the text leaves the subset.
///
/// Between tokens `pos` is on a char boundary: tokens start and end with ASCII bytes, and
/// only comments are skipped byte by byte. Slicing uses `str::get`, so it cannot panic.
struct Parser<'a, 'b> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Blocks open around `pos`.
    depth: usize,
    /// The `{` that went past `MAX_DEPTH`, once met.
    too_deep: Option<usize>,
    /// Where the nodes and entries go.
    builder: &'b mut Builder<'a>,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    fn span_from(&self, start: usize) -> Span {
        Span::new(start, self.pos)
    }

    /// `nodes := line-space* (node (terminator line-space* node)*)? terminator? line-space*`,
    /// stopping before the `}` of a children block. The nodes are left open on the builder;
    /// returns their span.
    fn nodes(&mut self, block: Block) -> Option<Span> {
        self.line_space()?;
        let start = self.pos;
        let mut end = start;
        loop {
            match (self.peek(), block) {
                (None, Block::File) | (Some(b'}'), Block::Children) => break,
                (None, Block::Children) | (Some(b'}'), Block::File) => return None,
                _ => {}
            }
            self.node()?;
            end = self.pos;
            match self.peek() {
                // The top of the loop decides whether the list may end here.
                None | Some(b'}') => continue,
                Some(b';' | b'\n') => self.pos += 1,
                Some(b'\r') if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                Some(b'/') if self.peek_at(1) == Some(b'/') => self.line_comment()?,
                _ => return None,
            }
            self.line_space()?;
        }
        Some(Span::new(start, end))
    }

    /// One node: its name, entries and children, and the node space after them, left open
    /// on the builder. Stops at its terminator, a `}` or the end of the text, which the
    /// caller checks.
    fn node(&mut self) -> Option<()> {
        let start = self.pos;
        let name = self.identifier()?;
        // The entries of a node come before its children's: they are contiguous.
        let first_entry = self.builder.entry_end();
        let mut children = None;
        let mut entries = None;
        loop {
            let before_space = self.pos;
            self.node_space()?;
            match self.peek() {
                Some(b'{') => {
                    entries = Some((first_entry, self.builder.entry_end()));
                    children = Some(self.children()?);
                    self.node_space()?;
                    break;
                }
                None | Some(b';' | b'\n' | b'\r' | b'}') => break,
                Some(b'/') if self.peek_at(1) == Some(b'/') => break,
                // Entries are separated from the name and from each other by node space.
                Some(_) if self.pos > before_space => {
                    let entry = self.entry()?;
                    self.builder.entry(entry);
                }
                Some(_) => return None,
            }
        }
        let span = self.span_from(start);
        let entries = entries.unwrap_or((first_entry, self.builder.entry_end()));
        self.builder.node(name, span, entries, children);
        Some(())
    }

    /// `{ nodes }`, at most `MAX_DEPTH` deep.
    fn children(&mut self) -> Option<List> {
        let open = self.pos;
        self.eat(b'{')?;
        if self.depth >= crate::MAX_DEPTH {
            self.too_deep = Some(open);
            return None;
        }
        self.depth += 1;
        let first = self.builder.open_len();
        let span = self.nodes(Block::Children);
        self.depth -= 1;
        let list = self.builder.list(first, span?);
        self.eat(b'}')?;
        Some(list)
    }

    /// An argument (a value) or a property (`key=value`).
    fn entry(&mut self) -> Option<Entry<'a>> {
        let start = self.pos;
        let key = match self.peek()? {
            b'"' => {
                // A quoted string is a property key only if `=` follows it.
                let string = self.identifier()?;
                let after_string = self.pos;
                self.node_space()?;
                if self.peek() != Some(b'=') {
                    self.pos = after_string;
                    let value = Value::String(string.into_value());
                    return Some(Entry::new(None, value, self.span_from(start)));
                }
                string
            }
            byte if is_identifier_start(byte) => {
                // A plain identifier not followed by `=` is an identifier value: not handled.
                let key = self.identifier()?;
                self.node_space()?;
                key
            }
            _ => {
                let value = self.value()?;
                return Some(Entry::new(None, value, self.span_from(start)));
            }
        };
        self.eat(b'=')?;
        self.node_space()?;
        let value = self.value()?;
        Some(Entry::new(Some(key), value, self.span_from(start)))
    }

    /// A node name or property key: a quoted string or a plain identifier.
    fn identifier(&mut self) -> Option<Name<'a>> {
        let start = self.pos;
        let value = match self.peek()? {
            b'"' => self.quoted_string()?,
            byte if is_identifier_start(byte) => {
                while self.peek().is_some_and(is_identifier_char) {
                    self.pos += 1;
                }
                let word = self.text.get(start..self.pos)?;
                if KEYWORDS.contains(&word) {
                    return None;
                }
                Cow::Borrowed(word)
            }
            _ => return None,
        };
        self.value_end()?;
        Some(Name::new(value, self.span_from(start)))
    }

    /// A value after `=` or as an argument: a quoted string, keyword or decimal number.
    fn value(&mut self) -> Option<Value<'a>> {
        let value = match self.peek()? {
            b'"' => Value::String(self.quoted_string()?),
            b'#' if self.bytes.get(self.pos..)?.iter().find(|&&b| b != b'#') == Some(&b'"') => {
                Value::String(self.raw_string()?)
            }
            b'#' => self.keyword()?,
            b'0'..=b'9' | b'+' | b'-' => self.number()?,
            _ => return None,
        };
        self.value_end()?;
        Some(value)
    }

    /// `#"…"#` (any number of `#`, the same on both sides) on one line, taken verbatim.
    /// Multi-line raw strings (`#"""`) are left to the crate.
    fn raw_string(&mut self) -> Option<Cow<'a, str>> {
        let hashes = self
            .bytes
            .get(self.pos..)?
            .iter()
            .take_while(|&&b| b == b'#')
            .count();
        self.pos += hashes;
        self.eat(b'"')?;
        if self.bytes.get(self.pos..)?.starts_with(b"\"\"") {
            return None;
        }
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' if self
                    .bytes
                    .get(self.pos + 1..self.pos + 1 + hashes)
                    .is_some_and(|closing| closing.iter().all(|&b| b == b'#')) =>
                {
                    let value = self.text.get(start..self.pos)?;
                    self.pos += 1 + hashes;
                    return Some(Cow::Borrowed(value));
                }
                _ => self.string_char()?,
            }
        }
    }

    /// kdl's `value_terminator` check: a value or name must be followed by space, a newline,
    /// `;`, `{`, `}`, `=`, a comment, a line continuation or the end of the text.
    fn value_end(&self) -> Option<()> {
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b';' | b'{' | b'}' | b'=' | b'\\') => {
                Some(())
            }
            Some(b'/') if matches!(self.peek_at(1), Some(b'/' | b'*')) => Some(()),
            _ => None,
        }
    }

    /// `"…"` on one line, with the simple escapes and `\u{…}`; borrowed unless it has an
    /// escape.
    fn quoted_string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let text = self.text;
        let mut value: Option<String> = None;
        let mut run = self.pos;
        loop {
            // Printable ASCII other than `"` and `\` is most of every string: one tight loop.
            let rest = self.bytes.get(self.pos..)?;
            self.pos += rest
                .iter()
                .position(|&b| !matches!(b, b' ' | b'!' | b'#'..=b'[' | b']'..=b'~'))
                .unwrap_or(rest.len());
            match self.peek()? {
                b'"' => {
                    let last = text.get(run..self.pos)?;
                    self.pos += 1;
                    return Some(match value {
                        None => Cow::Borrowed(last),
                        Some(mut value) => {
                            value.push_str(last);
                            Cow::Owned(value)
                        }
                    });
                }
                b'\\' => {
                    let value = value.get_or_insert_default();
                    value.push_str(text.get(run..self.pos)?);
                    self.pos += 1;
                    value.push(self.escape()?);
                    run = self.pos;
                }
                _ => self.string_char()?,
            }
        }
    }

    /// Step over one character inside a single-line string, or `None` where the subset
    /// ends: newlines end a single-line string (an error); other control characters are
    /// disallowed or, for DEL, left to the crate.
    fn string_char(&mut self) -> Option<()> {
        match self.peek()? {
            b'\t' => self.pos += 1,
            0x00..=0x1f | 0x7f => return None,
            0x80.. => {
                let c = self.text.get(self.pos..)?.chars().next()?;
                if is_newline_or_disallowed(c) {
                    return None;
                }
                self.pos += c.len_utf8();
            }
            _ => self.pos += 1,
        }
        Some(())
    }

    /// The char after a `\` in a quoted string. Whitespace escapes are not handled.
    fn escape(&mut self) -> Option<char> {
        let byte = self.peek()?;
        self.pos += 1;
        let c = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b's' => ' ',
            b'u' => {
                self.eat(b'{')?;
                let start = self.pos;
                while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                let digits = self.text.get(start..self.pos)?;
                if !(1..=6).contains(&digits.len()) {
                    return None;
                }
                self.eat(b'}')?;
                char::from_u32(u32::from_str_radix(digits, 16).ok()?)?
            }
            _ => return None,
        };
        Some(c)
    }

    /// `#true`, `#false` or `#null`.
    fn keyword(&mut self) -> Option<Value<'a>> {
        let rest = self.bytes.get(self.pos..)?;
        let (value, len) = if rest.starts_with(b"#true") {
            (Value::Bool(true), 5)
        } else if rest.starts_with(b"#false") {
            (Value::Bool(false), 6)
        } else if rest.starts_with(b"#null") {
            (Value::Null, 5)
        } else {
            return None;
        };
        self.pos += len;
        Some(value)
    }

    /// `sign? integer ('.' integer)? (('e' | 'E') sign? integer)?`. Like the crate, each
    /// digit group must fit an `i128`, a float is the text without `_` read by `str::parse`,
    /// and an integer is an `i128`.
    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.pos;
        let negative = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let magnitude = self.digits()?;
        let mut float = false;
        if self.eat(b'.').is_some() {
            self.digits()?;
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
            float = true;
        }
        if float {
            let text = self.text.get(start..self.pos)?.replace('_', "");
            return text.parse::<f64>().ok().map(Value::Float);
        }
        Some(Value::Integer(if negative {
            -magnitude
        } else {
            magnitude
        }))
    }

    /// `integer := digit (digit | '_')*`, read as an `i128` (`None` on overflow).
    fn digits(&mut self) -> Option<i128> {
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        let mut value: i128 = 0;
        while let Some(byte) = self.peek() {
            match byte {
                b'0'..=b'9' => {
                    value = value
                        .checked_mul(10)?
                        .checked_add(i128::from(byte - b'0'))?;
                }
                b'_' => {}
                _ => break,
            }
            self.pos += 1;
        }
        Some(value)
    }

    /// `node-space*`: spaces, tabs, `/* */` comments and line continuations.
    fn node_space(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'/') if self.peek_at(1) == Some(b'*') => self.block_comment()?,
                Some(b'\\') => self.line_continuation()?,
                _ => return Some(()),
            }
        }
    }

    /// `line-space*`: node space, newlines and `//` comments.
    fn line_space(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n') => self.pos += 1,
                Some(b'\r') if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                Some(b'/') if self.peek_at(1) == Some(b'*') => self.block_comment()?,
                Some(b'/') if self.peek_at(1) == Some(b'/') => self.line_comment()?,
                Some(b'\\') => self.line_continuation()?,
                _ => return Some(()),
            }
        }
    }

    /// `escline := '\' ws* (single-line-comment | newline | eof)`; the callers' loops take
    /// the space after it.
    fn line_continuation(&mut self) -> Option<()> {
        self.eat(b'\\')?;
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'/') if self.peek_at(1) == Some(b'*') => self.block_comment()?,
                _ => break,
            }
        }
        match self.peek() {
            None => Some(()),
            Some(b'\n') => {
                self.pos += 1;
                Some(())
            }
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                self.pos += 2;
                Some(())
            }
            Some(b'/') if self.peek_at(1) == Some(b'/') => self.line_comment(),
            _ => None,
        }
    }

    /// `// …` through its newline (or the end of the text).
    fn line_comment(&mut self) -> Option<()> {
        self.pos += 2;
        loop {
            match self.peek() {
                None => return Some(()),
                Some(b'\n') => {
                    self.pos += 1;
                    return Some(());
                }
                Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                    self.pos += 2;
                    return Some(());
                }
                // Other newlines (CR, VT, FF, NEL, LS, PS) would end the comment too.
                Some(b'\r' | 0x0b | 0x0c) => return None,
                Some(0xc2) if self.peek_at(1) == Some(0x85) => return None,
                Some(0xe2)
                    if self.peek_at(1) == Some(0x80)
                        && matches!(self.peek_at(2), Some(0xa8 | 0xa9)) =>
                {
                    return None;
                }
                // Stepping over the bytes of a multi-byte char is safe: none is ASCII.
                Some(_) => self.pos += 1,
            }
        }
    }

    /// `/* … */`, nested.
    fn block_comment(&mut self) -> Option<()> {
        self.pos += 2;
        let mut depth = 1_usize;
        while depth > 0 {
            match (self.peek()?, self.peek_at(1)) {
                (b'*', Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                }
                (b'/', Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        Some(())
    }
}

fn is_identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_identifier_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

/// Non-ASCII chars a single-line quoted string may not hold: KDL's newlines and disallowed
/// code points.
fn is_newline_or_disallowed(c: char) -> bool {
    matches!(
        c,
        '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{200e}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

#[cfg(test)]
pub(super) mod tests {
    use std::{
        fmt::Write as _,
        time::{Duration, Instant},
    };

    use miette::Diagnostic as _;
    use proptest::{prelude::*, sample::select};
    use serde_json::json;

    use super::*;
    use clab_model::source::SourceFile;

    use crate::{Diagnostics, TaskFile, kdl::read_task_file, parse_task_file};

    /// The repository's task files, copied (tests do not read the repository).
    const REPO_FILES: &[(&str, &str)] = &[
        ("clab", include_str!("testdata/clab.kdl")),
        ("example-llm", include_str!("testdata/example-llm.kdl")),
        (
            "example-python-uv",
            include_str!("testdata/example-python-uv.kdl"),
        ),
        (
            "example-quickstart",
            include_str!("testdata/example-quickstart.kdl"),
        ),
        ("example-rules", include_str!("testdata/example-rules.kdl")),
        (
            "template-blank",
            include_str!("testdata/template-blank.kdl"),
        ),
        (
            "template-python-uv",
            include_str!("testdata/template-python-uv.kdl"),
        ),
        ("template-rust", include_str!("testdata/template-rust.kdl")),
    ];

    #[derive(Debug, PartialEq)]
    struct DocumentDump {
        span: (usize, usize),
        nodes: Vec<NodeDump>,
    }

    #[derive(Debug, PartialEq)]
    struct NodeDump {
        name: IdentifierDump,
        span: (usize, usize),
        entries: Vec<EntryDump>,
        children: Option<DocumentDump>,
    }

    #[derive(Debug, PartialEq)]
    struct IdentifierDump {
        value: String,
        span: (usize, usize),
    }

    #[derive(Debug, PartialEq)]
    struct EntryDump {
        name: Option<IdentifierDump>,
        value: ValueDump,
        span: (usize, usize),
    }

    #[derive(Debug, PartialEq)]
    enum ValueDump {
        String(String),
        Integer(i128),
        /// The bits, so that equal means identical.
        Float(u64),
        Bool(bool),
        Null,
    }

    fn span(span: SourceSpan) -> (usize, usize) {
        (span.offset(), span.len())
    }

    fn dump(document: crate::tree::Document<'_, '_>) -> DocumentDump {
        DocumentDump {
            span: span(document.span()),
            nodes: document.nodes().map(dump_node).collect(),
        }
    }

    fn dump_node(node: crate::tree::Node<'_, '_>) -> NodeDump {
        NodeDump {
            name: dump_identifier(node.name()),
            span: span(node.span()),
            entries: node.entries().iter().map(dump_entry).collect(),
            children: node.children().map(dump),
        }
    }

    fn dump_identifier(identifier: &Name<'_>) -> IdentifierDump {
        IdentifierDump {
            value: identifier.value().to_owned(),
            span: span(identifier.span()),
        }
    }

    fn dump_entry(entry: &Entry<'_>) -> EntryDump {
        EntryDump {
            name: entry.name().map(dump_identifier),
            value: match entry.value() {
                Value::String(s) => ValueDump::String(s.to_string()),
                Value::Integer(i) => ValueDump::Integer(*i),
                Value::Float(f) => ValueDump::Float(f.to_bits()),
                Value::Bool(b) => ValueDump::Bool(*b),
                Value::Null => ValueDump::Null,
            },
            span: span(entry.span()),
        }
    }

    /// Whether a node or entry of `document` has a type annotation (which the tree drops).
    fn has_types(document: &KdlDocument) -> bool {
        document.nodes().iter().any(|node| {
            node.ty().is_some()
                || node.entries().iter().any(|entry| entry.ty().is_some())
                || node.children().is_some_and(has_types)
        })
    }

    /// Whether the fast path took `text`; panics if it took text the crate rejects or read
    /// it differently from the crate's document converted to a tree.
    fn check(text: &str) -> bool {
        let Some(fast) = parse(text) else {
            return false;
        };
        let slow = KdlDocument::parse(text).unwrap_or_else(|err| {
            panic!("the fast path accepted {text:?}, which kdl rejects: {err:?}")
        });
        assert!(
            !has_types(&slow),
            "the fast path dropped a type in {text:?}"
        );
        let converted = Tree::from_document(&slow);
        assert_eq!(
            dump(fast.document()),
            dump(converted.document()),
            "the fast path misread {text:?}"
        );
        true
    }

    /// The reader's result, errors included, in a comparable form.
    fn outcome(result: Result<TaskFile, Diagnostics>) -> serde_json::Value {
        match result {
            Ok(file) => {
                json!({ "ok": serde_json::to_value(&file).expect("a TaskFile serializes") })
            }
            Err(diagnostics) => {
                let errors: Vec<_> = diagnostics
                    .errors
                    .iter()
                    .map(|error| {
                        let labels: Vec<_> = error
                            .labels()
                            .into_iter()
                            .flatten()
                            .map(|label| {
                                (
                                    label.offset(),
                                    label.len(),
                                    label.label().map(str::to_owned),
                                )
                            })
                            .collect();
                        json!({ "message": error.to_string(), "labels": labels })
                    })
                    .collect();
                json!({ "errors": errors })
            }
        }
    }

    /// `parse_task_file` gives the same model (or errors) as reading the crate's document.
    /// The reader's own tests (`kdl.rs`) check every document they parse with it.
    pub(crate) fn assert_same_task_file(text: &str) {
        let source = SourceFile::new("tasks.kdl", "tasks.kdl", text);
        let fast = outcome(parse_task_file(source.clone()));
        let tree = KdlDocument::parse(text)
            .map(|document| Tree::from_document(&document))
            .map_err(crate::kdl::Unread::from);
        let slow = outcome(read_task_file(&source, tree));
        assert_eq!(fast, slow, "the models differ for {text:?}");
    }

    /// A task file shaped like the one `bench/gen.py` writes: layers of tasks with 1–3
    /// dependencies each and an `all` aggregate.
    pub(crate) fn generated_task_file(tasks: usize) -> String {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % bound as u64).expect("below a usize bound")
        };
        let layer_size = tasks.div_ceil(10).max(1);
        let mut text = String::from("project \"bench\"\n\n");
        for i in 0..tasks {
            let name = format!("t{i:04}");
            let _ = writeln!(text, "task \"{name}\" {{");
            let layer_start = i / layer_size * layer_size;
            let mut deps = Vec::new();
            if layer_start > 0 {
                for _ in 0..1 + next(3) {
                    deps.push(format!("t{:04}", next(layer_start)));
                }
                deps.sort();
                deps.dedup();
                let quoted: Vec<_> = deps.iter().map(|d| format!("\"{d}\"")).collect();
                let _ = writeln!(text, "    deps {}", quoted.join(" "));
            }
            let _ = writeln!(text, "    inputs \"src/{name}/*.txt\"");
            let _ = writeln!(text, "    outputs \"out/{name}.txt\"");
            let mut command = format!("cat src/{name}/*.txt > out/{name}.txt");
            if !deps.is_empty() {
                let outs: Vec<_> = deps.iter().map(|d| format!("out/{d}.txt")).collect();
                let _ = write!(command, " && cksum {} >> out/{name}.txt", outs.join(" "));
            }
            let _ = writeln!(text, "    run \"{command}\"\n}}");
        }
        text.push_str("task \"all\" {\n");
        let names: Vec<_> = (0..tasks).map(|i| format!("\"t{i:04}\"")).collect();
        for chunk in names.chunks(16) {
            let _ = writeln!(text, "    deps {}", chunk.join(" "));
        }
        text.push_str("}\n");
        text
    }

    #[test]
    fn takes_the_subset() {
        let texts = [
            "",
            "\n\n",
            "// only a comment",
            "/* only */ /* comments */",
            "\u{feff}node 1",
            "node",
            "node;",
            "a; b;c",
            "a\r\nb\r\n",
            "a\n\n  \t\n  b",
            "node \"a\" \"b\"",
            "node \"a\" \"a\" \"\"",
            "node 1 -2 +3 1_000 1__0_ 0 -0 007",
            "node 170141183460469231731687303715884105727 -170141183460469231731687303715884105727",
            "node 1.5 -0.25 1e10 1E-5 2.5e+3 1_0.0_1 1_e5 0.1e1_0 +7.0",
            "node #true #false #null",
            "node #\"raw \\n 'q' \"quoted\" // not a comment\"# ##\"a \"# b\"## #\"\"#",
            "node k=#\"v\"#{}",
            "node key=\"v\" k2 = 1 \"quoted key\"=#true k3=\t-2.5",
            "node a=1 a=2",
            "node{}",
            "node {}",
            "node { }",
            "node {\n}\n",
            "node \"a\"{ child; }",
            "node #true{}",
            "a { b { c 1 } }  // trailing",
            "a { b \"x\"}",
            "a { b; }",
            "a { b;}",
            "a {\n  b\n  c;\n}",
            "a { /* c */ }",
            "a {\n  // c\n}",
            "a {} ; b",
            "a {}\n\nb {}\n",
            "/* a /* b */ c */ node",
            "node/* c */1/**/\"x\"/* d */",
            "a /* c */ 1 /* d */",
            "node /*/ */ 1",
            "a \\\n  1 \\ // continued\n  2",
            "a \\\r\n 1",
            "node \\",
            "node {} \\\n",
            "a \\ /* c */ \n b=1",
            "\"quoted name\" 1",
            "\"\" 1",
            "\"true\" \"#null\"",
            "trueish 1",
            "_x.y-z 1",
            "node\t1",
            "node \"esc \\\" \\\\ \\b \\f \\n \\r \\t \\s \\u{1F600} \\u{0} \\u{10FFFF}\"",
            "node \"tab\tand ünïcödé 😀 \u{a0}\"",
            "node \"x\" // comment at the end",
            "node // c\r\n",
            "node // ü \u{feff} \u{0} comment\nnext",
            "/* \u{2028} \u{85} \r */ node",
        ];
        for text in texts {
            assert!(check(text), "the fast path bailed on {text:?}");
        }
    }

    #[test]
    fn bails_outside_the_subset() {
        let texts = [
            "node a",
            "node a=b",
            "node -a",
            "node #\"\"\"\nmulti\n\"\"\"#",
            "node \"\"\"\n  multi\n  \"\"\"",
            "node #\"unclosed\n\"#",
            "node #\"a\"## b",
            "node \"a\\   b\"",
            "node \"\\/\"",
            "node \"\\u{110000}\"",
            "node \"\\u{1234567}\"",
            "node \"\\u{}\"",
            "node 0x10",
            "node 0o7",
            "node 0b1",
            "node #inf",
            "node #-inf",
            "node #nan",
            "node #truex",
            "(t)node",
            "node (t)1",
            "/-node",
            "node /-1",
            "node /-{}",
            "node 1.",
            "node .5",
            "node 1e",
            "node 1._5",
            "node 1e_5",
            "node 1x",
            "node 170141183460469231731687303715884105728",
            "node 1.170141183460469231731687303715884105728",
            "true 1",
            "inf",
            "1node",
            "-node",
            "node\u{a0}1",
            "node\u{2028}",
            "a\rb",
            "a // comment\rb",
            "a // comment\u{85}b",
            "node \"a\nb\"",
            "node \"a\u{200e}\"",
            "a;;b",
            "a;\n;b",
            "}",
            "a {",
            "a }",
            "a { b",
            "node \"a\"\"b\"",
            "node 1=2",
            "node = 1",
            "node=1",
            "node {} 1",
            "node \u{feff}",
            "node /* unclosed",
            "node \\ x",
            "{ }",
            "a:b 1",
        ];
        for text in texts {
            assert!(parse(text).is_none(), "the fast path took {text:?}");
        }
    }

    #[test]
    fn reads_the_repository_task_files() {
        for (name, text) in REPO_FILES {
            assert!(check(text), "the fast path bailed on {name}");
            assert_same_task_file(text);
        }
    }

    #[test]
    fn reads_a_generated_two_thousand_task_file() {
        let text = generated_task_file(2000);
        assert!(check(&text), "the fast path bailed");
        assert_same_task_file(&text);
    }

    /// Not a test: measures both parsers on a 2,000-task file. Run with
    /// `cargo test --release -p clab-syntax --lib fast_kdl -- --ignored --nocapture`; set
    /// `FAST_KDL_SAMPLE` to a file (e.g. one `bench/gen.py` wrote) to time that instead.
    #[test]
    #[ignore = "timing only"]
    fn time_against_the_crate() {
        let text = std::env::var("FAST_KDL_SAMPLE")
            .ok()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_else(|| generated_task_file(2000));
        assert!(check(&text), "the fast path bailed");
        let best = |run: &dyn Fn()| {
            (0..10)
                .map(|_| {
                    let start = Instant::now();
                    run();
                    start.elapsed()
                })
                .min()
                .unwrap_or(Duration::ZERO)
        };
        let fast = best(&|| assert!(parse(&text).is_some()));
        let slow = best(&|| assert!(KdlDocument::parse(&text).is_ok()));
        println!(
            "{} bytes: fast path {fast:?}, kdl crate {slow:?} ({:.0}x)",
            text.len(),
            slow.as_secs_f64() / fast.as_secs_f64()
        );
    }

    /// Inline node space, at least one byte.
    fn node_space() -> impl Strategy<Value = &'static str> {
        select(vec![
            " ",
            "  ",
            "\t",
            " /* c */ ",
            "/* a /* b */ */",
            " \\\n  ",
            " \\ // note\n\t",
            " \\\r\n ",
        ])
    }

    /// Line space, possibly empty.
    fn line_space() -> impl Strategy<Value = &'static str> {
        select(vec![
            "",
            "",
            "\n",
            "\n\n  ",
            "// comment\n",
            "  /* multi\nline */\n",
            "\r\n",
            " \\\n",
            "\t",
        ])
    }

    fn terminator() -> impl Strategy<Value = &'static str> {
        select(vec![";", "\n", "\r\n", "// end\n", ";\n", "; // x\n"])
    }

    fn quoted_string() -> impl Strategy<Value = String> {
        let pieces = vec![
            "a",
            "Z",
            " ",
            "\\\"",
            "\\\\",
            "\\n",
            "\\t",
            "\t",
            "\\s",
            "\\b",
            "\\f",
            "\\r",
            "\\u{1F600}",
            "\\u{0}",
            "\\u{41}",
            "é",
            "😀",
            "/",
            "{",
            "}",
            "=",
            ";",
            "#",
            "//",
            "/*",
            "\u{a0}",
        ];
        prop::collection::vec(select(pieces), 0..8)
            .prop_map(|pieces| format!("\"{}\"", pieces.concat()))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_.-]{0,6}"
                .prop_filter("a keyword", |name| !KEYWORDS.contains(&name.as_str())),
            quoted_string(),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            quoted_string(),
            (any::<i64>(), 0..3_u8).prop_map(|(n, style)| match style {
                0 => n.to_string(),
                1 if n >= 0 => format!("+{n}"),
                _ => {
                    let digits = n.unsigned_abs().to_string();
                    let sign = if n < 0 { "-" } else { "" };
                    format!("{sign}{}_{}", &digits[..1], &digits[1..])
                }
            }),
            (
                -1000_i32..1000,
                0_u32..10_000,
                prop::option::of((select(vec!["e", "E", "e+", "E-"]), 0_u32..400))
            )
                .prop_map(|(int, frac, exponent)| {
                    let exponent = exponent.map(|(e, x)| format!("{e}{x}")).unwrap_or_default();
                    format!("{int}.{frac}{exponent}")
                }),
            (-1000_i32..1000, 0_u32..30).prop_map(|(int, x)| format!("{int}e{x}")),
            select(vec!["#true", "#false", "#null"]).prop_map(str::to_owned),
        ]
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            value(),
            (
                name(),
                select(vec!["", " ", "\t", " \\\n "]),
                select(vec!["", " "]),
                value()
            )
                .prop_map(|(key, before, after, value)| format!("{key}{before}={after}{value}")),
        ]
    }

    /// One node as text, without its terminator.
    fn node(children: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        (
            name(),
            prop::collection::vec((node_space(), entry()), 0..4),
            prop::option::of((select(vec!["", " ", "\t"]), children)),
            select(vec!["", " ", " /* trailing */"]),
        )
            .prop_map(|(name, entries, children, trailing)| {
                let mut text = name;
                for (space, entry) in entries {
                    text.push_str(space);
                    text.push_str(&entry);
                }
                if let Some((space, children)) = children {
                    let _ = write!(text, "{space}{{{children}}}");
                }
                text.push_str(trailing);
                text
            })
    }

    /// A list of nodes as text: line space, nodes and terminators.
    fn nodes(node: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        (
            line_space(),
            prop::collection::vec((node, terminator(), line_space()), 0..5),
            prop::option::of(terminator()),
            line_space(),
        )
            .prop_map(|(leading, nodes, last_terminator, trailing)| {
                let mut text = leading.to_owned();
                let count = nodes.len();
                for (i, (node, terminator, space)) in nodes.into_iter().enumerate() {
                    text.push_str(&node);
                    if i + 1 < count {
                        text.push_str(terminator);
                        text.push_str(space);
                    }
                }
                if count > 0 {
                    text.push_str(last_terminator.unwrap_or(""));
                }
                text.push_str(trailing);
                text
            })
    }

    fn document() -> impl Strategy<Value = String> {
        let leaf = node(Just(String::new()).boxed());
        let nested = leaf.prop_recursive(3, 24, 4, |inner| node(nodes(inner).boxed()));
        (prop::bool::weighted(0.1), nodes(nested)).prop_map(|(bom, text)| {
            if bom { format!("\u{feff}{text}") } else { text }
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(prop::sample::Index, &'static str),
        Delete(prop::sample::Index, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let fragments = vec![
            "\"", "\\", "{", "}", ";", "/", "*", "=", "#", "-", "+", ".", "e", "_", "0", "x", "\r",
            "\n", " ", "\t", "\u{feff}", "\u{2028}", "\u{85}", "\u{a0}", "(", ")", "/-", "//",
            "/*", "*/", "\"\"\"", "#\"", "a", "true", "#true", "#inf", "\\u{", "\u{0}", "\u{b}",
            "é",
        ];
        prop_oneof![
            (any::<prop::sample::Index>(), select(fragments))
                .prop_map(|(at, text)| Mutation::Insert(at, text)),
            (any::<prop::sample::Index>(), 1_usize..4)
                .prop_map(|(at, len)| Mutation::Delete(at, len)),
        ]
    }

    fn mutate(text: &str, mutations: &[Mutation]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for mutation in mutations {
            match mutation {
                Mutation::Insert(at, fragment) => {
                    let at = at.index(chars.len() + 1);
                    chars.splice(at..at, fragment.chars());
                }
                Mutation::Delete(at, len) if !chars.is_empty() => {
                    let at = at.index(chars.len());
                    let end = (at + len).min(chars.len());
                    chars.drain(at..end);
                }
                Mutation::Delete(..) => {}
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn takes_generated_documents_like_the_crate(text in document()) {
            prop_assert!(check(&text), "the fast path bailed on {:?}", text);
        }

        #[test]
        fn mutated_documents_are_read_like_the_crate_or_left_to_it(
            text in document(),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            check(&mutate(&text, &mutations));
        }

        #[test]
        fn arbitrary_text_never_panics_or_differs(text in any::<String>()) {
            check(&text);
        }

        #[test]
        fn kdl_like_text_never_panics_or_differs(
            text in "[a-z0-9 \t\r\n\"\\\\{};=#/*().+_\u{feff}\u{2028}-]{0,40}",
        ) {
            check(&text);
        }

        #[test]
        fn generated_documents_make_the_same_task_file(text in document()) {
            assert_same_task_file(&text);
        }
    }

    /// The properties every text must have, whatever it holds: reading it does not panic or
    /// abort, every label of every diagnostic lies inside it, and the diagnostics render
    /// (miette panicked on labels past column 65,535) to a bounded amount of text.
    fn assert_reads_safely(text: &str) {
        let Err(diagnostics) = parse_task_file(SourceFile::new("tasks.kdl", "tasks.kdl", text))
        else {
            return;
        };
        assert!(diagnostics.errors.len() <= crate::MAX_DIAGNOSTICS + 1);
        for error in &diagnostics.errors {
            for label in error.labels().into_iter().flatten() {
                assert!(
                    label.offset() + label.len() <= text.len(),
                    "{error}: {label:?} is past the end of {text:?}"
                );
            }
        }
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(80)
            .with_context_lines(2)
            .render_report(&mut out, &diagnostics)
            .expect("diagnostics render");
        assert!(out.len() < 200 * 1024 + 40 * text.len().min(10_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Issue 18's fuzzing, bounded: the repository's task files (examples and templates)
        /// mutated a few bytes at a time read safely, and both paths read them alike.
        #[test]
        fn mutated_repository_files_read_safely_and_alike_issue_18(
            file in prop::sample::select(REPO_FILES.iter().map(|(_, text)| *text).collect::<Vec<_>>()),
            mutations in prop::collection::vec(mutation(), 1..8),
        ) {
            let text = mutate(file, &mutations);
            assert_reads_safely(&text);
            check(&text);
            assert_same_task_file(&text);
        }

        /// The outline the crate's pieces are cut by finds the top-level nodes the crate
        /// finds, where it finds them.
        #[test]
        fn the_outline_delimits_the_nodes_the_crate_reads(text in document()) {
            let outline = crate::outline::Outline::scan(&text);
            let document = KdlDocument::parse(&text).expect("generated documents are valid");
            let starts: Vec<usize> = document.nodes().iter().map(|n| n.span().offset()).collect();
            let found: Vec<usize> = outline.nodes.iter().map(|r| r.start).collect();
            prop_assert_eq!(found, starts, "{:?}", text);
            for (range, node) in outline.nodes.iter().zip(document.nodes()) {
                let end = node.span().offset() + node.span().len();
                prop_assert!(range.end >= end, "{:?}: {:?} ends before {}", text, range, end);
                let rest = &text[end..range.end];
                prop_assert!(rest.trim().is_empty() || rest.trim_start().starts_with("//"), "{:?}", text);
            }
        }

        #[test]
        fn arbitrary_text_reads_safely_issue_18(text in any::<String>()) {
            assert_reads_safely(&text);
        }

        #[test]
        fn kdl_like_text_reads_safely_issue_18(
            text in "[a-z0-9 \t\r\n\"\\\\{};=#/*().+_\u{feff}\u{2028}-]{0,200}",
        ) {
            assert_reads_safely(&text);
        }
    }

    #[test]
    fn long_lines_and_repetitions_read_safely_issue_18() {
        for file in REPO_FILES.iter().map(|(_, text)| *text) {
            // Every line pushed past column 65,535, and the file repeated on one line.
            let wide: String = file
                .lines()
                .map(|line| format!("{}{line}\n", " ".repeat(66_000)))
                .collect();
            assert_reads_safely(&wide);
            assert_reads_safely(&file.replace('\n', " ").repeat(20));
            assert_reads_safely(&file.replace('"', "\"\"").repeat(10));
        }
    }
}
