//! `clab watch`: load the graph, check the targets, hand over to `clab_watch`, and print
//! its notices: a status line after each run, reload diagnostics, services' output.
//!
//! Notices go to stdout as `[watch] …` lines (diagnostics to stderr). On a terminal the run's
//! own summary line is drawn by the progress reporter, so the status line then only adds the
//! time; elsewhere the status line carries the summary itself.

use clab_exec::event::{Event, Reporter};
use clab_exec::{CacheMode, RunOptions};
use clab_watch::{Notice, Observer, WatchOptions};
use std::{
    io::{IsTerminal, Write},
    sync::Arc,
    time::Duration,
};
use tokio::sync::watch;

use crate::{
    args::{Args, WatchArgs},
    exit::{Done, Failure},
    render,
};

/// How often `--poll` looks at the files.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Watch the requested tasks until Ctrl-C.
pub(super) fn watch(args: &Args, watch_args: &WatchArgs) -> Result<Done, Failure> {
    let debounce = clab_model::duration::parse_duration(&watch_args.debounce).ok_or_else(|| {
        Failure::Usage(format!(
            "invalid `--debounce` value `{}`: use a duration such as `50ms` or `1s`",
            watch_args.debounce
        ))
    })?;
    let project =
        super::project(args)?.with_selection(watch_args.filter.clone(), watch_args.since.clone());
    let graph = Arc::new(project.load_runnable()?);
    let Some(names) = super::target_names(&graph, &watch_args.tasks)? else {
        return Ok(Done::Usage);
    };
    graph
        .resolve_targets(&names)
        .map_err(clab_graph::project::Error::from)?;

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = WatchOptions {
        run: RunOptions {
            jobs,
            keep_going: watch_args.keep_going,
            cache: CacheMode {
                read: !watch_args.no_cache,
                write: !watch_args.no_cache,
            },
            cache_dir: super::cache_dir(&project),
            grace: Duration::from_secs(3),
            offline: false,
            llm: super::run::llm_layers(None)?,
            // Watch mode works against the local cache; the remote cache is for CI runs.
            remote: None,
            snapshot: None,
            // A restart interrupts a run through its channel.
            interrupt_by_signal: false,
        },
        debounce,
        poll: watch_args.poll.then_some(POLL_INTERVAL),
        restart: watch_args.restart,
    };
    let observer = Arc::new(Printer {
        verbose: args.verbose > 0,
        quiet: args.quiet,
        clear: watch_args.clear && std::io::stdout().is_terminal(),
        tty: std::io::stderr().is_terminal()
            && std::env::var_os("CLAB_NO_PROGRESS").is_none()
            && !std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false"),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.clamp(1, 4))
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(async move {
            super::run::wait_for_interrupt().await;
            let _ = shutdown_tx.send(true);
        });
        clab_watch::watch(project, graph, names, options, observer, shutdown_rx).await
    });
    // Everything was stopped and reaped before `watch` returned.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(clab_watch::Stopped::Interrupted) => Ok(Done::Interrupted),
        Err(err) => {
            eprintln!("{:?}", miette::Report::new(err));
            Ok(Done::TaskFailed)
        }
    }
}

/// Prints watch notices and makes each run's reporter.
struct Printer {
    verbose: bool,
    quiet: bool,
    /// Clear the screen before each run (`--clear` on a terminal).
    clear: bool,
    /// Whether runs draw progress bars (and print their own summary line).
    tty: bool,
}

impl Printer {
    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop watching; the tasks still run.
        let _ = writeln!(out, "{} {text}", console::style("[watch]").cyan());
        let _ = out.flush();
    }
}

impl Observer for Printer {
    fn run_reporter(&self) -> Arc<dyn Reporter> {
        let human = if self.tty {
            Arc::new(render::tty::Tty::new(self.verbose, self.quiet)) as Arc<dyn Reporter>
        } else {
            let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
            Arc::new(render::plain::Plain::new(self.quiet, github))
        };
        Arc::new(WithoutSummary {
            inner: human,
            keep_summary: self.tty,
        })
    }

    fn notice(&self, notice: Notice) {
        match notice {
            Notice::RunStarting { changed } => {
                if self.clear {
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "\x1b[2J\x1b[3J\x1b[H");
                }
                if changed.is_empty() {
                    self.line("running");
                } else {
                    self.line(&format!("changed: {}", list(&changed)));
                }
            }
            Notice::RunFinished {
                summary,
                clock,
                pending,
            } => {
                let next = if pending {
                    "running again"
                } else {
                    "waiting for changes"
                };
                if self.tty {
                    self.line(&format!("{clock}, {next}"));
                } else {
                    self.line(&format!(
                        "{} — {clock}, {next}",
                        render::summary_line(&summary)
                    ));
                }
            }
            Notice::Unaffected { changed } => {
                // Only on `-v`: a log file written into the project would otherwise feed
                // itself a line per event.
                if self.verbose {
                    self.line(&format!("no target depends on {}", list(&changed)));
                }
            }
            Notice::Reloaded { changed } => {
                self.line(&format!("reloaded the graph ({} changed)", list(&changed)));
            }
            Notice::ReloadFailed { error } => {
                eprintln!("{:?}", miette::Report::new(*error));
                self.line("the graph does not load; still using the last good one");
            }
            Notice::ServiceStarted { task } => self.line(&format!("started `{task}`")),
            Notice::ServiceStopped { task } => self.line(&format!("stopped `{task}`")),
            Notice::ServiceExited { task, exit } => {
                self.line(&format!("`{task}` exited: {}", exit.describe()));
            }
            Notice::ServiceOutput { task, line } => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{} {line}", console::style(format!("[{task}]")).dim());
                let _ = out.flush();
            }
            Notice::Runtime(error) => {
                eprintln!("{:?}", miette::Report::new(error));
            }
        }
    }
}

/// `a.txt`, `a.txt, b.txt` or `a.txt, b.txt, c.txt and 4 more`.
fn list(paths: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = paths
        .iter()
        .take(SHOWN)
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    text
}

/// Forwards a run's events, leaving out the summary line when the watch status line says it.
struct WithoutSummary {
    inner: Arc<dyn Reporter>,
    keep_summary: bool,
}

impl Reporter for WithoutSummary {
    fn report(&self, event: &Event) {
        if self.keep_summary || !matches!(event, Event::RunFinished(_)) {
            self.inner.report(event);
        }
    }
}
