//! The error of loading a project: finding, parsing and building its graph, wrapping each stage's error.
//!
//! Every variant is classified by [`Error::kind`], which the cli maps to exit codes and watch
//! mode uses to decide whether to keep going.

use miette::Diagnostic;

use crate as graph;
use clab_syntax as syntax;

/// What kind of problem an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The user's input is wrong: tasks.kdl, a rule, an argument. Exit code 2.
    Input,
    /// The environment failed: a file system, a server. Exit code 1.
    Environment,
}

/// Any error of finding, parsing or building a project.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// No tasks.kdl was found.
    #[error("no `tasks.kdl` found in `{searched}` or any parent directory")]
    #[diagnostic(
        code(clab::project::not_found),
        help("create one with `clab init`, or point at one with `-f FILE` or `-C DIR`")
    )]
    NoTasksFile {
        /// Where clab looked.
        searched: String,
    },

    /// tasks.kdl does not parse.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(#[from] syntax::Diagnostics),

    /// tasks.kdl parses but does not make a valid graph.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Graph(#[from] graph::Diagnostics),

    /// The workspace's members, manifests or selection.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Workspace(#[from] crate::workspace::Diagnostics),

    /// A rule file would not compile as written (`run` and `watch` only).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Rules(#[from] clab_rules::Broken),

    /// A target on the command line.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Target(#[from] graph::UnknownTarget),

    /// Arguments after `--` that cannot be passed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Args(#[from] graph::ArgsError),

    /// An I/O failure with the path it concerns.
    #[error("cannot access `{path}`")]
    #[diagnostic(code(clab::io))]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether this is the user's input or the environment.
    pub fn kind(&self) -> Kind {
        match self {
            Error::NoTasksFile { .. }
            | Error::Syntax(_)
            | Error::Graph(_)
            | Error::Rules(_)
            | Error::Target(_)
            | Error::Args(_) => Kind::Input,
            Error::Workspace(diagnostics) => {
                if diagnostics.errors.iter().any(|e| e.is_environment()) {
                    Kind::Environment
                } else {
                    Kind::Input
                }
            }
            Error::Io { .. } => Kind::Environment,
        }
    }
}
