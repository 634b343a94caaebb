//! The scheduler: starts ready nodes, at most `jobs` at a time, critical path first.
//!
//! It knows the graph's shape and nothing about what a node does: each node is handed to a
//! [`Visitor`], whose [`Outcome`] decides what becomes ready next. Aggregates complete the
//! moment their dependencies do and take no job.
//!
//! Jobs are `jobs` threads of their own, which take the most urgent queued node whenever they
//! are free and visit it there, blocking: the thread that sees a command end starts the next
//! one, with no hand-off between threads in between (on a two-core machine busy with
//! commands, each hand-off cost ~0.2 ms of an idle job; bench/notes.md). The scheduler
//! itself — an async task — settles nodes as they become ready, queues the rest, and
//! collects outcomes.
//!
//! Failure policy: by default the first failure stops new nodes from starting while running
//! ones finish; a second failure stops those too. With `keep_going`, everything that does not
//! depend on a failure still runs. An interrupt stops everything.

use std::{
    cell::Cell,
    collections::{BinaryHeap, VecDeque},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rayon::prelude::*;
use tokio::sync::{mpsc, watch};

use super::process::Stop;
use crate::event::{Event, Reporter, Summary};
use clab_graph::{Graph, NodeId, NodeKind};

/// How a visited node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and succeeded.
    Succeeded,
    /// It was restored from the cache; `saved` is how long it took when it really ran.
    Cached {
        /// The recorded duration of the run that produced the cached result.
        saved: Duration,
        /// It came from the shared remote cache.
        remote: bool,
    },
    /// It ran and failed.
    Failed,
    /// It failed before anything was started for it: an input is missing, or an LLM step
    /// needs a call that AI off or `--offline` forbids.
    FailedBeforeStart,
    /// It was stopped before it could finish.
    Interrupted,
}

impl Outcome {
    fn unblocks_dependents(&self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::Cached { .. })
    }

    /// Whether it failed, started or not.
    fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed | Outcome::FailedBeforeStart)
    }
}

/// What the scheduler calls for each node that is not an aggregate.
pub trait Visitor: Send + Sync + 'static {
    /// Execute (or restore) node `id` on one of the `jobs` job threads, which the visit holds
    /// until it returns: it may block, and should, rather than hand its work to another
    /// thread — the thread that sees a command end is the one that starts the next. The
    /// outcome goes to `done`, before returning or later: work that need not hold a job
    /// (storing what the node made) may be left to [`Job::defer`] or another thread. A
    /// failure is reported before returning, so that nothing new starts before it is known.
    fn visit(self: Arc<Self>, id: NodeId, job: &Job, done: Done);

    /// The outcome of node `id` if it is known without visiting it — a cache hit, restored
    /// right here — or `None` to visit it. Called on the scheduler's thread for each node as
    /// it becomes ready, before it waits for a job: a no-op run of thousands of cached nodes
    /// then costs no thread hand-off per node.
    fn settle(&self, id: NodeId) -> Option<Outcome> {
        let _ = id;
        None
    }

    /// [`settle`](Self::settle) for nodes that became ready together, answered in their
    /// order. The default is [`settle_each`]; a visitor whose answers wait on I/O (a remote
    /// cache) overrides it to overlap the waits.
    fn settle_batch(&self, ids: &[NodeId]) -> Vec<Option<Outcome>>
    where
        Self: Sized,
    {
        settle_each(self, ids)
    }

    /// Whether node `id` may be visited on the scheduler's own thread, inside its async
    /// runtime, when it is the only node to run: a visit that waits on that runtime (an LLM
    /// call's I/O) may not. The default is no.
    fn may_visit_on_scheduler(&self, id: NodeId) -> bool {
        let _ = id;
        false
    }

    /// Whether [`settle`](Self::settle) could answer for node `id` at all. Nodes it cannot
    /// settle go straight to the queue.
    fn may_settle(&self, id: NodeId) -> bool {
        let _ = id;
        true
    }
}

