//! The front matter of a rule file: the `---` block with `description`, `globs` and
//! `alwaysApply`.
//!
//! In: the file's text. Out: a [`FrontMatter`] (every value spanned), the offset where the body
//! starts, and the [`Issue`]s found on the way. Read line by line, not with a YAML parser:
//! most real front matters are not valid YAML (`globs: **/*` starts with an alias marker), and
//! Cursor itself reads them this way. Unknown keys are kept. Never fails; a missing or broken
//! front matter is reported as an issue and the rest of the file is still read.

use miette::SourceSpan;

use super::{
    rule_diagnostic::{Issue, Kind},
    yaml_node::{SourceLine, split_flow, split_lines, unquote},
};
use clab_model::source::Spanned;

/// The parsed front matter; every field is optional because real files omit any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontMatter {
    /// The whole block from the opening to the closing `---`; `None` when the file has none.
    pub span: Option<SourceSpan>,
    /// `description:`, unquoted; `None` when the key is missing.
    pub description: Option<Spanned<String>>,
    /// `globs:`, one entry per pattern, each spanned to its own text.
    pub globs: Vec<Spanned<String>>,
    /// How `globs` was written.
    pub globs_shape: GlobsShape,
    /// Where the `globs` value stands, for diagnostics about the whole field.
    pub globs_span: Option<SourceSpan>,
    /// `alwaysApply:`, when present and a boolean.
    pub always_apply: Option<Spanned<bool>>,
    /// Keys other than the three above, with their raw values.
    pub unknown: Vec<(Spanned<String>, Spanned<String>)>,
}

/// The ways `globs` is written in real files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobsShape {
    /// No `globs` key.
    #[default]
    Missing,
    /// `globs:` with nothing after it.
    Empty,
    /// `globs: *.py, src/**/*.ts` (Cursor's own form; also a single glob).
    CommaList,
    /// `globs: "*.py, *.ts"` or `globs: '*.py'`.
    Quoted,
    /// `globs: ["*.py", "*.ts"]`.
    Bracketed,
    /// `globs:` followed by `- pattern` lines.
    YamlList,
}

/// Parse the front matter at the start of `text`. Returns it, the byte offset where the body
/// starts, and the problems found.
pub fn parse_front_matter(text: &str) -> (FrontMatter, usize, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut fm = FrontMatter::default();
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let lines = split_lines(&text[start..], start);
    let Some(first) = lines.first() else {
        return (fm, start, issues);
    };
    if first.raw.trim_end() != "---" {
        return (fm, start, issues);
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| l.raw.trim_end() == "---")
        .map(|i| i + 1);
    let (end_line, body_start) = match close {
        Some(i) => (i, lines.get(i + 1).map_or(text.len(), |l| l.start)),
        None => {
            // Unterminated: take the lines that look like front matter, the rest is body.
            let mut i = 1;
            while let Some(l) = lines.get(i) {
                let c = l.raw.trim();
                if c.is_empty() || !(key_of(l.raw).is_some() || l.indent > 0 || c.starts_with("- "))
                {
                    break;
                }
                i += 1;
            }
            issues.push(Issue::new(
                Kind::FrontMatterSyntax,
                span(first.start, first.end()),
                "front matter is not closed by a `---` line",
            ));
            (i, lines.get(i).map_or(text.len(), |l| l.start))
        }
    };
    let end = lines.get(end_line).map_or(text.len(), |l| l.end());
    fm.span = Some(span(first.start, end));
    let mut seen: Vec<String> = Vec::new();
    let mut i = 1;
    while i < end_line {
        let line = lines[i];
        i += 1;
        let content = line.raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((key, value_col)) = key_of(line.raw) else {
            issues.push(Issue::new(
                Kind::FrontMatterSyntax,
                span(line.content_start(), line.end()),
                "expected `key: value` in the front matter",
            ));
            continue;
        };
        // Continuation lines: more indented, or `- item` lines right under the key.
        let mut cont: Vec<SourceLine<'_>> = Vec::new();
        while i < end_line {
            let next = lines[i];
            let c = next.raw.trim();
            if c.is_empty() || next.indent > 0 || c.starts_with("- ") || c == "-" {
                cont.push(next);
                i += 1;
            } else {
                break;
            }
        }
        while cont.last().is_some_and(|l| l.raw.trim().is_empty()) {
            cont.pop();
        }
        let key_span = span(
            line.start + line.indent,
            line.start + line.indent + key.len(),
        );
        if seen.iter().any(|k| k == key) {
            issues.push(Issue::new(
                Kind::FrontMatterSyntax,
                key_span,
                format!("`{key}` appears more than once; the last value wins"),
            ));
        }
        seen.push(key.to_owned());
        let raw_value = &line.raw[value_col..];
        let lead = raw_value.len() - raw_value.trim_start().len();
        let value = raw_value.trim();
        let value_at = line.start + value_col + lead;
        match key {
            "description" => read_description(&mut fm, &mut issues, value, value_at, &cont),
            "globs" => read_globs(&mut fm, &mut issues, value, value_at, &cont),
            "alwaysApply" => {
                let lowered = value.to_ascii_lowercase();
                let value_span = span(value_at, value_at + value.len());
                match lowered.trim_matches(['"', '\'']) {
                    "true" => fm.always_apply = Some(Spanned::new(true, value_span)),
                    "false" => fm.always_apply = Some(Spanned::new(false, value_span)),
                    "" => issues.push(
                        Issue::new(Kind::MissingField, key_span, "`alwaysApply` has no value")
                            .with_help("write `alwaysApply: true` or `alwaysApply: false`"),
                    ),
                    _ => issues.push(
                        Issue::new(
                            Kind::FrontMatterSyntax,
                            value_span,
                            format!("`alwaysApply` must be `true` or `false`, not `{value}`"),
                        )
                        .with_help("Cursor treats anything else as `false`"),
                    ),
                }
            }
            _ => {
                let (help, kind) = match strsim_best(key) {
                    Some(best) => (format!("did you mean `{best}`?"), Kind::UnknownKey),
                    None => (
                        "Cursor reads only `description`, `globs` and `alwaysApply`".to_owned(),
                        Kind::UnknownKey,
                    ),
                };
                issues.push(
                    Issue::new(kind, key_span, format!("unknown front matter key `{key}`"))
                        .with_help(help),
                );
                let end = cont.last().map_or(value_at + value.len(), |l| l.end());
                fm.unknown.push((
                    Spanned::new(key.to_owned(), key_span),
                    Spanned::new(
                        text[value_at..end.max(value_at)].to_owned(),
                        span(value_at, end),
                    ),
                ));
            }
        }
    }
    (fm, body_start, issues)
}

