//! `clab`: parse arguments, run the command, map the result to an exit code.

mod args;
mod commands;
mod diagnostics;
mod exit;
mod huge_pages;
mod render;

use clap::{CommandFactory, Parser};

/// mimalloc, not glibc's malloc: loading a large graph is mostly small allocations, and
/// glibc's allocator was a third of the instructions of `clab list` on 10,000 tasks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    huge_pages::restore();
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
