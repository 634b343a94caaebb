//! The scheduler: starts ready nodes, at most `jobs` at a time, critical path first.
//!
//! It knows the graph's shape and nothing about what a node does: each node is handed to a
//! [`Visitor`], whose [`Outcome`] decides what becomes ready next. Aggregates complete the
//! moment their dependencies do and take no job slot.
//!
//! Failure policy: by default the first failure stops new nodes from starting while running
//! ones finish; a second failure stops those too. With `keep_going`, everything that does not
//! depend on a failure still runs. An interrupt stops everything.

use std::{
    collections::{BinaryHeap, HashMap},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use rayon::prelude::*;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    event::{Event, Reporter, Summary},
    graph::{Graph, NodeId, NodeKind},
};

/// How a visited node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and succeeded.
    Succeeded,
    /// It was restored from the cache; `saved` is how long it took when it really ran.
    Cached {
        /// The recorded duration of the run that produced the cached result.
        saved: Duration,
    },
    /// It failed.
    Failed,
    /// It was stopped before it could finish.
    Interrupted,
    /// It chose not to run (an LLM step with AI turned off); its dependents do not run.
    Skipped,
}

impl Outcome {
    fn unblocks_dependents(&self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::Cached { .. })
    }
}

/// What the scheduler calls for each node that is not an aggregate.
pub trait Visitor: Send + Sync + 'static {
    /// Execute (or restore) node `id`. `stop` turns true when running work must end now.
    /// The visit holds one of the `jobs` slots until it calls [`Slot::release`] (after its
    /// work, before storing what it made) or ends.
    fn visit(
        self: Arc<Self>,
        id: NodeId,
        stop: watch::Receiver<bool>,
        slot: Slot,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

    /// The outcome of node `id` if it is known without visiting it — a cache hit, restored
    /// right here — or `None` to visit it. Called on the scheduler's thread for each node as
    /// it becomes ready, before it waits for a job slot: a no-op run of thousands of cached
    /// nodes then costs no task, no thread hand-off and no slot per node.
    fn settle(&self, id: NodeId) -> Option<Outcome> {
        let _ = id;
        None
    }

    /// Whether [`settle`](Self::settle) could answer for node `id` at all. Nodes it cannot
    /// settle go straight to the ready queue, without a hand-off to a blocking thread.
    fn may_settle(&self, id: NodeId) -> bool {
        let _ = id;
        true
    }
}

/// A visit's job slot: released by [`release`](Self::release), or when the visit ends.
#[derive(Debug)]
pub struct Slot {
    id: NodeId,
    freed: Option<mpsc::UnboundedSender<NodeId>>,
}

impl Slot {
    /// Give the slot back: the node's work succeeded, and what remains (storing its
    /// outputs) need not keep the next ready node waiting. (A failed node keeps its slot
    /// until its visit ends, so that nothing new starts before the failure is known.)
    pub fn release(&mut self) {
        if let Some(freed) = self.freed.take() {
            let _ = freed.send(self.id);
        }
    }
}

/// Scheduling options.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many nodes may do their work at once.
    pub jobs: usize,
    /// Run everything that does not depend on a failure.
    pub keep_going: bool,
}

