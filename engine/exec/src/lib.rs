//! `Graph` → outcomes: the scheduler, processes, the node kinds and the run's events.
//!
//! ```text
//! Graph + nodes ──run──▶ store opened, inputs walked and hashed (Planner)
//!   ──scheduler (blind to node kinds)──▶ Runner: key → lookup → lock → restore | Kind::run → store
//!   ──▶ Summary, Events (to the cli's reporters), history row, no-op snapshot
//! ```
//!
//! # Purpose
//!
//! The execution stage: [`run`] is the whole of `clab run` below the command line — open the
//! cache, hash the inputs, schedule the nodes through the [`runner::Runner`], flush the stat
//! cache and record the run in the history. When nothing changed since an all-cached run, the
//! no-op [`snapshot`] answers instead.
//!
//! # In
//!
//! A [`clab_graph::Graph`], the nodes to run (a closure, in dependency order), [`RunOptions`],
//! an [`event::Reporter`] and an interrupt flag.
//!
//! # Out
//!
//! An [`event::Summary`], and every [`event::Event`] of the run sent to the reporter: the
//! engine never prints, the cli renders.
//!
//! # Invariants
//!
//! - The [`scheduler`] knows the graph's shape, not what nodes do; the [`runner::Runner`]
//!   knows the cache protocol, not what nodes do; each [`kind::Kind`] knows one kind of work.
//! - Every command runs in its own process group ([`process`]); when [`run`] returns nothing
//!   it started is left running — what left its group neither ([`process_tag`]: clab is a
//!   subreaper and finds such processes by their tag), and a `kill -9` of clab is covered by
//!   the [`watchdog`] and the next start's [`process_record`] reaping.
//! - A failure is never stored; a result is stored only after its outputs and log are in the
//!   CAS (the store checks).
//! - Depends on model, syntax, rules, graph, llm, reports, plan and store — never on watch or
//!   the cli.

use clab_llm as llm;
use clab_reports::{coverage, junit};
pub mod context;
pub mod event;
pub mod kind;
pub mod process;
pub mod process_record;
pub mod process_tag;
pub mod report_totals;
pub mod rule_scan;
pub mod runner;
pub mod sandbox_policy;
pub mod scheduler;
pub mod snapshot;
pub mod task_log;
pub mod watchdog;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clab_remote::RemoteCache;
use tokio::sync::watch;

pub use self::context::{Cache, CacheMode, Context};
use self::{
    kind::{Kinds, aggregate::AggregateKind, command::CommandKind, llm::LlmKind, rule::RuleKind},
    llm::ai_enabled,
    runner::Runner,
    scheduler::{Options, schedule},
};
use crate::event::{Event, Reporter, Summary};
use clab_graph::{Graph, NodeId};
use clab_plan::{Planner, llm_prompt::LlmLayers};
use clab_store::{Store, run_record::RunRecord};

/// Everything `clab run` decides from its flags.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Parallelism.
    pub jobs: usize,
    /// Run what does not depend on a failure.
    pub keep_going: bool,
    /// How the cache is used.
    pub cache: CacheMode,
    /// Where the cache lives (`.clab/` in the root unless `CLAB_CACHE_DIR` says otherwise;
    /// the caller works it out, with `clab_store::cache_dir`).
    pub cache_dir: PathBuf,
    /// Time between SIGINT/SIGTERM and SIGKILL.
    pub grace: Duration,
    /// LLM steps only from the cache.
    pub offline: bool,
    /// LLM settings from flags, variables and the user's config file.
    pub llm: LlmLayers,
    /// The shared remote cache, if one is configured (`cache { remote … }`,
    /// `CLAB_REMOTE_CACHE`); a run flushes its uploads before it ends.
    pub remote: Option<Arc<RemoteCache>>,
    /// The no-op snapshot, read and checked while the graph loaded
    /// ([`snapshot::Prefetch`]); `None`: read when the run needs it.
    pub snapshot: Option<Arc<snapshot::Prefetch>>,
    /// The run's interrupt comes only from SIGINT or SIGTERM (`clab run`, not watch mode's
    /// restarts): a lone node may then be visited on the scheduler's own thread, where the
    /// signal handler stops it ([`scheduler::Options::visit_lone_here`]).
    pub interrupt_by_signal: bool,
}

