//! Running one shell command in its own process group.
//!
//! Each command is `sh -c LINE` in a new process group, so a signal reaches everything the
//! command started and nothing else. stdout and stderr share one pipe, so the captured log
//! keeps the order the task wrote it in. When the shell exits, whatever it left running in
//! its group is killed: a task cannot leave orphans behind. A timeout sends SIGTERM to the
//! group, an interrupt SIGINT; either is followed by SIGKILL after the grace period.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::unix::pipe,
    sync::watch,
};

/// What to run.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// The shell line.
    pub line: String,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables to set on top of the inherited environment.
    pub env: BTreeMap<String, String>,
    /// Kill the group after this long.
    pub timeout: Option<Duration>,
    /// How long to wait between the polite signal and SIGKILL.
    pub grace: Duration,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (0 is success).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// An interrupt stopped it.
    Interrupted,
}

impl Exit {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    /// A few words for a failure line: `exit 2`, `killed by signal 9`, `timed out after 5s`.
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(code) => format!("exit {code}"),
            Exit::Signal(signal) => format!("killed by signal {signal}"),
            Exit::TimedOut(after) => {
                format!("timed out after {}", crate::syntax::format_duration(*after))
            }
            Exit::Interrupted => "interrupted".to_owned(),
        }
    }
}

/// A command could not be started.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot start `sh -c {line}` in `{cwd}`")]
#[diagnostic(code(clab::exec::spawn))]
pub struct SpawnError {
    /// The command line.
    pub line: String,
    /// The working directory.
    pub cwd: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Run `spec`, calling `on_line` for each line of output, until it exits, times out, or
/// `interrupt` turns true. Returns how it ended and everything it printed.
pub async fn run_command(
    spec: &CommandSpec,
    mut on_line: impl FnMut(&str),
    mut interrupt: watch::Receiver<bool>,
) -> Result<(Exit, Vec<u8>), SpawnError> {
    let spawn_error = |source| SpawnError {
        line: spec.line.clone(),
        cwd: spec.cwd.display().to_string(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.line)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(spawn_error)?)
        .stderr(writer)
        .process_group(0);
    let mut child = command.spawn().map_err(spawn_error)?;
    // Our copies of the pipe's write end must go, or the reader never sees end-of-file.
    drop(command);
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    // The output is read on this task, as the runtime reports it ready.
    let mut output = pipe::Receiver::from_owned_fd(reader.into())
        .map(BufReader::new)
        .map_err(spawn_error)?;

    let mut log = Vec::new();
    // A line being read; `read_until` keeps what it has read here if `select!` drops it.
    let mut line = Vec::new();
    let mut take_line = |line: &mut Vec<u8>, log: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        on_line(text.trim_end_matches(['\n', '\r']));
        log.append(line);
    };
    let mut open = true;
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut listening = true;
    let exit = loop {
        if listening && *interrupt.borrow_and_update() {
            stop_group(&mut child, pgid, Signal::SIGINT, spec.grace).await;
            break Exit::Interrupted;
        }
        tokio::select! {
            status = child.wait() => break status.map_or(Exit::Signal(0), exit_of),
            read = output.read_until(b'\n', &mut line), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(_) => take_line(&mut line, &mut log),
            },
            () = sleep_until(deadline) => {
                stop_group(&mut child, pgid, Signal::SIGTERM, spec.grace).await;
                break Exit::TimedOut(spec.timeout.unwrap_or_default());
            }
            changed = interrupt.changed(), if listening => {
                // A dropped sender can never interrupt: stop listening, run to the end.
                listening = changed.is_ok();
            }
        }
    };
    // Whatever the shell left in its group goes with it.
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    while open {
        match output.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => open = false,
            Ok(_) => take_line(&mut line, &mut log),
        }
    }
    if !line.is_empty() {
        take_line(&mut line, &mut log);
    }
    Ok((exit, log))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Send `signal` to the group, then SIGKILL if the leader has not exited within `grace`.
async fn stop_group(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    signal: Signal,
    grace: Duration,
) {
    let Some(pgid) = pgid else { return };
    let _ = killpg(pgid, signal);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Signal(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(line: &str) -> CommandSpec {
        CommandSpec {
            line: line.to_owned(),
            cwd: std::env::temp_dir(),
            env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            timeout: None,
            grace: Duration::from_millis(200),
        }
    }

    async fn run(spec: &CommandSpec) -> (Exit, String) {
        let (_tx, rx) = watch::channel(false);
        let (exit, log) = run_command(spec, |_| {}, rx).await.unwrap();
        (exit, String::from_utf8(log).unwrap())
    }

    #[tokio::test]
    async fn captures_both_streams_in_order() {
        let (exit, log) = run(&spec("echo $GREETING; echo oops >&2; echo end; exit 3")).await;
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(log, "hi\noops\nend\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let mut spec = spec("sleep 30 & echo started; wait");
        spec.timeout = Some(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let (exit, log) = run(&spec).await;
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(300)));
        assert_eq!(log, "started\n");
        // The background `sleep 30` held the pipe open; reaching here means it was killed.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn interrupt_stops_the_command() {
        let (tx, rx) = watch::channel(false);
        let handle =
            tokio::spawn(
                async move { run_command(&spec("sleep 30"), |_| {}, rx).await.unwrap().0 },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(true).unwrap();
        assert_eq!(handle.await.unwrap(), Exit::Interrupted);
    }
}