/// Where a visit reports its node's outcome, once. Dropped without one (a visit that
/// panicked, a bug), the node counts as not run.
#[derive(Debug)]
pub struct Done {
    id: NodeId,
    queue: Arc<Queue>,
    outcomes: Option<mpsc::UnboundedSender<Finished>>,
}

/// A node's outcome as the scheduler receives it: `None` when its visit gave none.
type Finished = (NodeId, Option<Outcome>);

impl Done {
    /// Report the node's outcome.
    pub fn finish(mut self, outcome: Outcome) {
        if outcome.is_failure() && !self.queue.keep_going {
            self.queue.stop();
        }
        if let Some(outcomes) = self.outcomes.take() {
            let _ = outcomes.send((self.id, Some(outcome)));
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(outcomes) = self.outcomes.take() {
            let _ = outcomes.send((self.id, None));
        }
    }
}

/// Nodes waiting for a job thread: the scheduler adds them, job threads take them.
#[derive(Debug)]
struct Queue {
    waiting: Mutex<Waiting>,
    changed: Condvar,
    keep_going: bool,
}

#[derive(Debug, Default)]
struct Waiting {
    ready: BinaryHeap<Ready>,
    /// The most urgent nodes, handed to free jobs: as good as started, so a stop leaves
    /// them be (the scheduler used to start them itself, the moment a slot was free).
    handed: VecDeque<Ready>,
    /// Jobs free for a node: waiting for one, doing deferred work, or just started. Never
    /// fewer than `handed`.
    free: usize,
    /// No new node starts.
    stopping: bool,
    /// How many queued nodes were dropped by a stop (they will never report).
    dropped: usize,
    /// The run is over: job threads end.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, ready: Ready) {
        let mut waiting = self.lock();
        if waiting.stopping {
            waiting.dropped += 1;
        } else {
            waiting.ready.push(ready);
            self.hand_out(&mut waiting);
        }
    }

    /// Give the most urgent waiting nodes to the free jobs.
    fn hand_out(&self, waiting: &mut Waiting) {
        while waiting.handed.len() < waiting.free
            && let Some(ready) = waiting.ready.pop()
        {
            waiting.handed.push_back(ready);
            self.changed.notify_one();
        }
    }

    /// One more job is free for a node.
    fn freed(&self) {
        let mut waiting = self.lock();
        waiting.free += 1;
        self.hand_out(&mut waiting);
    }

    /// A job counted free by [`freed`](Self::freed) will not come (its thread did not
    /// start): what was handed to it waits again.
    fn unfreed(&self) {
        let mut waiting = self.lock();
        waiting.free -= 1;
        if waiting.handed.len() > waiting.free
            && let Some(ready) = waiting.handed.pop_back()
        {
            waiting.ready.push(ready);
        }
    }

    /// No new node starts; the queued ones never will (those handed to free jobs do).
    fn stop(&self) {
        let mut waiting = self.lock();
        waiting.stopping = true;
        waiting.dropped += waiting.ready.len();
        waiting.ready.clear();
    }

    /// How many queued nodes stops dropped since the last call.
    fn take_dropped(&self) -> usize {
        std::mem::take(&mut self.lock().dropped)
    }

