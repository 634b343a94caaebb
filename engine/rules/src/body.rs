//! The Markdown body of a rule file: `<rule>` blocks, `@file` references, HTML comments.
//!
//! In: the file's text and the offset where the body starts. Out: a [`Body`] and the
//! [`Issue`]s found on the way (unclosed `<rule>`, YAML errors inside a block, missing
//! required fields). Invariants: `<rule>` blocks inside code fences or `<example>` tags are
//! examples and are never returned; every span points into the file; never panics.

use miette::SourceSpan;

use super::known_types::{
    ACTION_KEYS, ACTION_TYPES, CONDITION_KEYS, FILTER_KEYS, FILTER_TYPES, OPTION_KEYS, RULE_KEYS,
    closest, listed,
};
use super::{
    pattern::PatternOptions,
    rule_diagnostic::{Issue, Kind, Severity},
    yaml_node::{SourceLine, YamlNode, YamlValue, parse_yaml, split_lines},
};
use clab_model::source::Spanned;

/// The body of a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// From the end of the front matter to the end of the file.
    pub span: SourceSpan,
    /// The `<rule>` blocks, in file order.
    pub rules: Vec<RuleBlock>,
    /// `@path` and `[text](mdc:path)` references outside code.
    pub references: Vec<FileRef>,
    /// HTML comments outside code: `<!-- … -->`.
    pub comments: Vec<SourceSpan>,
}

/// One `<rule>…</rule>` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleBlock {
    /// From `<rule>` to the end of `</rule>` (or of the file, if unclosed).
    pub span: SourceSpan,
    /// The `<rule>` tag itself, for diagnostics about the whole block.
    pub tag: SourceSpan,
    /// `name:`.
    pub name: Option<Spanned<String>>,
    /// `description:`.
    pub description: Option<Spanned<String>>,
    /// `extends:`, the name of the rule whose filters and actions this one takes before its
    /// own.
    pub extends: Option<Spanned<String>>,
    /// `version:` (else `metadata:`'s `version:`), read as semver; `1.0` and `1` read as
    /// `1.0.0`. `None` when absent or unreadable (a `bad_version` warning).
    pub version: Option<Spanned<semver::Version>>,
    /// `filters:`, in order.
    pub filters: Vec<Filter>,
    /// `actions:`, in order.
    pub actions: Vec<Action>,
    /// `examples:`, kept as read.
    pub examples: Option<YamlNode>,
    /// `metadata:`, kept as read.
    pub metadata: Option<YamlNode>,
}

/// A `filters:` entry: which files (or events) the rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The whole entry.
    pub span: SourceSpan,
    /// `type:` (`file_extension`, `file_path`, `path`, `file_name`, `content`, `event`, …).
    pub kind: Option<Spanned<String>>,
    /// `pattern:`, a regex.
    pub pattern: Option<Spanned<String>>,
    /// `options:` (`case_insensitive`, `multiline`, `whole_word`), applied to `pattern`.
    pub options: PatternOptions,
}

/// An `actions:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The whole entry.
    pub span: SourceSpan,
    /// `type:` (`reject`, `suggest`, `warn`).
    pub kind: Option<Spanned<String>>,
    /// `message:`.
    pub message: Option<Spanned<String>>,
    /// `conditions:`, each a regex searched line by line.
    pub conditions: Vec<Condition>,
}

/// One `conditions:` entry of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The whole entry.
    pub span: SourceSpan,
    /// `pattern:`, a regex.
    pub pattern: Option<Spanned<String>>,
    /// `message:`, shown for each match.
    pub message: Option<Spanned<String>>,
}

/// A reference from the body to another file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// The referenced path as written (without `@` or `mdc:`).
    pub path: Spanned<String>,
    /// How it was written.
    pub style: RefStyle,
}

/// How a [`FileRef`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefStyle {
    /// `@path/to/file.md`.
    At,
    /// `[text](mdc:path/to/file.md)`, as Cursor's editor rewrites links.
    MdcLink,
}

