//! Results to exit codes, in one place: 0 success, 1 a task failed (or the environment
//! did), 2 usage or configuration, 130 interrupted. A closed stdout (`clab list | head`)
//! is not an error.

use clab_graph::project::Kind;
use std::process::ExitCode;

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Everything succeeded.
    Success,
    /// A task failed.
    TaskFailed,
    /// The user asked for something that does not exist or cannot run (exit 2).
    Usage,
    /// Ctrl-C.
    Interrupted,
}

/// An error that ends a command.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An engine error, classified by its kind.
    Engine(clab_graph::project::Error),
    /// The cache store failed (`clab cache`, `clab history`).
    Store(Box<clab_store::Error>),
    /// A bad argument value.
    Usage(String),
    /// A bad configuration, with its diagnostic (exit 2).
    Config(miette::Report),
    /// A file could not be written.
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing to stdout failed.
    Output(std::io::Error),
}

impl From<clab_graph::project::Error> for Failure {
    fn from(err: clab_graph::project::Error) -> Self {
        Failure::Engine(err)
    }
}

impl From<clab_plan::PlanError> for Failure {
    fn from(err: clab_plan::PlanError) -> Self {
        match err {
            clab_plan::PlanError::Store(err) => Failure::Store(Box::new(err)),
            clab_plan::PlanError::Inputs(err) => Failure::Usage(err.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Output(err)
    }
}

/// The exit code for a command's result; errors are printed here.
pub(crate) fn code(result: Result<Done, Failure>) -> ExitCode {
    match result {
        Ok(Done::Success) => ExitCode::SUCCESS,
        Ok(Done::TaskFailed) => ExitCode::from(1),
        Ok(Done::Usage) => ExitCode::from(2),
        Ok(Done::Interrupted) => ExitCode::from(130),
        Err(Failure::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(Failure::Output(err)) => {
            eprintln!("error: cannot write output: {err}");
            ExitCode::from(1)
        }
        Err(Failure::Store(err)) => {
            eprintln!("{:?}", miette::Report::new(*err));
            ExitCode::from(1)
        }
        Err(Failure::Io { path, source }) => {
            eprintln!("error: cannot write `{path}`: {source}");
            ExitCode::from(1)
        }
        Err(Failure::Config(report)) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Engine(err)) => {
            let kind = err.kind();
            eprintln!("{:?}", miette::Report::new(err));
            match kind {
                Kind::Input => ExitCode::from(2),
                Kind::Environment => ExitCode::from(1),
            }
        }
    }
}