    /// The next node for `job`, a free job ([`freed`](Self::freed)), waiting for one
    /// (after doing the job's deferred work); `None` once the run is over.
    fn take(&self, job: &Job) -> Option<NodeId> {
        let mut waiting = self.lock();
        loop {
            if let Some(Ready { id, .. }) = waiting.handed.pop_front() {
                waiting.free -= 1;
                return Some(id);
            }
            if waiting.closed {
                waiting.free -= 1;
                return None;
            }
            if let Some(work) = job.deferred.take() {
                drop(waiting);
                run(work);
                waiting = self.lock();
                continue;
            }
            waiting = self
                .changed
                .wait(waiting)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The one node waiting, if `may` visit it without a job thread (none is started, so
    /// none was handed it).
    fn take_lone(&self, may: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        let mut waiting = self.lock();
        match (
            waiting.ready.peek(),
            waiting.handed.is_empty(),
            waiting.stopping,
        ) {
            (Some(&Ready { id, .. }), true, false) if waiting.ready.len() == 1 && may(id) => {
                waiting.ready.pop().map(|Ready { id, .. }| id)
            }
            _ => None,
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// A job thread as a visit sees it: the run's stop signal, and work the last visit left.
pub struct Job {
    stop: Stop,
    deferred: Cell<Option<Deferred>>,
}

/// Work for a thread to do later.
pub type Deferred = Box<dyn FnOnce() + Send>;

impl Job {
    /// A job with nothing deferred.
    pub fn new(stop: Stop) -> Job {
        Job {
            stop,
            deferred: Cell::new(None),
        }
    }

    /// Raised when running work must end now.
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// Leave `work` — what a visit does after its node's work that need not hold the job,
    /// such as storing outputs — to be done on this thread once the next visit has started
    /// its command, before that visit does anything that may wait, or before the thread
    /// waits for a node: whichever comes first. The next command then starts without
    /// waiting for it, and without a hand-off to another thread.
    pub fn defer(&self, work: impl FnOnce() + Send + 'static) {
        self.run_deferred();
        self.deferred.set(Some(Box::new(work)));
    }

    /// Do the deferred work now, if there is any.
    pub fn run_deferred(&self) {
        if let Some(work) = self.deferred.take() {
            run(work);
        }
    }
}

fn run(work: Deferred) {
    // Work that panics is a bug; its node's `Done`, dropped, says it did not run.
    let _ = catch_unwind(AssertUnwindSafe(work));
}

/// A job thread: visits queued nodes one after the other until the run is over.
fn job_thread<V: Visitor>(
    queue: Arc<Queue>,
    visitor: Arc<V>,
    stop: Stop,
    outcomes: mpsc::UnboundedSender<Finished>,
) {
    let job = Job::new(stop);
    // (Counted free when started.)
    while let Some(id) = queue.take(&job) {
        let done = Done {
            id,
            queue: Arc::clone(&queue),
            outcomes: Some(outcomes.clone()),
        };
        let visitor = Arc::clone(&visitor);
        // A visit that panics is a bug; its `Done` reports the node as not run, and the
        // thread goes on with the next.
        let _ = catch_unwind(AssertUnwindSafe(|| visitor.visit(id, &job, done)));
        queue.freed();
    }
    job.run_deferred();
}

/// Scheduling options.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many nodes may do their work at once.
    pub jobs: usize,
    /// Run everything that does not depend on a failure.
    pub keep_going: bool,
    /// When one node is all there is to run, visit it on the scheduler's thread (if the
    /// visitor [may](Visitor::may_visit_on_scheduler)) rather than start a job thread for
    /// it. Only for runs whose `interrupt` is a signal's (SIGINT/SIGTERM): while it waits
    /// there, the signal handler stops the node; an interrupt sent through the channel
    /// alone would wait for it.
    pub visit_lone_here: bool,
}

/// Run `nodes` (a dependency-closed set, e.g. [`Graph::closure`]) to completion. The caller
/// reports [`Event::RunFinished`] once it has added what only it knows (tokens used).
///
/// `interrupt` turning true (Ctrl-C) stops the run: no new nodes start, running ones are
/// told to stop, and the summary says it was interrupted.
///
/// `meanwhile` is work for the scheduler's thread once the first commands have started (or,
/// when nothing is visited, before returning): it is done while they run.
#[allow(clippy::too_many_arguments)]
pub async fn schedule<V: Visitor>(
    graph: &Graph,
    nodes: &[NodeId],
    targets: Vec<String>,
    options: &Options,
    visitor: Arc<V>,
    reporter: &dyn Reporter,
    mut interrupt: watch::Receiver<bool>,
    mut meanwhile: Option<Deferred>,
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

    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting::default()),
        changed: Condvar::new(),
        keep_going: options.keep_going,
    });
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel::<Finished>();
    let stop = Stop::new();
    let mut threads = JobThreads {
        jobs,
        started: 0,
        queue: Arc::clone(&queue),
        visitor: Arc::clone(&visitor),
        stop: stop.clone(),
        outcomes: outcomes_tx,
    };

    let mut state = State {
        graph,
        wanted,
        waiting_on,
        priority,
        fresh,
        queue: Arc::clone(&queue),
        queued: 0,
        done: vec![false; count],
        blocked_by: vec![None; count],
        summary: Summary::default(),
        stopping: false,
    };
    let mut listening = true;
    // A node visited on this thread whose outcome has not arrived.
    let mut lone = false;

    loop {
        if !state.stopping && !state.fresh.is_empty() {
            // Settling blocks (it restores files). Job threads keep taking queued nodes
            // meanwhile.
            blocking(|| state.settle_fresh(&*visitor));
        }
        // One node is all there is to do (the rest, if any, wait on it) and no job thread
        // runs yet: visit it here, without starting a thread and handing it over. The
        // trivial run of one command is all this: it starts no thread.
        if options.visit_lone_here
            && threads.started == 0
            && state.queued == 1
            && !lone
            // (An interrupt already sent goes the usual way, through the select below.)
            && !*interrupt.borrow()
            && let Some(id) = queue.take_lone(|id| visitor.may_visit_on_scheduler(id))
        {
            lone = true;
            let job = Job::new(stop.clone());
            let done = Done {
                id,
                queue: Arc::clone(&queue),
                outcomes: Some(threads.outcomes.clone()),
            };
            // This thread is the one that notices Ctrl-C; while it waits for the command,
            // the signal handler raises the stop itself.
            let hook = stop.raise_on_interrupt();
            if let Some(work) = meanwhile.take() {
                // Done by the visit once its command has started.
                job.defer(work);
            }
            blocking(|| {
                let visitor = Arc::clone(&visitor);
                let _ = catch_unwind(AssertUnwindSafe(|| visitor.visit(id, &job, done)));
                job.run_deferred();
            });
            if hook.fired() {
                state.summary.interrupted = true;
                state.stop();
                stop.raise();
            }
        }
        if let Err(err) = threads.start(state.queued - usize::from(lone)) {
            reporter.report(&Event::Warning {
                message: format!("cannot start a job: {err}"),
            });
            state.stop();
        }
        state.queued -= queue.take_dropped();
        if state.queued == 0 && (state.stopping || state.fresh.is_empty()) {
            break;
        }
        if let Some(work) = meanwhile.take() {
            // The first commands have started on the job threads.
            blocking(work);
        }
        tokio::select! {
            finished = outcomes.recv() => {
                // (`threads` holds a sender: the channel stays open.)
                let Some((id, outcome)) = finished else { break };
                state.queued -= 1;
                lone = false;
                // A visit that gave no outcome (it panicked) leaves its node to be reported
                // as skipped below.
                let Some(outcome) = outcome else { continue };
                let stopping = state.stopping;
                state.finish(id, &outcome);
                if stopping && outcome.is_failure() && state.summary.failures() >= 2 {
                    stop.raise();
                }
            }
            changed = interrupt.changed(), if listening => {
                listening = changed.is_ok();
                if listening && *interrupt.borrow_and_update() {
                    state.summary.interrupted = true;
                    state.stop();
                    stop.raise();
                }
            }
        }
    }
    threads.close();
    if let Some(work) = meanwhile.take() {
        blocking(work);
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

/// Run blocking `work` on the runtime's thread: a multi-threaded runtime is told so; on a
/// current-thread runtime `block_in_place` would panic, and there is nothing to hand over.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => work(),
        _ => tokio::task::block_in_place(work),
    }
}

/// The job threads: started as nodes are queued, up to `jobs` (a run that restores
/// everything from the cache starts none).
struct JobThreads<V: Visitor> {
    jobs: usize,
    /// How many have started.
    started: usize,
    queue: Arc<Queue>,
    visitor: Arc<V>,
    stop: Stop,
    outcomes: mpsc::UnboundedSender<Finished>,
}

impl<V: Visitor> JobThreads<V> {
    /// Start threads until there is one per queued node, or `jobs` of them. Fails only when
    /// none runs: fewer jobs than asked for still finish the run.
    fn start(&mut self, queued: usize) -> std::io::Result<()> {
        while self.started < queued.min(self.jobs) {
            let (queue, visitor, stop, outcomes) = (
                Arc::clone(&self.queue),
                Arc::clone(&self.visitor),
                self.stop.clone(),
                self.outcomes.clone(),
            );
            // Free from now on: a node handed to it is started, even before the thread runs.
            self.queue.freed();
            let spawned = std::thread::Builder::new()
                .name("clab-job".into())
                .spawn(move || job_thread(queue, visitor, stop, outcomes));
            match spawned {
                Ok(_) => self.started += 1,
                Err(err) => {
                    self.queue.unfreed();
                    if self.started == 0 {
                        return Err(err);
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Let the threads end. Every outcome is in, so none is in a visit that matters or has
    /// deferred work left: they are not waited for (joining from the runtime would cost a
    /// hand-off of its worker, ~0.1 ms at the end of every run).
    fn close(self) {
        self.queue.close();
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
    /// Nodes that must be visited, waiting for a job thread.
    queue: Arc<Queue>,
    /// Nodes queued whose outcome has not arrived yet.
    queued: usize,
    done: Vec<bool>,
    blocked_by: Vec<Option<NodeId>>,
    summary: Summary,
    /// No new node starts (after a failure without `keep_going`, or an interrupt).
    stopping: bool,
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
                    self.enqueue(id);
                }
            }
            let outcomes = visitor.settle_batch(&nodes);
            for (id, outcome) in nodes.into_iter().zip(outcomes) {
                match outcome {
                    Some(outcome) => self.finish(id, &outcome),
                    None => self.enqueue(id),
                }
            }
            if self.stopping {
                return;
            }
        }
    }

    fn enqueue(&mut self, id: NodeId) {
        self.queued += 1;
        self.queue.push(Ready::new(id, &self.priority));
    }

    /// No new node starts.
    fn stop(&mut self) {
        self.stopping = true;
        self.queue.stop();
    }

    /// Record how node `id` ended and release or block its dependents.
    fn finish(&mut self, id: NodeId, outcome: &Outcome) {
        self.done[id.index()] = true;
        let summary = &mut self.summary;
        match outcome {
            Outcome::Succeeded => summary.succeeded += 1,
            Outcome::Cached { saved, remote } => {
                summary.cached += 1;
                summary.remote += usize::from(*remote);
                summary.saved_ms += saved.as_millis() as u64;
            }
            Outcome::Failed => summary.failed += 1,
            Outcome::FailedBeforeStart => summary.failed_before_start += 1,
            Outcome::Interrupted => summary.interrupted_tasks += 1,
        }
        if outcome.unblocks_dependents() {
            self.unblock(id);
        } else {
            block_dependents(self.graph, id, &self.wanted, &mut self.blocked_by);
            if outcome.is_failure() && !self.queue.keep_going {
                self.stop();
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
pub(crate) const PARALLEL_SETTLE: usize = 16;

/// [`Visitor::settle`] for each of `ids`, in order. Keys and cache lookups of a batch are
/// independent: a large batch (the first layer of a no-op run) uses every core. A few nodes
/// becoming ready while commands run are settled on the calling thread: waking the pool
/// would take cores the commands need.
pub fn settle_each<V: Visitor>(visitor: &V, ids: &[NodeId]) -> Vec<Option<Outcome>> {
    if ids.len() >= PARALLEL_SETTLE {
        ids.par_iter().map(|&id| visitor.settle(id)).collect()
    } else {
        ids.iter().map(|&id| visitor.settle(id)).collect()
    }
}

/// A node waiting for a job thread, ordered by critical-path length, then file order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    use std::sync::{Mutex, atomic::AtomicBool};

    use super::*;
    use crate::event::Silent;
    use clab_model::source::SourceFile;
    use clab_syntax::parse_task_file;

    /// Settles the tasks named in `cached`, records every visit.
    struct Fake {
        graph: Arc<Graph>,
        cached: Vec<&'static str>,
        fail: Vec<&'static str>,
        visited: Mutex<Vec<String>>,
    }

    impl Visitor for Fake {
        fn visit(self: Arc<Self>, id: NodeId, _job: &Job, done: Done) {
            let name = self.graph.node(id).name.clone();
            let failed = self.fail.contains(&name.as_str());
            if name == "panics" {
                panic!("a bug in the visitor");
            }
            self.visited.lock().unwrap().push(name);
            done.finish(if failed {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            });
        }

        fn settle(&self, id: NodeId) -> Option<Outcome> {
            let name = &self.graph.node(id).name;
            self.cached
                .contains(&name.as_str())
                .then(|| Outcome::Cached {
                    saved: Duration::from_millis(10),
                    remote: false,
                })
        }
    }

    /// Schedule `targets` of the task file `text` with one job and the visitor `make` builds
    /// for its graph; fails the test if the run does not end within 10 s.
    async fn schedule_text<V: Visitor>(
        text: &str,
        targets: &[&str],
        make: impl FnOnce(Arc<Graph>) -> Arc<V>,
    ) -> Summary {
        let file = parse_task_file(SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)).unwrap();
        let graph = Arc::new(clab_graph::build(file, std::path::Path::new("/p")).unwrap());
        let names: Vec<String> = targets.iter().map(|&t| t.to_owned()).collect();
        let nodes = graph.closure(&graph.resolve_targets(&names).unwrap());
        let visitor = make(Arc::clone(&graph));
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 1,
            keep_going: false,
            visit_lone_here: false,
        };
        let run = schedule(
            &graph, &nodes, names, &options, visitor, &Silent, interrupt, None,
        );
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run never ended")
    }

    fn fake(graph: Arc<Graph>, cached: Vec<&'static str>, fail: Vec<&'static str>) -> Arc<Fake> {
        Arc::new(Fake {
            graph,
            cached,
            fail,
            visited: Mutex::new(Vec::new()),
        })
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
        let mut visitor = None;
        let summary = schedule_text(text, &["d"], |graph| {
            let made = fake(graph, cached, fail);
            visitor = Some(Arc::clone(&made));
            made
        })
        .await;
        let visited = visitor.unwrap().visited.lock().unwrap().clone();
        (summary, visited)
    }

    /// Records the thread of each visit, and of the `meanwhile` work.
    struct Threads {
        graph: Arc<Graph>,
        visits: Mutex<Vec<(String, std::thread::ThreadId)>>,
        llm_like: &'static str,
    }

    impl Visitor for Threads {
        fn visit(self: Arc<Self>, id: NodeId, job: &Job, done: Done) {
            // As a command does once its shell has started.
            job.run_deferred();
            let name = self.graph.node(id).name.clone();
            let here = std::thread::current().id();
            self.visits.lock().unwrap().push((name, here));
            done.finish(Outcome::Succeeded);
        }

        fn settle(&self, _id: NodeId) -> Option<Outcome> {
            None
        }

        fn may_visit_on_scheduler(&self, id: NodeId) -> bool {
            self.graph.node(id).name != self.llm_like
        }
    }

    /// Schedule `targets` of `text` with two jobs and lone visits allowed; the visits, the
    /// scheduler's thread, and the thread and order of the `meanwhile` work.
    async fn lone_visits(
        text: &str,
        targets: &[&str],
        llm_like: &'static str,
    ) -> (
        Summary,
        Vec<(String, std::thread::ThreadId)>,
        std::thread::ThreadId,
        usize,
    ) {
        let file = parse_task_file(SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)).unwrap();
        let graph = Arc::new(clab_graph::build(file, std::path::Path::new("/p")).unwrap());
        let names: Vec<String> = targets.iter().map(|&t| t.to_owned()).collect();
        let nodes = graph.closure(&graph.resolve_targets(&names).unwrap());
        let visitor = Arc::new(Threads {
            graph: Arc::clone(&graph),
            visits: Mutex::new(Vec::new()),
            llm_like,
        });
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 2,
            keep_going: false,
            visit_lone_here: true,
        };
        // How many visits were recorded when the `meanwhile` work ran (it must run once).
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let work: Deferred = {
            let (seen, visitor) = (Arc::clone(&seen), Arc::clone(&visitor));
            Box::new(move || {
                seen.lock()
                    .unwrap()
                    .push(visitor.visits.lock().unwrap().len())
            })
        };
        let summary = schedule(
            &graph,
            &nodes,
            names,
            &options,
            Arc::clone(&visitor),
            &Silent,
            interrupt,
            Some(work),
        )
        .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "the meanwhile work ran {} times", seen.len());
        let visits = visitor.visits.lock().unwrap().clone();
        (summary, visits, std::thread::current().id(), seen[0])
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_node_is_visited_on_the_schedulers_thread_with_the_meanwhile_work_first() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
"#;
        let (summary, visits, here, seen) = lone_visits(text, &["b"], "").await;
        assert_eq!(summary.ran(), 2);
        let names: Vec<&str> = visits.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // A chain is one lone node after the other: no job thread at all.
        assert!(visits.iter().all(|(_, thread)| *thread == here));
        // Done by the first visit, once its command would have started.
        assert_eq!(seen, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nodes_that_may_run_together_or_may_not_block_the_scheduler_go_to_job_threads() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; }
task "both" { deps "a" "b"; }
"#;
        let (summary, visits, here, seen) = lone_visits(text, &["both"], "").await;
        assert_eq!(summary.ran(), 2);
        assert!(visits.iter().all(|(_, thread)| *thread != here));
        // On the scheduler's thread once the job threads had the nodes: after none, one or
        // both visits, depending on how fast they were.
        assert!(seen <= 2);
        let (summary, visits, here, _) =
            lone_visits("task \"gen\" { run \"g\"; }", &["gen"], "gen").await;
        assert_eq!(summary.ran(), 1);
        assert_ne!(
            visits[0].1, here,
            "a visit that may not block the scheduler did"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_meanwhile_work_runs_when_nothing_is_visited() {
        let file = parse_task_file(SourceFile::new(
            "/p/tasks.kdl",
            "tasks.kdl",
            "task \"x\" { run \"x\"; }",
        ))
        .unwrap();
        let graph = Arc::new(clab_graph::build(file, std::path::Path::new("/p")).unwrap());
        let nodes = graph.closure(&graph.resolve_targets(&["x".to_owned()]).unwrap());
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 2,
            keep_going: false,
            visit_lone_here: true,
        };
        let ran = Arc::new(AtomicBool::new(false));
        let work: Deferred = {
            let ran = Arc::clone(&ran);
            Box::new(move || ran.store(true, std::sync::atomic::Ordering::SeqCst))
        };
        let visitor = fake(Arc::clone(&graph), vec!["x"], vec![]);
        let summary = schedule(
            &graph,
            &nodes,
            vec![],
            &options,
            visitor,
            &Silent,
            interrupt,
            Some(work),
        )
        .await;
        assert_eq!(summary.cached, 1);
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
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

    /// Fails every node before it starts.
    struct NotStarting;

    impl Visitor for NotStarting {
        fn visit(self: Arc<Self>, _id: NodeId, _job: &Job, done: Done) {
            done.finish(Outcome::FailedBeforeStart);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_before_start_is_counted_apart_and_blocks_its_dependents() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
"#;
        let summary = schedule_text(text, &["b"], |_| Arc::new(NotStarting)).await;
        assert_eq!(
            (summary.ran(), summary.failed_before_start, summary.skipped),
            (0, 1, 1)
        );
        assert_eq!(summary.total(), 2);
        assert!(!summary.is_success());
    }

    /// Every visit ends interrupted.
    struct Stopped;

    impl Visitor for Stopped {
        fn visit(self: Arc<Self>, _id: NodeId, _job: &Job, done: Done) {
            done.finish(Outcome::Interrupted);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_node_counts_as_interrupted_not_skipped() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
"#;
        let summary = schedule_text(text, &["b"], |_| Arc::new(Stopped)).await;
        assert_eq!((summary.interrupted_tasks, summary.skipped), (1, 1));
        assert_eq!(summary.total(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_visit_that_panics_leaves_its_node_unrun_and_the_run_goes_on() {
        let text = r#"
task "panics" { run "x"; }
task "after" { run "y"; deps "panics"; }
task "other" { run "z"; }
"#;
        let mut visitor = None;
        let summary = schedule_text(text, &["after", "other"], |graph| {
            let made = fake(graph, vec![], vec![]);
            visitor = Some(Arc::clone(&made));
            made
        })
        .await;
        let fake = visitor.unwrap();
        assert_eq!(*fake.visited.lock().unwrap(), ["other"]);
        assert_eq!((summary.succeeded, summary.skipped), (1, 2));
    }

    #[test]
    fn a_stop_drops_waiting_nodes_but_not_those_handed_to_free_jobs() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
task "c" { run "c"; deps "b"; }
"#;
        let file = parse_task_file(SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)).unwrap();
        let graph = clab_graph::build(file, std::path::Path::new("/p")).unwrap();
        let nodes = graph.closure(&graph.resolve_targets(&["c".into()]).unwrap());
        let priority = graph.critical_path_lengths();
        let queue = Queue {
            waiting: Mutex::new(Waiting::default()),
            changed: Condvar::new(),
            keep_going: false,
        };
        // One free job (its thread not running yet), three nodes: the most urgent is
        // handed to it, and a failure stopping the queue now does not take it back.
        queue.freed();
        for &id in &nodes {
            queue.push(Ready::new(id, &priority));
        }
        queue.stop();
        assert_eq!(queue.take_dropped(), 2);
        let job = Job::new(Stop::new());
        let taken = queue.take(&job).unwrap();
        assert_eq!(graph.node(taken).name, "a");
        queue.freed();
        queue.close();
        assert_eq!(queue.take(&job), None);
    }

    /// Defers every outcome to the job thread.
    struct Deferring;

    impl Visitor for Deferring {
        fn visit(self: Arc<Self>, _id: NodeId, job: &Job, done: Done) {
            job.defer(move || done.finish(Outcome::Succeeded));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_work_is_done_before_a_job_waits_for_a_node() {
        // `b` becomes ready only when `a`'s deferred outcome is in: with one job, that
        // work must be done while the job has nothing else to do.
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; deps "a"; }
task "c" { run "c"; deps "b"; }
"#;
        let summary = schedule_text(text, &["c"], |_| Arc::new(Deferring)).await;
        assert_eq!(summary.succeeded, 3);
    }

    /// The first visit returns at once and reports its outcome only after another node has
    /// been visited.
    struct Overlapping {
        second_visited: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        first: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl Visitor for Overlapping {
        fn visit(self: Arc<Self>, _id: NodeId, _job: &Job, done: Done) {
            if let Some(second_visited) = self.first.lock().unwrap().take() {
                std::thread::spawn(move || {
                    let _ = second_visited.recv();
                    done.finish(Outcome::Succeeded);
                });
            } else {
                if let Some(tell) = self.second_visited.lock().unwrap().take() {
                    let _ = tell.send(());
                }
                done.finish(Outcome::Succeeded);
            }
        }
    }

    #[tokio::test]
    async fn a_visit_that_returned_frees_its_job_before_its_outcome_is_known() {
        let text = r#"
task "a" { run "a"; }
task "b" { run "b"; }
"#;
        let (tell, told) = std::sync::mpsc::channel();
        let visitor = Arc::new(Overlapping {
            second_visited: Mutex::new(Some(tell)),
            first: Mutex::new(Some(told)),
        });
        // With the job held until the first outcome, this would never finish.
        let summary = schedule_text(text, &["a", "b"], |_| visitor).await;
        assert_eq!(summary.succeeded, 2);
    }
}
