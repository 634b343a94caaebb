//! [`Quoting`]: what the shell makes of the text at a placeholder in a command line, and
//! rendering placeholders so that a value is data, never code (issue 18).
//!
//! In: a command template as tasks.kdl writes it (`wc -c "{{file}}"`) and the values of its
//! placeholders. Out: the line `sh -c` runs.
//!
//! The rule (docs/tasks-kdl.md, "Placeholders in commands"):
//!
//! - A *plain* value — letters, digits and `_ - . / + , : @ %` only ([`is_plain`]) — is
//!   pasted as it is: no shell, and no language a command may embed, gives those characters
//!   a meaning, so `cat {{file}}` stays `cat src/a.py`, and its cache key what it was.
//! - Any other value never enters the line. It is passed in an environment variable
//!   (`CLAB_FILE`, `CLAB_STEM`, `CLAB_DIR`, `CLAB_NAME`, `CLAB_ROOT`, `CLAB_OUTPUT`), and the
//!   placeholder becomes a reference to it, written for the quoting around it: `"${V}"`
//!   unquoted, `${V}` inside double quotes or a here-document, `'"${V}"'` inside single
//!   quotes. The shell never parses the result of an expansion as code, so even a quoting
//!   this scanner got wrong costs word splitting, never a command.
//! - Arguments after `--` (`{{args}}`) are a list: unquoted, each plain argument is pasted
//!   and any other is quoted by `shlex`; inside quotes they are the one string `CLAB_ARGS`.
//! - Inside `$(( … ))` the shell evaluates text as arithmetic (bash also expands `a[$(…)]`
//!   there, even from a variable), so a value that is not plain is refused ([`Refused`]).
//!
//! The scanner follows POSIX `sh` quoting: `'…'`, `"…"`, `\`, `$( … )`, backquotes,
//! `$(( … ))`, comments, here-documents (`<<EOF`, `<<-EOF`, and `<<'EOF'`, whose body the
//! shell does not expand) and bash's `$'…'`. It cannot see a second shell inside the line
//! (`sh -c '…'`, `ssh host '…'`): a value pasted into such a script is that shell's code, so
//! the docs tell users to write `"$CLAB_FILE"` there themselves.

use std::ops::Range;

/// The quoting in force at a place in a shell line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// A word of a command: at the top level, in `$( … )` or a subshell.
    Unquoted,
    /// Inside backquotes: a command whose text the shell reads again.
    Backtick,
    /// Inside `"…"`.
    Double,
    /// Inside `'…'`.
    Single,
    /// Inside bash's `$'…'`.
    AnsiC,
    /// In the body of a here-document whose delimiter is not quoted (expanded).
    HereDoc,
    /// In the body of a here-document with a quoted delimiter (not expanded).
    LiteralHereDoc,
    /// In a comment.
    Comment,
    /// Inside `$(( … ))`.
    Arithmetic,
}

/// Where a placeholder's value may not go: its name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The placeholder's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// What a placeholder of a command line is replaced by.
#[derive(Debug, Clone)]
pub(crate) enum Fill {
    /// A value, passed in the environment variable `var` when it is not plain.
    Value {
        /// The value.
        value: String,
        /// The variable that holds it.
        var: &'static str,
    },
    /// Text pasted as it is, whatever the quoting (a placeholder filled later).
    Verbatim(String),
    /// The arguments after `--`, filled by [`fill_args`] later: a mark for the quoting.
    Args,
}

/// Whether `value` can be pasted into a shell line as it is: letters, digits and
/// `_ - . / + , : @ %`, nothing that means anything to a shell (or to the string literals of
/// the languages commands embed).
pub(crate) fn is_plain(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | ',' | ':' | '@' | '%')
    })
}