/// Extensions that make an `@word` a file reference rather than a decorator (`@pytest.fixture`)
/// or a package scope (`@types/node`).
const FILE_EXTENSIONS: &[&str] = &[
    "md", "mdc", "mdx", "txt", "rst", "py", "pyi", "ipynb", "ts", "tsx", "js", "jsx", "mjs", "cjs",
    "json", "jsonc", "json5", "toml", "yaml", "yml", "ini", "cfg", "conf", "lock", "rs", "go",
    "rb", "java", "kt", "swift", "c", "h", "cc", "cpp", "hpp", "cs", "php", "css", "scss", "html",
    "vue", "svelte", "sql", "sh", "bash", "zsh", "dart", "lua", "xml", "csv", "env", "mk", "tf",
    "proto", "graphql", "prisma",
];

/// Parse the body that starts at `start`.
pub fn parse_body(text: &str, start: usize) -> (Body, Vec<Issue>) {
    let start = start.min(text.len());
    let lines = split_lines(&text[start..], start);
    let mut body = Body {
        span: SourceSpan::from((start, text.len() - start)),
        rules: Vec::new(),
        references: Vec::new(),
        comments: Vec::new(),
    };
    let mut issues = Vec::new();
    let mut fence: Option<(u8, usize)> = None;
    let mut example_depth = 0usize;
    let mut skip_until = 0usize;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let content = line.content().trim_end();
        if let Some((ch, len)) = fence {
            if fence_run(content)
                .is_some_and(|(c, n, rest)| c == ch && n >= len && rest.trim().is_empty())
            {
                fence = None;
            }
            continue;
        }
        if let Some((c, n, _)) = fence_run(content) {
            fence = Some((c, n));
            continue;
        }
        // Block-level `<example>` tags only: `test_<example>.py` in prose opens nothing.
        let opens = usize::from(
            content.starts_with("<example>")
                || content.starts_with("<example ")
                || content.starts_with("<examples>"),
        );
        let closes = content.matches("</example>").count() + content.matches("</examples>").count();
        if opens > 0 || closes > 0 || example_depth > 0 {
            example_depth = (example_depth + opens).saturating_sub(closes);
            continue;
        }
        if content.starts_with("<rule>") {
            let (block, next) = read_rule(text, &lines, i - 1, &mut issues);
            body.rules.push(block);
            i = next;
            continue;
        }
        if line.start < skip_until {
            continue;
        }
        let code = inline_code(line.raw);
        scan_refs(&line, &code, &mut body.references);
        let mut from = 0;
        while let Some(pos) = line.raw[from..].find("<!--") {
            let at = from + pos;
            if in_ranges(&code, at) {
                from = at + 4;
                continue;
            }
            let abs = line.start + at;
            let end = text[abs + 4..]
                .find("-->")
                .map_or(text.len(), |e| abs + 4 + e + 3);
            body.comments.push(SourceSpan::from((abs, end - abs)));
            skip_until = end;
            if end > line.end() {
                break;
            }
            from = end - line.start;
        }
    }
    (body, issues)
}

/// A fence opener/closer: the fence character, the run length and the rest of the line.
fn fence_run(content: &str) -> Option<(u8, usize, &str)> {
    let c = *content.as_bytes().first()?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let n = content.bytes().take_while(|&b| b == c).count();
    (n >= 3).then(|| (c, n, &content[n..]))
}

/// Byte ranges of inline code spans (`` `x` ``) in a line.
fn inline_code(raw: &str) -> Vec<(usize, usize)> {
    let bytes = raw.as_bytes();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let n = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        let mut j = i + n;
        let mut closed = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let m = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if m == n {
                    closed = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                ranges.push((i, end));
                i = end;
            }
            None => i += n,
        }
    }
    ranges
}

fn in_ranges(ranges: &[(usize, usize)], at: usize) -> bool {
    ranges.iter().any(|&(s, e)| at >= s && at < e)
}

