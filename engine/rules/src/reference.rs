//! A rule file's `@path` and `[text](mdc:path)` references, resolved against the project
//! root, and the files they attach to the rule's LLM context.
//!
//! In: a [`RuleFile`] (its body's [`FileRef`]s, its root-relative name and, when it was
//! [discovered](crate::discover), the project root). Out: each reference's [`Target`] — a
//! normalized path inside the project, or [`Target::Outside`] — and, for `{{rules}}`, each
//! referenced file's text under its path.
//!
//! Invariants: a path that leaves the project (`..` past the root, `~`, a drive, or a
//! symlink whose target is outside) is never read. A path is looked up from the project root
//! first, then from the rule file's folder, as `missing_file` does. The rendered text changes
//! whenever a referenced file's content does (a file over [`MAX_ATTACHED_BYTES`] is named
//! with its size and hash instead of its text), so the key of every LLM step that sees the
//! rule changes with it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use super::{RuleFile, body::FileRef};

/// The largest referenced file whose text is attached; a larger one is named with its size
/// and blake3 hash.
pub const MAX_ATTACHED_BYTES: u64 = 256 * 1024;

/// Where a reference points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A path inside the project, relative to its root, normalized (`/`-separated, no `.`
    /// or `..`); the file may not exist.
    Inside(String),
    /// Outside the project: never read or attached (an `outside_root` error).
    Outside,
}

/// One reference of a rule file's body and where it points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The reference as written.
    pub written: &'a FileRef,
    /// Where it points.
    pub target: Target,
}

impl RuleFile {
    /// Set the project root the file's references are resolved against (which
    /// [`discover`](crate::discover) does).
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> RuleFile {
        self.root = Some(root.into());
        self
    }

    /// The project root, when known.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Every reference of the body with its target, in file order.
    pub fn resolved_references(&self) -> Vec<Reference<'_>> {
        self.body
            .references
            .iter()
            .map(|written| Reference {
                target: resolve(self.root(), self.source.name(), &written.path.value),
                written,
            })
            .collect()
    }

    /// The project paths the body references (inside the project only), each once, in file
    /// order: the files whose text [`render_rules`](crate::render_rules) attaches, which a
    /// planner hashes as inputs of the LLM steps that see this rule.
    pub fn references(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.resolved_references()
            .into_iter()
            .filter_map(|r| match r.target {
                Target::Inside(path) => seen.insert(path.clone()).then_some(path),
                Target::Outside => None,
            })
            .collect()
    }
}

/// The paths every rule of `files` references, sorted, each once (see
/// [`RuleFile::references`]).
pub fn referenced_paths(files: &[&RuleFile]) -> Vec<String> {
    let all: BTreeSet<String> = files.iter().flat_map(|f| f.references()).collect();
    all.into_iter().collect()
}