/// At most this many nodes not vouched for by the snapshot: walked before the stat cache is
/// read, so that only their files' rows are read (at most [`FEW_FILES`] of them).
const FEW_NODES: usize = 256;

/// At most this many nodes to walk: on one thread.
const FEW_WALKS: usize = 16;

/// At most this many files: their stat-cache rows are read one by one, not the whole table.
const FEW_FILES: usize = 2048;

/// At most this many nodes to look up: through SQL, without reading every task's last
/// result ahead.
const FEW_LOOKUPS: usize = 64;

/// At most this many nodes in the graph: what the run built is freed on its own thread.
const FREE_HERE: usize = 256;

/// How long the end of a run waits for uploads to the remote cache still in flight.
const UPLOAD_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Open the store, reporting what went wrong as warnings: a cache that cannot be opened
/// means a run without a cache, not a failed run.
pub fn open_store(dir: &Path, reporter: &dyn Reporter) -> Option<Arc<Store>> {
    match Store::open(dir) {
        Ok(opened) => {
            for warning in opened.warnings {
                reporter.report(&Event::Warning {
                    message: warning.to_string(),
                });
            }
            clab_store::ignore_in_git(dir);
            Some(Arc::new(opened.store))
        }
        Err(err) => {
            reporter.report(&Event::Warning {
                message: format!("cache unavailable, running without it: {err}"),
            });
            None
        }
    }
}

/// Report every node of a valid no-op snapshot as cached, and record the run.
async fn replay(
    found: snapshot::Snapshot,
    store: &Arc<Store>,
    targets: Vec<String>,
    options: &RunOptions,
    reporter: &dyn Reporter,
    started_ms: i64,
) -> Summary {
    let started = std::time::Instant::now();
    reporter.report(&Event::RunStarted {
        targets: targets.clone(),
        total: found.nodes.len(),
        jobs: options.jobs.max(1),
    });
    let mut summary = Summary::default();
    for node in &found.nodes {
        let log = node
            .log
            .and_then(|digest| task_log::read_tail(store, &digest))
            .filter(|text| !text.is_empty());
        reporter.report(&Event::TaskFinished {
            task: node.name.clone(),
            status: crate::event::Status::Cached { remote: false },
            duration_ms: node.duration_ms,
            log,
        });
        summary.cached += 1;
        summary.saved_ms += node.duration_ms;
    }
    summary.wall_ms = started.elapsed().as_millis() as u64;
    summary.from_snapshot = true;
    reporter.report(&Event::RunFinished(summary.clone()));
    store.count_hits(found.nodes.len());
    let record = RunRecord {
        started_ms,
        targets,
        ran: 0,
        cached: summary.cached as u32,
        failed: 0,
        duration_ms: summary.wall_ms,
        extra: None,
    };
    save_run(store, record, reporter);
    summary
}

/// Report what the store healed during the run (a damaged `cache.db` moved aside).
fn report_store_warnings(store: &Store, reporter: &dyn Reporter) {
    for warning in store.take_warnings() {
        reporter.report(&Event::Warning {
            message: warning.to_string(),
        });
    }
}

/// Write what the run left in memory (stat-cache rows, hit counts) and its history row.
///
/// On the calling thread, blocking: the run is over, so nothing on the runtime is kept
/// waiting but the Ctrl-C listener, which has nothing left to stop. (On a thread of tokio's
/// blocking pool it cost a thread start and two hand-offs, at the end of every run: with the
/// 2-core machine busy, the median of `clab run` of `echo hi` went from 11.8 to 8.8 ms.)
fn save_run(store: &Store, record: RunRecord, reporter: &dyn Reporter) {
    let saved = store.flush_stat_cache().and_then(|_| {
        let recorded = store.record_run(&record);
        store.finish_writes();
        recorded
    });
    if let Err(err) = saved {
        reporter.report(&Event::Warning {
            message: format!("cannot record the run in the cache: {err}"),
        });
    }
}

