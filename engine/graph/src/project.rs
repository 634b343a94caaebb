//! Finding and loading a project: the `tasks.kdl` file, its root, its graph.
//!
//! Like `just` with its justfile, clab looks for `tasks.kdl` in the working directory and
//! then in each parent; the directory holding it is the project root, against which every
//! path in the file is resolved. When that file belongs to a workspace member — a
//! `tasks.kdl` further up lists its directory in `members` — the project is the workspace:
//! its root is the workspace's, and the member is the *focus*, whose tasks bare names mean
//! (see [`crate::Scope`]). `-f FILE` names the root file itself: no search upwards.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;

mod error;

pub use self::error::{Error, Kind};
use crate::{Graph, Scope, workspace::Workspace};
use clab_model::source::SourceFile;
use clab_syntax::{self as syntax, TaskFile, parse_cache::ParseCache};

/// The file name clab looks for.
pub const TASKS_FILE: &str = "tasks.kdl";

/// A located project.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project root.
    pub root: PathBuf,
    /// The tasks file.
    pub file: PathBuf,
    /// Where parses of the tasks file are cached (see [`ParseCache`]); `None`: never.
    pub cache_dir: Option<PathBuf>,
    /// The member directory clab was started in (relative to the root), in a workspace.
    pub focus: Option<String>,
    /// `--filter` patterns: which members bare names expand to.
    pub filters: Vec<String>,
    /// `--since REF`: only members changed since the revision, and their dependents.
    pub since: Option<String>,
    /// Called with the root tasks file's text as soon as it is read, before it is parsed
    /// (the CLI picks its allocator for the graph ahead there; see `with_text_hook`).
    pub text_hook: Option<fn(&str)>,
}

