//! `{{name}}` placeholders in commands, globs, paths and prompts.
//!
//! A placeholder is `{{` identifier `}}`, spaces allowed inside the braces. Anything else
//! between double braces (`{{ 1 + 1 }}`, `${{ matrix.os }}` in a shell line) is left as text,
//! so commands that happen to contain braces keep working.

use std::ops::Range;

/// The placeholders every task may use: `{{root}}`, and for `for-each` tasks the file ones.
pub const FOR_EACH: &[&str] = &["file", "stem", "dir", "name"];

/// One placeholder found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder<'a> {
    /// The identifier between the braces.
    pub name: &'a str,
    /// Byte range of the whole `{{…}}` in the template.
    pub range: Range<usize>,
}

/// Every placeholder in `template`, in order.
pub fn scan(template: &str) -> Vec<Placeholder<'_>> {
    let mut found = Vec::new();
    // Most templates have no brace at all: one byte search answers them.
    if !template.contains('{') {
        return found;
    }
    let mut from = 0;
    while let Some(open) = template[from..].find("{{").map(|i| i + from) {
        let Some(close) = template[open + 2..].find("}}").map(|i| i + open + 2) else {
            break;
        };
        let name = template[open + 2..close].trim();
        let is_ident = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if is_ident {
            found.push(Placeholder {
                name,
                range: open..close + 2,
            });
            from = close + 2;
        } else {
            from = open + 2;
        }
    }
    found
}

/// Replace each placeholder with `lookup(name)`; the first name it does not know is the error.
pub fn render<'t>(
    template: &'t str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Placeholder<'t>> {
    if !template.contains('{') {
        return Ok(template.to_owned());
    }
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for placeholder in scan(template) {
        let value = lookup(placeholder.name).ok_or_else(|| placeholder.clone())?;
        out.push_str(&template[last..placeholder.range.start]);
        out.push_str(&value);
        last = placeholder.range.end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "file" => Some("src/a.py".into()),
            "stem" => Some("a".into()),
            _ => None,
        }
    }

    #[test]
    fn renders_known_names() {
        assert_eq!(
            render("lint {{file}} > out/{{ stem }}.txt", vars).unwrap(),
            "lint src/a.py > out/a.txt"
        );
    }

    #[test]
    fn leaves_non_identifiers_alone() {
        assert_eq!(
            render("echo ${{ a.b }} {{}}", vars).unwrap(),
            "echo ${{ a.b }} {{}}"
        );
        assert_eq!(render("unclosed {{file", vars).unwrap(), "unclosed {{file");
    }

    #[test]
    fn reports_the_unknown_name_and_where() {
        let err = render("x {{nope}} y", vars).unwrap_err();
        assert_eq!(err.name, "nope");
        assert_eq!(err.range, 2..10);
    }
}