/// Run `nodes` (the closure of `targets`) with the cache, and record the run.
pub async fn run(
    graph: Arc<Graph>,
    targets: Vec<String>,
    nodes: Vec<NodeId>,
    options: &RunOptions,
    reporter: Arc<dyn Reporter>,
    interrupt: watch::Receiver<bool>,
) -> Summary {
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let started_ns = clab_store::stat_cache::now_ns();
    start_up(&graph, &nodes, options, &*reporter);
    clab_model::phase::mark("start_up");
    let mut cache = None;
    let mut history = None;
    // Nothing to look up or store (`echo hi` without inputs): the run's history row goes to
    // the journal (`clab_store::history`), and `cache.db` is not opened at all.
    let mut journal = None;
    let cacheable = nodes.iter().any(|&id| graph.node(id).is_cacheable());
    let mut snapshot = None;
    // What the snapshot vouches for when it cannot answer the whole run.
    let mut vouched: Option<snapshot::Loaded> = None;
    // Work for this thread once the commands have started: it has nothing else to do until
    // one ends.
    let mut meanwhile = Meanwhile::default();
    if options.cache.read || options.cache.write {
        let dir = options.cache_dir.clone();
        if cacheable {
            history = open_store(&dir, &*reporter);
            clab_model::phase::mark("open_store");
        } else if options.cache.write {
            journal = Some(dir);
        }
        if let Some(store) = &history
            && cacheable
            && options.cache.read
            && options.cache.write
            && snapshot::applies(&graph, &nodes)
        {
            let stamp = snapshot::stamp(&graph, &targets, &nodes, &snapshot::env_inputs(&graph));
            let file = snapshot::path(store.dir(), &targets);
            let found = match &options.snapshot {
                Some(prefetch) => prefetch.load(&file, &stamp, &graph, &nodes),
                None => snapshot::load(&file, &stamp, &graph, &nodes),
            };
            clab_model::phase::mark("snapshot_check");
            if let Some(all) = found.as_ref().and_then(|f| f.all_known(&graph, &nodes)) {
                return replay(all, store, targets, options, &*reporter, started_ms).await;
            }
            vouched = found;
            snapshot = Some((file, stamp));
        }
        (meanwhile.sweep, meanwhile.sweeping) =
            sweep_in_background(&graph, &nodes, &options.cache_dir);
        if let Some(store) = history.as_ref().filter(|_| cacheable).map(Arc::clone) {
            let few = vouched
                .as_ref()
                .map(|v| &v.unknown[..])
                .filter(|unknown| unknown.len() <= FEW_NODES);
            let (walked, loaded) = match few {
                // A few nodes changed (the snapshot vouches for the rest): their walk is
                // short, and then only their files' stat-cache rows are read.
                Some(unknown) => {
                    let walked = Planner::walk_with(&graph, unknown, unknown.len() > FEW_WALKS);
                    clab_model::phase::mark("walked");
                    let loaded = match &walked {
                        Ok(walked) if walked.paths().len() <= FEW_FILES => {
                            store.stat_cache_of(walked.paths()).map(drop)
                        }
                        _ => store.stat_cache().map(drop),
                    };
                    clab_model::phase::mark("stat_cache_loaded");
                    if unknown.len() > FEW_LOOKUPS {
                        // A failed read-ahead only means lookups through SQL.
                        let _ = store.preload_results();
                    }
                    (walked, Ok(loaded))
                }
                // The stat cache loads while the tree is walked.
                None => std::thread::scope(|scope| {
                    let loading = scope.spawn(|| {
                        store.stat_cache()?;
                        clab_model::phase::mark("stat_cache_loaded");
                        // A failed read-ahead only means lookups through SQL.
                        let _ = store.preload_results();
                        clab_model::phase::mark("results_preloaded");
                        Ok::<(), clab_store::Error>(())
                    });
                    // Only the nodes the snapshot does not vouch for are walked and hashed.
                    let planned = vouched.as_ref().map_or(&nodes[..], |v| &v.unknown[..]);
                    let walked = Planner::walk(&graph, planned);
                    clab_model::phase::mark("walked");
                    (walked, loading.join())
                }),
            };
            let planner = match loaded {
                Ok(Ok(())) => walked.map_err(|err| err.to_string()).and_then(|walked| {
                    let stats = store.stat_cache().map_err(|err| err.to_string())?;
                    walked.hash(&graph, stats).map_err(|err| err.to_string())
                }),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("loading the stat cache panicked".to_owned()),
            };
            clab_model::phase::mark("hashed");
            report_store_warnings(&store, &*reporter);
            match planner {
                Ok(planner) => cache = Some(Cache { store, planner }),
                Err(err) => reporter.report(&Event::Warning {
                    message: format!("cannot hash inputs, running without the cache: {err}"),
                }),
            }
        }
    }
    // The hashes found while planning (all of them on a cold run: 10,000 rows for 10,000
    // files) are written while the nodes run, not after — and copied from the log into
    // `cache.db`, which the close at exit would otherwise do.
    let early_flush = cache.as_ref().map(|cache| {
        let store = Arc::clone(&cache.store);
        tokio::task::spawn_blocking(move || {
            let flushed = store.flush_stat_cache();
            store.checkpoint();
            flushed
        })
    });
    // Not answered by the snapshot: commands may run, and the watchdog starts beside them.
    if nodes
        .iter()
        .any(|&id| matches!(graph.node(id).kind, clab_graph::NodeKind::Command { .. }))
    {
        watchdog::Watchdog::start_soon();
    }
    let llm = Arc::new(LlmKind::new(
        options.llm.clone(),
        options.offline,
        ai_switch(&|name: &str| std::env::var(name).ok()),
    ));
    let kinds = Kinds {
        command: Arc::new(CommandKind),
        llm: Arc::clone(&llm) as _,
        rule: Arc::new(RuleKind::default()),
        aggregate: Arc::new(AggregateKind),
    };
    let cx = Context::new(
        Arc::clone(&graph),
        Arc::clone(&reporter),
        cache,
        options.cache,
        options.grace,
    )
    .with_remote(options.remote.clone());
    let known = vouched
        .as_ref()
        .filter(|_| cx.planner().is_some())
        .map(|l| l.known.clone())
        .unwrap_or_default();
    let known_count = known.len();
    let runner = Arc::new(Runner::new(cx, kinds).with_known(known));
    let scheduling = Options {
        jobs: options.jobs,
        keep_going: options.keep_going,
        visit_lone_here: options.interrupt_by_signal,
    };
    let sweeping = meanwhile.sweeping.take();
    let work: Option<scheduler::Deferred> = meanwhile
        .sweep
        .map(|sweep| Box::new(move || sweep.run()) as scheduler::Deferred);
    let mut summary = schedule(
        &graph,
        &nodes,
        targets.clone(),
        &scheduling,
        Arc::clone(&runner),
        &*reporter,
        interrupt,
        work,
    )
    .await;
    clab_model::phase::mark("scheduled");
    summary.snapshot_known = known_count;
    if let Some(sweep) = sweeping {
        // Usually long done; a run shorter than its sweep waits for it here rather than
        // leave the stale files to the next run, which would be as short.
        let _ = sweep.join();
    }
    end_processes(&*reporter);
    let reports = runner.report_totals();
    (summary.tokens_in, summary.tokens_out) = llm.tokens();
    if let Some(remote) = &options.remote {
        let finishing = Arc::clone(remote);
        let stats = tokio::task::spawn_blocking(move || {
            finishing.finish(std::time::Instant::now() + UPLOAD_FLUSH_LIMIT)
        })
        .await
        .unwrap_or_else(|_| remote.stats());
        for warning in remote.warnings() {
            reporter.report(&Event::Warning {
                message: warning.to_string(),
            });
        }
        summary.remote_cache = Some(stats);
    }
    reporter.report(&Event::RunFinished(summary.clone()));
    if let (Some((file, stamp)), Some(store), Some(planner)) =
        (&snapshot, &history, runner.context().planner())
        && !summary.interrupted
    {
        // Pure hits and known nodes are kept; every other node is written dirty.
        snapshot::save(
            file,
            stamp,
            &snapshot::Finished {
                graph: &graph,
                nodes: &nodes,
                hits: &runner.hits(),
                loaded: vouched.as_ref(),
                planner,
                store,
                started_ns,
            },
        );
        clab_model::phase::mark("snapshot_saved");
    }
    if history.is_some() || journal.is_some() {
        let record = RunRecord {
            started_ms,
            targets,
            ran: summary.ran() as u32,
            cached: summary.cached as u32,
            failed: summary.failures() as u32,
            duration_ms: summary.wall_ms,
            extra: history_extra(&reports, summary.remote_cache.as_ref()),
        };
        if let Some(store) = history {
            if let Some(flush) = early_flush
                && let Ok(Err(err)) = flush.await
            {
                reporter.report(&Event::Warning {
                    message: format!("cannot save the stat cache: {err}"),
                });
            }
            save_run(&store, record, &*reporter);
            report_store_warnings(&store, &*reporter);
        } else if let Some(dir) = journal {
            match clab_store::history::record_pending(&dir, &record) {
                Ok(clab_store::history::Appended::Kept) => {}
                // Runs that never open `cache.db` would let the journal grow without end.
                Ok(clab_store::history::Appended::Full) => {
                    if let Some(store) = open_store(&dir, &*reporter) {
                        if let Err(err) = store.import_history() {
                            reporter.report(&Event::Warning {
                                message: format!("cannot import the history journal: {err}"),
                            });
                        }
                        report_store_warnings(&store, &*reporter);
                    }
                }
                Err(err) => reporter.report(&Event::Warning {
                    message: format!("cannot record the run in the cache: {err}"),
                }),
            }
        }
        clab_model::phase::mark("history_saved");
    }
    // What the run built is freed on a thread of its own: on a cold rules run that is 10,000
    // texts and hashes, milliseconds of one core nobody needs to wait for (the process may
    // end first). Nothing there has work left: the store's writes are finished
    // (`finish_writes`) and the reporter has seen the run finish.
    let count = graph.len();
    free_in_background((runner, graph), count);
    summary
}

