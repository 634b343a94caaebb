//! [`Outline`]: where the top-level nodes of a KDL text start and end, and where its blocks nest
//! too deep — found by a lexer, without parsing.
//!
//! In: the text of a `tasks.kdl` the fast path (`fast_kdl`) did not take. Out: the byte range
//! of each top-level node and the offset of the first `{` that opens a block deeper than
//! [`MAX_DEPTH`](crate::MAX_DEPTH).
//!
//! Why: the `kdl` crate recurses once per block, once per top-level token it cannot read and
//! once per `*` of a block comment, with up to 8 KiB of stack each (issue 18: 4,000 nested
//! braces, 20,000 stray `}` or a comment of 200,000 `*` abort clab). So the crate never reads
//! the whole of a large text: `kdl::parse_with_crate` hands it the nodes this outline
//! delimits, in pieces of at most `CRATE_CHUNK` bytes, on a thread whose stack covers the
//! worst a piece that long can cost.
//!
//! Invariant: for valid KDL v2 the lexer agrees with the crate — strings (quoted, multi-line,
//! raw with any number of `#`), comments (`//`, nested `/* */`), line continuations,
//! slashdashes and every KDL newline are lexed as KDL defines them — so each range holds whole
//! nodes and the crate reads the same document piece by piece as whole. For broken text the
//! ranges are a best guess; the crate then reports the errors it finds in them.

use std::ops::Range;

use crate::MAX_DEPTH;

/// The top-level nodes of a text and the first block that nests too deep.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outline {
    /// Byte ranges of top-level nodes (a slashdashed node counts), from the first byte of the
    /// node to its terminator (excluded), in order.
    pub(crate) nodes: Vec<Range<usize>>,
    /// The offset of the first `{` that opens a block deeper than `MAX_DEPTH`.
    pub(crate) too_deep: Option<usize>,
}

