//! One module per subcommand; [`run`] dispatches.

mod check;
mod graph;
mod list;
mod run;

use std::path::PathBuf;

use engine::project::Project;

use crate::{
    args::{Args, Command},
    exit::{Done, Failure},
};

/// Run the command the arguments ask for.
pub fn run(args: Args) -> Result<Done, Failure> {
    match &args.command {
        Command::Run(run_args) => run::run(&args, run_args),
        Command::List => list::list(&project(&args)?),
        Command::Check => check::check(&project(&args)?),
        Command::Graph(graph_args) => graph::graph(&project(&args)?, graph_args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Args::command();
            clap_complete::generate(*shell, &mut command, "clab", &mut std::io::stdout());
            Ok(Done::Success)
        }
    }
}

/// The project the global `-C` and `-f` flags point at.
fn project(args: &Args) -> Result<Project, Failure> {
    let dir = args.directory.clone().unwrap_or_else(|| PathBuf::from("."));
    Ok(Project::discover(&dir, args.file.as_deref())?)
}