fn scan_refs(line: &SourceLine<'_>, code: &[(usize, usize)], refs: &mut Vec<FileRef>) {
    let raw = line.raw;
    let bytes = raw.as_bytes();
    for (at, _) in raw.match_indices('@') {
        if in_ranges(code, at) {
            continue;
        }
        let prev_ok = at == 0
            || matches!(
                bytes[at - 1],
                b' ' | b'\t' | b'(' | b'[' | b'"' | b'\'' | b'*' | b'>'
            );
        if !prev_ok {
            continue;
        }
        let token_len = raw[at + 1..]
            .bytes()
            .take_while(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-' | b'~')
            })
            .count();
        let token = raw[at + 1..at + 1 + token_len].trim_end_matches(['.', '-', '/']);
        if is_file_like(token) {
            let start = line.start + at;
            refs.push(FileRef {
                path: Spanned::new(token.to_owned(), SourceSpan::from((start, token.len() + 1))),
                style: RefStyle::At,
            });
        }
    }
    for (at, _) in raw.match_indices("](mdc:") {
        if in_ranges(code, at) {
            continue;
        }
        let target_at = at + 6;
        let Some(len) = raw[target_at..].find(')') else {
            continue;
        };
        let target = &raw[target_at..target_at + len];
        let target = target.split(['#', ' ']).next().unwrap_or("");
        // URLs rewritten by the editor (`mdc:https://…`) are not files.
        let scheme = target
            .find(':')
            .is_some_and(|c| target[..c].chars().all(|ch| ch.is_ascii_alphabetic()));
        if target.is_empty() || scheme {
            continue;
        }
        let start = line.start + target_at;
        refs.push(FileRef {
            path: Spanned::new(target.to_owned(), SourceSpan::from((start, target.len()))),
            style: RefStyle::MdcLink,
        });
    }
}

fn is_file_like(token: &str) -> bool {
    let name = token.rsplit('/').next().unwrap_or(token);
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    // `@Next.js` and `@Vue.js` are Cursor's documentation references, not files.
    let product =
        !token.contains('/') && ext == "js" && stem.starts_with(|c: char| c.is_ascii_uppercase());
    !stem.is_empty() && !product && FILE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
}

