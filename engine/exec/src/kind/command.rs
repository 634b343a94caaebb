//! [`CommandKind`]: a task's `run` lines, each with `sh -c` in its own process group, in
//! order; the whole sequence again on failure, up to the task's `retry`.

use std::path::PathBuf;

use crate::{
    context::Context,
    event::Status,
    kind::{Kind, RunResult, Work},
    process::{CommandSpec, Exit, run_command},
};

/// Runs shell commands.
#[derive(Debug, Default)]
pub struct CommandKind;

impl Kind for CommandKind {
    fn starts_processes(&self) -> bool {
        true
    }

    /// Run the command lines in order, the whole sequence again on failure up to `retry`
    /// times. Returns the captured log, or the failure status with it.
    fn run(&self, cx: &Context, work: Work<'_>) -> RunResult {
        let node = cx.node(work.id);
        let clab_graph::NodeKind::Command { run: lines } = &node.kind else {
            return Ok(Vec::new());
        };
        let cwd: PathBuf = cx.graph.root().join(&node.cwd);
        let attempts = node.retry + 1;
        let env = cx.graph.command_env(work.id);
        let job = work.job;
        let mut log = Vec::new();
        for attempt in 1..=attempts {
            log.clear();
            let mut failure = None;
            for (index, line) in lines.iter().enumerate() {
                let spec = CommandSpec {
                    line: line.clone(),
                    cwd: cwd.clone(),
                    env: env.clone(),
                    timeout: node.timeout,
                    grace: cx.grace,
                };
                let on_line = |text: &str| cx.output(work.id, text.to_owned());
                match run_command(&spec, on_line, job.stop(), || job.run_deferred()) {
                    Ok((exit, output)) => {
                        log.extend_from_slice(&output);
                        if !exit.success() {
                            failure = Some((exit, index));
                            break;
                        }
                    }
                    Err(err) => {
                        let message = format!("{err}: {}\n", err.source);
                        log.extend_from_slice(message.as_bytes());
                        failure = Some((Exit::Code(127), index));
                        break;
                    }
                }
            }
            match failure {
                None => return Ok(log),
                Some((Exit::Interrupted, _)) => return Err((Status::Interrupted, log)),
                Some((exit, index)) if attempt == attempts => {
                    let mut message = exit.describe_command(index + 1, lines.len(), &lines[index]);
                    if attempts > 1 {
                        message.push_str(&format!(" (after {attempts} attempts)"));
                    }
                    return Err((Status::Failed { message }, log));
                }
                Some((exit, index)) => cx.warn(format!(
                    "`{}` failed ({}), retrying ({attempt}/{})",
                    node.name,
                    exit.describe_command(index + 1, lines.len(), &lines[index]),
                    attempts - 1
                )),
            }
        }
        Ok(log)
    }
}
