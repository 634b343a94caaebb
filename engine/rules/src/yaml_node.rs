//! A tolerant, line-based reader for the YAML subset found inside `<rule>` blocks.
//!
//! In: a region of a rule file (its text and the byte offset where it starts). Out: a
//! [`YamlNode`] tree whose every node and key carries its byte span in the *file*, plus a
//! list of [`YamlError`]s for lines it could not read. It never fails and never panics: a line
//! it does not understand becomes an error and is skipped.
//!
//! Supported: block mappings, block sequences (also `- key: value` items), block scalars
//! (`|`, `>`, with `-`/`+` chomping), double- and single-quoted scalars, plain scalars
//! (also folded over several lines), flow sequences of scalars (`[a, "b"]`), and `#`
//! comments. Not supported (kept as plain text): anchors, aliases, tags, flow mappings.

use miette::SourceSpan;

use clab_model::source::Spanned;

/// A YAML value with the span of its text in the rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlNode {
    /// The value.
    pub value: YamlValue,
    /// Where the value's text stands in the file (for scalars: the scalar itself, with quotes).
    pub span: SourceSpan,
}

/// The kinds of value the reader produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum YamlValue {
    /// A key with no value.
    Null,
    /// Any scalar, already unquoted and unescaped.
    Scalar(String),
    /// A sequence.
    Seq(Vec<YamlNode>),
    /// A mapping, in source order (duplicates kept).
    Map(Vec<(Spanned<String>, YamlNode)>),
}

