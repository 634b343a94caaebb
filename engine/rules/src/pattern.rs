//! A rule's regex, compiled on the engine its syntax allows, and searched within bounds.
//!
//! In: a pattern's source as written in a `<rule>` block and the filter's [`PatternOptions`].
//! Out: a [`Pattern`] whose [`find`](Pattern::find) either answers or says why it could not
//! ([`Incomplete`]) — never a silent "no match".
//!
//! Engine choice: every pattern that `regex` accepts runs there, in time linear in the text
//! (no look-around, no backreferences). Only the others run on `fancy-regex`, a backtracking
//! engine, and only within two bounds: a backtracking limit per match attempt
//! ([`BACKTRACK_LIMIT`]) and a deadline the caller passes in, checked between match attempts
//! (issue 18: `(?=a)(a+)+$` over 100,000 characters used to search for 20 s, and
//! `((?=a)a+)+b|!` hit the backtracking limit and counted as "no match", so a `reject` rule
//! passed). Invariant: a search that did not finish is an error, never a pass.

use std::time::Instant;

use fancy_regex::RegexInput;

/// How many times `fancy-regex` may backtrack in one match attempt before giving up
/// (`fancy-regex`'s own default).
pub const BACKTRACK_LIMIT: usize = 1_000_000;

/// Texts up to this length are searched by `fancy-regex` in one call (which keeps its own
/// optimisations); longer ones one start position at a time, with the deadline checked in
/// between. A call over this many bytes costs at most a few milliseconds unless it hits the
/// backtracking limit.
const ONE_CALL_MAX: usize = 1024;

/// How many start positions are tried between two looks at the clock.
const ATTEMPTS_PER_CLOCK_CHECK: usize = 16;

/// The filter `options` of the rule schema, applied when the pattern is compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PatternOptions {
    /// `case_insensitive`: letters match either case (`(?i)`).
    pub case_insensitive: bool,
    /// `multiline`: `^` and `$` match at line starts and ends too (`(?m)`), for filters over
    /// a whole text (`content`).
    pub multiline: bool,
    /// `whole_word`: the match must start and end at word boundaries (`\b(?:…)\b`).
    pub whole_word: bool,
}

impl PatternOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == PatternOptions::default()
    }

    /// The options that are set, by their schema names, in schema order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.case_insensitive, "case_insensitive"),
            (self.multiline, "multiline"),
            (self.whole_word, "whole_word"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Why a search stopped before it could answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Incomplete {
    /// One match attempt backtracked more than [`BACKTRACK_LIMIT`] times.
    BacktrackLimit,
    /// `fancy-regex` ran out of stack for its backtracking.
    StackOverflow,
    /// The scan's time budget ran out (see `ScanBudget`).
    TimeLimit,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::BacktrackLimit => write!(
                f,
                "it backtracked more than {BACKTRACK_LIMIT} times in one match attempt"
            ),
            Incomplete::StackOverflow => f.write_str("its backtracking ran out of stack"),
            Incomplete::TimeLimit => f.write_str("the scan's time budget ran out"),
        }
    }
}

impl From<fancy_regex::Error> for Incomplete {
    fn from(err: fancy_regex::Error) -> Self {
        match err {
            fancy_regex::Error::RuntimeError(fancy_regex::RuntimeError::StackOverflow) => {
                Incomplete::StackOverflow
            }
            // The only other run-time error is the backtracking limit; compile errors cannot
            // reach a search.
            _ => Incomplete::BacktrackLimit,
        }
    }
}

/// A compiled regex, on whichever engine its syntax allows.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The source as searched (Cursor's `mdc:` links undone), without the options.
    source: String,
    options: PatternOptions,
    engine: Engine,
}

#[derive(Clone, Debug)]
enum Engine {
    /// `regex`: linear time.
    Linear(regex::Regex),
    /// `fancy-regex`: look-around and backreferences, by backtracking.
    Backtracking(fancy_regex::Regex),
}

impl Pattern {
    /// Compile `source` without options (see [`compile_with`](Self::compile_with)).
    pub fn compile(source: &str) -> Result<Pattern, String> {
        Pattern::compile_with(source, PatternOptions::default())
    }

