//! Watch mode: file events → debounce → affected subgraph → re-plan, keeping the last good graph.
//!
//! # Purpose
//!
//! `clab watch` below the command line: run the targets, then rerun what each save affects,
//! restart persistent services, reload tasks.kdl and the rules when they change.
//!
//! # In and out
//!
//! In: a [`Project`], its loaded [`Graph`] and the target names, [`WatchOptions`], an
//! [`Observer`] (the cli) and a shutdown flag (Ctrl-C, SIGTERM). Out: [`Notice`]s and the
//! reporters' events while it runs; [`Stopped`] when the shutdown flag turns true, or a critical
//! [`Error`] when the file watcher cannot start.
//!
//! # Theory of operation
//!
//! As workers on channels:
//! - The **fs worker** is notify's watcher behind `notify-debouncer-full` (or its `PollWatcher`
//!   with `--poll`). It sends each debounced batch into a channel. It watches the root itself
//!   non-recursively and each top-level directory recursively, leaving out `.git/`, the cache
//!   directory and gitignored top-level directories (`target/`, `node_modules/`), so a big
//!   build tree costs no inotify watches. New top-level directories are added as they appear.
//! - The **main loop** owns all state. For each batch it keeps real changes (not reads, not
//!   access times), drops paths under `.git/` or the cache, paths matching any node's declared
//!   outputs (clab's own writes must not trigger it) and gitignored paths (unless a literal
//!   input names them), then maps what is left to the nodes whose input globs match. Only when
//!   a node of the targets' closure is affected does a run follow.
//! - A **run** is one whole [`clab_exec::run`] of the closure on its own task: the cache decides
//!   what actually executes. At most one run is in flight; changes during a run queue exactly
//!   one follow-up run. With `restart`, they interrupt the run instead (its process groups get
//!   SIGINT, then SIGKILL after the grace period) and the follow-up starts when it has stopped.
//! - **Services** (`persistent #true` command nodes) run outside the scheduler, one task each,
//!   with their own interrupt. They and everything downstream of them are left out of the
//!   normal run. After a run they start if their dependencies succeeded, and restart when their
//!   inputs changed, their definition changed, or a dependency really ran (was not cached).
//! - A change to the tasks file or a rule file (`*.mdc` under the `rules` directories) reloads
//!   the graph. A graph that fails to load is reported as [`Notice::ReloadFailed`] and the last
//!   good graph stays in use; the next good edit resumes normally.
//!
//! Errors are split as in watchexec: a critical [`Error`] ends watching (the watcher cannot
//! start); a [`RuntimeError`] is reported as a notice and watching goes on.
//!
//! # Invariants
//!
//! The main loop never blocks on a run or a service; when [`watch`] returns, no
//! run and no service is left running, and every process group it started has been reaped.
//! Paths are matched with the planner's own pattern type ([`clab_plan::path_pattern`]), so a
//! file is an input to watch mode exactly when it is one to a run. Depends on graph, plan,
//! store and exec among clab's crates; nothing depends on it but the cli.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use clab_exec::{
    RunOptions,
    event::{Event, Reporter, Status, Summary},
    process::{CommandSpec, Exit, SpawnError, Stop, run_command},
};
use clab_graph::{Graph, NodeId, NodeKind, project::Project};
use clab_plan::path_pattern::PathPatterns;
use ignore::gitignore::Gitignore;
use miette::Diagnostic;
use notify::{
    EventKind, PollWatcher, RecommendedWatcher, RecursiveMode,
    event::{AccessKind, AccessMode, MetadataKind, ModifyKind},
};
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, NoCache, RecommendedCache, new_debouncer_opt,
};
use tokio::{
    sync::{mpsc, watch as flag},
    task::JoinHandle,
};

/// How watch mode behaves, beside the options of each run.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The options of every run.
    pub run: RunOptions,
    /// How long a path must be quiet before its events are delivered.
    pub debounce: Duration,
    /// Poll the file system at this interval instead of waiting for its events.
    pub poll: Option<Duration>,
    /// Cancel a running run on a change instead of queueing a follow-up.
    pub restart: bool,
}

/// Receives what watch mode does. Implemented by the cli; called from the main loop and from
/// service tasks, so it must be cheap and thread-safe.
pub trait Observer: Send + Sync {
    /// A fresh reporter for the run about to start (progress bars are per run).
    fn run_reporter(&self) -> Arc<dyn Reporter>;
    /// Something happened.
    fn notice(&self, notice: Notice);
}