/// Resolve `written`, referenced from the rule file named `rule_name` (root-relative).
pub(crate) fn resolve(root: Option<&Path>, rule_name: &str, written: &str) -> Target {
    let written = written.trim();
    let first = written.split('/').next().unwrap_or("");
    if written.starts_with('~') || written.contains('\\') || first.contains(':') {
        return Target::Outside;
    }
    let rooted = written.starts_with('/');
    let relative = written.trim_start_matches('/');
    let folder = rule_name.rsplit_once('/').map_or("", |(folder, _)| folder);
    let candidates: Vec<String> = [
        normalize(relative),
        (!rooted)
            .then(|| normalize(&format!("{folder}/{relative}")))
            .flatten(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let Some(fallback) = candidates.first() else {
        return Target::Outside;
    };
    let Some(root) = root else {
        return Target::Inside(fallback.clone());
    };
    let chosen = candidates
        .iter()
        .find(|c| root.join(c).exists())
        .unwrap_or(fallback);
    // A symlink inside the project may point out of it.
    if let (Ok(real), Ok(real_root)) = (root.join(chosen).canonicalize(), root.canonicalize())
        && !real.starts_with(&real_root)
    {
        return Target::Outside;
    }
    Target::Inside(chosen.clone())
}

/// `a/./b/../c` → `a/c`; `None` when the path climbs out of where it starts, or is empty.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Append to `out` the text of each file `file` references that `attached` does not hold yet
/// (and add it there), each under a heading with its path. Nothing without a root.
pub(crate) fn render_attachments(
    file: &RuleFile,
    attached: &mut BTreeSet<String>,
    out: &mut String,
) {
    let Some(root) = file.root() else {
        return;
    };
    for path in file.references() {
        if !attached.insert(path.clone()) {
            continue;
        }
        out.push_str(&format!(
            "\n### File `{path}` (referenced by rule `{}`)\n\n",
            file.id
        ));
        out.push_str(&attachment(&root.join(&path)));
    }
}

/// A referenced file's text in a fence longer than any backtick run in it, or a line saying
/// why the text is not there.
fn attachment(path: &Path) -> String {
    let size = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return "(not a file)\n".to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return "(not found)\n".to_owned();
        }
        Err(err) => return format!("(could not be read: {})\n", err.kind()),
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => return format!("(could not be read: {})\n", err.kind()),
    };
    if size > MAX_ATTACHED_BYTES || bytes.len() as u64 > MAX_ATTACHED_BYTES {
        // The hash keeps the rendered text, and so the key, tied to the content.
        return format!(
            "(not attached: {} bytes, over the {MAX_ATTACHED_BYTES}-byte limit; blake3 {})\n",
            bytes.len(),
            blake3::hash(&bytes).to_hex()
        );
    }
    let text = String::from_utf8_lossy(&bytes);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("{fence}\n{text}{newline}{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root_or_not_at_all() {
        let cases = [
            ("docs/a.md", Target::Inside("docs/a.md".to_owned())),
            ("./docs/./a.md", Target::Inside("docs/a.md".to_owned())),
            ("/docs/a.md", Target::Inside("docs/a.md".to_owned())),
            // Climbs out from the root, but not from the rule's folder.
            (
                "../shared.md",
                Target::Inside(".cursor/shared.md".to_owned()),
            ),
            ("../../../etc/passwd.md", Target::Outside),
            ("/../etc/passwd.md", Target::Outside),
            ("~/.ssh/config.md", Target::Outside),
            ("C:/x.md", Target::Outside),
            ("a\\b.md", Target::Outside),
        ];
        for (written, want) in cases {
            assert_eq!(
                resolve(None, ".cursor/rules/r.mdc", written),
                want,
                "{written}"
            );
        }
    }

    #[test]
    fn existing_files_win_and_symlinks_out_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(root.join(".cursor/rules")).unwrap();
        std::fs::write(root.join(".cursor/rules/near.md"), "near").unwrap();
        std::fs::write(dir.path().join("secret.md"), "secret").unwrap();
        let name = ".cursor/rules/r.mdc";
        // Not at the root, but next to the rule file.
        assert_eq!(
            resolve(Some(&root), name, "near.md"),
            Target::Inside(".cursor/rules/near.md".to_owned())
        );
        // Missing everywhere: the root-relative path.
        assert_eq!(
            resolve(Some(&root), name, "gone.md"),
            Target::Inside("gone.md".to_owned())
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.md"), root.join("link.md")).unwrap();
            assert_eq!(resolve(Some(&root), name, "link.md"), Target::Outside);
        }
    }

    #[test]
    fn attachments_are_fenced_and_large_files_are_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.md");
        std::fs::write(&small, "has ``` inside").unwrap();
        assert_eq!(attachment(&small), "````\nhas ``` inside\n````\n");
        let large = dir.path().join("large.txt");
        std::fs::write(&large, vec![b'x'; MAX_ATTACHED_BYTES as usize + 1]).unwrap();
        let text = attachment(&large);
        assert!(text.starts_with("(not attached: 262145 bytes"), "{text}");
        std::fs::write(&large, vec![b'y'; MAX_ATTACHED_BYTES as usize + 1]).unwrap();
        assert_ne!(attachment(&large), text, "the hash follows the content");
        assert_eq!(attachment(&dir.path().join("none.md")), "(not found)\n");
    }
}