/// Run `nodes` (a dependency-closed set, e.g. [`Graph::closure`]) to completion. The caller
/// reports [`Event::RunFinished`] once it has added what only it knows (tokens used).
///
/// `interrupt` turning true (Ctrl-C) stops the run: no new nodes start, running ones are
/// told to stop, and the summary says it was interrupted.
pub async fn schedule<V: Visitor>(
    graph: &Graph,
    nodes: &[NodeId],
    targets: Vec<String>,
    options: &Options,
    visitor: Arc<V>,
    reporter: &dyn Reporter,
    mut interrupt: watch::Receiver<bool>,
) -> Summary {
    let started = Instant::now();
    let jobs = options.jobs.max(1);
    let count = graph.len();
    let mut wanted = vec![false; count];
    for id in nodes {
        wanted[id.index()] = true;
    }
    let is_aggregate = |id: NodeId| matches!(graph.node(id).kind, NodeKind::Aggregate);
    reporter.report(&Event::RunStarted {
        targets,
        total: nodes.iter().filter(|&&id| !is_aggregate(id)).count(),
        jobs,
    });

    let priority = graph.critical_path_lengths();
    let mut waiting_on: Vec<usize> = vec![0; count];
    let mut fresh = Vec::new();
    for &id in nodes {
        waiting_on[id.index()] = graph.dependencies(id).len();
        if waiting_on[id.index()] == 0 {
            fresh.push(id);
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut state = State {
        graph,
        wanted,
        waiting_on,
        priority,
        fresh,
        ready: BinaryHeap::new(),
        done: vec![false; count],
        blocked_by: vec![None; count],
        summary: Summary::default(),
        stopping: false,
        keep_going: options.keep_going,
    };
    let mut running: JoinSet<(NodeId, Outcome)> = JoinSet::new();
    let (freed_tx, mut freed_rx) = mpsc::unbounded_channel::<NodeId>();
    let mut slots = Slots {
        jobs,
        working: 0,
        holding: vec![false; count],
        tasks: HashMap::new(),
        freed: freed_tx,
    };
    let mut listening = true;

    let start_ready =
        |state: &mut State, running: &mut JoinSet<(NodeId, Outcome)>, slots: &mut Slots| {
            while !state.stopping
                && slots.any_free()
                && let Some(Ready { id, .. }) = state.ready.pop()
            {
                let visit = Arc::clone(&visitor).visit(id, stop_rx.clone(), slots.take(id));
                let task = running.spawn(async move { (id, visit.await) });
                slots.tasks.insert(task.id(), id);
            }
        };

    loop {
        // Fill free slots before settling what just became ready: a slot should not wait
        // while the keys of other nodes are computed.
        start_ready(&mut state, &mut running, &mut slots);
        if !state.stopping && !state.fresh.is_empty() {
            // Settling blocks (it restores files); tell a multi-threaded runtime so. On a
            // current-thread runtime `block_in_place` would panic, and there is nothing to
            // hand over anyway.
            match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => state.settle_fresh(&*visitor),
                _ => tokio::task::block_in_place(|| state.settle_fresh(&*visitor)),
            }
            start_ready(&mut state, &mut running, &mut slots);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id() => {
                let Some(joined) = joined else { break };
                slots.ended(match &joined {
                    Ok((task, _)) => *task,
                    Err(err) => err.id(),
                });
                let (id, outcome) = match joined {
                    Ok((_, result)) => result,
                    // A visitor that panicked is a bug; its node is reported as skipped below.
                    Err(_) => continue,
                };
                let stopping = state.stopping;
                state.finish(id, &outcome);
                if stopping && outcome == Outcome::Failed && state.summary.failed >= 2 {
                    let _ = stop_tx.send(true);
                }
            }
            Some(id) = freed_rx.recv() => slots.give_back(id),
            changed = interrupt.changed(), if listening => {
                listening = changed.is_ok();
                if listening && *interrupt.borrow_and_update() {
                    state.summary.interrupted = true;
                    state.stopping = true;
                    let _ = stop_tx.send(true);
                }
            }
        }
    }

    let State {
        done,
        blocked_by,
        mut summary,
        ..
    } = state;
    for &id in nodes {
        if done[id.index()] || is_aggregate(id) {
            continue;
        }
        let reason = match blocked_by[id.index()] {
            Some(failed) => format!("dependency `{}` did not succeed", graph.node(failed).name),
            None if summary.interrupted => "interrupted".to_owned(),
            None => "stopped after a failure (--keep-going runs the rest)".to_owned(),
        };
        summary.skipped += 1;
        reporter.report(&Event::TaskSkipped {
            task: graph.node(id).name.clone(),
            reason,
        });
    }
    summary.wall_ms = started.elapsed().as_millis() as u64;
    summary
}

/// The `jobs` slots: which visits hold one, and the channel they give them back on.
struct Slots {
    jobs: usize,
    /// How many visits hold a slot.
    working: usize,
    /// Per node: its visit holds a slot.
    holding: Vec<bool>,
    /// The node each running visit's task works on.
    tasks: HashMap<tokio::task::Id, NodeId>,
    freed: mpsc::UnboundedSender<NodeId>,
}

impl Slots {
    fn any_free(&self) -> bool {
        self.working < self.jobs
    }

    /// A slot for node `id`'s visit.
    fn take(&mut self, id: NodeId) -> Slot {
        self.working += 1;
        self.holding[id.index()] = true;
        Slot {
            id,
            freed: Some(self.freed.clone()),
        }
    }

    /// Node `id` gave its slot back, or its visit ended (whichever comes first counts).
    fn give_back(&mut self, id: NodeId) {
        if std::mem::take(&mut self.holding[id.index()]) {
            self.working -= 1;
        }
    }

    /// The visit running as `task` ended, however it ended.
    fn ended(&mut self, task: tokio::task::Id) {
        if let Some(id) = self.tasks.remove(&task) {
            self.give_back(id);
        }
    }
}

/// The scheduler's bookkeeping.
struct State<'g> {
    graph: &'g Graph,
    wanted: Vec<bool>,
    waiting_on: Vec<usize>,
    priority: Vec<u32>,
    /// Nodes whose dependencies are done, not yet offered to [`Visitor::settle`].
    fresh: Vec<NodeId>,
    /// Nodes that must be visited, waiting for a job slot.
    ready: BinaryHeap<Ready>,
    done: Vec<bool>,
    blocked_by: Vec<Option<NodeId>>,
    summary: Summary,
    /// No new node starts (after a failure without `keep_going`, or an interrupt).
    stopping: bool,
    keep_going: bool,
}

