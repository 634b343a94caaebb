//! `clab run`: load the graph, pick the targets, schedule, report, exit.

use std::{sync::Arc, time::Duration};

use engine::{
    event::Reporter,
    exec::{
        runner::{Runner, RunnerOptions},
        scheduler::{Options, schedule},
    },
};
use tokio::sync::watch;

use crate::{
    args::{Args, RunArgs},
    exit::{Done, Failure},
    render,
};

/// Run the requested tasks.
pub fn run(args: &Args, run_args: &RunArgs) -> Result<Done, Failure> {
    let project = super::project(args)?;
    let graph = Arc::new(project.load()?);
    let names = if run_args.tasks.is_empty() {
        if !graph.tasks().contains_key("default") {
            eprintln!("error: no task given and no `default` task defined\n");
            super::list::write_list(&graph, &mut std::io::stderr())?;
            return Ok(Done::Usage);
        }
        vec!["default".to_owned()]
    } else {
        run_args.tasks.clone()
    };
    let targets = graph
        .resolve_targets(&names)
        .map_err(engine::error::Error::from)?;
    let nodes = graph.closure(&targets);

    let mut reporters: Vec<Arc<dyn Reporter>> = Vec::new();
    reporters.push(if run_args.json {
        Arc::new(render::json::Json)
    } else {
        render::human(args)
    });
    if let Some(path) = &run_args.profile {
        reporters.push(Arc::new(render::trace::Trace::new(path.clone())));
    }
    let reporter: Arc<dyn Reporter> = Arc::new(render::Fanout(reporters));

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.clamp(1, 4))
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        let (interrupt_tx, interrupt_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_interrupt().await;
            let _ = interrupt_tx.send(true);
        });
        let runner = Arc::new(Runner::new(
            Arc::clone(&graph),
            Arc::clone(&reporter),
            RunnerOptions {
                grace: Duration::from_secs(3),
            },
        ));
        let options = Options {
            jobs,
            keep_going: run_args.keep_going,
        };
        schedule(
            &graph,
            &nodes,
            names,
            &options,
            runner,
            &*reporter,
            interrupt_rx,
        )
        .await
    });
    // Leave no task behind: anything still running was told to stop and has been reaped.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(if summary.interrupted {
        Done::Interrupted
    } else if summary.failed > 0 {
        Done::TaskFailed
    } else {
        Done::Success
    })
}

/// Ctrl-C or SIGTERM.
async fn wait_for_interrupt() {
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
