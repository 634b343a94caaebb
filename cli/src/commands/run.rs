//! `clab run`: load the graph, pick the targets, schedule, report, exit.

use clab_exec::event::Reporter;
use clab_exec::{CacheMode, RunOptions};
use clab_graph::{Graph, NodeId};
use clab_plan::{Plan, PlanStatus, llm_prompt::LlmLayers};
use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::watch;

use crate::{
    args::{Args, RunArgs},
    exit::{Done, Failure},
    render,
};

/// Run the requested tasks.
pub(super) fn run(args: &Args, run_args: &RunArgs) -> Result<Done, Failure> {
    let project =
        super::project(args)?.with_selection(run_args.filter.clone(), run_args.since.clone());
    // With the targets on the command line, the no-op snapshot's file is known before the
    // graph: it is read and its stats checked while the graph loads.
    let snapshot =
        (!run_args.tasks.is_empty() && !run_args.dry_run && !run_args.no_cache && !run_args.force)
            .then(|| clab_exec::snapshot::path(&super::cache_dir(&project), &run_args.tasks))
            // No thread for a run without a snapshot (a trivial task never has one).
            .filter(|file| file.is_file())
            .map(|file| Arc::new(clab_exec::snapshot::Prefetch::start(file)));
    let mut graph = project.load_runnable()?;
    clab_model::phase::mark("load");
    let Some(names) = super::target_names(&graph, &run_args.tasks)? else {
        return Ok(Done::Usage);
    };
    let targets = graph
        .resolve_targets(&names)
        .map_err(clab_graph::project::Error::from)?;
    graph
        .pass_args(&targets, &run_args.args)
        .map_err(clab_graph::project::Error::from)?;
    let graph = Arc::new(graph);
    let nodes = graph.closure(&targets);
    clab_model::phase::mark("graph");

    if run_args.dry_run {
        return dry_run(args, run_args, &graph, &nodes);
    }

    let mut reporters: Vec<Arc<dyn Reporter>> = Vec::new();
    reporters.push(if run_args.json {
        Arc::new(render::json::Json)
    } else {
        render::human(args)
    });
    if let Some(summary) = render::step_summary::StepSummary::from_env() {
        reporters.push(Arc::new(summary));
    }
    if let Some(path) = &run_args.profile {
        reporters.push(Arc::new(render::trace::Trace::new(path.clone())));
    }
    let reporter: Arc<dyn Reporter> = Arc::new(render::Fanout(reporters));

    // One node needs one job: the cores are not asked for (the standard library reads the
    // cgroup's CPU quota from /proc and /sys, a dozen system calls).
    let jobs = args.jobs.unwrap_or_else(|| match nodes.len() {
        0 | 1 => 1,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    let options = RunOptions {
        jobs,
        keep_going: run_args.keep_going,
        cache: CacheMode {
            read: !run_args.no_cache && !run_args.force,
            write: !run_args.no_cache,
        },
        cache_dir: super::cache_dir(&project),
        grace: Duration::from_secs(3),
        offline: run_args.offline,
        llm: llm_layers(run_args.model.as_deref())?,
        remote: if run_args.no_cache {
            None
        } else {
            super::remote_cache(&graph)?
        },
        snapshot,
        // Ctrl-C and SIGTERM are this run's only interrupts.
        interrupt_by_signal: true,
    };
    clab_model::phase::mark("options");
    // One thread for the async side: the scheduler's loop, LLM calls' I/O, Ctrl-C. Commands,
    // rule scans and storing run on the job threads, settling on this one (a multi-threaded
    // runtime cost ~0.1 ms more to start, and a worker hand-off per settled batch).
    // Its I/O driver (an epoll, an eventfd, and the signal driver's socket pair: ~50 µs of a
    // trivial run) only for runs that do I/O on it: LLM calls. Without it, Ctrl-C is watched
    // by `poll_for_interrupt`.
    let llm = nodes
        .iter()
        .any(|&id| matches!(graph.node(id).kind, clab_graph::NodeKind::Llm(_)));
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time();
    if llm {
        builder.enable_io();
    }
    let runtime = builder.build()?;
    clab_model::phase::mark("runtime");
    let summary = runtime.block_on(async {
        let (interrupt_tx, interrupt_rx) = watch::channel(false);
        tokio::spawn(async move {
            if llm {
                wait_for_interrupt().await;
            } else {
                poll_for_interrupt().await;
            }
            let _ = interrupt_tx.send(true);
        });
        clab_exec::run(
            Arc::clone(&graph),
            names,
            nodes,
            &options,
            reporter,
            interrupt_rx,
        )
        .await
    });
    super::keep_until_exit(graph);
    // Nothing is left running: every command has been reaped (the job threads wait for
    // them) and everything stored. What remains — the task waiting for Ctrl-C, idle
    // workers — ends with the process; waiting for it took up to a millisecond.
    clab_model::phase::mark("run");
    runtime.shutdown_background();
    Ok(if summary.interrupted {
        Done::Interrupted
    } else if !summary.is_success() {
        Done::TaskFailed
    } else {
        Done::Success
    })
}

/// Ctrl-C or SIGTERM, on a runtime without an I/O driver: the signal handler sets a flag that
/// is looked at every [`INTERRUPT_POLL`]. (A lone command's wait does not depend on it: the
/// handler the scheduler holds around that wait stops the command at once.)
async fn poll_for_interrupt() {
    static RAISED: AtomicBool = AtomicBool::new(false);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action is an atomic store, async-signal-safe; it captures nothing.
        let registered = unsafe {
            signal_hook_registry::register(signal, || RAISED.store(true, Ordering::Relaxed))
        };
        if registered.is_err() {
            // Without signal handlers, Ctrl-C keeps its default meaning: the process ends.
            return std::future::pending().await;
        }
    }
    let mut ticks = tokio::time::interval(INTERRUPT_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !RAISED.load(Ordering::Relaxed) {
        ticks.tick().await;
    }
}

/// How often [`poll_for_interrupt`] looks: well within the grace period a command gets.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Ctrl-C or SIGTERM.
pub(super) async fn wait_for_interrupt() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers, Ctrl-C keeps its default meaning: the process ends.
        _ => std::future::pending().await,
    }
}