/// What a history row keeps beside its counts: the test and coverage totals, and what the
/// remote cache did (`clab stats`, `clab cache stats`).
fn history_extra(
    reports: &[report_totals::ReportTotals],
    remote: Option<&clab_remote::RemoteStats>,
) -> Option<serde_json::Value> {
    let mut extra = serde_json::Map::new();
    if !reports.is_empty() {
        extra.insert("reports".into(), serde_json::json!(reports));
    }
    if let Some(remote) = remote {
        extra.insert("remote".into(), serde_json::json!(remote));
    }
    (!extra.is_empty()).then_some(serde_json::Value::Object(extra))
}

/// What every run does first (issue 18): become a subreaper, so that what a command leaves
/// running stays among clab's descendants; kill what a killed clab left (its record in the
/// cache directory); keep this clab's record there; and say when the user's config file
/// cannot be read but no LLM step needs it (one that does fails with the reason).
fn start_up(graph: &Graph, nodes: &[NodeId], options: &RunOptions, reporter: &dyn Reporter) {
    process_tag::become_subreaper();
    let reaped = process_record::ProcessRecord::start(&options.cache_dir);
    if !reaped.clabs.is_empty() && reaped.killed > 0 {
        let pids: Vec<String> = reaped.clabs.iter().map(u32::to_string).collect();
        reporter.report(&Event::Warning {
            message: format!(
                "killed {} left running by a clab that did not finish (pid {})",
                match reaped.killed {
                    1 => "1 process".to_owned(),
                    n => format!("{n} processes"),
                },
                pids.join(", ")
            ),
        });
    }
    if let Some(problem) = &options.llm.config_unreadable {
        let llm_steps = nodes
            .iter()
            .any(|&id| matches!(graph.node(id).kind, clab_graph::NodeKind::Llm(_)));
        if !llm_steps {
            reporter.report(&Event::Warning {
                message: format!("{problem}; no LLM step runs, so it is not needed"),
            });
        }
    }
}