impl State<'_> {
    /// Finish aggregates and whatever the visitor can settle without running, until no fresh
    /// node is left: the rest wait in the ready queue.
    fn settle_fresh<V: Visitor>(&mut self, visitor: &V) {
        loop {
            let fresh = std::mem::take(&mut self.fresh);
            if fresh.is_empty() {
                return;
            }
            let mut nodes = Vec::with_capacity(fresh.len());
            for id in fresh {
                if matches!(self.graph.node(id).kind, NodeKind::Aggregate) {
                    // Aggregates finish at once; their dependents may become ready in turn.
                    self.done[id.index()] = true;
                    self.unblock(id);
                } else if visitor.may_settle(id) {
                    nodes.push(id);
                } else {
                    self.ready.push(Ready::new(id, &self.priority));
                }
            }
            // Keys and cache lookups of a batch are independent: a large batch (the first
            // layer of a no-op run) uses every core. A few nodes becoming ready while
            // commands run are settled here: waking the pool would take cores the commands
            // need.
            let outcomes: Vec<Option<Outcome>> = if nodes.len() >= PARALLEL_SETTLE {
                nodes.par_iter().map(|&id| visitor.settle(id)).collect()
            } else {
                nodes.iter().map(|&id| visitor.settle(id)).collect()
            };
            for (id, outcome) in nodes.into_iter().zip(outcomes) {
                match outcome {
                    Some(outcome) => self.finish(id, &outcome),
                    None => self.ready.push(Ready::new(id, &self.priority)),
                }
            }
            if self.stopping {
                return;
            }
        }
    }

    /// Record how node `id` ended and release or block its dependents.
    fn finish(&mut self, id: NodeId, outcome: &Outcome) {
        self.done[id.index()] = true;
        let summary = &mut self.summary;
        match outcome {
            Outcome::Succeeded => summary.succeeded += 1,
            Outcome::Cached { saved } => {
                summary.cached += 1;
                summary.saved_ms += saved.as_millis() as u64;
            }
            Outcome::Failed => summary.failed += 1,
            Outcome::Interrupted | Outcome::Skipped => summary.skipped += 1,
        }
        if outcome.unblocks_dependents() {
            self.unblock(id);
        } else {
            block_dependents(self.graph, id, &self.wanted, &mut self.blocked_by);
            if *outcome == Outcome::Failed && !self.keep_going {
                self.stopping = true;
            }
        }
    }

    /// Node `id` succeeded: each dependent waiting only for it becomes ready.
    fn unblock(&mut self, id: NodeId) {
        for next in self.graph.dependents(id) {
            if !self.wanted[next.index()] {
                continue;
            }
            let count = &mut self.waiting_on[next.index()];
            *count -= 1;
            if *count == 0 {
                self.fresh.push(next);
            }
        }
    }
}

/// The smallest batch settled on rayon's pool rather than on the scheduler's thread.
const PARALLEL_SETTLE: usize = 16;

/// A node waiting for a job slot, ordered by critical-path length, then file order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    priority: u32,
    order: std::cmp::Reverse<NodeId>,
    id: NodeId,
}

impl Ready {
    fn new(id: NodeId, priority: &[u32]) -> Self {
        Ready {
            priority: priority[id.index()],
            order: std::cmp::Reverse(id),
            id,
        }
    }
}

