//! The [`Visitor`] that does the work of each node: run its commands and report.

use std::{
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    process::{CommandSpec, Exit, run_command},
    scheduler::{Outcome, Visitor},
};
use crate::{
    event::{Event, Reporter, Status},
    graph::{Graph, NodeId, NodeKind},
};

/// Settings of the runner that do not come from tasks.kdl.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Time between the polite signal (SIGINT, SIGTERM) and SIGKILL.
    pub grace: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            grace: Duration::from_secs(3),
        }
    }
}

/// Runs nodes for the scheduler.
pub struct Runner {
    graph: Arc<Graph>,
    reporter: Arc<dyn Reporter>,
    options: RunnerOptions,
}

impl Runner {
    /// A runner for `graph` that reports to `reporter`.
    pub fn new(graph: Arc<Graph>, reporter: Arc<dyn Reporter>, options: RunnerOptions) -> Self {
        Runner {
            graph,
            reporter,
            options,
        }
    }

    async fn run_node(&self, id: NodeId, stop: watch::Receiver<bool>) -> Outcome {
        let node = self.graph.node(id);
        let started = Instant::now();
        self.reporter.report(&Event::TaskStarted {
            task: node.name.clone(),
            reason: None,
        });
        let result = match &node.kind {
            NodeKind::Command { run } => self.run_commands(id, run, stop).await,
            NodeKind::Llm(_) => Err((
                Status::Failed {
                    message: "LLM steps are not supported by this build yet".to_owned(),
                },
                Vec::new(),
            )),
            NodeKind::Aggregate => Ok(Vec::new()),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, log, outcome) = match result {
            Ok(_) => (Status::Succeeded, None, Outcome::Succeeded),
            Err((status, log)) => {
                let outcome = if status == Status::Interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
                };
                (
                    status,
                    Some(String::from_utf8_lossy(&log).into_owned()),
                    outcome,
                )
            }
        };
        self.reporter.report(&Event::TaskFinished {
            task: node.name.clone(),
            status,
            duration_ms,
            log,
        });
        outcome
    }

    /// Run the command lines in order, the whole sequence again on failure up to `retry`
    /// times. Returns the captured log, or the failure status with it.
    async fn run_commands(
        &self,
        id: NodeId,
        lines: &[String],
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<u8>, (Status, Vec<u8>)> {
        let node = self.graph.node(id);
        let cwd: PathBuf = self.graph.root().join(&node.cwd);
        let attempts = node.retry + 1;
        let mut log = Vec::new();
        for attempt in 1..=attempts {
            log.clear();
            let mut failure = None;
            for line in lines {
                let spec = CommandSpec {
                    line: line.clone(),
                    cwd: cwd.clone(),
                    env: node.env.clone(),
                    timeout: node.timeout,
                    grace: self.options.grace,
                };
                let on_line = |text: &str| {
                    self.reporter.report(&Event::TaskOutput {
                        task: node.name.clone(),
                        line: text.to_owned(),
                    });
                };
                match run_command(&spec, on_line, stop.clone()).await {
                    Ok((exit, output)) => {
                        log.extend_from_slice(&output);
                        if !exit.success() {
                            failure = Some(exit);
                            break;
                        }
                    }
                    Err(err) => {
                        let message = format!("{err}: {}\n", err.source);
                        log.extend_from_slice(message.as_bytes());
                        failure = Some(Exit::Code(127));
                        break;
                    }
                }
            }
            match failure {
                None => return Ok(log),
                Some(Exit::Interrupted) => return Err((Status::Interrupted, log)),
                Some(exit) if attempt == attempts => {
                    let mut message = exit.describe();
                    if attempts > 1 {
                        message.push_str(&format!(" (after {attempts} attempts)"));
                    }
                    return Err((Status::Failed { message }, log));
                }
                Some(exit) => self.reporter.report(&Event::Warning {
                    message: format!(
                        "`{}` failed ({}), retrying ({attempt}/{})",
                        node.name,
                        exit.describe(),
                        attempts - 1
                    ),
                }),
            }
        }
        Ok(log)
    }
}

impl Visitor for Runner {
    fn visit(
        self: Arc<Self>,
        id: NodeId,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(async move { self.run_node(id, stop).await })
    }
}