impl Project {
    /// Locate the project: `file` if given (relative to `dir`), else the nearest `tasks.kdl`
    /// in `dir` or its parents.
    pub fn discover(dir: &Path, file: Option<&Path>) -> Result<Project, Error> {
        let dir = std::path::absolute(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        if let Some(file) = file {
            let file = dir.join(file);
            if !file.is_file() {
                return Err(Error::NoTasksFile {
                    searched: file.display().to_string(),
                });
            }
            let root = file.parent().map_or_else(|| dir.clone(), Path::to_path_buf);
            return Ok(Project::at(root, file, None));
        }
        for candidate in dir.ancestors() {
            let file = candidate.join(TASKS_FILE);
            if file.is_file() {
                if let Some(project) = workspace_above(candidate) {
                    return Ok(project);
                }
                return Ok(Project::at(candidate.to_path_buf(), file, None));
            }
        }
        Err(Error::NoTasksFile {
            searched: dir.display().to_string(),
        })
    }

    fn at(root: PathBuf, file: PathBuf, focus: Option<String>) -> Project {
        Project {
            root,
            file,
            cache_dir: None,
            focus,
            filters: Vec::new(),
            since: None,
            text_hook: None,
        }
    }

    /// Select members: `--filter` patterns and `--since REF` (see [`crate::Scope`]).
    pub fn with_selection(mut self, filters: Vec<String>, since: Option<String>) -> Project {
        self.filters = filters;
        self.since = since;
        self
    }

    /// The name diagnostics show for the tasks file: relative to the root when possible.
    pub fn display_name(&self) -> String {
        self.file
            .strip_prefix(&self.root)
            .unwrap_or(&self.file)
            .display()
            .to_string()
    }

    /// Call `hook` with the root tasks file's text when it is read, before it is parsed or
    /// looked up in the parse cache: what the text says about the graph ahead (its size, a
    /// workspace's `members`) without a second read of the file.
    pub fn with_text_hook(mut self, hook: fn(&str)) -> Project {
        self.text_hook = Some(hook);
        self
    }

    /// Cache parses of the tasks file in `dir` (the project's cache directory).
    pub fn with_parse_cache(mut self, dir: PathBuf) -> Project {
        self.cache_dir = Some(dir);
        self
    }

    /// Read and parse the tasks file (from the parse cache when its text is unchanged).
    pub fn parse(&self) -> Result<TaskFile, Error> {
        Ok(self.parse_file(&self.file, self.display_name())?)
    }

    /// Read and parse one tasks file (the root's or a member's), through the parse cache.
    fn parse_file(&self, path: &Path, name: String) -> Result<TaskFile, syntax::Diagnostics> {
        let source = SourceFile::read_at_most(path, name.clone(), syntax::MAX_FILE_BYTES).map_err(
            |source| {
                let error = match source.kind() {
                    std::io::ErrorKind::FileTooLarge => syntax::Error::TooLarge {
                        file: name.clone(),
                        size: std::fs::metadata(path).map_or(0, |m| m.len()),
                        limit: syntax::MAX_FILE_BYTES,
                    },
                    _ => syntax::Error::Io {
                        path: path.display().to_string(),
                        source,
                    },
                };
                syntax::Diagnostics {
                    file: name,
                    errors: vec![error],
                }
            },
        )?;
        if let Some(hook) = self.text_hook
            && path == self.file
        {
            hook(source.text());
        }
        let cache = self
            .cache_dir
            .as_deref()
            .map(|dir| ParseCache::new(dir, path));
        if let Some(file) = cache.as_ref().and_then(|cache| cache.load(&source)) {
            return Ok(file);
        }
        let file = syntax::parse_task_file(source)?;
        if let Some(cache) = cache {
            cache.store(&file);
        }
        Ok(file)
    }

    /// Read, parse and build the graph: in a workspace, every member's tasks too, scoped
    /// to the focus and the selection.
    pub fn load(&self) -> Result<Graph, Error> {
        let file = self.parse()?;
        if file.members.is_empty() {
            let flag = match (self.filters.is_empty(), &self.since) {
                (false, _) => Some("--filter"),
                (true, Some(_)) => Some("--since"),
                (true, None) => None,
            };
            if let Some(flag) = flag {
                return Err(single(crate::workspace::Error::NotAWorkspace { flag }).into());
            }
            return Ok(crate::build(file, &self.root)?);
        }
        let parse = |path: &Path, name: String| self.parse_file(path, name);
        let workspace = Workspace::load(&self.root, &file, &parse)?;
        let mut graph = crate::build_workspace(file, workspace, &self.root)?;
        let focus = self
            .focus
            .as_deref()
            .and_then(|dir| graph.workspace().members.iter().position(|m| m.dir == dir))
            .map(crate::workspace::MemberId::new);
        let mut selection = None;
        if !self.filters.is_empty() {
            selection = Some(graph.select_filters(&self.filters).map_err(single)?);
        }
        if let Some(rev) = &self.since {
            let changed = crate::workspace::changed_files(&self.root, rev).map_err(single)?;
            let since = graph.select_changed(&changed);
            selection = Some(match selection {
                Some(filtered) => filtered.and(&since),
                None => since,
            });
        }
        graph.set_scope(Scope { focus, selection });
        Ok(graph)
    }

    /// [`load`](Self::load) for a command that runs the graph: also refuse rule files that
    /// would not compile as written ([`clab_rules::check_compiles`]). Commands that only
    /// show the project (`list`, `graph`, `rules`) use `load`, so a broken rule can still be
    /// looked at.
    pub fn load_runnable(&self) -> Result<Graph, Error> {
        let graph = self.load()?;
        clab_rules::check_compiles(graph.rule_files())?;
        Ok(graph)
    }
}

/// The workspace whose members include `dir` (which holds a tasks.kdl): the nearest
/// `tasks.kdl` above it with a `members` glob matching it, as a project focused on `dir`.
/// A file above that does not parse is not a workspace here; loading it would report it.
fn workspace_above(dir: &Path) -> Option<Project> {
    for candidate in dir.ancestors().skip(1) {
        let file = candidate.join(TASKS_FILE);
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // Most files have no members: skip the parse.
        if !text.contains("members") {
            continue;
        }
        let Ok(parsed) = syntax::parse_task_file(SourceFile::new(&file, TASKS_FILE, text)) else {
            continue;
        };
        let Some(relative) = dir
            .strip_prefix(candidate)
            .ok()
            .and_then(|r| r.to_str())
            .map(|r| r.replace('\\', "/"))
        else {
            continue;
        };
        let matches = |pattern: &str| {
            let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
            GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .is_ok_and(|glob| glob.compile_matcher().is_match(&relative))
        };
        let included = parsed
            .members
            .iter()
            .any(|m| !m.value.starts_with('!') && matches(&m.value));
        let excluded = parsed
            .members
            .iter()
            .any(|m| m.value.strip_prefix('!').is_some_and(matches));
        if included && !excluded {
            return Some(Project::at(candidate.to_path_buf(), file, Some(relative)));
        }
    }
    None
}

/// One workspace problem as the diagnostics of loading.
fn single(error: crate::workspace::Error) -> crate::workspace::Diagnostics {
    crate::workspace::Diagnostics {
        errors: vec![error],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    fn count(text: &str) {
        assert!(text.contains("task \"hi\""), "the root file's text: {text}");
        SEEN.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn the_text_hook_sees_the_root_file_once_per_read_before_the_parse_cache() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "task \"hi\" {{ run \"echo hi\" }}\n{}",
            "// pad\n".repeat(400)
        );
        std::fs::write(dir.path().join(TASKS_FILE), text).unwrap();
        let project = Project::discover(dir.path(), None)
            .unwrap()
            .with_text_hook(count)
            .with_parse_cache(dir.path().join(".clab"));
        project.load().unwrap();
        assert_eq!(SEEN.load(Ordering::Relaxed), 1);
        // The second load is answered by the parse cache; the hook still sees the text.
        project.load().unwrap();
        assert_eq!(SEEN.load(Ordering::Relaxed), 2);
    }
}