/// `--dry-run`: what would run and why, from the cache, executing nothing.
fn dry_run(
    args: &Args,
    run_args: &RunArgs,
    graph: &Graph,
    nodes: &[NodeId],
) -> Result<Done, Failure> {
    let project = super::project(args)?;
    let cache_dir = (!run_args.no_cache).then(|| super::cache_dir(&project));
    let remote = match run_args.no_cache {
        true => None,
        false => super::remote_cache(graph)?,
    };
    let llm = llm_layers(run_args.model.as_deref())?;
    let mut plan = Plan::predict(graph, nodes, cache_dir.as_deref(), remote.as_deref(), &llm)?;
    if run_args.force {
        plan.force();
    }
    for warning in plan.take_warnings() {
        eprintln!("warning: {warning}");
    }
    let decisions = &plan.decisions;
    let mut out = std::io::stdout().lock();
    if run_args.json {
        for decision in decisions {
            serde_json::to_writer(&mut out, decision).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        return Ok(Done::Success);
    }
    let (mut run, mut cached) = (0, 0);
    for decision in decisions {
        match &decision.status {
            PlanStatus::Cached { .. } => {
                cached += 1;
                let from = if decision.remote.is_some() {
                    " (remote)"
                } else {
                    ""
                };
                writeln!(out, "⚡ {} cached{from}", decision.task)?;
            }
            PlanStatus::Run { reason, .. } => {
                run += 1;
                let remote = match decision.remote.as_ref().and_then(|r| r.rejected.as_ref()) {
                    Some(rejected) => format!("; remote cache: {rejected}"),
                    None => String::new(),
                };
                writeln!(out, "▶ {} would run: {reason}{remote}", decision.task)?;
            }
            PlanStatus::Aggregate => {}
        }
    }
    writeln!(
        out,
        "dry run: {run} would run, {cached} cached; nothing was executed"
    )?;
    Ok(Done::Success)
}

/// The LLM settings of flags, `CLAB_LLM_*` and the user's config file; bad ones are usage errors.
pub(super) fn llm_layers(model: Option<&str>) -> Result<LlmLayers, Failure> {
    LlmLayers::load(model).map_err(|err| Failure::Usage(format!("{:?}", miette::Report::new(err))))
}
