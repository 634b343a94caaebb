//! clab's engine: everything but argument parsing and terminal drawing.
//!
//! ```text
//! tasks.kdl ──syntax──▶ TaskFile ──graph──▶ Graph ──plan──▶ Plan ──exec──▶ Outcome
//!  *.mdc ────rules───▶ RuleFile ───┘          │                 │
//!                                            store (cache.db + cas/) ◀─┘
//!                                   every stage reports through event::Reporter
//! ```
//!
//! Each stage takes the previous stage's type and returns the next; none reaches back up the
//! pipeline. Rules (`*.mdc`) and LLM steps enter the graph as node kinds, not side systems.
#![warn(missing_docs)]

pub use clab_model::source;
/// Finding and loading a project (the `clab-graph` crate).
pub use clab_graph::project;
pub use clab_rules as rules;
/// `tasks.kdl` → `TaskFile` (the `clab-syntax` crate).
pub use clab_syntax as syntax;
/// `TaskFile` → `Graph` (the `clab-graph` crate).
pub use clab_graph as graph;
/// `Graph` + store → keys and decisions (the `clab-plan` crate).
pub use clab_plan as plan;
pub mod exec;
/// Test and coverage reports as data (the `clab-reports` crate; also `exec::junit`, `exec::coverage`).
pub use clab_reports as reports;
pub mod watch;
/// The cache store (the `clab-store` crate).
pub use clab_store as store;
pub mod event;
/// The error of loading a project (`clab_graph::project::Error`).
pub mod error {
    pub use clab_graph::project::{Error, Kind};
}
pub use clab_model::atomic_write;
