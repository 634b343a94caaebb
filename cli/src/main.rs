//! `clab`: parse arguments, run the command, map the result to an exit code.

mod args;
mod commands;
mod diagnostics;
mod exit;
mod render;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = args::Args::parse();
    diagnostics::install(args.color);
    let result = commands::run(args);
    exit::code(result)
}
