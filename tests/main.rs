//! End-to-end tests: each drives the real `clab` binary on a project in a temp directory.
//!
//! One test binary for all of them (`autotests = false` in cli/Cargo.toml) so CI links once.

mod cache;
mod cli;
mod diagnostics;
mod examples;
mod llm;
mod reliability;
mod remote;
mod reporter;
mod rule_composition;
mod rule_nodes;
mod rules;
mod sandbox;
mod run;
mod schemas;
mod templates;
mod testing;
mod watch;
mod workspaces;
mod test;