/// Remove, on a thread of its own, the temp files a killed clab left where outputs are
/// written and in the cache directory (stale ones only: see `inputs::sweep_temp_files`).
/// Nothing waits for it until the run is over (output globs skip such files anyway).
///
/// A sweep of the cache directory alone (no node has outputs: one directory listing) is
/// returned to be done by the caller's thread while the commands run, rather than started on
/// a thread of its own, which cost more than the listing.
fn sweep_in_background(
    graph: &Graph,
    nodes: &[NodeId],
    cache_dir: &Path,
) -> (Option<Sweep>, Option<std::thread::JoinHandle<()>>) {
    let mut patterns: Vec<String> = nodes
        .iter()
        .flat_map(|&id| graph.node(id).outputs.iter().cloned())
        .collect();
    if patterns.is_empty() && !cache_dir.is_dir() {
        return (None, None);
    }
    patterns.sort();
    patterns.dedup();
    let sweep = Sweep {
        root: graph.root().to_path_buf(),
        patterns,
        cache_dir: cache_dir.to_path_buf(),
    };
    if sweep.patterns.is_empty() {
        return (Some(sweep), None);
    }
    let sweeping = std::thread::Builder::new()
        .name("clab-sweep".into())
        .spawn(move || sweep.run());
    (None, sweeping.ok())
}

