//! `extract`: what part of an answer becomes the output file.
//!
//! `"code"`: the content of the first fenced code block — a line of three or more backticks
//! or tildes (indented at most three spaces, any info string), up to a line of at least as
//! many of the same character and nothing else. An answer with no fence, or whose first block
//! never closes (usually an answer cut off by `max-tokens`), is refused. `"text"`: the whole
//! answer, trimmed. Either way the result ends with exactly one newline.

use std::str::FromStr;

/// How to turn an answer into the output's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extract {
    /// The first fenced code block.
    #[default]
    Code,
    /// The whole answer.
    Text,
}

impl FromStr for Extract {
    type Err = String;

    /// `"code"` or `"text"`; the error is the help text for a diagnostic.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "code" => Ok(Extract::Code),
            "text" => Ok(Extract::Text),
            _ => Err(
                "`extract` is `\"code\"` (first fenced block) or `\"text\"` (whole answer)"
                    .to_owned(),
            ),
        }
    }
}

/// Why an answer could not be extracted; the call loop turns it into a repair request and,
/// on the last attempt, into an [`super::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No fenced block at all.
    NoFence,
    /// The first block is never closed.
    Unclosed,
    /// The answer is empty.
    Empty,
}

impl Problem {
    /// What to tell the model on the next attempt.
    pub fn repair_request(&self) -> &'static str {
        match self {
            Problem::NoFence => {
                "Your answer contained no fenced code block. Reply with the complete file in a single fenced code block."
            }
            Problem::Unclosed => {
                "Your answer was cut off before its code block was closed. Reply with the complete file in a single, shorter fenced code block."
            }
            Problem::Empty => "Your answer was empty. Reply with the complete file.",
        }
    }
}

/// Apply `mode` to `answer`.
pub fn extract(mode: Extract, answer: &str) -> Result<String, Problem> {
    let text = match mode {
        Extract::Text => answer.trim().to_owned(),
        Extract::Code => first_block(answer)?,
    };
    if text.trim().is_empty() && mode == Extract::Text {
        return Err(Problem::Empty);
    }
    let mut text = text.trim_end_matches(['\n', '\r']).to_owned();
    text.push('\n');
    Ok(text)
}

fn first_block(answer: &str) -> Result<String, Problem> {
    let mut lines = answer.lines();
    let (fence_char, fence_len) = loop {
        let Some(line) = lines.next() else {
            return Err(Problem::NoFence);
        };
        if let Some(fence) = opening_fence(line) {
            break fence;
        }
    };
    let mut body = Vec::new();
    for line in lines {
        if is_closing(line, fence_char, fence_len) {
            return Ok(body.join("\n"));
        }
        body.push(line);
    }
    Err(Problem::Unclosed)
}

fn opening_fence(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let fence_char = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.chars().take_while(|c| *c == fence_char).count();
    if len < 3 {
        return None;
    }
    // CommonMark: a backtick fence's info string may not contain backticks.
    if fence_char == '`' && rest[len..].contains('`') {
        return None;
    }
    Some((fence_char, len))
}

fn is_closing(line: &str, fence_char: char, fence_len: usize) -> bool {
    let trimmed = line.trim();
    let indent = line.len() - line.trim_start_matches(' ').len();
    indent <= 3 && trimmed.len() >= fence_len && trimmed.chars().all(|c| c == fence_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_extraction_table() {
        let cases: [(&str, Result<&str, Problem>); 9] = [
            ("Here:\n```python\nprint(1)\n```\nDone.", Ok("print(1)\n")),
            ("```\na\n\nb\n```", Ok("a\n\nb\n")),
            ("~~~rust\nfn main() {}\n~~~", Ok("fn main() {}\n")),
            ("````md\n```\ninner\n```\n````", Ok("```\ninner\n```\n")),
            ("```py title=\"x.py\"\nx\n```\n```\nsecond\n```", Ok("x\n")),
            ("  ```\nindented\n  ```", Ok("indented\n")),
            ("no fence at all", Err(Problem::NoFence)),
            ("inline ``` not a fence ``` here", Err(Problem::NoFence)),
            ("```python\nprint(1)\n", Err(Problem::Unclosed)),
        ];
        for (answer, expected) in cases {
            assert_eq!(
                extract(Extract::Code, answer),
                expected.map(str::to_owned),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn text_extraction_trims_and_ends_with_newline() {
        assert_eq!(
            extract(Extract::Text, "\n  hello\nworld  \n\n").unwrap(),
            "hello\nworld\n"
        );
        assert_eq!(extract(Extract::Text, "  \n"), Err(Problem::Empty));
        assert_eq!("code".parse::<Extract>(), Ok(Extract::Code));
        assert!("json".parse::<Extract>().is_err());
    }
}