fn strsim_best(key: &str) -> Option<&'static str> {
    ["description", "globs", "alwaysApply"]
        .into_iter()
        .map(|k| {
            (
                k,
                strsim::jaro_winkler(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()),
            )
        })
        .filter(|(_, s)| *s > 0.85)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// `key` and the column just past its `:` when the line is `key: …` at column 0.
fn key_of(raw: &str) -> Option<(&str, usize)> {
    if raw.starts_with([' ', '\t', '-', '#']) {
        return None;
    }
    let colon = raw.find(':')?;
    let key = &raw[..colon];
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    valid.then_some((key, colon + 1))
}

fn span(start: usize, end: usize) -> SourceSpan {
    SourceSpan::from((start, end.saturating_sub(start)))
}

fn read_description(
    fm: &mut FrontMatter,
    issues: &mut Vec<Issue>,
    value: &str,
    at: usize,
    cont: &[SourceLine<'_>],
) {
    let block = value.starts_with('|') || value.starts_with('>');
    let mut text = if block { String::new() } else { unquote(value) };
    for line in cont {
        let c = line.raw.trim();
        if !text.is_empty() {
            text.push(if block && value.starts_with('|') {
                '\n'
            } else {
                ' '
            });
        }
        text.push_str(c);
    }
    let end = cont.last().map_or(at + value.len(), |l| l.end());
    let whole = span(at, end);
    if block || !cont.is_empty() {
        issues.push(
            Issue::new(
                Kind::MultilineDescription,
                whole,
                "the description spans several lines",
            )
            .with_help("Cursor reads only the first line; keep the description on one line"),
        );
    }
    fm.description = Some(Spanned::new(text.trim().to_owned(), whole));
}

fn read_globs(
    fm: &mut FrontMatter,
    issues: &mut Vec<Issue>,
    value: &str,
    at: usize,
    cont: &[SourceLine<'_>],
) {
    fm.globs.clear();
    if value.is_empty() && cont.is_empty() {
        fm.globs_shape = GlobsShape::Empty;
        fm.globs_span = Some(span(at, at));
        return;
    }
    if value.is_empty() {
        fm.globs_shape = GlobsShape::YamlList;
        for line in cont {
            let c = line.content();
            let Some(item) = c.strip_prefix('-') else {
                issues.push(Issue::new(
                    Kind::FrontMatterSyntax,
                    span(line.content_start(), line.end()),
                    "expected `- pattern` in the `globs` list",
                ));
                continue;
            };
            let trimmed = item.trim();
            if trimmed.is_empty() {
                continue;
            }
            let item_at = line.content_start() + 1 + (item.len() - item.trim_start().len());
            push_glob(fm, issues, trimmed, item_at, true);
        }
        fm.globs_span = Some(span(
            cont.first().map_or(at, |l| l.content_start()),
            cont.last().map_or(at, |l| l.end()),
        ));
        return;
    }
    let whole = span(at, at + value.len());
    fm.globs_span = Some(whole);
    if !cont.is_empty() {
        issues.push(Issue::new(
            Kind::FrontMatterSyntax,
            span(at, cont.last().map_or(at, |l| l.end())),
            "`globs` continues on the next line; Cursor reads one line",
        ));
    }
    if let Some(inner) = value.strip_prefix('[') {
        fm.globs_shape = GlobsShape::Bracketed;
        let Some(inner) = inner.strip_suffix(']') else {
            issues.push(Issue::new(
                Kind::FrontMatterSyntax,
                whole,
                "`[` in `globs` is not closed",
            ));
            return;
        };
        issues.push(
            Issue::new(Kind::QuotedGlobs, whole, "`globs` is written as a bracketed list")
                .with_help("Cursor expects a comma-separated list without brackets or quotes: `globs: *.ts, src/**/*.tsx`"),
        );
        for (offset, part) in split_flow(inner) {
            let trimmed = part.trim();
            if !trimmed.is_empty() {
                let lead = part.len() - part.trim_start().len();
                push_glob(fm, issues, trimmed, at + 1 + offset + lead, true);
            }
        }
        return;
    }
    let quoted = (value.starts_with('"') && value.ends_with('"')
        || value.starts_with('\'') && value.ends_with('\''))
        && value.len() >= 2;
    if quoted {
        fm.globs_shape = GlobsShape::Quoted;
        issues.push(
            Issue::new(Kind::QuotedGlobs, whole, "`globs` is quoted").with_help(
                "Cursor expects a comma-separated list without quotes: `globs: *.ts, src/**/*.tsx`",
            ),
        );
        let inner = &value[1..value.len() - 1];
        for (offset, part) in split_commas(inner) {
            let trimmed = part.trim();
            if !trimmed.is_empty() {
                let lead = part.len() - part.trim_start().len();
                push_glob(fm, issues, trimmed, at + 1 + offset + lead, false);
            }
        }
        return;
    }
    fm.globs_shape = GlobsShape::CommaList;
    for (offset, part) in split_commas(value) {
        let trimmed = part.trim();
        if !trimmed.is_empty() {
            let lead = part.len() - part.trim_start().len();
            push_glob(fm, issues, trimmed, at + offset + lead, false);
        }
    }
}

fn push_glob(
    fm: &mut FrontMatter,
    issues: &mut Vec<Issue>,
    raw: &str,
    at: usize,
    may_be_quoted: bool,
) {
    let value = if may_be_quoted {
        unquote(raw)
    } else {
        raw.to_owned()
    };
    let s = span(at, at + raw.len());
    if value.is_empty() {
        issues.push(Issue::new(Kind::BadGlob, s, "empty glob"));
        return;
    }
    fm.globs.push(Spanned::new(value, s));
}

/// Split a comma-separated glob list at commas outside `{…}` and `[…]`, so brace sets such
/// as `src/**/*.{ts,tsx}` stay whole.
pub(crate) fn split_commas(text: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                parts.push((start, &text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push((start, &text[start..]));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(text: &str) -> (Vec<String>, GlobsShape, Vec<Kind>) {
        let (fm, _, issues) = parse_front_matter(text);
        let spans_ok = fm.globs.iter().all(|g| {
            let raw = &text[g.span.offset()..g.span.offset() + g.span.len()];
            raw.contains(g.value.as_str())
        });
        assert!(spans_ok, "glob spans must cover their text: {:?}", fm.globs);
        (
            fm.globs.into_iter().map(|g| g.value).collect(),
            fm.globs_shape,
            issues.into_iter().map(|i| i.kind).collect(),
        )
    }

    macro_rules! globs_test {
        ($name:ident, $input:expr, $expected:expr, $shape:expr, $kinds:expr) => {
            #[test]
            fn $name() {
                let (g, shape, kinds) = globs(concat!("---\n", $input, "\n---\nbody\n"));
                let expected: Vec<&str> = $expected;
                assert_eq!(g, expected);
                assert_eq!(shape, $shape);
                let want: Vec<Kind> = $kinds;
                assert_eq!(kinds, want);
            }
        };
    }

    globs_test!(globs_empty, "globs:", vec![], GlobsShape::Empty, vec![]);
    globs_test!(
        globs_star,
        "globs: **/*",
        vec!["**/*"],
        GlobsShape::CommaList,
        vec![]
    );
    globs_test!(
        globs_comma_list,
        "globs: *.py, pyproject.toml,Makefile",
        vec!["*.py", "pyproject.toml", "Makefile"],
        GlobsShape::CommaList,
        vec![]
    );
    globs_test!(
        globs_brace_set_not_split,
        "globs: src/**/*.{ts,tsx}, !dist/**, /root.md",
        vec!["src/**/*.{ts,tsx}", "!dist/**", "/root.md"],
        GlobsShape::CommaList,
        vec![]
    );
    globs_test!(
        globs_quoted,
        "globs: \"*.py, *.ts\"",
        vec!["*.py", "*.ts"],
        GlobsShape::Quoted,
        vec![Kind::QuotedGlobs]
    );
    globs_test!(
        globs_bracketed,
        "globs: [\"**/*.py\", 'a.{x,y}']",
        vec!["**/*.py", "a.{x,y}"],
        GlobsShape::Bracketed,
        vec![Kind::QuotedGlobs]
    );
    globs_test!(
        globs_yaml_list,
        "globs:\n  - \"*.py\"\n  - src/**",
        vec!["*.py", "src/**"],
        GlobsShape::YamlList,
        vec![]
    );

    #[test]
    fn empty_values_and_missing_always_apply() {
        let text = "---\ndescription:\nglobs:\n---\n# Title\n";
        let (fm, body, issues) = parse_front_matter(text);
        assert_eq!(fm.description.as_ref().map(|d| d.value.as_str()), Some(""));
        assert!(fm.globs.is_empty());
        assert_eq!(fm.always_apply, None);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(&text[body..], "# Title\n");
    }

    #[test]
    fn crlf_and_bom() {
        let text = "\u{feff}---\r\ndescription: \"Quoted\"\r\nalwaysApply: TRUE\r\n---\r\nbody";
        let (fm, body, issues) = parse_front_matter(text);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(fm.description.map(|d| d.value), Some("Quoted".to_owned()));
        assert_eq!(fm.always_apply.map(|a| a.value), Some(true));
        assert_eq!(&text[body..], "body");
    }

    #[test]
    fn no_front_matter() {
        let (fm, body, issues) = parse_front_matter("# Just markdown\n---\n");
        assert_eq!(fm.span, None);
        assert_eq!(body, 0);
        assert!(issues.is_empty());
    }

    #[test]
    fn unterminated_front_matter_is_an_error_and_body_still_found() {
        let text = "---\ndescription: x\n\n# Body\n";
        let (fm, body, issues) = parse_front_matter(text);
        assert_eq!(fm.description.map(|d| d.value), Some("x".to_owned()));
        assert_eq!(
            issues.iter().map(|i| i.kind).collect::<Vec<_>>(),
            vec![Kind::FrontMatterSyntax]
        );
        assert_eq!(&text[body..], "\n# Body\n");
    }

    #[test]
    fn unknown_keys_kept_and_reported() {
        let text = "---\ndescripton: typo\nowner: me\n---\n";
        let (fm, _, issues) = parse_front_matter(text);
        assert_eq!(fm.unknown.len(), 2);
        assert_eq!(fm.unknown[1].1.value, "me");
        assert_eq!(
            issues[0].help.as_deref(),
            Some("did you mean `description`?")
        );
        assert_eq!(issues[1].kind, Kind::UnknownKey);
    }

    #[test]
    fn multiline_description_and_bad_bool() {
        let text = "---\ndescription: >\n  one\n  two\nalwaysApply: yes\n---\n";
        let (fm, _, issues) = parse_front_matter(text);
        assert_eq!(fm.description.map(|d| d.value), Some("one two".to_owned()));
        let kinds: Vec<Kind> = issues.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::MultilineDescription, Kind::FrontMatterSyntax]
        );
    }
}
