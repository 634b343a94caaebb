//! [`Kind`]: what one kind of node does when it runs, behind one trait, so the runner knows
//! only the cache protocol (key → lookup → lock → restore or run → store).
//!
//! ```text
//! Runner ──key_parts (+ Kind::key_extra)──▶ lookup ──hit──▶ restore (+ Kind::restored)
//!                                              └─miss─▶ lock ─▶ Kind::refuse? ─▶ Kind::run ─▶ store
//! ```
//!
//! The four kinds of the graph ([`clab_graph::NodeKind`]) each have a module: [`command`]
//! (shell lines in a process group, with retries), [`llm`] (the generate/check/repair loop
//! and its call log), [`rule`] (scans shared between rule nodes) and [`aggregate`] (nothing).
//! [`Kinds`] picks the one for a node; a test may put a fake behind all four.

pub mod aggregate;
pub mod command;
pub mod llm;
pub mod rule;

use std::{collections::BTreeMap, sync::Arc};

use clab_graph::{NodeId, NodeKind};
use clab_plan::{Reason, cache_key::KeyParts, inputs::InputFile};

use crate::{context::Context, event::Status, scheduler::Job, task_log::TaskLog};

/// What a run of a node produced: its log, or the failure and the log so far.
pub type RunResult = Result<TaskLog, (Status, TaskLog)>;

/// One node's run, as the runner hands it to its kind.
pub struct Work<'a> {
    /// The node.
    pub id: NodeId,
    /// The job thread running it: its stop signal and the work deferred on it.
    pub job: &'a Job,
    /// Its inputs as hashed for its key; empty when it has no key (no cache).
    pub inputs: Arc<[InputFile]>,
    /// Its key and key parts, when it has a key.
    pub keyed: Option<(&'a str, &'a KeyParts)>,
    /// The key and key parts of its last recorded run.
    pub previous: Option<&'a (String, KeyParts)>,
}

/// What a kind of node does. Every method but [`run`](Kind::run) has a default that does
/// nothing, which is right for most kinds.
pub trait Kind: Send + Sync {
    /// Key parts of the kind's own, computed with the key: an LLM step's rendered request.
    /// `Err` fails the node before it starts.
    fn key_extra(&self, cx: &Context, id: NodeId) -> Result<BTreeMap<String, String>, String> {
        let _ = (cx, id);
        Ok(BTreeMap::new())
    }

    /// Why node `id`, which must run (`reason`: why, when it has a key), may not run at all
    /// (an LLM step with `--offline` or AI off); it then fails before it starts.
    fn refuse(&self, cx: &Context, id: NodeId, reason: Option<&Reason>) -> Option<String> {
        let _ = (cx, id, reason);
        None
    }

    /// Whether the kind starts processes. Such a kind lets the job run its deferred work
    /// (storing the previous node's outputs) once a process is started
    /// ([`Job::run_deferred`]); for any other kind the runner runs it first.
    fn starts_processes(&self) -> bool {
        false
    }

    /// Do node `work.id`'s work, blocking the job thread until it is done.
    fn run(&self, cx: &Context, work: Work<'_>) -> RunResult;

    /// A cached result of node `id` was restored; `extra` is its key's
    /// [`key_extra`](Kind::key_extra) parts.
    fn restored(&self, cx: &Context, id: NodeId, extra: &BTreeMap<String, String>) {
        let _ = (cx, id, extra);
    }
}

/// The kind of each of the graph's node kinds.
#[derive(Clone)]
pub struct Kinds {
    /// Shell commands.
    pub command: Arc<dyn Kind>,
    /// LLM steps.
    pub llm: Arc<dyn Kind>,
    /// Rule scans.
    pub rule: Arc<dyn Kind>,
    /// Aggregates.
    pub aggregate: Arc<dyn Kind>,
}

impl Kinds {
    /// The same `kind` for every node (a test's fake).
    pub fn all(kind: Arc<dyn Kind>) -> Kinds {
        Kinds {
            command: Arc::clone(&kind),
            llm: Arc::clone(&kind),
            rule: Arc::clone(&kind),
            aggregate: kind,
        }
    }

    /// The kind that runs a node of `kind`.
    pub fn of(&self, kind: &NodeKind) -> &dyn Kind {
        match kind {
            NodeKind::Command { .. } => &*self.command,
            NodeKind::Llm(_) => &*self.llm,
            NodeKind::Rule(_) => &*self.rule,
            NodeKind::Aggregate => &*self.aggregate,
        }
    }
}
