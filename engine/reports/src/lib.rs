//! clab's test and coverage reports as data.
//!
//! # Purpose
//!
//! Read the reports a task writes (`junit "PATH"`, `coverage "PATH" fail-under=N`) into plain
//! values the engine can total, store per run and gate on, and the cli can print. Nothing here
//! runs a task, knows the graph or touches the cache: a report is a file in, data out.
//!
//! # In
//!
//! A path to a JUnit XML report ([`junit::parse`]) or to a coverage report in Cobertura XML,
//! LCOV or coverage.py JSON ([`coverage::parse`]).
//!
//! # Out
//!
//! A [`junit::TestReport`] (cases, [`junit::Totals`], a summary) or
//! a [`coverage::CoverageReport`] (files, totals, a `coverage report -m` style table, the
//! `fail-under` gate); typed errors with miette diagnostics pointing into the report's text.
//! GitHub Actions annotations are the cli's (`cli/src/render/annotation.rs`).
//!
//! # Invariants
//!
//! - Totals are counted from the parsed cases and files, never copied from a report's own
//!   summary attributes.
//! - Bad input is an [`junit::Error`] or [`coverage::Error`], never a panic.
//! - This crate depends on no other clab crate.

pub mod coverage;
pub mod junit;