    /// Compile `source` with `regex`, falling back to `fancy-regex` (look-around,
    /// backreferences). Cursor's `mdc:` link rewriting (`[a.py](mdc:a.py)` for `a.py`) is
    /// undone first. The error is `regex`'s message when both engines reject the pattern.
    pub fn compile_with(source: &str, options: PatternOptions) -> Result<Pattern, String> {
        let source = undo_mdc_links(source);
        // Validate the pattern as written first: wrapping it for `whole_word` could make a
        // broken one (`a)(b`) read as valid.
        let plain = regex::Regex::new(&source);
        let fancy_plain = match &plain {
            Ok(_) => None,
            Err(err) => Some(
                fancy_regex::Regex::new(&source)
                    .map(|_| ())
                    .map_err(|_| err.to_string()),
            ),
        };
        if let Some(Err(message)) = fancy_plain {
            return Err(message);
        }
        let searched = if options.whole_word {
            format!(r"\b(?:{source})\b")
        } else {
            source.clone()
        };
        let engine = if plain.is_ok() {
            regex::RegexBuilder::new(&searched)
                .case_insensitive(options.case_insensitive)
                .multi_line(options.multiline)
                .build()
                .map(Engine::Linear)
                .map_err(|err| err.to_string())?
        } else {
            let mut builder = fancy_regex::RegexBuilder::new(&searched);
            builder
                .case_insensitive(options.case_insensitive)
                .multi_line(options.multiline)
                .backtrack_limit(BACKTRACK_LIMIT);
            builder
                .build()
                .map(Engine::Backtracking)
                .map_err(|err| err.to_string())?
        };
        Ok(Pattern {
            source,
            options,
            engine,
        })
    }

    /// Whether the pattern matches the empty string (`.*`, `^(?!x)`): searched line by line it
    /// would match every empty line, so it cannot be a line check. A search of the empty
    /// string that cannot finish counts as "no".
    pub fn matches_empty(&self) -> bool {
        matches!(self.find("", None), Ok(Some(_)))
    }

    /// Whether the pattern runs on `fancy-regex` (backtracking, bounded) rather than on
    /// `regex` (linear time).
    pub fn is_fancy(&self) -> bool {
        matches!(self.engine, Engine::Backtracking(_))
    }

    /// The pattern's source, without the options.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The options it was compiled with.
    pub fn options(&self) -> PatternOptions {
        self.options
    }

    /// The `regex` form, when the pattern runs there.
    pub(crate) fn linear(&self) -> Option<&regex::Regex> {
        match &self.engine {
            Engine::Linear(re) => Some(re),
            Engine::Backtracking(_) => None,
        }
    }