/// Something watch mode did or saw.
#[derive(Debug)]
pub enum Notice {
    /// A run starts. `changed` holds the paths (relative to the root) that caused it; empty
    /// for the first run.
    RunStarting {
        /// The changed paths, sorted.
        changed: Vec<String>,
    },
    /// A run ended.
    RunFinished {
        /// Its totals.
        summary: Summary,
        /// The local time it ended, `HH:MM:SS`.
        clock: String,
        /// Whether another run follows at once.
        pending: bool,
    },
    /// Files changed, but no target depends on them.
    Unaffected {
        /// The changed paths, sorted.
        changed: Vec<String>,
    },
    /// The tasks file or a rule file changed and the graph was rebuilt.
    Reloaded {
        /// The files that changed.
        changed: Vec<String>,
    },
    /// The tasks file or a rule file changed and does not load; the last good graph stays.
    ReloadFailed {
        /// What is wrong with it.
        error: Box<clab_graph::project::Error>,
    },
    /// A persistent task was started.
    ServiceStarted {
        /// The node's display id.
        task: String,
    },
    /// A persistent task printed a line.
    ServiceOutput {
        /// The node's display id.
        task: String,
        /// The line, without its newline.
        line: String,
    },
    /// A persistent task ended on its own (it was not stopped).
    ServiceExited {
        /// The node's display id.
        task: String,
        /// How.
        exit: Exit,
    },
    /// A persistent task was stopped (to restart it, or on exit).
    ServiceStopped {
        /// The node's display id.
        task: String,
    },
    /// A problem that does not stop watching.
    Runtime(RuntimeError),
}

/// How watching ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown flag turned true.
    Interrupted,
}

/// A critical error: watching cannot start or go on.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The file watcher could not be created or could not watch the root.
    #[error("cannot watch `{path}` for changes")]
    #[diagnostic(
        code(clab::watch::start),
        help(
            "on file systems without change events (network mounts, some containers), try `--poll`"
        )
    )]
    Watcher {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: notify::Error,
    },
}

/// A problem reported while watching goes on.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum RuntimeError {
    /// The watcher reported an error (a lost event queue, a vanished directory).
    #[error("file watcher error")]
    #[diagnostic(code(clab::watch::events))]
    Events(#[source] notify::Error),

    /// A new top-level directory could not be watched.
    #[error("cannot watch new directory `{path}`")]
    #[diagnostic(code(clab::watch::new_dir))]
    NewDirectory {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: notify::Error,
    },

    /// A persistent task could not be started.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spawn(#[from] SpawnError),
}

