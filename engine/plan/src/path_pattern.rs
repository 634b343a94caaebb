//! [`PathPattern`]: one entry of a task's `inputs` or `outputs` as tasks.kdl writes it — a
//! glob from the root, a literal path, `dir/` for everything below it, `!` to exclude — and
//! [`PathPatterns`]: a list of them matched one path at a time.
//!
//! In: the pattern texts of the graph's nodes. Out: normalized patterns (`./` and `a//b`
//! collapsed, `dir/` as `dir/**`) for the planner's input walk ([`crate::inputs`]), and a
//! matcher with the same meaning for watch mode, which asks about one changed path at a
//! time. One parser serves both, so a file that is an input to the planner is an input to
//! watch mode too.
//!
//! Invariants: a pattern that is empty, absolute or climbs out with `..` is refused
//! ([`Error::OutsideRoot`]); globs match with `*` stopping at `/` and `\` escaping; an
//! excluded directory excludes everything below it.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::inputs::Error;

/// A normalized path pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pattern {
    /// A path without glob characters, normalized.
    Literal(String),
    /// A glob, normalized.
    Glob(String),
}

impl Pattern {
    /// The normalized text.
    pub fn body(&self) -> &str {
        match self {
            Pattern::Literal(p) | Pattern::Glob(p) => p,
        }
    }
}

/// One pattern, include or exclude.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// Written with a leading `!`.
    pub exclude: bool,
    /// What it matches.
    pub pattern: Pattern,
}

impl PathPattern {
    /// Parse one pattern as tasks.kdl writes it.
    pub fn parse(text: &str) -> Result<PathPattern, Error> {
        let (exclude, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut body = body.trim_start_matches("./").to_owned();
        if body.ends_with('/') {
            body.push_str("**");
        }
        let outside = || Error::OutsideRoot {
            pattern: text.to_owned(),
        };
        if body.is_empty() || body.starts_with('/') {
            return Err(outside());
        }
        if body.split('/').any(|c| c == "..") {
            return Err(outside());
        }
        let is_glob = body.contains(['*', '?', '[', ']', '{', '}']);
        // Globs are compiled (and so validated) by their user, once per distinct glob.
        let pattern = if is_glob {
            Pattern::Glob(body)
        } else {
            // Collapse `a//b` and `a/./b`.
            let normalized: Vec<&str> = body
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            Pattern::Literal(normalized.join("/"))
        };
        Ok(PathPattern { exclude, pattern })
    }
}

/// Compile `glob` (the normalized body of `original`) as every clab glob is compiled.
pub(crate) fn compile_glob(glob: &str, original: &str) -> Result<Glob, Error> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|source| Error::BadGlob {
            pattern: original.to_owned(),
            source,
        })
}

/// A list of patterns, matched one relative path at a time.
#[derive(Debug, Default)]
pub struct PathPatterns {
    literals: Vec<String>,
    globs: GlobSet,
    exclude_literals: Vec<String>,
    exclude_globs: GlobSet,
}

impl PathPatterns {
    /// The matcher of `patterns`. A pattern that does not parse or compile matches nothing:
    /// the graph refused it already, with its span.
    pub fn new(patterns: &[String]) -> PathPatterns {
        let mut out = PathPatterns::default();
        let mut globs = GlobSetBuilder::new();
        let mut exclude_globs = GlobSetBuilder::new();
        for text in patterns {
            let Ok(parsed) = PathPattern::parse(text) else {
                continue;
            };
            match parsed.pattern {
                Pattern::Glob(body) => {
                    let Ok(glob) = compile_glob(&body, text) else {
                        continue;
                    };
                    if parsed.exclude {
                        exclude_globs.add(glob);
                    } else {
                        globs.add(glob);
                    }
                }
                Pattern::Literal(literal) if parsed.exclude => out.exclude_literals.push(literal),
                Pattern::Literal(literal) => out.literals.push(literal),
            }
        }
        out.globs = globs.build().unwrap_or_default();
        out.exclude_globs = exclude_globs.build().unwrap_or_default();
        out
    }

    /// Whether `rel` is (or lies below) one of the literal paths, and is not excluded.
    pub fn matches_literal(&self, rel: &str) -> bool {
        below_any(&self.literals, rel) && !self.excluded(rel)
    }

    /// Whether `rel` is selected by the list.
    pub fn matches(&self, rel: &str) -> bool {
        (below_any(&self.literals, rel) || self.globs.is_match(rel)) && !self.excluded(rel)
    }

    /// Whether one of the literal paths is the directory `rel` or lies below it.
    pub fn has_literal_under(&self, rel: &str) -> bool {
        self.literals.iter().any(|lit| {
            lit.strip_prefix(rel)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Whether an exclude matches `rel` or a directory above it.
    fn excluded(&self, rel: &str) -> bool {
        let mut path = rel;
        loop {
            if self.exclude_literals.iter().any(|lit| lit == path)
                || self.exclude_globs.is_match(path)
            {
                return true;
            }
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent,
                None => return false,
            }
        }
    }
}

/// Whether `rel` is one of `literals` or lies below one.
fn below_any(literals: &[String], rel: &str) -> bool {
    literals.iter().any(|lit| {
        rel.strip_prefix(lit.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> PathPatterns {
        PathPatterns::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn globs_literals_directories_and_excludes_match_as_the_planner_walks() {
        let p = patterns(&[
            "src/**/*.py",
            "!**/__pycache__/**",
            "./pyproject.toml",
            "data/",
        ]);
        assert!(p.matches("src/a.py"));
        assert!(p.matches("src/pkg/b.py"));
        assert!(!p.matches("src/pkg/__pycache__/b.py"));
        assert!(p.matches("pyproject.toml"));
        assert!(!p.matches("pyproject.toml.bak"));
        assert!(p.matches("data/x/y.csv"));
        assert!(!p.matches("notes.txt"));
        assert!(patterns(&["config//app.toml"]).matches_literal("config/app.toml"));
    }

    #[test]
    fn star_stays_in_one_directory() {
        let p = patterns(&["src/*.rs"]);
        assert!(p.matches("src/main.rs"));
        assert!(!p.matches("src/a/b.rs"));
    }

    #[test]
    fn a_literal_directory_covers_what_is_below() {
        let p = patterns(&["config"]);
        assert!(p.matches("config/app.toml"));
        assert!(!p.matches("configs/app.toml"));
        assert!(p.matches_literal("config/app.toml"));
        assert!(!patterns(&["*.toml"]).matches_literal("a.toml"));
    }

    #[test]
    fn patterns_outside_the_root_are_refused_and_match_nothing() {
        for text in ["../x", "/etc/passwd", "", "a/../../b"] {
            assert!(
                matches!(PathPattern::parse(text), Err(Error::OutsideRoot { .. })),
                "{text}"
            );
        }
        assert!(!patterns(&["../x"]).matches("x"));
    }
}
