//! Finding and loading a project: the `tasks.kdl` file, its root, its graph.
//!
//! Like `just` with its justfile, clab looks for `tasks.kdl` in the working directory and
//! then in each parent; the directory holding it is the project root, against which every
//! path in the file is resolved.

use std::path::{Path, PathBuf};

mod error;

pub use self::error::{Error, Kind};
use crate::Graph;
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
            return Ok(Project {
                root,
                file,
                cache_dir: None,
            });
        }
        for candidate in dir.ancestors() {
            let file = candidate.join(TASKS_FILE);
            if file.is_file() {
                return Ok(Project {
                    root: candidate.to_path_buf(),
                    file,
                    cache_dir: None,
                });
            }
        }
        Err(Error::NoTasksFile {
            searched: dir.display().to_string(),
        })
    }

    /// The name diagnostics show for the tasks file: relative to the root when possible.
    pub fn display_name(&self) -> String {
        self.file
            .strip_prefix(&self.root)
            .unwrap_or(&self.file)
            .display()
            .to_string()
    }

    /// Cache parses of the tasks file in `dir` (the project's cache directory).
    pub fn with_parse_cache(mut self, dir: PathBuf) -> Project {
        self.cache_dir = Some(dir);
        self
    }

    /// Read and parse the tasks file (from the parse cache when its text is unchanged).
    pub fn parse(&self) -> Result<TaskFile, Error> {
        let source =
            SourceFile::read_at_most(&self.file, self.display_name(), syntax::MAX_FILE_BYTES)
                .map_err(|source| {
                    let error = match source.kind() {
                        std::io::ErrorKind::FileTooLarge => syntax::Error::TooLarge {
                            file: self.display_name(),
                            size: std::fs::metadata(&self.file).map_or(0, |m| m.len()),
                            limit: syntax::MAX_FILE_BYTES,
                        },
                        _ => syntax::Error::Io {
                            path: self.file.display().to_string(),
                            source,
                        },
                    };
                    Error::Syntax(syntax::Diagnostics {
                        file: self.display_name(),
                        errors: vec![error],
                    })
                })?;
        let cache = self
            .cache_dir
            .as_deref()
            .map(|dir| ParseCache::new(dir, &self.file));
        if let Some(file) = cache.as_ref().and_then(|cache| cache.load(&source)) {
            return Ok(file);
        }
        let file = syntax::parse_task_file(source)?;
        if let Some(cache) = cache {
            cache.store(&file);
        }
        Ok(file)
    }

    /// Read, parse and build the graph.
    pub fn load(&self) -> Result<Graph, Error> {
        Ok(crate::build(self.parse()?, &self.root)?)
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