/// Read the `<rule>` block opening at line `open`; returns it and the index of the first line
/// after it.
fn read_rule(
    text: &str,
    lines: &[SourceLine<'_>],
    open: usize,
    issues: &mut Vec<Issue>,
) -> (RuleBlock, usize) {
    let tag_line = lines[open];
    let tag = SourceSpan::from((tag_line.content_start(), "<rule>".len()));
    // The closing tag is the first `</rule>` not indented deeper than `<rule>`: rule
    // generators quote whole rules, tags included, inside indented block scalars.
    let mut close = None;
    let mut next_rule = None;
    for (j, line) in lines.iter().enumerate().skip(open + 1) {
        if line.indent > tag_line.indent {
            continue;
        }
        let c = line.content();
        if c.starts_with("</rule>") {
            close = Some(j);
            break;
        }
        if c.starts_with("<rule>") {
            next_rule = Some(j);
            break;
        }
    }
    let content_start = lines.get(open + 1).map_or(text.len(), |l| l.start);
    let (content_end, block_end, next) = match close {
        Some(j) => (
            lines[j].start,
            lines[j].content_start() + "</rule>".len(),
            j + 1,
        ),
        None => {
            issues.push(
                Issue::new(Kind::RuleSyntax, tag, "`<rule>` is not closed by `</rule>`")
                    .with_help("the block is read up to the next `<rule>` or the end of the file"),
            );
            let end = next_rule.map_or(text.len(), |j| lines[j].start);
            (end, end, next_rule.unwrap_or(lines.len()))
        }
    };
    let content_end = content_end.max(content_start);
    let (node, errors) = parse_yaml(&text[content_start..content_end], content_start);
    let mut block = RuleBlock {
        span: SourceSpan::from((tag.offset(), block_end.saturating_sub(tag.offset()))),
        tag,
        name: None,
        description: None,
        extends: None,
        version: None,
        filters: Vec::new(),
        actions: Vec::new(),
        examples: None,
        metadata: None,
    };
    // Tolerant fallback: a block with none of the structural keys is prose inside `<rule>`
    // tags. Cursor passes it to the model as text, which is fine; clab compiles nothing.
    let structured = ["name", "filters", "actions"]
        .iter()
        .any(|k| node.get(k).is_some());
    if !structured {
        issues.push(
            Issue::new(
                Kind::RuleSyntax,
                tag,
                "the `<rule>` block is prose, not yaml; clab compiles no check from it",
            )
            .with_help("a check needs `name:`, `filters:` and `actions:` keys")
            .with_severity(Severity::Warning),
        );
        return (block, next);
    }
    // One diagnostic per block: a block that stops being YAML (prose pasted inside `<rule>`)
    // would otherwise report every following line.
    if let Some(first) = errors.first() {
        let more = match errors.len() - 1 {
            0 => String::new(),
            1 => " (and 1 more line that does not read as yaml)".to_owned(),
            n => format!(" (and {n} more lines that do not read as yaml)"),
        };
        issues.push(
            Issue::new(Kind::RuleSyntax, first.span, format!("in `<rule>`: {}{more}", first.message))
                .with_help("the content of a `<rule>` block is yaml: `key: value` lines, `- ` lists, `|` blocks"),
        );
    }
    check_keys(&node, RULE_KEYS, "the `<rule>` block", issues);
    block.name = scalar(node.get("name"), "name", issues);
    block.description = scalar(node.get("description"), "description", issues);
    block.extends = scalar(node.get("extends"), "extends", issues);
    if let Some(extends) = block.extends.as_ref().filter(|e| e.value.trim().is_empty()) {
        issues.push(Issue::new(
            Kind::MissingField,
            extends.span,
            "the rule's `extends` is empty",
        ));
        block.extends = None;
    }
    block.examples = node.get("examples").cloned();
    block.metadata = node.get("metadata").cloned();
    let version = node.get("version").or_else(|| {
        block
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get("version"))
    });
    block.version = scalar(version, "version", issues).and_then(|v| {
        let parsed = parse_version(&v.value);
        if parsed.is_none() {
            issues.push(
                Issue::new(
                    Kind::BadVersion,
                    v.span,
                    format!("`{}` is not a version", v.value.trim()),
                )
                .with_help(
                    "write `MAJOR.MINOR.PATCH` (semver, `1.2.0`); `1.0` and `1` read as `1.0.0`",
                ),
            );
        }
        parsed.map(|p| Spanned::new(p, v.span))
    });
    match block.name.as_ref() {
        None => issues.push(Issue::new(
            Kind::MissingField,
            tag,
            "the rule has no `name`",
        )),
        Some(n) if n.value.trim().is_empty() => {
            issues.push(Issue::new(
                Kind::MissingField,
                n.span,
                "the rule's `name` is empty",
            ));
        }
        Some(_) => {}
    }
    for item in node.get("filters").map(YamlNode::items).unwrap_or_default() {
        let mut filter = Filter {
            span: item.span,
            kind: scalar(item.get("type"), "type", issues),
            pattern: scalar(item.get("pattern"), "pattern", issues),
            options: PatternOptions::default(),
        };
        if !matches!(item.value, YamlValue::Map(_)) {
            issues.push(Issue::new(
                Kind::RuleSyntax,
                item.span,
                "a filter must be `type:` and `pattern:`",
            ));
            continue;
        }
        require(&filter.kind, item.span, "the filter has no `type`", issues);
        // Only the filter types clab knows need a pattern; it ignores the others anyway.
        let known = filter
            .kind
            .as_ref()
            .is_some_and(|k| FILTER_TYPES.contains(&k.value.as_str()));
        // The keys and options of a filter type of the author's own are the author's too.
        if known {
            require(
                &filter.pattern,
                item.span,
                "the filter has no `pattern`",
                issues,
            );
            check_keys(item, FILTER_KEYS, "a filter", issues);
            filter.options = read_options(item.get("options"), issues);
        }
        block.filters.push(filter);
    }
    for item in node.get("actions").map(YamlNode::items).unwrap_or_default() {
        if !matches!(item.value, YamlValue::Map(_)) {
            issues.push(Issue::new(
                Kind::RuleSyntax,
                item.span,
                "an action must be a mapping with `type:`",
            ));
            continue;
        }
        let mut action = Action {
            span: item.span,
            kind: scalar(item.get("type"), "type", issues),
            message: scalar(item.get("message"), "message", issues),
            conditions: Vec::new(),
        };
        require(&action.kind, item.span, "the action has no `type`", issues);
        let known = action
            .kind
            .as_ref()
            .is_some_and(|k| ACTION_TYPES.contains(&k.value.as_str()));
        if known {
            check_keys(item, ACTION_KEYS, "an action", issues);
        }
        for cond in item
            .get("conditions")
            .map(YamlNode::items)
            .unwrap_or_default()
        {
            if !matches!(cond.value, YamlValue::Map(_)) {
                issues.push(Issue::new(
                    Kind::RuleSyntax,
                    cond.span,
                    "a condition must be `pattern:` and `message:`",
                ));
                continue;
            }
            let condition = Condition {
                span: cond.span,
                pattern: scalar(cond.get("pattern"), "pattern", issues),
                message: scalar(cond.get("message"), "message", issues),
            };
            require(
                &condition.pattern,
                cond.span,
                "the condition has no `pattern`",
                issues,
            );
            if known {
                check_keys(cond, CONDITION_KEYS, "a condition", issues);
            }
            action.conditions.push(condition);
        }
        block.actions.push(action);
    }
    (block, next)
}

