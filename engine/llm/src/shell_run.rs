//! [`ShellRun`]: run one `sh -c` line with optional stdin, capture its output, enforce a timeout.
//!
//! The child gets its own process group, so a timeout kills the whole group (the shell and
//! anything it started), and the child is killed if the future is dropped (Ctrl-C, a failed
//! sibling under fail-fast).

use std::{path::Path, process::Stdio, time::Duration};

use tokio::io::AsyncWriteExt;

use super::settings::format_duration;

/// The environment of a shell line: clab's own (or, in a sandbox, the sandbox's reduced one),
/// without `unset`, with `set`.
#[derive(Debug, Default)]
pub(crate) struct ShellEnv<'a> {
    /// Variables to set.
    pub(crate) set: &'a [(&'a str, &'a str)],
    /// Variables to remove.
    pub(crate) unset: &'a [String],
    /// The sandbox to run in, if any.
    pub(crate) sandbox: Option<&'a mut clab_sandbox::Prepared>,
}

/// What a finished (or timed-out) shell line produced.
#[derive(Debug)]
pub(crate) struct ShellRun {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Standard output (with stderr merged in when asked).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// The timeout, when it fired.
    pub timed_out: Option<Duration>,
}

impl ShellRun {
    /// Whether it exited with 0.
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0) && self.timed_out.is_none()
    }

    /// `exit status 1`, `killed by a signal`, `timed out after 30s`.
    pub(crate) fn status(&self) -> String {
        match (self.timed_out, self.code) {
            (Some(after), _) => format!("timed out after {}", format_duration(after)),
            (None, Some(code)) => format!("exit status {code}"),
            (None, None) => "killed by a signal".to_owned(),
        }
    }

    /// Run `script` with `sh -c` in `cwd`, in the environment `env` describes. With
    /// `merge_stderr`, stderr goes to stdout so the two keep their interleaving.
    pub(crate) async fn run(
        script: &str,
        cwd: &Path,
        stdin: Option<Vec<u8>>,
        env: ShellEnv<'_>,
        timeout: Duration,
        merge_stderr: bool,
    ) -> std::io::Result<ShellRun> {
        let script = if merge_stderr {
            format!("exec 2>&1\n{script}")
        } else {
            script.to_owned()
        };
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&script)
            .current_dir(cwd)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(sandbox) = env.sandbox {
            // Replaces clab's environment with the sandbox's reduced one; `set` goes on top.
            sandbox.install(command.as_std_mut());
        }
        for name in env.unset {
            command.env_remove(name);
        }
        for (name, value) in env.set {
            command.env(name, value);
        }
        let mut child = command.spawn()?;
        let mut group = GroupKill(child.id().and_then(|pid| i32::try_from(pid).ok()));
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A command that does not read its stdin closes the pipe early; that is its business.
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            });
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(output) => {
                group.disarm();
                let output = output?;
                Ok(ShellRun {
                    code: output.status.code(),
                    stdout: output.stdout,
                    stderr: output.stderr,
                    timed_out: None,
                })
            }
            Err(_) => {
                drop(group);
                Ok(ShellRun {
                    code: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    timed_out: Some(timeout),
                })
            }
        }
    }
}

/// Kills the child's whole process group when dropped while armed: on a timeout, and when the
/// caller drops the future (Ctrl-C, fail-fast), so nothing the command started outlives it.
struct GroupKill(Option<i32>);

impl GroupKill {
    /// The command finished by itself: leave its group alone.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The group may already be gone; nothing useful to do with that error.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The last `max` bytes of `bytes` as text (cut at a line or char boundary), with a note of how
/// much was left out.
pub(crate) fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if let Some(newline) = text[start..].find('\n') {
        start += newline + 1;
    }
    format!("… ({start} earlier bytes left out)\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdin_stdout_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let run = ShellRun::run(
            "read line; echo \"got $line $FOO\"; echo oops >&2; exit 3",
            dir.path(),
            Some(b"hello\n".to_vec()),
            ShellEnv {
                set: &[("FOO", "bar")],
                ..ShellEnv::default()
            },
            Duration::from_secs(10),
            false,
        )
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&run.stdout), "got hello bar\n");
        assert_eq!(String::from_utf8_lossy(&run.stderr), "oops\n");
        assert!(!run.success());
        assert_eq!(run.status(), "exit status 3");
    }

    #[tokio::test]
    async fn merged_output_keeps_order_and_timeout_kills() {
        let dir = tempfile::tempdir().unwrap();
        let run = ShellRun::run(
            "echo a; echo b >&2; echo c",
            dir.path(),
            None,
            ShellEnv::default(),
            Duration::from_secs(10),
            true,
        )
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&run.stdout), "a\nb\nc\n");
        let started = std::time::Instant::now();
        let slow = ShellRun::run(
            "sleep 5; echo late",
            dir.path(),
            None,
            ShellEnv::default(),
            Duration::from_millis(200),
            true,
        )
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(slow.status(), "timed out after 200ms");
        assert!(!slow.success());
    }

    /// Whether `pid` still runs (a zombie counts as gone).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn dropping_the_future_kills_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let script = "sleep 30 & echo $! > grandchild.pid; wait";
        let run = ShellRun::run(
            script,
            dir.path(),
            None,
            ShellEnv::default(),
            Duration::from_secs(60),
            true,
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(500), run)
                .await
                .is_err()
        );
        let pid: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "grandchild {pid} survived");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail(b"short\n", 100), "short");
        let long = "line1\nline2\nline3\nline4\n";
        let t = tail(long.as_bytes(), 12);
        assert!(t.ends_with("line3\nline4"), "{t}");
        assert!(t.starts_with("… ("), "{t}");
    }
}