/// A line the reader could not make sense of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// Where the problem is.
    pub span: SourceSpan,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl YamlNode {
    /// The scalar text, if this node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YamlValue::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, if this node is a mapping that has it (first occurrence).
    pub fn get(&self, key: &str) -> Option<&YamlNode> {
        match &self.value {
            YamlValue::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value on one line, in YAML flow style (`{priority: high, tags: [a, b]}`), for
    /// display (`clab rules show` prints `metadata` this way). Scalars that would not read
    /// back as plain text are double-quoted; line breaks in block scalars become `\n`.
    pub fn to_flow(&self) -> String {
        match &self.value {
            YamlValue::Null => "~".to_owned(),
            YamlValue::Scalar(s) => flow_scalar(s),
            YamlValue::Seq(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(YamlNode::to_flow)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            YamlValue::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", flow_scalar(&k.value), v.to_flow()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The items, if this node is a sequence; a single non-sequence value counts as one item,
    /// `Null` as none.
    pub fn items(&self) -> Vec<&YamlNode> {
        match &self.value {
            YamlValue::Seq(items) => items.iter().collect(),
            YamlValue::Null => Vec::new(),
            _ => vec![self],
        }
    }
}

/// A scalar as flow YAML: plain when that reads back the same, else double-quoted.
fn flow_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.trim() == s
        && !s.starts_with([
            '[', '{', '"', '\'', '&', '*', '!', '|', '>', '%', '@', '`', '#', '-',
        ])
        && !s.contains([',', '[', ']', '{', '}', '\n', '\r', '\t'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':');
    if plain {
        s.to_owned()
    } else {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// One line of a text region: byte offsets into the file and its indentation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SourceLine<'a> {
    /// The line without its line ending (`\n` or `\r\n`).
    pub raw: &'a str,
    /// File offset of the line's first byte.
    pub start: usize,
    /// Bytes of leading indentation (spaces or tabs), or where the content starts.
    pub indent: usize,
}

impl<'a> SourceLine<'a> {
    /// The line after its indentation.
    pub(crate) fn content(&self) -> &'a str {
        self.raw.get(self.indent..).unwrap_or("")
    }

    /// File offset where the content starts.
    pub(crate) fn content_start(&self) -> usize {
        self.start + self.indent
    }

    /// File offset just past the line's last byte (before the line ending).
    pub(crate) fn end(&self) -> usize {
        self.start + self.raw.len()
    }

    fn is_blank(&self) -> bool {
        self.content().trim().is_empty()
    }

    fn is_comment(&self) -> bool {
        self.content().starts_with('#')
    }
}

/// Split `text` (which starts at file offset `base`) into lines, dropping `\n` and `\r\n`.
pub(crate) fn split_lines(text: &str, base: usize) -> Vec<SourceLine<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let raw = text[start..end]
            .strip_suffix('\r')
            .unwrap_or(&text[start..end]);
        let indent = raw.len() - raw.trim_start_matches([' ', '\t']).len();
        lines.push(SourceLine {
            raw,
            start: base + start,
            indent,
        });
        start = end + 1;
    }
    lines
}

/// Read `text` (a region of a file starting at byte `base`) as YAML.
pub fn parse_yaml(text: &str, base: usize) -> (YamlNode, Vec<YamlError>) {
    let mut parser = Parser {
        lines: split_lines(text, base),
        pos: 0,
        errors: Vec::new(),
    };
    let empty = YamlNode {
        value: YamlValue::Null,
        span: SourceSpan::from((base, 0)),
    };
    let mut top = parser.parse_node(0).unwrap_or(empty);
    loop {
        parser.skip_insignificant();
        let Some(line) = parser.lines.get(parser.pos).copied() else {
            break;
        };
        parser.error(
            line.content_start(),
            line.end(),
            "could not read this line as yaml",
        );
        parser.pos += 1;
        if let Some(more) = parser.parse_node(0) {
            match (&mut top.value, more.value) {
                (YamlValue::Map(entries), YamlValue::Map(extra)) => {
                    entries.extend(extra);
                    top.span = join(top.span, more.span);
                }
                (YamlValue::Null, value) => {
                    top = YamlNode {
                        value,
                        span: more.span,
                    }
                }
                _ => {}
            }
        }
    }
    (top, parser.errors)
}

fn join(a: SourceSpan, b: SourceSpan) -> SourceSpan {
    let start = a.offset().min(b.offset());
    let end = (a.offset() + a.len()).max(b.offset() + b.len());
    SourceSpan::from((start, end - start))
}

fn span(start: usize, end: usize) -> SourceSpan {
    SourceSpan::from((start, end.saturating_sub(start)))
}

struct Parser<'a> {
    lines: Vec<SourceLine<'a>>,
    pos: usize,
    errors: Vec<YamlError>,
}

/// A `key: rest` split of a line's content: the key, its byte range in the content, and
/// where the rest starts.
struct KeySplit {
    key: String,
    key_start: usize,
    key_end: usize,
    rest_start: usize,
}

impl<'a> Parser<'a> {
    fn error(&mut self, start: usize, end: usize, message: &str) {
        self.errors.push(YamlError {
            span: span(start, end),
            message: message.to_owned(),
        });
    }

    fn skip_insignificant(&mut self) {
        while let Some(line) = self.lines.get(self.pos) {
            if line.is_blank() || line.is_comment() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<SourceLine<'a>> {
        self.skip_insignificant();
        self.lines.get(self.pos).copied()
    }

    fn parse_node(&mut self, min_indent: usize) -> Option<YamlNode> {
        let line = self.peek()?;
        if line.indent < min_indent {
            return None;
        }
        let content = line.content();
        if is_seq_item(content) {
            Some(self.parse_seq(line.indent))
        } else if split_key(content).is_some() {
            Some(self.parse_map(line.indent))
        } else {
            self.pos += 1;
            Some(self.parse_value(content, line.content_start(), min_indent.saturating_sub(1)))
        }
    }

    fn parse_map(&mut self, indent: usize) -> YamlNode {
        let mut entries: Vec<(Spanned<String>, YamlNode)> = Vec::new();
        let mut whole: Option<SourceSpan> = None;
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && is_seq_item(line.content())) {
                break;
            }
            if line.indent > indent {
                self.error(line.content_start(), line.end(), "unexpected indentation");
                self.pos += 1;
                continue;
            }
            let content = line.content();
            let Some(split) = split_key(content) else {
                self.error(line.content_start(), line.end(), "expected `key: value`");
                self.pos += 1;
                continue;
            };
            self.pos += 1;
            let base = line.content_start();
            let key = Spanned::new(
                split.key,
                span(base + split.key_start, base + split.key_end),
            );
            let rest = &content[split.rest_start..];
            let value = self.parse_value(rest, base + split.rest_start, indent);
            let entry_span = join(key.span, value.span);
            whole = Some(whole.map_or(entry_span, |w| join(w, entry_span)));
            entries.push((key, value));
        }
        YamlNode {
            value: YamlValue::Map(entries),
            span: whole.unwrap_or_else(|| span(0, 0)),
        }
    }

    fn parse_seq(&mut self, indent: usize) -> YamlNode {
        let mut items = Vec::new();
        let mut whole: Option<SourceSpan> = None;
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_seq_item(line.content()) {
                if line.indent > indent {
                    self.error(line.content_start(), line.end(), "unexpected indentation");
                    self.pos += 1;
                    continue;
                }
                break;
            }
            let content = line.content();
            let after_dash = &content[1..];
            let rest = after_dash.trim_start_matches([' ', '\t']);
            let rest_col = line.indent + 1 + (after_dash.len() - rest.len());
            let item = if rest.trim().is_empty() || rest.starts_with('#') {
                self.pos += 1;
                self.parse_node(indent + 1).unwrap_or(YamlNode {
                    value: YamlValue::Null,
                    span: span(line.content_start(), line.content_start() + 1),
                })
            } else if is_seq_item(rest)
                || (split_key(rest).is_some() && !starts_quoted_scalar(rest))
            {
                // `- key: value` opens a mapping whose indentation is the column of `key`.
                self.lines[self.pos].indent = rest_col;
                self.parse_node(rest_col).unwrap_or(YamlNode {
                    value: YamlValue::Null,
                    span: span(line.content_start(), line.end()),
                })
            } else {
                self.pos += 1;
                self.parse_value(rest, line.start + rest_col, indent)
            };
            whole = Some(whole.map_or(item.span, |w| join(w, item.span)));
            items.push(item);
        }
        YamlNode {
            value: YamlValue::Seq(items),
            span: whole.unwrap_or_else(|| span(0, 0)),
        }
    }

    /// The value after `key:` or `- `: `rest` starts at file offset `at`; the line that held
    /// it (already consumed) had indentation `parent`.
    fn parse_value(&mut self, rest: &str, at: usize, parent: usize) -> YamlNode {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let at = at + (rest.len() - trimmed.len());
        let text = strip_comment(trimmed).trim_end();
        if text.is_empty() {
            let Some(next) = self.peek() else {
                return null_at(at);
            };
            if next.indent > parent || (next.indent == parent && is_seq_item(next.content())) {
                return self
                    .parse_node(parent.min(next.indent))
                    .unwrap_or_else(|| null_at(at));
            }
            return null_at(at);
        }
        match text.as_bytes()[0] {
            b'|' | b'>' if is_block_header(text) => self.block_scalar(text, at, parent),
            b'"' | b'\'' => self.quoted(trimmed, at, parent),
            b'[' => self.flow_seq(text, at),
            _ => self.plain(text, at, parent),
        }
    }

    fn block_scalar(&mut self, header: &str, at: usize, parent: usize) -> YamlNode {
        let folded = header.starts_with('>');
        let keep = header.contains('+');
        let strip = header.contains('-');
        let explicit = header
            .bytes()
            .find(u8::is_ascii_digit)
            .map(|d| usize::from(d - b'0'));
        let mut body: Vec<SourceLine<'a>> = Vec::new();
        while let Some(line) = self.lines.get(self.pos).copied() {
            if line.is_blank() || line.indent > parent {
                body.push(line);
                self.pos += 1;
            } else {
                break;
            }
        }
        // Trailing blank lines belong to the scalar only for chomping; give them back so that
        // spans end at the last text line.
        while body.last().is_some_and(|l| l.is_blank()) {
            body.pop();
            self.pos -= 1;
        }
        let content_indent = explicit
            .map(|e| parent + e)
            .or_else(|| body.iter().find(|l| !l.is_blank()).map(|l| l.indent))
            .unwrap_or(parent + 1);
        let texts: Vec<&str> = body
            .iter()
            .map(|l| {
                if l.is_blank() {
                    ""
                } else {
                    l.raw.get(content_indent.min(l.indent)..).unwrap_or("")
                }
            })
            .collect();
        let mut value = if folded {
            fold(&texts)
        } else {
            texts.join("\n")
        };
        if !strip && !value.is_empty() {
            value.push('\n');
        }
        if keep {
            // `+` keeps trailing blank lines; they were handed back above, count them again.
            let mut p = self.pos;
            while self.lines.get(p).is_some_and(|l| l.is_blank()) {
                value.push('\n');
                p += 1;
            }
        }
        let end = body.last().map_or(at + header.len(), |l| l.end());
        YamlNode {
            value: YamlValue::Scalar(value),
            span: span(at, end),
        }
    }

    fn quoted(&mut self, text: &str, at: usize, parent: usize) -> YamlNode {
        let quote = text.as_bytes()[0];
        let mut buf = String::new();
        let mut line_text = text;
        let mut line_at = at;
        let mut first = true;
        loop {
            let start_idx = if first { 1 } else { 0 };
            match scan_quoted(&line_text[start_idx..], quote, &mut buf) {
                Some(close) => {
                    let end = line_at + start_idx + close + 1;
                    let after = strip_comment(&line_text[start_idx + close + 1..]).trim();
                    if !after.is_empty() {
                        self.error(
                            end,
                            line_at + line_text.len(),
                            "unexpected text after a quoted value",
                        );
                    }
                    return YamlNode {
                        value: YamlValue::Scalar(buf),
                        span: span(at, end),
                    };
                }
                None => {
                    // A quoted scalar may continue on the next, more indented line.
                    match self.lines.get(self.pos).copied() {
                        Some(next) if !next.is_blank() && next.indent > parent => {
                            self.pos += 1;
                            if !buf.ends_with(' ') {
                                buf.push(' ');
                            }
                            line_text = next.content();
                            line_at = next.content_start();
                            first = false;
                        }
                        _ => {
                            let end = line_at + line_text.len();
                            self.error(at, end, "unclosed quote");
                            return YamlNode {
                                value: YamlValue::Scalar(buf),
                                span: span(at, end),
                            };
                        }
                    }
                }
            }
        }
    }

    fn flow_seq(&mut self, text: &str, at: usize) -> YamlNode {
        let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            self.error(at, at + text.len(), "unclosed `[`");
            return YamlNode {
                value: YamlValue::Scalar(text.to_owned()),
                span: span(at, at + text.len()),
            };
        };
        let mut items = Vec::new();
        for (offset, part) in split_flow(inner) {
            let item_at = at + 1 + offset;
            let trimmed = part.trim();
            if trimmed.is_empty() {
                continue;
            }
            let lead = part.len() - part.trim_start().len();
            let item_at = item_at + lead;
            let value = unquote(trimmed);
            items.push(YamlNode {
                value: YamlValue::Scalar(value),
                span: span(item_at, item_at + trimmed.len()),
            });
        }
        YamlNode {
            value: YamlValue::Seq(items),
            span: span(at, at + text.len()),
        }
    }

    fn plain(&mut self, text: &str, at: usize, parent: usize) -> YamlNode {
        let mut value = text.to_owned();
        let mut end = at + text.len();
        while let Some(next) = self.lines.get(self.pos).copied() {
            if next.is_blank() || next.indent <= parent || next.is_comment() {
                break;
            }
            let content = strip_comment(next.content()).trim_end();
            value.push(' ');
            value.push_str(content);
            end = next.content_start() + content.len();
            self.pos += 1;
        }
        YamlNode {
            value: YamlValue::Scalar(value),
            span: span(at, end),
        }
    }
}