/// Warn about each key of the mapping `node` that is not in `known` (a typo gets a "did
/// you mean"); `what` names the mapping in the message.
fn check_keys(node: &YamlNode, known: &[&str], what: &str, issues: &mut Vec<Issue>) {
    let YamlValue::Map(entries) = &node.value else {
        return;
    };
    for (key, _) in entries {
        if known.contains(&key.value.as_str()) {
            continue;
        }
        let help = match closest(&key.value, known) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("known keys: {}", listed(known)),
        };
        issues.push(
            Issue::new(
                Kind::UnknownKey,
                key.span,
                format!("unknown key `{}` in {what}; clab ignores it", key.value),
            )
            .with_help(help),
        );
    }
}

/// A filter's `options:`, as a mapping (`case_insensitive: true`), a list of the options
/// that are on (`[case_insensitive, whole_word]`, also as `- name` lines), or the same
/// written inline (`{case_insensitive: true}`, which the YAML reader keeps as text).
fn read_options(node: Option<&YamlNode>, issues: &mut Vec<Issue>) -> PatternOptions {
    let mut options = PatternOptions::default();
    let Some(node) = node else {
        return options;
    };
    let mut set = |name: &str, span: SourceSpan, value: Option<&str>, issues: &mut Vec<Issue>| {
        let on = match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "no" | "off") => false,
            Some(_) => {
                issues.push(Issue::new(
                    Kind::RuleSyntax,
                    span,
                    format!("option `{name}` must be `true` or `false`"),
                ));
                return;
            }
        };
        match name {
            "case_insensitive" => options.case_insensitive = on,
            "multiline" => options.multiline = on,
            "whole_word" => options.whole_word = on,
            _ => {
                let help = match closest(name, OPTION_KEYS) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("known options: {}", listed(OPTION_KEYS)),
                };
                issues.push(
                    Issue::new(
                        Kind::UnknownKey,
                        span,
                        format!("unknown filter option `{name}`; clab ignores it"),
                    )
                    .with_help(help),
                );
            }
        }
    };
    match &node.value {
        YamlValue::Null => {}
        YamlValue::Map(entries) => {
            for (key, value) in entries {
                match &value.value {
                    YamlValue::Scalar(v) => set(&key.value, key.span, Some(v), issues),
                    YamlValue::Null => set(&key.value, key.span, Some(""), issues),
                    _ => set(&key.value, value.span, Some("(not a value)"), issues),
                }
            }
        }
        YamlValue::Seq(items) => {
            for item in items {
                match &item.value {
                    YamlValue::Scalar(name) => set(name.trim(), item.span, None, issues),
                    _ => issues.push(Issue::new(
                        Kind::RuleSyntax,
                        item.span,
                        "an option is a name (`case_insensitive`)",
                    )),
                }
            }
        }
        YamlValue::Scalar(text) => {
            // Offsets inside a plain scalar are offsets in the file; a quoted one only has
            // its whole span.
            let exact = node.span.len() == text.len();
            let inner = text
                .trim()
                .trim_start_matches(['{', '['])
                .trim_end_matches(['}', ']']);
            let inner_at = text.find(inner).unwrap_or(0);
            for (at, part) in super::yaml_node::split_flow(inner) {
                let lead = part.len() - part.trim_start().len();
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let (name, value) = match part.split_once(':') {
                    Some((name, value)) => (name.trim(), Some(value.trim())),
                    None => (part, None),
                };
                let span = if exact {
                    SourceSpan::from((node.span.offset() + inner_at + at + lead, name.len()))
                } else {
                    node.span
                };
                set(name, span, value, issues);
            }
        }
    }
    options
}

