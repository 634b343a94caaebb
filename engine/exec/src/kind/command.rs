//! [`CommandKind`]: a task's `run` lines, each with `sh -c` in its own process group, in
//! order; the whole sequence again on failure, up to the task's `retry`.

use std::path::PathBuf;

use crate::{
    context::Context,
    event::Status,
    kind::{Kind, RunResult, Work},
    process::{CommandSpec, Exit, run_command_into},
    task_log::TaskLog,
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
            return Ok(Default::default());
        };
        let cwd: PathBuf = cx.graph.root().join(&node.cwd);
        let attempts = node.retry + 1;
        let env = cx.graph.command_env(work.id);
        // Only when the task asks (`sandbox #true`): commands are the user's own code.
        let sandbox = crate::sandbox_policy::policy_of(cx, work.id, clab_sandbox::Mode::Off);
        let job = work.job;
        // A log the run will store goes whole to a file when long; any other keeps its end.
        let spill = cx
            .writable_store()
            .filter(|_| work.keyed.is_some())
            .map(|store| store.dir());
        let mut log = TaskLog::new(spill);
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
                    sandbox: sandbox.clone(),
                };
                let on_line = |text: &str| cx.output(work.id, text.to_owned());
                let ran =
                    run_command_into(&spec, &mut log, on_line, job.stop(), || job.run_deferred());
                match ran {
                    Ok(ran) => {
                        warn_left_behind(cx, &node.name, &ran);
                        if !ran.exit.success() {
                            failure = Some((ran.exit, index));
                            break;
                        }
                    }
                    Err(err) => {
                        let message = format!("{err}: {}\n", err.source);
                        log.push(message.as_bytes());
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

/// Warn about what a command left running outside its process group (killed when it
/// ended), and about output clab stopped reading.
fn warn_left_behind(cx: &Context, task: &str, ran: &crate::process::Ran) {
    if ran.escaped > 0 {
        cx.warn(format!(
            "`{task}` left {} running outside its process group; killed when it ended \
             (a task's processes end with it)",
            if ran.escaped == 1 {
                "1 process".to_owned()
            } else {
                format!("{} processes", ran.escaped)
            }
        ));
    }
    if ran.output_abandoned {
        cx.warn(format!(
            "a process of `{task}` that clab could not find kept its output open after it \
             ended; the rest of that output is not in the log"
        ));
    }
}