impl Outline {
    /// Lex `text`.
    pub(crate) fn scan(text: &str) -> Outline {
        let mut lexer = Lexer {
            bytes: text.as_bytes(),
            text,
            pos: if text.starts_with('\u{feff}') { 3 } else { 0 },
        };
        let mut outline = Outline::default();
        let mut depth = 0usize;
        let mut node_start: Option<usize> = None;
        while let Some(byte) = lexer.peek() {
            let at = lexer.pos;
            if let Some(len) = lexer.newline_len() {
                if depth == 0
                    && let Some(start) = node_start.take()
                {
                    outline.nodes.push(start..at);
                }
                lexer.pos += len;
                continue;
            }
            if lexer.is_space() {
                lexer.pos += lexer.char_len();
                continue;
            }
            match byte {
                b'/' if lexer.peek_at(1) == Some(b'/') => lexer.line_comment(),
                b'/' if lexer.peek_at(1) == Some(b'*') => {
                    if !lexer.block_comment() {
                        // Unterminated: the crate reports it, so it belongs to a node.
                        node_start.get_or_insert(at);
                    }
                }
                // Node space (or line space between nodes): never ends a node.
                b'\\' => lexer.line_continuation(),
                b'/' if lexer.peek_at(1) == Some(b'-') => {
                    node_start.get_or_insert(at);
                    lexer.pos += 2;
                    // `slashdash := '/-' line-space*`: a newline here ends nothing.
                    lexer.line_space();
                }
                b';' => {
                    if depth == 0
                        && let Some(start) = node_start.take()
                    {
                        outline.nodes.push(start..at);
                    }
                    lexer.pos += 1;
                }
                b'{' => {
                    node_start.get_or_insert(at);
                    if depth >= MAX_DEPTH {
                        outline.too_deep = Some(at);
                        return outline;
                    }
                    depth += 1;
                    lexer.pos += 1;
                }
                b'}' => {
                    node_start.get_or_insert(at);
                    depth = depth.saturating_sub(1);
                    lexer.pos += 1;
                }
                b'"' => {
                    node_start.get_or_insert(at);
                    lexer.quoted_string(0);
                }
                b'#' => {
                    node_start.get_or_insert(at);
                    let hashes = lexer.bytes[at..].iter().take_while(|&&b| b == b'#').count();
                    if lexer.peek_at(hashes) == Some(b'"') {
                        lexer.pos += hashes;
                        lexer.quoted_string(hashes);
                    } else {
                        lexer.pos += hashes;
                    }
                }
                _ => {
                    node_start.get_or_insert(at);
                    lexer.pos += lexer.char_len();
                }
            }
        }
        if let Some(start) = node_start {
            outline.nodes.push(start..text.len());
        }
        outline
    }
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn char_at(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    /// Bytes of the char at `pos` (1 past the end, or inside a char: never 0).
    fn char_len(&self) -> usize {
        self.char_at().map_or(1, char::len_utf8)
    }

    /// KDL's newlines: CRLF, CR, LF, NEL, VT, FF, LS, PS.
    fn newline_len(&self) -> Option<usize> {
        match self.peek()? {
            b'\r' if self.peek_at(1) == Some(b'\n') => Some(2),
            b'\r' | b'\n' | 0x0b | 0x0c => Some(1),
            0xc2 | 0xe2 => matches!(self.char_at(), Some('\u{85}' | '\u{2028}' | '\u{2029}'))
                .then(|| self.char_len()),
            _ => None,
        }
    }

    /// KDL's unicode spaces (tab, space, NBSP and the others).
    fn is_space(&self) -> bool {
        matches!(
            self.char_at(),
            Some(
                '\t' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                    ..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
            )
        )
    }

    /// `// …` up to its newline (left for the caller: it ends a node).
    fn line_comment(&mut self) {
        self.pos += 2;
        while self.peek().is_some() && self.newline_len().is_none() {
            self.pos += self.char_len();
        }
    }

    /// `/* … */`, nested; `false` if it runs to the end of the text.
    fn block_comment(&mut self) -> bool {
        self.pos += 2;
        let mut depth = 1usize;
        while let Some(byte) = self.peek() {
            match (byte, self.peek_at(1)) {
                (b'*', Some(b'/')) => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return true;
                    }
                }
                (b'/', Some(b'*')) => {
                    self.pos += 2;
                    depth += 1;
                }
                _ => self.pos += 1,
            }
        }
        false
    }

    /// `\`, spaces and comments, then a newline, a `//` comment or the end: none ends a node.
    fn line_continuation(&mut self) {
        self.pos += 1;
        loop {
            if self.is_space() {
                self.pos += self.char_len();
            } else if self.peek() == Some(b'/') && self.peek_at(1) == Some(b'*') {
                self.block_comment();
            } else {
                break;
            }
        }
        if self.peek() == Some(b'/') && self.peek_at(1) == Some(b'/') {
            self.line_comment();
        }
        if let Some(len) = self.newline_len() {
            self.pos += len;
        }
    }

    /// Spaces, newlines and comments after a slashdash.
    fn line_space(&mut self) {
        loop {
            if let Some(len) = self.newline_len() {
                self.pos += len;
            } else if self.is_space() {
                self.pos += self.char_len();
            } else if self.peek() == Some(b'/') && self.peek_at(1) == Some(b'/') {
                self.line_comment();
            } else if self.peek() == Some(b'/') && self.peek_at(1) == Some(b'*') {
                self.block_comment();
            } else {
                return;
            }
        }
    }

    /// A string starting at the `"` at `pos`, raw when `hashes > 0` (closed by `"` and as many
    /// `#`); multi-line when it opens with `"""`. A single-line string ends at a newline too
    /// (an error the crate reports).
    fn quoted_string(&mut self, hashes: usize) {
        let multi = self.bytes[self.pos..].starts_with(b"\"\"\"");
        let quotes = if multi { 3 } else { 1 };
        self.pos += quotes;
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' if hashes == 0 => {
                    self.pos += 1;
                    // An escaped char, or a whitespace escape over spaces and newlines.
                    let mut skipped = false;
                    loop {
                        if let Some(len) = self.newline_len() {
                            self.pos += len;
                            skipped = true;
                        } else if self.is_space() {
                            self.pos += self.char_len();
                            skipped = true;
                        } else {
                            break;
                        }
                    }
                    if !skipped && self.peek().is_some() {
                        self.pos += self.char_len();
                    }
                }
                b'"' if self.bytes[self.pos..].starts_with(&b"\"\"\""[..quotes])
                    && self.bytes[self.pos + quotes..]
                        .iter()
                        .take(hashes)
                        .filter(|&&b| b == b'#')
                        .count()
                        == hashes =>
                {
                    self.pos += quotes + hashes;
                    return;
                }
                _ if !multi && self.newline_len().is_some() => return,
                _ => self.pos += self.char_len(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(text: &str) -> Vec<&str> {
        Outline::scan(text)
            .nodes
            .into_iter()
            .map(|range| &text[range])
            .collect()
    }

    #[test]
    fn delimits_top_level_nodes() {
        let text = "\u{feff}// head\nproject \"p\"; env A=\"1\"\r\ntask \"a\" {\n  run \"x; }\"\n}\n\
                    /* c { */ /-task \"b\" {\n}\ntask \\\n  \"c\" { run #\"a \"}\" b\"# }\n\
                    task \"d\" { prompt \"\"\"\n  { ; \n  \"\"\" }\nlast";
        assert_eq!(
            nodes(text),
            [
                "project \"p\"",
                "env A=\"1\"",
                "task \"a\" {\n  run \"x; }\"\n}",
                "/-task \"b\" {\n}",
                "task \\\n  \"c\" { run #\"a \"}\" b\"# }",
                "task \"d\" { prompt \"\"\"\n  { ; \n  \"\"\" }",
                "last",
            ]
        );
    }

    #[test]
    fn finds_the_first_block_too_deep_issue_18() {
        let deep = "a {".repeat(MAX_DEPTH + 1);
        let outline = Outline::scan(&deep);
        assert_eq!(outline.too_deep, Some(MAX_DEPTH * 3 + 2));
        let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(Outline::scan(&ok).too_deep, None);
        // Braces in strings and comments do not nest.
        let hidden = format!("a \"{0}\" /* {0} */ // {0}\n", "{".repeat(MAX_DEPTH * 2));
        assert_eq!(Outline::scan(&hidden).too_deep, None);
    }
}