/// A sweep of clab's leftover temp files: below the output patterns' directories, and in the
/// cache directory.
struct Sweep {
    root: PathBuf,
    patterns: Vec<String>,
    cache_dir: PathBuf,
}

impl Sweep {
    fn run(&self) {
        clab_plan::inputs::sweep_temp_files(
            &self.root,
            &self.patterns,
            &[&self.cache_dir],
            clab_plan::inputs::TEMP_FILE_GRACE,
        );
    }
}

/// The sweep of the cache directory's stale temp files, and where it runs: a small one on
/// the scheduler's thread once the first commands have started, while it would otherwise wait
/// for one to end (a thread start and a hand-off cost about what the work does, and on a
/// machine whose cores are busy each hand-off may wait for a core); one with output patterns
/// to sweep below on a thread of its own.
#[derive(Default)]
struct Meanwhile {
    /// A sweep small enough to do on the scheduler's thread.
    sweep: Option<Sweep>,
    /// The sweep on a thread of its own, joined when the run is over.
    sweeping: Option<std::thread::JoinHandle<()>>,
}

/// After the last command of a run: kill what commands left running outside their process
/// groups (clab is their subreaper; their tags name them), say so, and — with no command
/// running — drop this clab's process record and tell the watchdog there is nothing to do.
fn end_processes(reporter: &dyn Reporter) {
    let killed = if process::take_spawned() {
        process_tag::kill_leftovers(&process_record::ProcessRecord::live_tags())
    } else {
        0
    };
    if killed > 0 {
        reporter.report(&Event::Warning {
            message: format!(
                "killed {} that tasks left running after they ended",
                match killed {
                    1 => "1 process".to_owned(),
                    n => format!("{n} processes"),
                }
            ),
        });
    }
    if process_record::ProcessRecord::settle() {
        watchdog::Watchdog::idle();
    }
}

/// The setting that turns LLM calls off (`CLAB_AI=off`), if one does.
fn ai_switch(lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["CLAB_AI", "CODEGEN_LAB_CONFIG_ENABLE_AI"]
        .into_iter()
        .find_map(|name| {
            let value = lookup(name)?;
            let alone = |asked: &str| (asked == name).then(|| value.clone());
            (!ai_enabled(&alone)).then(|| format!("{name}={}", value.trim()))
        })
}

/// Drop `value` on a new thread (here, if none can be started).
///
/// What a small graph built is freed right here: a thread start cost more than that.
fn free_in_background<T: Send + 'static>(value: T, nodes: usize) {
    if nodes <= FREE_HERE {
        drop(value);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("clab-free".into())
        .spawn(move || drop(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ai_switch_names_the_variable_that_turned_ai_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(ai_switch(&env(&[])), None);
        assert_eq!(ai_switch(&env(&[("CLAB_AI", "on")])), None);
        assert_eq!(
            ai_switch(&env(&[("CLAB_AI", "off")])).as_deref(),
            Some("CLAB_AI=off")
        );
        assert_eq!(
            ai_switch(&env(&[
                ("CLAB_AI", "on"),
                ("CODEGEN_LAB_CONFIG_ENABLE_AI", "false")
            ]))
            .as_deref(),
            Some("CODEGEN_LAB_CONFIG_ENABLE_AI=false")
        );
    }
}