fn null_at(at: usize) -> YamlNode {
    YamlNode {
        value: YamlValue::Null,
        span: span(at, at),
    }
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ") || content.starts_with("-\t")
}

fn is_block_header(text: &str) -> bool {
    text.len() <= 4
        && text[1..]
            .bytes()
            .all(|b| b == b'-' || b == b'+' || b.is_ascii_digit())
}

fn starts_quoted_scalar(text: &str) -> bool {
    // `- "a: b"` is a quoted scalar, `- "a": b` is a mapping with a quoted key.
    let q = text.as_bytes().first().copied();
    if !matches!(q, Some(b'"') | Some(b'\'')) {
        return false;
    }
    let mut buf = String::new();
    match q.and_then(|q| scan_quoted(&text[1..], q, &mut buf)) {
        Some(close) => !text[close + 2..].trim_start().starts_with(':'),
        None => true,
    }
}

/// Split `key: rest`; `None` when the content is not a mapping entry.
fn split_key(content: &str) -> Option<KeySplit> {
    let first = content.as_bytes().first().copied()?;
    if matches!(
        first,
        b'#' | b'[' | b'{' | b'|' | b'>' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`'
    ) || is_seq_item(content)
    {
        return None;
    }
    if first == b'"' || first == b'\'' {
        let mut key = String::new();
        let close = scan_quoted(&content[1..], first, &mut key)? + 2;
        let rest = &content[close..];
        let after = rest.trim_start_matches([' ', '\t']);
        let colon = close + (rest.len() - after.len());
        if !after.starts_with(':') {
            return None;
        }
        let tail = &after[1..];
        if !(tail.is_empty() || tail.starts_with([' ', '\t'])) {
            return None;
        }
        return Some(KeySplit {
            key,
            key_start: 0,
            key_end: close,
            rest_start: colon + 1,
        });
    }
    let bytes = content.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':'
            && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t')
        {
            let key = content[..i].trim_end();
            if key.is_empty() {
                return None;
            }
            return Some(KeySplit {
                key: key.to_owned(),
                key_start: 0,
                key_end: key.len(),
                rest_start: i + 1,
            });
        }
        if bytes[i] == b' ' && bytes.get(i + 1) == Some(&b'#') {
            return None;
        }
        i += 1;
    }
    None
}

/// Read a quoted scalar's body (after the opening quote) into `buf`; the byte index of the
/// closing quote, or `None` if the text ends first.
fn scan_quoted(text: &str, quote: u8, buf: &mut String) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if quote == b'\'' && c == '\'' {
            if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                chars.next();
                buf.push('\'');
                continue;
            }
            return Some(i);
        }
        if quote == b'"' && c == '"' {
            return Some(i);
        }
        if quote == b'"' && c == '\\' {
            match chars.next() {
                Some((_, e)) => buf.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                }),
                None => buf.push('\\'),
            }
            continue;
        }
        buf.push(c);
    }
    None
}

/// Unquote a single scalar written in either quote style; plain text is returned as is.
pub(crate) fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') {
        let mut buf = String::new();
        if let Some(close) = scan_quoted(&text[1..], bytes[0], &mut buf)
            && close + 2 == text.len()
        {
            return buf;
        }
    }
    text.to_owned()
}

/// Split the inside of a flow sequence at top-level commas (not inside quotes or braces);
/// yields each part with its byte offset.
pub(crate) fn split_flow(inner: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    parts.push((start, &inner[start..i]));
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    parts.push((start, &inner[start..]));
    parts
}

/// Drop a trailing ` # comment` from plain text (quotes are respected).
fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    for i in 0..bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if (b == b'"' || b == b'\'') && (i == 0 || bytes[i - 1] == b' ') => {
                quote = Some(b)
            }
            None if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                return &text[..i];
            }
            None => {}
        }
    }
    text
}

