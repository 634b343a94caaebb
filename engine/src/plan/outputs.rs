//! A node's outputs: the files its `outputs` globs select after it ran, and their digest.
//!
//! Unlike inputs, outputs ignore `.gitignore` (build products usually are ignored) but never
//! look inside `.git/` or `.clab/`. The digest of a node's outputs is what its dependents'
//! keys hold (early cutoff), so it covers paths, contents and modes, and nothing else.

use std::path::Path;

use globset::{Glob, GlobSetBuilder};

use super::cache_key::digest_files;
use super::inputs::{glob_base, minimal_dirs};
use crate::store::{Digest, cached_result::OutputEntry};

/// Files under `root` matching `globs` (`!` excludes), `/`-separated and sorted.
pub fn collect_outputs(root: &Path, globs: &[String]) -> Result<Vec<String>, ignore::Error> {
    let mut include = GlobSetBuilder::new();
    let mut exclude = GlobSetBuilder::new();
    let mut any = false;
    for pattern in globs {
        let (set, body) = match pattern.strip_prefix('!') {
            Some(body) => (&mut exclude, body),
            None => {
                any = true;
                (&mut include, pattern.as_str())
            }
        };
        // The graph refused globs that do not compile; `dir/` means everything below.
        let body = body.trim_end_matches('/');
        for variant in [body.to_owned(), format!("{body}/**")] {
            if let Ok(glob) = Glob::new(&variant) {
                set.add(glob);
            }
        }
    }
    if !any {
        return Ok(Vec::new());
    }
    let include = include
        .build()
        .map_err(|e| ignore::Error::from(std::io::Error::other(e)))?;
    let exclude = exclude
        .build()
        .map_err(|e| ignore::Error::from(std::io::Error::other(e)))?;
    // Walk only where a match can be: below each glob's literal leading directories, or at
    // a literal path itself (a file, or a directory meaning everything below it).
    let bases = minimal_dirs(
        globs
            .iter()
            .filter(|pattern| !pattern.starts_with('!'))
            .map(|pattern| {
                let body = pattern.trim_end_matches('/');
                if body.contains(['*', '?', '[', ']', '{', '}', '\\']) {
                    glob_base(body)
                } else {
                    body.to_owned()
                }
            })
            .collect(),
    );
    let mut found = Vec::new();
    for base in bases {
        let start = if base.is_empty() {
            root.to_owned()
        } else {
            root.join(&base)
        };
        if base.split('/').any(is_cache_dir) || std::fs::symlink_metadata(&start).is_err() {
            continue;
        }
        let walker = ignore::WalkBuilder::new(&start)
            .standard_filters(false)
            .filter_entry(|entry| !entry.file_name().to_str().is_some_and(is_cache_dir))
            .build();
        for entry in walker {
            let entry = entry?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(root) else {
                continue;
            };
            let Some(relative) = relative.to_str() else {
                continue;
            };
            if include.is_match(relative) && !exclude.is_match(relative) {
                found.push(relative.to_owned());
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Directories outputs never come from.
fn is_cache_dir(name: &str) -> bool {
    matches!(name, ".git" | ".clab")
}

/// The digest of stored outputs, as dependents see it.
pub fn digest_entries(entries: &[OutputEntry]) -> Digest {
    digest_files(entries.iter().map(|e| (e.path.as_str(), &e.hash, e.mode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ignored_outputs_but_not_cache_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "build/\n").unwrap();
        for path in [
            "build/a.txt",
            "build/sub/b.txt",
            "build/skip.log",
            ".clab/x.txt",
            "src/c.txt",
        ] {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, path).unwrap();
        }
        let found = collect_outputs(
            root,
            &["build/".into(), "!build/*.log".into(), ".clab/**".into()],
        )
        .unwrap();
        assert_eq!(found, ["build/a.txt", "build/sub/b.txt"]);
        assert!(collect_outputs(root, &[]).unwrap().is_empty());
        // Literal files and directories, globs below literal directories, `*` across `/`,
        // overlapping patterns, and patterns that match nothing.
        let found = collect_outputs(
            root,
            &[
                "src/c.txt".into(),
                "build/sub".into(),
                "build/*.txt".into(),
                "b*/skip.log".into(),
                "missing/*.txt".into(),
                "missing.txt".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            found,
            [
                "build/a.txt",
                "build/skip.log",
                "build/sub/b.txt",
                "src/c.txt"
            ]
        );
    }
}
