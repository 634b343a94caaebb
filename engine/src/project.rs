//! Finding and loading a project: the `tasks.kdl` file, its root, its graph.
//!
//! Like `just` with its justfile, clab looks for `tasks.kdl` in the working directory and
//! then in each parent; the directory holding it is the project root, against which every
//! path in the file is resolved.

use std::path::{Path, PathBuf};

use crate::{
    error::Error,
    graph::{self, Graph},
    source::SourceFile,
    syntax::{self, TaskFile},
};

/// The file name clab looks for.
pub const TASKS_FILE: &str = "tasks.kdl";

/// A located project.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project root.
    pub root: PathBuf,
    /// The tasks file.
    pub file: PathBuf,
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
            return Ok(Project { root, file });
        }
        for candidate in dir.ancestors() {
            let file = candidate.join(TASKS_FILE);
            if file.is_file() {
                return Ok(Project {
                    root: candidate.to_path_buf(),
                    file,
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

    /// Read and parse the tasks file.
    pub fn parse(&self) -> Result<TaskFile, Error> {
        let source = SourceFile::read(&self.file, self.display_name()).map_err(|source| {
            Error::Syntax(syntax::Diagnostics {
                file: self.display_name(),
                errors: vec![syntax::Error::Io {
                    path: self.file.display().to_string(),
                    source,
                }],
            })
        })?;
        Ok(syntax::parse_task_file(source)?)
    }

    /// Read, parse and build the graph.
    pub fn load(&self) -> Result<Graph, Error> {
        Ok(graph::build(self.parse()?, &self.root)?)
    }
}