/// Mark everything downstream of `failed` so the end-of-run report can say why it did not run.
fn block_dependents(
    graph: &Graph,
    failed: NodeId,
    wanted: &[bool],
    blocked_by: &mut [Option<NodeId>],
) {
    let mut stack = vec![failed];
    while let Some(id) = stack.pop() {
        for next in graph.dependents(id) {
            if wanted[next.index()] && blocked_by[next.index()].is_none() {
                blocked_by[next.index()] = Some(failed);
                stack.push(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{event::Silent, source::SourceFile, syntax::parse_task_file};

    /// Settles the tasks named in `cached`, records every visit.
    struct Fake {
        graph: Arc<Graph>,
        cached: Vec<&'static str>,
        fail: Vec<&'static str>,
        visited: Mutex<Vec<String>>,
    }

    impl Visitor for Fake {
        fn visit(
            self: Arc<Self>,
            id: NodeId,
            _stop: watch::Receiver<bool>,
            _slot: Slot,
        ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
            let name = self.graph.node(id).name.clone();
            let failed = self.fail.contains(&name.as_str());
            self.visited.lock().unwrap().push(name);
            Box::pin(async move {
                if failed {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                }
            })
        }

        fn settle(&self, id: NodeId) -> Option<Outcome> {
            let name = &self.graph.node(id).name;
            self.cached
                .contains(&name.as_str())
                .then(|| Outcome::Cached {
                    saved: Duration::from_millis(10),
                })
        }
    }

    async fn schedule_fake(
        cached: Vec<&'static str>,
        fail: Vec<&'static str>,
    ) -> (Summary, Vec<String>) {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
task "c" { run "c"; deps "a"; }
task "all" { deps "b" "c"; }
task "d" { run "d"; deps "all"; }
"#;
        let file = parse_task_file(SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)).unwrap();
        let graph = Arc::new(crate::graph::build(file, std::path::Path::new("/p")).unwrap());
        let targets = graph.resolve_targets(&["d".to_owned()]).unwrap();
        let nodes = graph.closure(&targets);
        let fake = Arc::new(Fake {
            graph: Arc::clone(&graph),
            cached,
            fail,
            visited: Mutex::new(Vec::new()),
        });
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 1,
            keep_going: false,
        };
        let summary = schedule(
            &graph,
            &nodes,
            vec!["d".into()],
            &options,
            Arc::clone(&fake),
            &Silent,
            interrupt,
        )
        .await;
        let visited = fake.visited.lock().unwrap().clone();
        (summary, visited)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settled_nodes_are_never_visited_and_release_their_dependents() {
        let (summary, visited) = schedule_fake(vec!["a", "c", "d"], vec![]).await;
        assert_eq!(visited, ["b"]);
        assert_eq!((summary.cached, summary.succeeded), (3, 1));
        assert_eq!(summary.saved_ms, 30);

        let (summary, visited) = schedule_fake(vec!["a", "b", "c", "d"], vec![]).await;
        assert!(visited.is_empty(), "{visited:?}");
        assert_eq!(summary.cached, 4);
    }

    #[tokio::test]
    async fn a_failure_after_settled_nodes_still_blocks_its_dependents() {
        // (On a current-thread runtime too: settling must not need `block_in_place`.)
        let (summary, visited) = schedule_fake(vec!["a", "c"], vec!["b"]).await;
        assert_eq!(visited, ["b"]);
        assert_eq!((summary.cached, summary.failed, summary.skipped), (2, 1, 1));
    }

    /// Releases its slot at once, then waits until another node has been visited.
    struct Overlapping {
        visited: Arc<tokio::sync::Notify>,
        first: Mutex<bool>,
    }

    impl Visitor for Overlapping {
        fn visit(
            self: Arc<Self>,
            _id: NodeId,
            _stop: watch::Receiver<bool>,
            mut slot: Slot,
        ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
            let first = std::mem::replace(&mut *self.first.lock().unwrap(), false);
            Box::pin(async move {
                if first {
                    slot.release();
                    // Ends only once the second node got the released slot.
                    self.visited.notified().await;
                } else {
                    self.visited.notify_one();
                }
                Outcome::Succeeded
            })
        }
    }

    #[tokio::test]
    async fn a_released_slot_starts_the_next_node_before_the_visit_ends() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; }
"#;
        let file = parse_task_file(SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)).unwrap();
        let graph = Arc::new(crate::graph::build(file, std::path::Path::new("/p")).unwrap());
        let nodes = graph.closure(&graph.resolve_targets(&["a".into(), "b".into()]).unwrap());
        let visitor = Arc::new(Overlapping {
            visited: Arc::new(tokio::sync::Notify::new()),
            first: Mutex::new(true),
        });
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 1,
            keep_going: false,
        };
        // With one slot held until the visit ended, this would never finish.
        let summary = tokio::time::timeout(
            Duration::from_secs(10),
            schedule(
                &graph,
                &nodes,
                vec![],
                &options,
                visitor,
                &Silent,
                interrupt,
            ),
        )
        .await
        .expect("the second node never started");
        assert_eq!(summary.succeeded, 2);
    }
}