    /// The byte range of the first match in `text`. On `fancy-regex`, a match attempt that
    /// backtracks too much, or a search still going at `deadline`, is an [`Incomplete`]
    /// answer; `regex` always answers.
    pub fn find(
        &self,
        text: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<(usize, usize)>, Incomplete> {
        match &self.engine {
            Engine::Linear(re) => Ok(re.find(text).map(|m| (m.start(), m.end()))),
            Engine::Backtracking(re) => find_bounded(re, text, deadline),
        }
    }
}

/// Leftmost-first search on `fancy-regex` that stops at `deadline`: short texts in one call,
/// long ones one anchored attempt per start position (the same answer the unanchored search
/// gives, which also tries each position in turn), checking the clock in between.
fn find_bounded(
    re: &fancy_regex::Regex,
    text: &str,
    deadline: Option<Instant>,
) -> Result<Option<(usize, usize)>, Incomplete> {
    let past = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
    if past(deadline) {
        return Err(Incomplete::TimeLimit);
    }
    if text.len() <= ONE_CALL_MAX {
        return Ok(re.find(text)?.map(|m| (m.start(), m.end())));
    }
    let mut pos = 0;
    let mut attempts = 0usize;
    loop {
        attempts += 1;
        if attempts.is_multiple_of(ATTEMPTS_PER_CLOCK_CHECK) && past(deadline) {
            return Err(Incomplete::TimeLimit);
        }
        let input = RegexInput::new(text).from_pos(pos).anchored(true);
        if let Some(m) = re.find_input(input)? {
            return Ok(Some((m.start(), m.end())));
        }
        if pos >= text.len() {
            return Ok(None);
        }
        pos += text[pos..].chars().next().map_or(1, char::len_utf8);
    }
}

/// `[x](mdc:x)` → `x`: Cursor's editor turns paths into links even inside regexes.
fn undo_mdc_links(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](mdc:").and_then(|close| {
            let text = &after[..close];
            let target_at = close + "](mdc:".len();
            let end = after[target_at..].find(')')?;
            (after[target_at..target_at + end] == *text).then_some((text, target_at + end + 1))
        });
        match link {
            Some((text, consumed)) => {
                out.push_str(&rest[..open]);
                out.push_str(text);
                rest = &after[consumed..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn find(pattern: &Pattern, text: &str) -> Option<(usize, usize)> {
        pattern.find(text, None).expect("the search finishes")
    }

    #[test]
    fn patterns_fall_back_and_undo_mdc_links() {
        assert!(!Pattern::compile("a+").unwrap().is_fancy());
        assert!(Pattern::compile("^(?!x)").unwrap().is_fancy());
        assert!(Pattern::compile("(a").is_err());
        assert_eq!(
            Pattern::compile("[src/a.py](mdc:src/a.py)$")
                .unwrap()
                .as_str(),
            "src/a.py$"
        );
        assert_eq!(Pattern::compile("[ab](x)").unwrap().as_str(), "[ab](x)");
        assert_eq!(
            Pattern::compile("\\_test\\.py$").map(|p| find(&p, "a_test.py").is_some()),
            Ok(true)
        );
    }

    #[test]
    fn options_change_what_matches_on_both_engines() {
        let opts = |case_insensitive, multiline, whole_word| PatternOptions {
            case_insensitive,
            multiline,
            whole_word,
        };
        for (source, fancy) in [("pip install", false), ("(?<!uv )pip install", true)] {
            let plain = Pattern::compile(source).unwrap();
            assert_eq!(plain.is_fancy(), fancy);
            assert_eq!(find(&plain, "PIP INSTALL x"), None);
            let ci = Pattern::compile_with(source, opts(true, false, false)).unwrap();
            assert_eq!(ci.is_fancy(), fancy, "options keep the engine");
            assert_eq!(find(&ci, "run PIP INSTALL x"), Some((4, 15)));
            let word = Pattern::compile_with(source, opts(false, false, true)).unwrap();
            assert_eq!(find(&word, "xpip install"), None);
            assert_eq!(find(&word, "pip installer"), None);
            assert_eq!(find(&word, "a pip install b"), Some((2, 13)));
        }
        let anchored = "^import os$";
        assert_eq!(
            find(&Pattern::compile(anchored).unwrap(), "x\nimport os\n"),
            None
        );
        let multi = Pattern::compile_with(anchored, opts(false, true, false)).unwrap();
        assert_eq!(find(&multi, "x\nimport os\n"), Some((2, 11)));
        // `whole_word` never makes a broken pattern valid.
        assert!(Pattern::compile_with("a)(b", opts(false, false, true)).is_err());
        assert_eq!(
            opts(true, false, true).names(),
            ["case_insensitive", "whole_word"]
        );
    }

    #[test]
    fn a_backtracking_search_that_cannot_finish_is_incomplete_not_no_match() {
        let pattern = Pattern::compile("((?=a)a+)+b|!").unwrap();
        assert!(pattern.is_fancy());
        let text = format!("{}!", "a".repeat(25));
        assert_eq!(pattern.find(&text, None), Err(Incomplete::BacktrackLimit));
        // Long texts, searched position by position, hit the limit the same way.
        let long = format!("{}{}!", "x".repeat(2000), "a".repeat(25));
        assert_eq!(pattern.find(&long, None), Err(Incomplete::BacktrackLimit));
        assert_eq!(find(&pattern, "b!"), Some((1, 2)));
    }

    #[test]
    fn the_deadline_bounds_a_quadratic_search() {
        let pattern = Pattern::compile("(?=a)(a+)+$").unwrap();
        let text = format!("{}!", "a".repeat(100_000));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(100);
        assert_eq!(
            pattern.find(&text, Some(deadline)),
            Err(Incomplete::TimeLimit)
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // A past deadline stops even a short search before it starts.
        assert_eq!(
            pattern.find("aaa", Some(started)),
            Err(Incomplete::TimeLimit)
        );
    }

    #[test]
    fn position_by_position_search_answers_like_one_call() {
        let cases = [
            (r"(?<!uv )pip install", "uv pip install; pip install"),
            (r"(\w)\1", "abcdd"),
            (r"(?=é)é+", "ééé"),
            (r"x(?!y)", "xyxyxz"),
            (r"^(?!a)", "abc"),
        ];
        for (source, text) in cases {
            let pattern = Pattern::compile(source).unwrap();
            let Engine::Backtracking(re) = &pattern.engine else {
                panic!("{source} is fancy");
            };
            // Pad past the one-call size so the position-by-position path runs.
            let padded = format!("{}{text}", "-".repeat(ONE_CALL_MAX + 1));
            let shift = |m: Option<(usize, usize)>| {
                m.map(|(s, e)| (s + ONE_CALL_MAX + 1, e + ONE_CALL_MAX + 1))
            };
            let one_call = re.find(&padded).unwrap().map(|m| (m.start(), m.end()));
            assert_eq!(find(&pattern, &padded), one_call, "{source}");
            if source != r"^(?!a)" {
                assert_eq!(one_call, shift(find(&pattern, text)), "{source}");
            }
        }
    }
}
