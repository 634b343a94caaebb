//! `{{context}}`: the context files bundled with their paths in fenced blocks, under a token
//! budget.
//!
//! Each file becomes a line with its path in backticks followed by a fenced block whose info
//! string is a language guessed from the extension. The fence is one backtick longer than the
//! longest run of backticks in the file (at least three), so a file that itself contains
//! ```` ``` ```` cannot close the block early. Files are read as UTF-8 (invalid bytes
//! replaced) in the order given.
//!
//! Token estimate: bytes / 4, rounded up — the usual rule of thumb for English text and code
//! with BPE tokenizers (OpenAI's and Anthropic's). It overestimates for plain ASCII prose
//! slightly and underestimates for non-Latin scripts; it is a guard against pasting a whole
//! tree into a prompt, not an exact count.

use std::path::Path;

use super::{Error, output_path::confine};

/// One context file: its project-relative path and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// The path as shown to the model, relative to the project root with `/` separators.
    pub path: String,
    /// The file's text.
    pub text: String,
}

/// The files of one node's `context`, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContextBundle {
    /// The files.
    pub files: Vec<ContextFile>,
}

impl ContextBundle {
    /// Read `paths` (relative to `root`); `task` names the task in errors. A path that leaves
    /// the project (absolute, `..`, a symlink out) is refused: context is sent to a server, so
    /// it must not pick up files from elsewhere on the machine.
    pub fn read(task: &str, root: &Path, paths: &[String]) -> Result<ContextBundle, Error> {
        let files = paths
            .iter()
            .map(|path| {
                let full = confine(root, path).map_err(|reason| Error::ContextOutsideProject {
                    task: task.to_owned(),
                    path: path.clone(),
                    reason,
                })?;
                let bytes = std::fs::read(full).map_err(|source| Error::ContextRead {
                    task: task.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                Ok(ContextFile {
                    path: path.clone(),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(ContextBundle { files })
    }

    /// The text that replaces `{{context}}`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, file) in self.files.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let fence = fence_for(&file.text);
            out.push_str(&format!(
                "`{}`:\n{fence}{}\n",
                file.path,
                language(&file.path)
            ));
            out.push_str(&file.text);
            if !file.text.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&fence);
            out.push('\n');
        }
        out
    }

    /// [`ContextBundle::render`], failing when the estimate exceeds `budget` tokens
    /// (`max-context-tokens`); the error lists every file with its size, largest first.
    pub fn render_within(&self, task: &str, budget: Option<u64>) -> Result<String, Error> {
        let rendered = self.render();
        let estimated = estimate_tokens(rendered.len());
        match budget {
            Some(budget) if estimated > budget => {
                let mut sizes: Vec<(&str, usize)> = self
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.text.len()))
                    .collect();
                sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let files = sizes
                    .iter()
                    .map(|(path, bytes)| {
                        format!(
                            "  `{path}`: {bytes} bytes, ~{} tokens",
                            estimate_tokens(*bytes)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Err(Error::ContextBudget {
                    task: task.to_owned(),
                    estimated,
                    budget,
                    files,
                })
            }
            _ => Ok(rendered),
        }
    }
}

/// Estimated tokens for `bytes` bytes of text: `ceil(bytes / 4)`.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// A backtick fence that `text` cannot close: one longer than its longest backtick run, at
/// least three.
pub fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn language(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match extension {
        "py" | "pyi" => "python",
        "rs" => "rust",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" | "tsx" => "typescript",
        "go" => "go",
        "java" => "java",
        "c" | "h" => "c",
        "cc" | "cpp" | "hpp" => "cpp",
        "sh" | "bash" => "sh",
        "md" | "mdc" => "markdown",
        "toml" => "toml",
        "json" => "json",
        "yaml" | "yml" => "yaml",
        "kdl" => "kdl",
        "html" => "html",
        "css" => "css",
        "sql" => "sql",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::render;

    fn bundle(files: &[(&str, &str)]) -> ContextBundle {
        ContextBundle {
            files: files
                .iter()
                .map(|(path, text)| ContextFile {
                    path: (*path).to_owned(),
                    text: (*text).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn renders_paths_and_fences() {
        let rendered = bundle(&[("src/a.py", "x = 1\n"), ("notes", "plain")]).render();
        assert_eq!(
            rendered,
            "`src/a.py`:\n```python\nx = 1\n```\n\n`notes`:\n```\nplain\n```\n"
        );
    }

    #[test]
    fn fence_outgrows_backticks_in_the_file() {
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a `b` c"), "```");
        assert_eq!(fence_for("```rust\nfn x() {}\n```"), "````");
        assert_eq!(fence_for("`````"), "``````");
        let doc = "# Readme\n```sh\nmake\n```\n";
        let rendered = bundle(&[("README.md", doc)]).render();
        assert!(
            rendered.starts_with("`README.md`:\n````markdown\n"),
            "{rendered}"
        );
        assert!(rendered.ends_with("```\n````\n"), "{rendered}");
    }

    #[test]
    fn reads_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "alpha").unwrap();
        let read = ContextBundle::read("t", dir.path(), &["a.txt".to_owned()]).unwrap();
        assert_eq!(read.files[0].text, "alpha");
        let err = ContextBundle::read("t", dir.path(), &["nope.txt".to_owned()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read context file `nope.txt` of task `t`"
        );
        let outside =
            ContextBundle::read("t", dir.path(), &["../etc/passwd".to_owned()]).unwrap_err();
        assert_eq!(
            outside.to_string(),
            "context file `../etc/passwd` of task `t` is outside the project: its `..` climbs above the project root"
        );
    }

    #[test]
    fn budget_is_enforced_with_a_file_list() {
        let big = "x".repeat(4000);
        let small = "y".repeat(400);
        let b = bundle(&[("src/small.py", &small), ("src/big.py", &big)]);
        assert!(b.render_within("gen-tests[src/a.py]", Some(10_000)).is_ok());
        assert!(b.render_within("gen-tests[src/a.py]", None).is_ok());
        let err = b
            .render_within("gen-tests[src/a.py]", Some(500))
            .unwrap_err();
        match &err {
            Error::ContextBudget {
                estimated,
                budget: 500,
                ..
            } => assert!(*estimated > 1100),
            other => panic!("{other:?}"),
        }
        insta::assert_snapshot!("context_budget", render::graphical(&err));
        insta::assert_snapshot!("context_budget_json", render::json(&err));
    }

    #[test]
    fn token_estimate_rounds_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }

    proptest::proptest! {
        /// Whatever a file holds (backtick runs, fences of either kind), the block around it
        /// comes back out intact through `extract "code"`.
        #[test]
        fn a_bundled_file_survives_extraction(text in "([a-z `~\n]|```|~~~|````){0,60}") {
            let rendered = bundle(&[("f.md", &text)]).render();
            let back = crate::extract(crate::Extract::Code, &rendered).unwrap();
            let expected = format!("{}\n", text.trim_end_matches('\n'));
            proptest::prop_assert_eq!(back, expected);
        }
    }
}