fn fold(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut prev_text = false;
    for line in lines {
        if line.is_empty() {
            out.push('\n');
            prev_text = false;
        } else if line.starts_with([' ', '\t']) {
            if prev_text {
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
            prev_text = false;
        } else {
            if prev_text {
                out.push(' ');
            }
            out.push_str(line);
            prev_text = true;
        }
    }
    out.trim_end_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (YamlNode, Vec<YamlError>) {
        parse_yaml(text, 0)
    }

    fn text_at(text: &str, span: SourceSpan) -> &str {
        &text[span.offset()..span.offset() + span.len()]
    }

    #[test]
    fn reads_the_rule_shape() {
        let text = "name: uv\nfilters:\n  # comment\n  - type: file_extension\n    pattern: \"\\\\.py$\"\n  - type: content\n    pattern: 'pip install'\nactions:\n  - type: reject\n    conditions:\n      - pattern: x\n        message: \"no\"\n";
        let (node, errors) = parse(text);
        assert_eq!(errors, vec![]);
        assert_eq!(node.get("name").and_then(YamlNode::as_str), Some("uv"));
        let filters = node.get("filters").map(YamlNode::items).unwrap_or_default();
        assert_eq!(filters.len(), 2);
        let pattern = filters[0].get("pattern").unwrap();
        assert_eq!(pattern.as_str(), Some("\\.py$"));
        assert_eq!(text_at(text, pattern.span), "\"\\\\.py$\"");
        assert_eq!(
            filters[1].get("pattern").and_then(YamlNode::as_str),
            Some("pip install")
        );
        let actions = node.get("actions").map(YamlNode::items).unwrap_or_default();
        let conditions = actions[0]
            .get("conditions")
            .map(YamlNode::items)
            .unwrap_or_default();
        assert_eq!(
            conditions[0].get("message").and_then(YamlNode::as_str),
            Some("no")
        );
    }

    #[test]
    fn block_scalars_literal_and_folded() {
        let text = "a: |\n  one\n\n  two\nb: >-\n  x\n  y\nc: end\n";
        let (node, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            node.get("a").and_then(YamlNode::as_str),
            Some("one\n\ntwo\n")
        );
        assert_eq!(node.get("b").and_then(YamlNode::as_str), Some("x y"));
        assert_eq!(node.get("c").and_then(YamlNode::as_str), Some("end"));
    }

    #[test]
    fn map_values_may_be_sequences_at_the_same_indent() {
        let (node, errors) = parse("tags:\n- a\n- b\nnext: 1\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(node.get("tags").map(|t| t.items().len()), Some(2));
        assert_eq!(node.get("next").and_then(YamlNode::as_str), Some("1"));
    }

    #[test]
    fn flow_sequences_and_comments() {
        let (node, _) = parse("globs: [\"a, b\", c] # trailing\nx: y # c\n");
        let items = node.get("globs").map(YamlNode::items).unwrap_or_default();
        let items: Vec<_> = items.iter().filter_map(|i| i.as_str()).collect();
        assert_eq!(items, vec!["a, b", "c"]);
        assert_eq!(node.get("x").and_then(YamlNode::as_str), Some("y"));
    }

    #[test]
    fn bad_lines_become_errors_and_reading_goes_on() {
        let text = "name: a\nthis is not yaml\nmessage: \"unclosed\nother: b\n";
        let (node, errors) = parse(text);
        assert_eq!(node.get("name").and_then(YamlNode::as_str), Some("a"));
        assert!(
            errors.iter().any(|e| e.message == "expected `key: value`"),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.message == "unclosed quote"),
            "{errors:?}"
        );
        assert_eq!(node.get("other").and_then(YamlNode::as_str), Some("b"));
    }

    #[test]
    fn crlf_and_offsets() {
        let text = "name: a\r\nx: \"b\"\r\n";
        let (node, errors) = parse_yaml(text, 100);
        assert!(errors.is_empty());
        let x = node.get("x").unwrap();
        assert_eq!(x.as_str(), Some("b"));
        assert_eq!(x.span.offset(), 100 + 12);
        assert_eq!(x.span.len(), 3);
    }

    #[test]
    fn urls_are_not_keys() {
        let (node, _) = parse("- https://example.com/a\n- key: v\n");
        let items = node.items();
        assert_eq!(items[0].as_str(), Some("https://example.com/a"));
        assert_eq!(items[1].get("key").and_then(YamlNode::as_str), Some("v"));
    }

    #[test]
    fn to_flow_prints_a_node_on_one_line() {
        let text = "metadata:\n  priority: high\n  version: 1.0\n  tags:\n    - python\n    - \"a, b\"\n  note: |\n    two\n    lines\n  empty:\n";
        let (node, errors) = parse_yaml(text, 0);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            node.get("metadata").unwrap().to_flow(),
            r#"{priority: high, version: 1.0, tags: [python, "a, b"], note: "two\nlines\n", empty: ~}"#
        );
    }
}