/// Run `names` (already resolved in `graph`) now and again whenever a file they depend on
/// changes, until `shutdown` turns true.
pub async fn watch(
    project: Project,
    graph: Arc<Graph>,
    names: Vec<String>,
    options: WatchOptions,
    observer: Arc<dyn Observer>,
    mut shutdown: flag::Receiver<bool>,
) -> Result<Stopped, Error> {
    let cache_dir = options.run.cache_dir.clone();
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<DebounceEventResult>();
    let mut state = State::new(project, graph, names, cache_dir);
    let mut fs = FsWatcher::start(&mut state, &options, fs_tx)?;

    let mut run: Option<Run> = None;
    let mut pending: Option<BTreeSet<String>> = Some(BTreeSet::new());
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut dirty_services: BTreeSet<String> = BTreeSet::new();
    // Nodes that really ran in runs cut short by `restart`: their services restart too.
    let mut ran_before: BTreeSet<String> = BTreeSet::new();
    let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<(String, u64)>();
    let mut next_service_id = 0u64;
    let mut listening = true;

    loop {
        if run.is_none()
            && let Some(changed) = pending.take()
        {
            run = Some(Run::start(
                &state,
                changed.into_iter().collect(),
                &options,
                &*observer,
            ));
        }
        tokio::select! {
            batch = fs_rx.recv() => {
                let Some(batch) = batch else { continue };
                let outcome = state.take_batch(batch, &mut fs, &*observer);
                dirty_services.extend(outcome.dirty_services);
                if !outcome.changed.is_empty() {
                    pending.get_or_insert_with(BTreeSet::new).extend(outcome.changed);
                    if options.restart && let Some(run) = &run {
                        let _ = run.interrupt.send(true);
                    }
                }
            }
            summary = finished(&mut run), if run.is_some() => {
                let finished = run.take();
                let summary = summary.unwrap_or_else(|_| Summary { interrupted: true, ..Summary::default() });
                observer.notice(Notice::RunFinished {
                    summary: summary.clone(),
                    clock: local_clock(),
                    pending: pending.is_some(),
                });
                let statuses = finished.map(|run| run.recorder.take()).unwrap_or_default();
                if summary.interrupted {
                    ran_before.extend(
                        statuses.into_iter().filter(|(_, e)| *e == Ended::Ran).map(|(t, _)| t),
                    );
                } else {
                    let mut statuses = statuses;
                    for task in std::mem::take(&mut ran_before) {
                        if let Some(ended @ Ended::Cached) = statuses.get_mut(&task) {
                            *ended = Ended::Ran;
                        }
                    }
                    sync_services(
                        &state,
                        &statuses,
                        &mut dirty_services,
                        &mut services,
                        &observer,
                        &options,
                        &exited_tx,
                        &mut next_service_id,
                    )
                    .await;
                }
            }
            exited = exited_rx.recv() => {
                // A service ended by itself: forget it, so the next change starts it again.
                if let Some((task, id)) = exited
                    && services.get(&task).is_some_and(|s| s.id == id)
                {
                    services.remove(&task);
                }
            }
            changed = shutdown.changed(), if listening => {
                listening = changed.is_ok();
                if listening && *shutdown.borrow_and_update() {
                    break;
                }
            }
        }
    }

    // Ctrl-C: the run's process groups get SIGINT (then SIGKILL), services the same.
    if let Some(run) = run.take() {
        let _ = run.interrupt.send(true);
        let _ = run.handle.await;
    }
    for (task, service) in std::mem::take(&mut services) {
        service.stop().await;
        observer.notice(Notice::ServiceStopped { task });
    }
    fs.stop();
    Ok(Stopped::Interrupted)
}

/// The end of the run in flight; never, when there is none.
async fn finished(run: &mut Option<Run>) -> Result<Summary, tokio::task::JoinError> {
    match run {
        Some(run) => (&mut run.handle).await,
        None => std::future::pending().await,
    }
}

/// The graph in use and everything derived from it.
struct State {
    project: Project,
    graph: Arc<Graph>,
    names: Vec<String>,
    cache_dir: PathBuf,
    /// The targets' closure, dependencies first.
    closure: Vec<NodeId>,
    index: Index,
    ignores: Ignores,
}

/// What a batch of file events asks for.
#[derive(Default)]
struct BatchOutcome {
    /// Paths that affect the closure (or reloaded the graph): a run must follow.
    changed: BTreeSet<String>,
    /// Services to restart after that run.
    dirty_services: BTreeSet<String>,
}

impl State {
    fn new(project: Project, graph: Arc<Graph>, names: Vec<String>, cache_dir: PathBuf) -> Self {
        let targets = graph.resolve_targets(&names).unwrap_or_default();
        let closure = graph.closure(&targets);
        let index = Index::new(&graph, &project);
        let ignores = Ignores::new(&project.root);
        State {
            project,
            graph,
            names,
            cache_dir,
            closure,
            index,
            ignores,
        }
    }

    fn root(&self) -> &Path {
        &self.project.root
    }

    /// Whether a path is never watched: `.git/` or the cache directory.
    fn is_excluded(&self, path: &Path) -> bool {
        path.starts_with(&self.cache_dir)
            || path.strip_prefix(self.root()).is_ok_and(|rel| {
                rel.components().next() == Some(Component::Normal(".git".as_ref()))
            })
    }

    /// Whether a top-level directory gets a recursive watch.
    fn watches_top_level(&mut self, dir: &Path) -> bool {
        if self.is_excluded(dir) {
            return false;
        }
        let Some(rel) = relative(self.root(), dir) else {
            return false;
        };
        !self.ignores.is_ignored(dir, true) || self.index.literal_under(&rel)
    }

