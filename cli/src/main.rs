//! `clab`: parse arguments, run the command, map the result to an exit code.

mod args;
mod commands;
mod diagnostics;
mod exit;
mod heap;
mod render;

use clap::{CommandFactory, Parser};

/// The C library's `malloc` for a small run, mimalloc for a large graph (see `heap`).
#[global_allocator]
static ALLOCATOR: heap::Heap = heap::Heap;

fn main() -> std::process::ExitCode {
    clab_model::phase::start();
    // `COMPLETE=bash clab …` is the shell asking for completions (`clab completions SHELL`
    // prints the script that does): answer and exit before anything else runs.
    clap_complete::CompleteEnv::with_factory(args::Args::command).complete();
    let args = args::Args::parse();
    clab_model::phase::mark("args");
    diagnostics::install(args.color);
    let result = commands::run(args);
    let code = exit::code(result);
    clab_model::phase::print();
    code
}
