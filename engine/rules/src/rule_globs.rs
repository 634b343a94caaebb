//! A rule's `globs`, compiled: which project paths a rule is attached to.
//!
//! In: the glob strings from the front matter. Out: a [`RuleGlobs`] matcher and the globs that
//! did not compile. Semantics (gitignore-like, as Cursor applies them): a glob without `/`
//! matches the file name at any depth (`*.py` ≡ `**/*.py`); a leading `/` or `./` anchors at
//! the project root and is dropped; a trailing `/` means everything below; `!glob` excludes;
//! `*` never crosses `/`, `**` does; brace sets `{ts,tsx}` work. Paths are relative to the
//! project root with `/` separators.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use clab_model::source::Spanned;

/// Compiled front matter globs.
#[derive(Clone, Debug)]
pub struct RuleGlobs {
    include: GlobSet,
    exclude: GlobSet,
    includes: usize,
    excludes: usize,
}

impl Default for RuleGlobs {
    fn default() -> Self {
        RuleGlobs {
            include: GlobSet::empty(),
            exclude: GlobSet::empty(),
            includes: 0,
            excludes: 0,
        }
    }
}

/// The glob a front matter pattern means, and whether it is a negation.
pub(crate) fn normalize(pattern: &str) -> (String, bool) {
    let (negated, p) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let anchored = p.starts_with('/') || p.starts_with("./");
    let p = p.trim_start_matches("./").trim_start_matches('/');
    let mut glob = if anchored || p.trim_end_matches('/').contains('/') {
        p.to_owned()
    } else {
        format!("**/{p}")
    };
    if glob.ends_with('/') {
        glob.push_str("**");
    }
    (glob, negated)
}

/// Compile one pattern as [`RuleGlobs`] does; the error text if it does not compile.
pub(crate) fn compile_one(pattern: &str) -> Result<globset::Glob, globset::Error> {
    let (glob, _) = normalize(pattern);
    GlobBuilder::new(&glob).literal_separator(true).build()
}

impl RuleGlobs {
    /// Compile `globs`; returns the matcher (built from the globs that compile) and, for each
    /// glob that does not, its index and the error.
    pub fn compile(globs: &[Spanned<String>]) -> (RuleGlobs, Vec<(usize, globset::Error)>) {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut errors = Vec::new();
        let (mut includes, mut excludes) = (0, 0);
        for (i, g) in globs.iter().enumerate() {
            let (_, negated) = normalize(&g.value);
            match compile_one(&g.value) {
                Ok(glob) if negated => {
                    exclude.add(glob);
                    excludes += 1;
                }
                Ok(glob) => {
                    include.add(glob);
                    includes += 1;
                }
                Err(err) => errors.push((i, err)),
            }
        }
        let matcher = RuleGlobs {
            include: include.build().unwrap_or_else(|_| GlobSet::empty()),
            exclude: exclude.build().unwrap_or_else(|_| GlobSet::empty()),
            includes,
            excludes,
        };
        (matcher, errors)
    }

    /// Whether there is no glob at all.
    pub fn is_empty(&self) -> bool {
        self.includes == 0 && self.excludes == 0
    }

    /// Whether `path` (relative, `/`-separated) is matched: by some glob and by no `!glob`.
    /// With only negations, every path not excluded matches; with no globs, none does.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_start_matches("./");
        if self.is_empty() || self.exclude.is_match(path) {
            return false;
        }
        self.includes == 0 || self.include.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(list: &[&str]) -> RuleGlobs {
        let spanned: Vec<_> = list
            .iter()
            .map(|g| Spanned::new((*g).to_owned(), (0, 0)))
            .collect();
        let (g, errors) = RuleGlobs::compile(&spanned);
        assert!(errors.is_empty(), "{errors:?}");
        g
    }

    #[test]
    fn cursor_glob_semantics() {
        let g = globs(&[
            "*.py",
            "src/**/*.{ts,tsx}",
            "/root.md",
            "docs/",
            "!**/gen_*.py",
        ]);
        for yes in [
            "a.py",
            "deep/x/a.py",
            "src/a/b.tsx",
            "src/b.ts",
            "root.md",
            "docs/a/b.txt",
        ] {
            assert!(g.matches(yes), "{yes}");
        }
        for no in ["a.pyc", "lib/a.ts", "x/root.md", "pkg/gen_a.py", "docsx/a"] {
            assert!(!g.matches(no), "{no}");
        }
    }

    #[test]
    fn star_does_not_cross_directories_when_anchored() {
        let g = globs(&["src/*.rs"]);
        assert!(g.matches("src/a.rs"));
        assert!(!g.matches("src/x/a.rs"));
    }

    #[test]
    fn bad_glob_reported_by_index() {
        let spanned = vec![
            Spanned::new("ok/*".to_owned(), (0, 0)),
            Spanned::new("a[".to_owned(), (0, 0)),
        ];
        let (_, errors) = RuleGlobs::compile(&spanned);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }

    #[test]
    fn only_negations_and_none() {
        assert!(globs(&["!*.md"]).matches("a.rs"));
        assert!(!globs(&["!*.md"]).matches("a.md"));
        assert!(!globs(&[]).matches("a.rs"));
    }
}