    /// Sort one debounced batch into reloads, affected nodes and noise.
    fn take_batch(
        &mut self,
        batch: DebounceEventResult,
        fs: &mut FsWatcher,
        observer: &dyn Observer,
    ) -> BatchOutcome {
        let events = match batch {
            Ok(events) => events,
            Err(errors) => {
                for error in errors {
                    observer.notice(Notice::Runtime(RuntimeError::Events(error)));
                }
                return BatchOutcome::default();
            }
        };
        let mut paths = BTreeSet::new();
        for event in &events {
            if !is_change(&event.kind) {
                continue;
            }
            for path in &event.paths {
                if self.is_excluded(path) {
                    continue;
                }
                if matches!(event.kind, EventKind::Create(_)) && path.is_dir() {
                    let top_level = path.parent() == Some(self.root());
                    if !top_level {
                        // notify adds the watch for a new subdirectory only after it saw
                        // the directory: files written into it before then made no events.
                        paths.extend(files_below(path));
                    } else if self.watches_top_level(path) {
                        match fs.watch(path, RecursiveMode::Recursive) {
                            Ok(()) => paths.extend(files_below(path)),
                            Err(source) => {
                                observer.notice(Notice::Runtime(RuntimeError::NewDirectory {
                                    path: path.display().to_string(),
                                    source,
                                }))
                            }
                        }
                    }
                }
                paths.insert(path.clone());
            }
        }

        let mut outcome = BatchOutcome::default();
        let mut reload = Vec::new();
        let mut unaffected = Vec::new();
        for path in paths {
            let Some(rel) = relative(self.root(), &path) else {
                continue;
            };
            if path
                .file_name()
                .is_some_and(|name| name == ".gitignore" || name == ".ignore")
            {
                self.ignores.clear();
            }
            if self.index.is_reload(&rel) {
                reload.push(rel);
                continue;
            }
            if self.index.outputs.matches(&rel) {
                continue;
            }
            let ignored = self.ignores.is_ignored(&path, path.is_dir());
            let affected = self.index.affected(&rel, ignored);
            let in_closure: Vec<NodeId> = affected
                .into_iter()
                .filter(|id| self.closure.contains(id))
                .collect();
            if in_closure.is_empty() {
                if !ignored {
                    unaffected.push(rel);
                }
                continue;
            }
            for id in in_closure {
                let node = self.graph.node(id);
                if is_service(&self.graph, id) {
                    outcome.dirty_services.insert(node.name.clone());
                }
            }
            outcome.changed.insert(rel);
        }
        if !reload.is_empty()
            && let Some(dirty) = self.reload(&reload, observer)
        {
            outcome.dirty_services.extend(dirty);
            outcome.changed.extend(reload);
        }
        if outcome.changed.is_empty() && !unaffected.is_empty() {
            observer.notice(Notice::Unaffected {
                changed: unaffected,
            });
        }
        outcome
    }

    /// Load the graph again. On success, swap it in and return the services whose definition
    /// changed; on failure, report it and keep the last good graph.
    fn reload(&mut self, changed: &[String], observer: &dyn Observer) -> Option<BTreeSet<String>> {
        let loaded = self.project.load_runnable().and_then(|graph| {
            let targets = graph.resolve_targets(&self.names)?;
            Ok((graph, targets))
        });
        let (graph, targets) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                observer.notice(Notice::ReloadFailed {
                    error: Box::new(error),
                });
                return None;
            }
        };
        let graph = Arc::new(graph);
        let mut dirty = BTreeSet::new();
        for id in graph.ids().filter(|&id| is_service(&graph, id)) {
            let node = graph.node(id);
            let same = self
                .graph
                .find(&node.name)
                .is_some_and(|old| service_spec(&self.graph, old) == service_spec(&graph, id));
            if !same {
                dirty.insert(node.name.clone());
            }
        }
        self.closure = graph.closure(&targets);
        self.index = Index::new(&graph, &self.project);
        self.graph = graph;
        self.ignores.clear();
        observer.notice(Notice::Reloaded {
            changed: changed.to_vec(),
        });
        Some(dirty)
    }

    /// The closure without services and what depends on them: what a normal run covers.
    fn runnable(&self) -> Vec<NodeId> {
        let mut downstream = vec![false; self.graph.len()];
        for &id in &self.closure {
            if is_service(&self.graph, id)
                || self
                    .graph
                    .dependencies(id)
                    .iter()
                    .any(|dep| downstream[dep.index()])
            {
                downstream[id.index()] = true;
            }
        }
        self.closure
            .iter()
            .copied()
            .filter(|id| !downstream[id.index()])
            .collect()
    }
}