/// A version as semver, forgiving the forms rule authors write: `v1.2.3`, `1.0` and `1`.
fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    let parts: Vec<&str> = text.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric || parts.len() > 2 {
        return None;
    }
    let padded = format!("{text}{}", ".0".repeat(3 - parts.len()));
    semver::Version::parse(&padded).ok()
}

fn require(
    field: &Option<Spanned<String>>,
    whole: SourceSpan,
    message: &str,
    issues: &mut Vec<Issue>,
) {
    match field {
        None => issues.push(Issue::new(Kind::MissingField, whole, message)),
        Some(v) if v.value.trim().is_empty() => {
            issues.push(Issue::new(
                Kind::MissingField,
                v.span,
                message.replace("has no", "has an empty"),
            ));
        }
        Some(_) => {}
    }
}

fn scalar(node: Option<&YamlNode>, key: &str, issues: &mut Vec<Issue>) -> Option<Spanned<String>> {
    let node = node?;
    match &node.value {
        YamlValue::Scalar(s) => Some(Spanned::new(s.clone(), node.span)),
        YamlValue::Null => Some(Spanned::new(String::new(), node.span)),
        _ => {
            issues.push(Issue::new(
                Kind::RuleSyntax,
                node.span,
                format!("`{key}` must be a single value"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(issues: &[Issue]) -> Vec<Kind> {
        issues.iter().map(|i| i.kind).collect()
    }

    #[test]
    fn several_rules_and_spans() {
        let text = "# T\n<rule>\nname: a\nfilters:\n  - type: content\n    pattern: x\n</rule>\ntext\n<rule>\nname: b\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"y\"\n        message: m\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert!(issues.is_empty(), "{issues:?}");
        let names: Vec<_> = body
            .rules
            .iter()
            .filter_map(|r| r.name.as_ref())
            .map(|n| n.value.as_str())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        let p = body.rules[1].actions[0].conditions[0]
            .pattern
            .as_ref()
            .unwrap();
        assert_eq!(
            &text[p.span.offset()..p.span.offset() + p.span.len()],
            "\"y\""
        );
        let whole = body.rules[0].span;
        assert!(text[whole.offset()..whole.offset() + whole.len()].ends_with("</rule>"));
    }

    #[test]
    fn rules_in_code_fences_and_examples_are_not_compiled() {
        let text = "```\n<rule>\nname: fenced\n</rule>\n```\n<example>\n<rule>\nname: ex\n</rule>\n</example>\n~~~~md\n<rule>\n~~~~\n";
        let (body, issues) = parse_body(text, 0);
        assert!(body.rules.is_empty());
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn unclosed_rule_reads_to_end() {
        let text = "<rule>\nname: open\nactions:\n  - message: no type\n";
        let (body, issues) = parse_body(text, 0);
        assert_eq!(body.rules.len(), 1);
        assert_eq!(
            body.rules[0].name.as_ref().map(|n| n.value.as_str()),
            Some("open")
        );
        assert_eq!(kinds(&issues), vec![Kind::RuleSyntax, Kind::MissingField]);
        assert_eq!(issues[1].message, "the action has no `type`");
    }

    #[test]
    fn nested_rule_in_block_scalar_does_not_close_the_outer_one() {
        let text = "<rule>\nname: outer\nexamples:\n  - input: |\n      <rule>\n      name: inner\n      </rule>\n    output: ok\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(body.rules.len(), 1);
        assert!(body.rules[0].examples.is_some());
    }

    #[test]
    fn yaml_errors_inside_a_block() {
        let text = "<rule>\nname: x\nthis line is prose\nfilters:\n  - type: content\n    pattern: \"unclosed\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert_eq!(body.rules.len(), 1);
        assert_eq!(kinds(&issues), vec![Kind::RuleSyntax]);
        assert_eq!(
            issues[0].message,
            "in `<rule>`: expected `key: value` (and 1 more line that does not read as yaml)"
        );
        assert_eq!(body.rules[0].filters.len(), 1);
    }

    #[test]
    fn references_and_comments() {
        let text = "See @docs/a.md and @Next.js and @pytest.fixture, `@b.md`, x@y.md, [l](mdc:src/c.py), [u](mdc:https:/x.com/a.md).\n<!-- hidden\nmore -->\n```\n@d.md <!-- no -->\n```\n";
        let (body, _) = parse_body(text, 0);
        let refs: Vec<_> = body
            .references
            .iter()
            .map(|r| (r.path.value.as_str(), r.style))
            .collect();
        assert_eq!(
            refs,
            vec![("docs/a.md", RefStyle::At), ("src/c.py", RefStyle::MdcLink)]
        );
        let r = &body.references[0].path;
        assert_eq!(
            &text[r.span.offset()..r.span.offset() + r.span.len()],
            "@docs/a.md"
        );
        assert_eq!(body.comments.len(), 1);
        let c = body.comments[0];
        assert_eq!(
            &text[c.offset()..c.offset() + c.len()],
            "<!-- hidden\nmore -->"
        );
    }

    #[test]
    fn prose_block_is_a_warning_and_compiles_nothing() {
        let text =
            "<rule>\nJust prose here.\nNote: this line looks like yaml.\n  - and a list\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert_eq!(body.rules.len(), 1);
        assert_eq!(body.rules[0].name, None);
        assert_eq!(kinds(&issues), vec![Kind::RuleSyntax]);
        assert_eq!(issues[0].severity, Severity::Warning);
    }

    #[test]
    fn mdc_inside_rule_regexes_is_not_a_reference() {
        let text = "<rule>\nname: links\nactions:\n  - type: warn\n    conditions:\n      - pattern: \"\\\\]\\\\(mdc:[^)]+\\\\)\"\n        message: \"see [x](mdc:docs/x.md)\"\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert!(issues.is_empty(), "{issues:?}");
        assert!(body.references.is_empty());
        let p = body.rules[0].actions[0].conditions[0]
            .pattern
            .as_ref()
            .unwrap();
        assert_eq!(p.value, "\\]\\(mdc:[^)]+\\)");
    }

    fn options_of(filter_tail: &str) -> (PatternOptions, Vec<Issue>) {
        let text = format!(
            "<rule>\nname: o\nfilters:\n  - type: content\n    pattern: x\n{filter_tail}</rule>\n"
        );
        let (body, issues) = parse_body(&text, 0);
        (body.rules[0].filters[0].options, issues)
    }

    #[test]
    fn filter_options_in_every_shape() {
        let all = PatternOptions {
            case_insensitive: true,
            multiline: true,
            whole_word: true,
        };
        let shapes = [
            "    options:\n      case_insensitive: true\n      multiline: yes\n      whole_word: True\n",
            "    options: [case_insensitive, multiline, whole_word]\n",
            "    options:\n      - case_insensitive\n      - multiline\n      - whole_word\n",
            "    options: {case_insensitive: true, multiline: true, whole_word}\n",
            "    options: \"case_insensitive, multiline, whole_word\"\n",
        ];
        for shape in shapes {
            let (options, issues) = options_of(shape);
            assert_eq!(options, all, "{shape}");
            assert!(issues.is_empty(), "{shape}: {issues:?}");
        }
        let (options, issues) = options_of("    options:\n      case_insensitive: false\n");
        assert!(options.is_empty() && issues.is_empty());
        // A misspelt option is named at its own text, even inline.
        let text = "<rule>\nname: o\nfilters:\n  - type: content\n    pattern: x\n    options: {whole_wrd: true}\n</rule>\n";
        let (_, issues) = parse_body(text, 0);
        assert_eq!(kinds(&issues), [Kind::UnknownKey]);
        let span = issues[0].span;
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "whole_wrd"
        );
        assert_eq!(
            issues[0].help.as_deref(),
            Some("did you mean `whole_word`?")
        );
    }

    #[test]
    fn versions_read_as_semver() {
        let cases = [
            ("version: 1.2.3\n", Some("1.2.3")),
            ("version: v2.0.0-beta.1\n", Some("2.0.0-beta.1")),
            ("version: \"1.0\"\n", Some("1.0.0")),
            ("version: 3\n", Some("3.0.0")),
            ("metadata:\n  version: 1.0\n", Some("1.0.0")),
            ("version: 2.0.0\nmetadata:\n  version: 1.0\n", Some("2.0.0")),
            ("version: 1.x\n", None),
            ("version: 01.2.3\n", None),
            ("", None),
        ];
        for (lines, want) in cases {
            let text = format!("<rule>\nname: v\n{lines}</rule>\n");
            let (body, issues) = parse_body(&text, 0);
            let got = body.rules[0].version.as_ref().map(|v| v.value.to_string());
            assert_eq!(got.as_deref(), want, "{lines}");
            let warned = kinds(&issues) == [Kind::BadVersion];
            assert_eq!(
                warned,
                want.is_none() && !lines.is_empty(),
                "{lines}: {issues:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_warned_except_under_types_of_the_authors_own() {
        let text = "<rule>\nname: k\nowner: me\nfilters:\n  - type: content\n    pattern: x\n    flags: i\n  - type: file_size\n    max: 10\nactions:\n  - type: reject\n    severity: high\n    conditions:\n      - pattern: y\n        negated: true\n  - type: analyze\n    script: z\n</rule>\n";
        let (body, issues) = parse_body(text, 0);
        assert_eq!(body.rules[0].filters.len(), 2);
        let keys: Vec<&str> = issues
            .iter()
            .map(|i| &text[i.span.offset()..i.span.offset() + i.span.len()])
            .collect();
        assert_eq!(keys, ["owner", "flags", "severity", "negated"]);
        assert!(issues.iter().all(|i| i.severity == Severity::Warning));
    }

    #[test]
    fn extends_is_read_and_must_not_be_empty() {
        let (body, issues) = parse_body("<rule>\nname: c\nextends: base\n</rule>\n", 0);
        assert_eq!(
            body.rules[0].extends.as_ref().map(|e| e.value.as_str()),
            Some("base")
        );
        assert!(issues.is_empty());
        let (body, issues) = parse_body("<rule>\nname: c\nextends:\n</rule>\n", 0);
        assert_eq!(body.rules[0].extends, None);
        assert_eq!(kinds(&issues), [Kind::MissingField]);
    }
}