/// `template` with each placeholder replaced as `lookup` says (a name it does not know is
/// left as written), following the rule in the module doc.
pub(crate) fn render_command(
    template: &str,
    lookup: impl Fn(&str) -> Option<Fill>,
) -> Result<String, Refused> {
    let placeholders = clab_syntax::placeholders::scan(template);
    if placeholders.is_empty() {
        return Ok(template.to_owned());
    }
    let ranges: Vec<Range<usize>> = placeholders.iter().map(|p| p.range.clone()).collect();
    let quotings = quoting_at(template, &ranges);
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for (placeholder, quoting) in placeholders.iter().zip(quotings) {
        let Some(fill) = lookup(placeholder.name) else {
            continue;
        };
        out.push_str(&template[last..placeholder.range.start]);
        match fill {
            Fill::Verbatim(text) => out.push_str(&text),
            Fill::Args => out.push_str(args_mark(quoting)),
            Fill::Value { value, .. } if is_plain(&value) => out.push_str(&value),
            Fill::Value { value, .. } if quoting == Quoting::Arithmetic => {
                return Err(Refused {
                    name: placeholder.name.to_owned(),
                    value,
                });
            }
            Fill::Value { var, .. } => out.push_str(&reference(var, quoting)),
        }
        last = placeholder.range.end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

/// A reference to variable `var` that means its value, unsplit, under `quoting`.
fn reference(var: &str, quoting: Quoting) -> String {
    match quoting {
        Quoting::Unquoted | Quoting::Backtick | Quoting::Arithmetic => format!("\"${{{var}}}\""),
        Quoting::Double | Quoting::HereDoc | Quoting::LiteralHereDoc | Quoting::Comment => {
            format!("${{{var}}}")
        }
        Quoting::Single => format!("'\"${{{var}}}\"'"),
        Quoting::AnsiC => format!("'\"${{{var}}}\"$'"),
    }
}

/// The environment variable that holds the arguments after `--`, joined by spaces.
pub(crate) const ARGS_VAR: &str = "CLAB_ARGS";

/// The marks `{{args}}` renders to until [`fill_args`]: NUL cannot occur in a command line.
const ARGS_UNQUOTED: &str = "\0args\0";
const ARGS_IN_TEXT: &str = "\0args\"\0";
const ARGS_SINGLE: &str = "\0args'\0";
const ARGS_ANSI_C: &str = "\0args$\0";
const ARGS_ARITHMETIC: &str = "\0args(\0";

fn args_mark(quoting: Quoting) -> &'static str {
    match quoting {
        Quoting::Unquoted => ARGS_UNQUOTED,
        Quoting::Backtick
        | Quoting::Double
        | Quoting::HereDoc
        | Quoting::LiteralHereDoc
        | Quoting::Comment => ARGS_IN_TEXT,
        Quoting::Single => ARGS_SINGLE,
        Quoting::AnsiC => ARGS_ANSI_C,
        Quoting::Arithmetic => ARGS_ARITHMETIC,
    }
}

/// Whether `line` holds an `{{args}}` mark.
pub(crate) fn has_args_mark(line: &str) -> bool {
    line.contains("\0args")
}

/// `line` with its `{{args}}` marks replaced by `args` (`None`: by nothing): plain arguments
/// pasted, others quoted (unquoted) or referred to through [`ARGS_VAR`] (in quotes). `Err`
/// names an argument that is not plain where a mark stands inside `$(( … ))`.
pub(crate) fn fill_args(line: &str, args: Option<&[String]>) -> Result<String, String> {
    if !has_args_mark(line) {
        return Ok(line.to_owned());
    }
    let Some(args) = args.filter(|args| !args.is_empty()) else {
        let mut line = line.to_owned();
        for mark in [
            ARGS_UNQUOTED,
            ARGS_IN_TEXT,
            ARGS_SINGLE,
            ARGS_ANSI_C,
            ARGS_ARITHMETIC,
        ] {
            line = line.replace(mark, "");
        }
        return Ok(line);
    };
    let unplain = args.iter().find(|arg| !is_plain(arg));
    let Some(unplain) = unplain else {
        let joined = args.join(" ");
        let mut line = line.to_owned();
        for mark in [
            ARGS_UNQUOTED,
            ARGS_IN_TEXT,
            ARGS_SINGLE,
            ARGS_ANSI_C,
            ARGS_ARITHMETIC,
        ] {
            line = line.replace(mark, &joined);
        }
        return Ok(line);
    };
    if line.contains(ARGS_ARITHMETIC) {
        return Err(unplain.clone());
    }
    let words = quote_words(args).ok_or_else(|| unplain.clone())?;
    Ok(line
        .replace(ARGS_UNQUOTED, &words)
        .replace(ARGS_IN_TEXT, &reference(ARGS_VAR, Quoting::Double))
        .replace(ARGS_SINGLE, &reference(ARGS_VAR, Quoting::Single))
        .replace(ARGS_ANSI_C, &reference(ARGS_VAR, Quoting::AnsiC)))
}

/// `args` as shell words: plain ones as they are, others quoted; `None` if one holds a NUL.
pub(crate) fn quote_words(args: &[String]) -> Option<String> {
    let quoted: Option<Vec<String>> = args
        .iter()
        .map(|arg| {
            if is_plain(arg) && !arg.is_empty() {
                Some(arg.clone())
            } else {
                shlex::try_quote(arg).ok().map(|q| q.into_owned())
            }
        })
        .collect();
    Some(quoted?.join(" "))
}

/// `value` with the characters a glob gives a meaning to (`* ? [ ] { } \`) escaped, so that
/// a glob holding it matches the name itself (`pages/[id].tsx`).
pub(crate) fn escape_glob(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What the scanner is inside of, besides a quoted string or a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// Command words; `parens` counts open `(`; `closer` says what ends it.
    Command { parens: u32, closer: Closer },
    /// `"…"`.
    Double,
    /// `$(( … ))`, with the `(` opened inside.
    Arithmetic { parens: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    /// The line itself.
    End,
    /// `$( … )`.
    Paren,
    /// `` `…` ``.
    Backtick,
}

/// A text the scanner reads through to its end, with nothing nested inside.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Leaf {
    Single,
    AnsiC,
    Comment,
    /// A here-document body: its delimiter, whether `<<-` strips tabs, whether it is
    /// literal, and whether the scanner stands at the start of a body line.
    Body {
        here: HereDoc,
        line_start: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HereDoc {
    delimiter: Vec<u8>,
    strip_tabs: bool,
    literal: bool,
}

/// The quoting at the start of each of `marks` (sorted, disjoint ranges of `line`, each read
/// as one opaque word: the placeholders).
pub(crate) fn quoting_at(line: &str, marks: &[Range<usize>]) -> Vec<Quoting> {
    let b = line.as_bytes();
    let mut found = Vec::with_capacity(marks.len());
    let mut stack = vec![Frame::Command {
        parens: 0,
        closer: Closer::End,
    }];
    let mut leaf: Option<Leaf> = None;
    let mut pending: Vec<HereDoc> = Vec::new();
    let mut word_start = true;
    let mut i = 0;
    let mut next_mark = 0;
    let at = |i: usize| b.get(i).copied();
    while i < b.len() {
        // A here-document's delimiter line ends its body.
        if let Some(Leaf::Body { here, line_start }) = &mut leaf
            && *line_start
        {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            let mut text = &b[i..end];
            if here.strip_tabs {
                while let [b'\t', rest @ ..] = text {
                    text = rest;
                }
            }
            if text == here.delimiter.as_slice() {
                i = end + 1;
                leaf = (!pending.is_empty()).then(|| Leaf::Body {
                    here: pending.remove(0),
                    line_start: true,
                });
                word_start = true;
                continue;
            }
            *line_start = false;
        }
        if let Some(mark) = marks.get(next_mark)
            && i >= mark.start
        {
            found.push(current(&stack, leaf.as_ref()));
            i = mark.end.max(i + 1);
            next_mark += 1;
            word_start = false;
            continue;
        }
        let c = b[i];
        match &mut leaf {
            Some(Leaf::Single) => {
                if c == b'\'' {
                    leaf = None;
                }
                i += 1;
                continue;
            }
            Some(Leaf::AnsiC) => {
                match c {
                    b'\\' => i += 1,
                    b'\'' => leaf = None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            Some(Leaf::Comment) => {
                if c == b'\n' {
                    // The newline is the command's: it may start a here-document body.
                    leaf = None;
                } else {
                    i += 1;
                }
                continue;
            }
            Some(Leaf::Body { line_start, .. }) => {
                if c == b'\n' {
                    *line_start = true;
                }
                i += 1;
                continue;
            }
            None => {}
        }
        let Some(frame) = stack.last_mut() else {
            break;
        };
        match frame {
            Frame::Double => match c {
                b'\\' => i += 2,
                b'"' => {
                    stack.pop();
                    i += 1;
                }
                b'$' if at(i + 1) == Some(b'(') && at(i + 2) == Some(b'(') => {
                    stack.push(Frame::Arithmetic { parens: 0 });
                    i += 3;
                }
                b'$' if at(i + 1) == Some(b'(') => {
                    stack.push(Frame::Command {
                        parens: 0,
                        closer: Closer::Paren,
                    });
                    word_start = true;
                    i += 2;
                }
                b'`' => {
                    stack.push(Frame::Command {
                        parens: 0,
                        closer: Closer::Backtick,
                    });
                    word_start = true;
                    i += 1;
                }
                _ => i += 1,
            },
            Frame::Arithmetic { parens } => {
                match c {
                    b'(' => *parens += 1,
                    b')' if *parens > 0 => *parens -= 1,
                    b')' => {
                        stack.pop();
                        i += usize::from(at(i + 1) == Some(b')'));
                    }
                    _ => {}
                }
                i += 1;
            }
            Frame::Command { parens, closer } => {
                let closer = *closer;
                let mut starts_word = false;
                match c {
                    b'\\' => i += 2,
                    b'\'' => {
                        leaf = Some(Leaf::Single);
                        i += 1;
                    }
                    b'"' => {
                        stack.push(Frame::Double);
                        i += 1;
                    }
                    b'$' if at(i + 1) == Some(b'\'') => {
                        leaf = Some(Leaf::AnsiC);
                        i += 2;
                    }
                    b'$' if at(i + 1) == Some(b'(') && at(i + 2) == Some(b'(') => {
                        stack.push(Frame::Arithmetic { parens: 0 });
                        i += 3;
                    }
                    b'$' if at(i + 1) == Some(b'(') => {
                        stack.push(Frame::Command {
                            parens: 0,
                            closer: Closer::Paren,
                        });
                        starts_word = true;
                        i += 2;
                    }
                    b'`' if closer == Closer::Backtick => {
                        stack.pop();
                        i += 1;
                    }
                    b'`' => {
                        stack.push(Frame::Command {
                            parens: 0,
                            closer: Closer::Backtick,
                        });
                        starts_word = true;
                        i += 1;
                    }
                    b'(' => {
                        *parens += 1;
                        starts_word = true;
                        i += 1;
                    }
                    b')' => {
                        if *parens > 0 {
                            *parens -= 1;
                        } else if closer == Closer::Paren {
                            stack.pop();
                        }
                        starts_word = true;
                        i += 1;
                    }
                    b'#' if word_start => {
                        leaf = Some(Leaf::Comment);
                        i += 1;
                    }
                    b'<' if at(i + 1) == Some(b'<') && at(i + 2) != Some(b'<') => {
                        i += 2;
                        let strip_tabs = at(i) == Some(b'-');
                        i += usize::from(strip_tabs);
                        let (here, end) = here_doc_word(b, i, strip_tabs);
                        pending.push(here);
                        i = end;
                        starts_word = true;
                    }
                    b'\n' => {
                        if !pending.is_empty() {
                            leaf = Some(Leaf::Body {
                                here: pending.remove(0),
                                line_start: true,
                            });
                        }
                        starts_word = true;
                        i += 1;
                    }
                    b' ' | b'\t' | b';' | b'&' | b'|' | b'<' | b'>' => {
                        starts_word = true;
                        i += 1;
                    }
                    _ => i += 1,
                }
                word_start = starts_word;
            }
        }
    }
    while found.len() < marks.len() {
        found.push(current(&stack, leaf.as_ref()));
    }
    found
}

/// The quoting the scanner is in.
fn current(stack: &[Frame], leaf: Option<&Leaf>) -> Quoting {
    match leaf {
        Some(Leaf::Single) => return Quoting::Single,
        Some(Leaf::AnsiC) => return Quoting::AnsiC,
        Some(Leaf::Comment) => return Quoting::Comment,
        Some(Leaf::Body { here, .. }) if here.literal => return Quoting::LiteralHereDoc,
        Some(Leaf::Body { .. }) => return Quoting::HereDoc,
        None => {}
    }
    match stack.last() {
        Some(Frame::Double) => Quoting::Double,
        Some(Frame::Arithmetic { .. }) => Quoting::Arithmetic,
        Some(Frame::Command {
            closer: Closer::Backtick,
            ..
        }) => Quoting::Backtick,
        _ => Quoting::Unquoted,
    }
}

/// The delimiter word of a here-document starting at `i` (after `<<` or `<<-`), and where it
/// ends. A delimiter with any quoting makes a literal body.
fn here_doc_word(b: &[u8], mut i: usize, strip_tabs: bool) -> (HereDoc, usize) {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let mut delimiter = Vec::new();
    let mut literal = false;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
            b'\'' | b'"' => {
                literal = true;
                let end = b[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .map_or(b.len(), |n| i + 1 + n);
                delimiter.extend_from_slice(&b[i + 1..end]);
                i = end + 1;
            }
            b'\\' => {
                literal = true;
                delimiter.extend(b.get(i + 1));
                i += 2;
            }
            _ => {
                delimiter.push(c);
                i += 1;
            }
        }
    }
    (
        HereDoc {
            delimiter,
            strip_tabs,
            literal,
        },
        i.min(b.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoting at each `{{x}}` of `line`.
    fn quotings(line: &str) -> Vec<Quoting> {
        let ranges: Vec<Range<usize>> = clab_syntax::placeholders::scan(line)
            .iter()
            .map(|p| p.range.clone())
            .collect();
        quoting_at(line, &ranges)
    }

    macro_rules! quoting {
        ($($name:ident: $line:expr => [$($q:ident),*];)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(quotings($line), vec![$(Quoting::$q),*], "{:?}", $line);
            }
        )*};
    }

    quoting! {
        bare_word: "wc -c {{x}}" => [Unquoted];
        double_and_single: "a \"x {{x}}\" '{{x}}' {{x}}" => [Double, Single, Unquoted];
        escaped_quotes_do_not_open: "echo \\\"{{x}} \\'{{x}}" => [Unquoted, Unquoted];
        escaped_quote_inside_double: "echo \"a\\\"{{x}}\"" => [Double];
        command_substitution_in_double: "echo \"$(cat {{x}}) {{x}}\"" => [Unquoted, Double];
        nested_quotes_in_substitution: "echo \"$(cat \"{{x}}\")\"" => [Double];
        backticks: "echo `cat {{x}}` {{x}}" => [Backtick, Unquoted];
        subshell_parens: "(cd {{x}}); echo \"$( (echo {{x}}) )\"" => [Unquoted, Unquoted];
        arithmetic: "echo $(( {{x}} + 1 )) {{x}}" => [Arithmetic, Unquoted];
        arithmetic_in_double: "echo \"$(( ({{x}}) * 2 ))\" {{x}}" => [Arithmetic, Unquoted];
        comment_at_word_start_only: "echo a#{{x}} # {{x}}\necho {{x}}" => [Unquoted, Comment, Unquoted];
        ansi_c: "echo $'a\\'{{x}}' {{x}}" => [AnsiC, Unquoted];
        here_doc: "cat <<EOF\n{{x}} \"{{x}}\"\nEOF\necho {{x}}" => [HereDoc, HereDoc, Unquoted];
        quoted_here_doc: "cat <<'EOF' > f\n{{x}}\nEOF\n{{x}}" => [LiteralHereDoc, Unquoted];
        tab_stripped_here_doc: "cat <<-\"E\"\n\t{{x}}\n\tE\n'{{x}}'" => [LiteralHereDoc, Single];
        two_here_docs: "cat <<A <<B\n{{x}}\nA\n{{x}}\nB\n{{x}}" => [HereDoc, HereDoc, Unquoted];
        here_string_is_not_a_here_doc: "cat <<< {{x}}\n{{x}}" => [Unquoted, Unquoted];
        unterminated_single: "echo '{{x}}" => [Single];
        parameter_default: "echo ${A:-{{x}}}" => [Unquoted];
    }

    fn file(value: &str) -> Option<Fill> {
        Some(Fill::Value {
            value: value.to_owned(),
            var: "CLAB_FILE",
        })
    }

    #[test]
    fn plain_values_are_pasted_and_others_referred_to() {
        let render = |line: &str, value: &str| render_command(line, |_| file(value)).unwrap();
        assert_eq!(
            render("wc -c \"{{file}}\"", "src/a.txt"),
            "wc -c \"src/a.txt\""
        );
        assert_eq!(render("cat {{file}}", "src/é-ü_1.txt"), "cat src/é-ü_1.txt");
        let hostile = "src/$(touch PWNED).txt";
        assert_eq!(render("wc -c {{file}}", hostile), "wc -c \"${CLAB_FILE}\"");
        assert_eq!(
            render("wc -c \"{{file}}\"", hostile),
            "wc -c \"${CLAB_FILE}\""
        );
        assert_eq!(
            render("wc -c '{{file}}'", hostile),
            "wc -c ''\"${CLAB_FILE}\"''"
        );
        assert_eq!(
            render("echo \"x{{file}}y\" 'p{{file}}q'", "a b"),
            "echo \"x${CLAB_FILE}y\" 'p'\"${CLAB_FILE}\"'q'"
        );
        assert_eq!(
            render("echo $(( {{file}} + 1 ))", "12"),
            "echo $(( 12 + 1 ))"
        );
        assert_eq!(
            render_command("echo $(( {{file}} ))", |_| file("a[$(id)]")),
            Err(Refused {
                name: "file".to_owned(),
                value: "a[$(id)]".to_owned()
            })
        );
        // Names it does not know stay.
        assert_eq!(
            render_command("echo {{other}}", |_| None).unwrap(),
            "echo {{other}}"
        );
    }

    /// Run `line` with `sh -c` in a temp dir with `CLAB_FILE` set; what it printed, and
    /// whether a file named `PWNED` appeared.
    fn run_sh(line: &str, value: &str) -> (String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(line)
            .current_dir(dir.path())
            .env("CLAB_FILE", value)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            dir.path().join("PWNED").exists(),
        )
    }

    #[test]
    fn a_file_name_is_data_in_every_quoting_issue_18() {
        let names = [
            "src/$(touch PWNED).txt",
            "src/`touch PWNED`.txt",
            "a; touch PWNED",
            "a & touch PWNED",
            "a\ntouch PWNED",
            "a' ; touch PWNED; '",
            "a\" ; touch PWNED; \"",
            "a\\\"; touch PWNED #",
            "it's \"quoted\" $HOME *",
            "EOF\ntouch PWNED\nEOF",
        ];
        let templates = [
            ("printf '%s|' {{file}}", "{}|"),
            ("printf '%s|' \"{{file}}\"", "{}|"),
            ("printf '%s|' '{{file}}'", "{}|"),
            ("printf '%s|' \"<{{file}}>\"", "<{}>|"),
            ("printf '%s|' \"$(printf %s \"{{file}}\")\"", "{}|"),
            ("x=$(printf %s {{file}}); printf '%s|' \"$x\"", "{}|"),
            ("cat <<EOF\n{{file}}|\nEOF", "{}|\n"),
        ];
        for name in names {
            for (template, expected) in templates {
                let line = render_command(template, |_| file(name)).unwrap();
                let (printed, pwned) = run_sh(&line, name);
                assert!(!pwned, "{template:?} with {name:?} ran code: {line:?}");
                assert_eq!(
                    printed,
                    expected.replace("{}", name),
                    "{template:?} {name:?}"
                );
            }
        }
    }

    #[test]
    fn arguments_are_pasted_quoted_or_referred_to() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let line =
            render_command("t {{args}} \"{{args}}\" '{{args}}'", |_| Some(Fill::Args)).unwrap();
        assert!(has_args_mark(&line));
        assert_eq!(fill_args(&line, None).unwrap(), "t  \"\" ''");
        assert_eq!(
            fill_args(&line, Some(&args(&["-k", "x"]))).unwrap(),
            "t -k x \"-k x\" '-k x'"
        );
        assert_eq!(
            fill_args(&line, Some(&args(&["-k", "a b"]))).unwrap(),
            "t -k 'a b' \"${CLAB_ARGS}\" ''\"${CLAB_ARGS}\"''"
        );
        let arithmetic = render_command("echo $(({{args}}))", |_| Some(Fill::Args)).unwrap();
        assert_eq!(
            fill_args(&arithmetic, Some(&args(&["2"]))).unwrap(),
            "echo $((2))"
        );
        assert!(fill_args(&arithmetic, Some(&args(&["a[$(id)]"]))).is_err());
    }

    #[test]
    fn escaped_globs_match_the_name_itself() {
        assert_eq!(escape_glob("pages/[id].tsx"), "pages/\\[id\\].tsx");
        assert_eq!(escape_glob("a\\b*{c}?"), "a\\\\b\\*\\{c\\}\\?");
        let glob = globset::GlobBuilder::new(&escape_glob("p/[id]*.tsx"))
            .backslash_escape(true)
            .build()
            .unwrap()
            .compile_matcher();
        assert!(glob.is_match("p/[id]*.tsx"));
        assert!(!glob.is_match("p/i.tsx"));
    }
}