/// Every file below `dir` (not following symlinks).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(_) => files.push(entry.path()),
                Err(_) => {}
            }
        }
    }
    files
}

/// Whether a node runs as a service: a persistent command.
fn is_service(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    node.persistent && matches!(node.kind, NodeKind::Command { .. })
}

/// Whether an event is a change to content or presence (not a read, an open or an atime).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// `path` relative to `root`, with `/` separators; `None` outside the root or not UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    clab_plan::inputs::relative_string(path.strip_prefix(root).ok()?).filter(|rel| !rel.is_empty())
}

/// What identifies a service's process: restart it when this changes.
fn service_spec(
    graph: &Graph,
    id: NodeId,
) -> Option<(Vec<String>, BTreeMap<String, String>, String)> {
    let node = graph.node(id);
    match &node.kind {
        NodeKind::Command { run } => Some((run.clone(), graph.command_env(id), node.cwd.clone())),
        _ => None,
    }
}

/// Input and output patterns of one graph, compiled for matching single paths.
struct Index {
    /// Each node's inputs.
    inputs: Vec<(NodeId, PathPatterns)>,
    /// Every node's outputs (and LLM outputs, JUnit and coverage reports): clab's own writes.
    outputs: PathPatterns,
    /// The tasks file, relative to the root.
    tasks_file: Option<String>,
    /// A workspace's other files: members' tasks.kdl and the manifests, relative to the root.
    workspace_files: Vec<String>,
    /// The rules directories, relative to the root.
    rules_dirs: Vec<String>,
    /// The `dotenv` files, relative to the root.
    dotenv: Vec<String>,
}

impl Index {
    fn new(graph: &Graph, project: &Project) -> Self {
        let inputs = graph
            .ids()
            .map(|id| (id, PathPatterns::new(&graph.node(id).inputs)))
            .collect();
        let mut outputs = Vec::new();
        for id in graph.ids() {
            let node = graph.node(id);
            outputs.extend(node.outputs.iter().cloned());
            if let NodeKind::Llm(llm) = &node.kind {
                outputs.push(llm.output.clone());
            }
            outputs.extend(node.junit.iter().cloned());
            outputs.extend(node.coverage.iter().map(|c| c.path.clone()));
        }
        let mut rules_dirs: Vec<String> = graph
            .file()
            .rules_dirs
            .iter()
            .map(|dir| {
                dir.value
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect();
        if rules_dirs.is_empty() {
            rules_dirs.push(".cursor/rules".to_owned());
        }
        Index {
            inputs,
            outputs: PathPatterns::new(&outputs),
            tasks_file: relative(&project.root, &project.file),
            workspace_files: graph.workspace_files(),
            rules_dirs,
            dotenv: graph
                .file()
                .dotenv
                .iter()
                .map(|f| f.value.trim_start_matches("./").to_owned())
                .collect(),
        }
    }

    /// Whether a change to `rel` means loading the graph again.
    fn is_reload(&self, rel: &str) -> bool {
        self.tasks_file.as_deref() == Some(rel)
            || self.workspace_files.iter().any(|f| f == rel)
            // A new member: any tasks.kdl appearing in a workspace.
            || (!self.workspace_files.is_empty() && rel.ends_with("/tasks.kdl"))
            || self.dotenv.iter().any(|f| f == rel)
            || (rel.ends_with(".mdc")
                && self.rules_dirs.iter().any(|dir| {
                    rel.strip_prefix(dir.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                }))
    }

    /// The nodes whose inputs match `rel`. A gitignored path only matches literal inputs,
    /// as in the planner's walk.
    fn affected(&self, rel: &str, ignored: bool) -> Vec<NodeId> {
        self.inputs
            .iter()
            .filter(|(_, patterns)| {
                if ignored {
                    patterns.matches_literal(rel)
                } else {
                    patterns.matches(rel)
                }
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether some literal input lies below the directory `rel`.
    fn literal_under(&self, rel: &str) -> bool {
        self.inputs
            .iter()
            .any(|(_, patterns)| patterns.has_literal_under(rel))
    }
}

/// `.gitignore` and `.ignore` files, read lazily per directory, plus `.git/info/exclude`.
struct Ignores {
    root: PathBuf,
    /// Per directory: its matchers (`.ignore` first: it takes precedence, as in ripgrep).
    dirs: HashMap<PathBuf, Vec<Gitignore>>,
    exclude: Option<Gitignore>,
}

impl Ignores {
    fn new(root: &Path) -> Self {
        let mut ignores = Ignores {
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            exclude: None,
        };
        ignores.load_exclude(root);
        ignores
    }

    fn load_exclude(&mut self, root: &Path) {
        let path = root.join(".git/info/exclude");
        self.exclude = path.is_file().then(|| {
            let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
            // A broken line is skipped by the builder; the rest still applies.
            let _ = builder.add(&path);
            builder.build().unwrap_or_else(|_| Gitignore::empty())
        });
    }

    /// Forget every matcher (an ignore file changed).
    fn clear(&mut self) {
        self.dirs.clear();
    }

    /// Whether `path` (below `root`) is ignored: the deepest directory with a matching
    /// pattern decides, as git does.
    fn is_ignored(&mut self, path: &Path, is_dir: bool) -> bool {
        let Some(parent) = path.parent() else {
            return false;
        };
        for dir in parent.ancestors() {
            if !dir.starts_with(&self.root) {
                break;
            }
            let matchers = self.dirs.entry(dir.to_path_buf()).or_insert_with(|| {
                [".ignore", ".gitignore"]
                    .iter()
                    .map(|name| dir.join(name))
                    .filter(|file| file.is_file())
                    .map(|file| Gitignore::new(file).0)
                    .collect()
            });
            for matcher in matchers.iter() {
                let found = matcher.matched_path_or_any_parents(path, is_dir);
                if found.is_ignore() {
                    return true;
                }
                if found.is_whitelist() {
                    return false;
                }
            }
        }
        self.exclude
            .as_ref()
            .is_some_and(|m| m.matched_path_or_any_parents(path, is_dir).is_ignore())
    }
}

/// notify's watcher behind the debouncer: native events, or polling.
enum FsWatcher {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

impl FsWatcher {
    /// Start watching the root (non-recursively) and each top-level directory worth it.
    fn start(
        state: &mut State,
        options: &WatchOptions,
        tx: mpsc::UnboundedSender<DebounceEventResult>,
    ) -> Result<Self, Error> {
        let root = state.root().to_path_buf();
        let failed = |source| Error::Watcher {
            path: root.display().to_string(),
            source,
        };
        let handler = move |result: DebounceEventResult| {
            let _ = tx.send(result);
        };
        // A tick of a quarter of the debounce (at most 25 ms) keeps the added latency small.
        let tick =
            Some((options.debounce / 4).clamp(Duration::from_millis(1), Duration::from_millis(25)))
                .filter(|tick| *tick <= options.debounce);
        let mut watcher = match options.poll {
            Some(interval) => FsWatcher::Poll(
                new_debouncer_opt(
                    options.debounce,
                    tick,
                    handler,
                    NoCache,
                    // The poll watcher keeps mtimes in whole seconds: without comparing
                    // contents, a second save within the same second would go unseen.
                    notify::Config::default()
                        .with_poll_interval(interval)
                        .with_compare_contents(true),
                )
                .map_err(failed)?,
            ),
            None => FsWatcher::Native(
                new_debouncer_opt(
                    options.debounce,
                    tick,
                    handler,
                    RecommendedCache::new(),
                    notify::Config::default(),
                )
                .map_err(failed)?,
            ),
        };
        watcher
            .watch(&root, RecursiveMode::NonRecursive)
            .map_err(failed)?;
        let entries = std::fs::read_dir(&root).map_err(|source| Error::Watcher {
            path: root.display().to_string(),
            source: notify::Error::io(source),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && state.watches_top_level(&path) {
                watcher
                    .watch(&path, RecursiveMode::Recursive)
                    .map_err(|source| Error::Watcher {
                        path: path.display().to_string(),
                        source,
                    })?;
            }
        }
        Ok(watcher)
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        match self {
            FsWatcher::Native(debouncer) => debouncer.watch(path, mode),
            FsWatcher::Poll(debouncer) => debouncer.watch(path, mode),
        }
    }

    fn stop(self) {
        match self {
            FsWatcher::Native(debouncer) => debouncer.stop_nonblocking(),
            FsWatcher::Poll(debouncer) => debouncer.stop_nonblocking(),
        }
    }
}

/// One run in flight.
struct Run {
    handle: JoinHandle<Summary>,
    interrupt: flag::Sender<bool>,
    recorder: Arc<Recorder>,
}

impl Run {
    fn start(
        state: &State,
        changed: Vec<String>,
        options: &WatchOptions,
        observer: &dyn Observer,
    ) -> Self {
        observer.notice(Notice::RunStarting { changed });
        let (interrupt, interrupt_rx) = flag::channel(false);
        let recorder = Arc::new(Recorder {
            inner: observer.run_reporter(),
            statuses: Mutex::new(HashMap::new()),
        });
        let graph = Arc::clone(&state.graph);
        let names = state.names.clone();
        let nodes = state.runnable();
        let run_options = options.run.clone();
        let reporter: Arc<dyn Reporter> = recorder.clone();
        let handle = tokio::spawn(async move {
            clab_exec::run(graph, names, nodes, &run_options, reporter, interrupt_rx).await
        });
        Run {
            handle,
            interrupt,
            recorder,
        }
    }
}

/// How a node ended in a run, as far as services care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// It really ran and succeeded.
    Ran,
    /// It was restored from the cache.
    Cached,
    /// It failed, was skipped or interrupted.
    NotOk,
}

/// Forwards events to the run's reporter and remembers how each node ended.
struct Recorder {
    inner: Arc<dyn Reporter>,
    statuses: Mutex<HashMap<String, Ended>>,
}

impl Recorder {
    fn take(&self) -> HashMap<String, Ended> {
        self.statuses
            .lock()
            .map(|mut statuses| std::mem::take(&mut *statuses))
            .unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: &Event) {
        let ended = match event {
            Event::TaskFinished { task, status, .. } => Some((
                task,
                match status {
                    Status::Succeeded => Ended::Ran,
                    Status::Cached { .. } => Ended::Cached,
                    Status::Failed { .. } | Status::Interrupted => Ended::NotOk,
                },
            )),
            Event::TaskSkipped { task, .. } => Some((task, Ended::NotOk)),
            _ => None,
        };
        if let Some((task, ended)) = ended
            && let Ok(mut statuses) = self.statuses.lock()
        {
            statuses.insert(task.clone(), ended);
        }
        self.inner.report(event);
    }
}

/// A running persistent task.
struct Service {
    id: u64,
    stop: Stop,
    handle: JoinHandle<()>,
}

impl Service {
    /// Interrupt its process group (SIGINT, SIGKILL after the grace period) and wait for it.
    async fn stop(self) {
        self.stop.raise();
        let _ = self.handle.await;
    }
}

/// After a finished run: stop services that left the graph, and (re)start those that are
/// dirty, not running, or whose dependencies ran, provided their dependencies succeeded.
#[allow(clippy::too_many_arguments)]
async fn sync_services(
    state: &State,
    statuses: &HashMap<String, Ended>,
    dirty: &mut BTreeSet<String>,
    services: &mut BTreeMap<String, Service>,
    observer: &Arc<dyn Observer>,
    options: &WatchOptions,
    exited_tx: &mpsc::UnboundedSender<(String, u64)>,
    next_id: &mut u64,
) {
    let wanted: BTreeMap<String, NodeId> = state
        .closure
        .iter()
        .filter(|&&id| is_service(&state.graph, id))
        .map(|&id| (state.graph.node(id).name.clone(), id))
        .collect();
    let gone: Vec<String> = services
        .keys()
        .filter(|name| !wanted.contains_key(*name))
        .cloned()
        .collect();
    for task in gone {
        if let Some(service) = services.remove(&task) {
            service.stop().await;
            observer.notice(Notice::ServiceStopped { task });
        }
    }
    for (task, id) in wanted {
        let deps = state.graph.closure(&[id]);
        let deps = deps.iter().filter(|&&dep| dep != id);
        let mut deps_ok = true;
        let mut deps_ran = false;
        for &dep in deps {
            let node = state.graph.node(dep);
            if matches!(node.kind, NodeKind::Aggregate) || is_service(&state.graph, dep) {
                continue;
            }
            match statuses.get(&node.name) {
                Some(Ended::Ran) => deps_ran = true,
                Some(Ended::Cached) => {}
                Some(Ended::NotOk) | None => deps_ok = false,
            }
        }
        if !deps_ok {
            continue;
        }
        let restart = dirty.remove(&task) || deps_ran;
        if services.contains_key(&task) && !restart {
            continue;
        }
        if let Some(service) = services.remove(&task) {
            service.stop().await;
            observer.notice(Notice::ServiceStopped { task: task.clone() });
        }
        let service = start_service(state, id, *next_id, observer, options, exited_tx.clone());
        *next_id += 1;
        services.insert(task, service);
    }
}

/// Run a service's commands, in order, on a blocking thread of their own with their own
/// interrupt.
fn start_service(
    state: &State,
    id: NodeId,
    service_id: u64,
    observer: &Arc<dyn Observer>,
    options: &WatchOptions,
    exited_tx: mpsc::UnboundedSender<(String, u64)>,
) -> Service {
    let node = state.graph.node(id);
    let task = node.name.clone();
    let lines = match &node.kind {
        NodeKind::Command { run } => run.clone(),
        _ => Vec::new(),
    };
    let cwd = if node.cwd.is_empty() {
        state.root().to_path_buf()
    } else {
        state.root().join(&node.cwd)
    };
    let env = state.graph.command_env(id);
    // A service runs in the sandbox only when its task asks (`sandbox #true`).
    let sandbox = clab_exec::sandbox_policy::policy(&state.graph, id, clab_sandbox::Mode::Off);
    let grace = options.run.grace;
    let stop = Stop::new();
    let stopped = stop.clone();
    let observer = Arc::clone(observer);
    observer.notice(Notice::ServiceStarted { task: task.clone() });
    let handle = tokio::task::spawn_blocking(move || {
        let mut exit = Exit::Code(0);
        for line in lines {
            let spec = CommandSpec {
                line,
                cwd: cwd.clone(),
                env: env.clone(),
                timeout: None,
                grace,
                sandbox: sandbox.clone(),
            };
            let on_line = |text: &str| {
                observer.notice(Notice::ServiceOutput {
                    task: task.clone(),
                    line: text.to_owned(),
                });
            };
            match run_command(&spec, on_line, &stopped, || {}) {
                Ok((Exit::Interrupted, _)) => return,
                Ok((ended, _)) => {
                    exit = ended;
                    if !exit.success() {
                        break;
                    }
                }
                Err(error) => {
                    observer.notice(Notice::Runtime(RuntimeError::Spawn(error)));
                    let _ = exited_tx.send((task, service_id));
                    return;
                }
            }
        }
        observer.notice(Notice::ServiceExited {
            task: task.clone(),
            exit,
        });
        let _ = exited_tx.send((task, service_id));
    });
    Service {
        id: service_id,
        stop,
        handle,
    }
}

/// The local time of day, `HH:MM:SS`.
pub fn local_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Ok(seconds) = nix::libc::time_t::try_from(now) else {
        return String::new();
    };
    // SAFETY: `localtime_r` writes only into the `tm` we own and reads the `time_t` we own;
    // it is the thread-safe variant (no shared static buffer).
    let tm = unsafe {
        let mut tm: nix::libc::tm = std::mem::zeroed();
        if nix::libc::localtime_r(&seconds, &mut tm).is_null() {
            return format_utc(now);
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn format_utc(seconds: u64) -> String {
    let day = seconds % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_access_times_are_not_changes() {
        use notify::event::{CreateKind, DataChange};
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            notify::event::AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn ignores_follow_the_deepest_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "*.log\ntarget/\n").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/.gitignore"), "!keep.log\n").unwrap();
        let mut ignores = Ignores::new(root);
        assert!(ignores.is_ignored(&root.join("a.log"), false));
        assert!(ignores.is_ignored(&root.join("target/debug/x"), false));
        assert!(!ignores.is_ignored(&root.join("sub/keep.log"), false));
        assert!(ignores.is_ignored(&root.join("sub/other.log"), false));
        assert!(!ignores.is_ignored(&root.join("src/a.rs"), false));
    }

    #[test]
    fn relative_paths_use_slashes() {
        let root = Path::new("/p");
        assert_eq!(
            relative(root, Path::new("/p/a/b.txt")).as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(relative(root, Path::new("/q/a")), None);
        assert_eq!(relative(root, Path::new("/p")), None);
    }

    #[test]
    fn utc_fallback_formats_time_of_day() {
        assert_eq!(format_utc(86_400 + 3600 * 14 + 60 * 3 + 12), "14:03:12");
    }
}
