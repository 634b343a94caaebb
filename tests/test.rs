//! The `Test` builder: write files into a temp project, run `clab` there, assert on the result.

use std::{
    path::Path,
    process::{Command, Output},
};

use tempfile::TempDir;

/// The built binary under test.
pub(crate) fn clab_path() -> &'static str {
    env!("CARGO_BIN_EXE_clab")
}

/// Strip the indentation common to all non-blank lines, and a leading newline, so tests can
/// write files as indented literals.
pub(crate) fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    out
}

/// Every byte of every file under `dir`, to look for a value that must not be stored.
pub(crate) fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes.extend(all_bytes_under(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

/// Fail, never skip, where `uv` is missing: the tests that call this prove clab with real
/// uv, ruff, pytest and basedpyright, and a skipped one would hide a broken CI.
#[track_caller]
pub(crate) fn require_uv() {
    let found = Command::new("uv")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "this test needs `uv` on PATH: install it with `python3 -m pip install uv` \
         (or see https://docs.astral.sh/uv/); .ci/run installs it"
    );
}

/// A temp project and a `clab` invocation in it.
pub(crate) struct Test {
    dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// What one invocation did.
pub(crate) struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub(crate) fn new() -> Self {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (parents created), unindented.
    pub(crate) fn file(self, path: &str, contents: &str) -> Self {
        self.write(path, contents);
        self
    }

    /// Write a file now, between runs.
    pub(crate) fn write(&self, path: &str, contents: &str) {
        let full = self.dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(full, unindent(contents)).expect("write file");
    }

    pub(crate) fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(path)).unwrap_or_default()
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        self.dir.path().join(path).exists()
    }

    /// The whole project (`.clab` included) copied to a new temp directory, with the same
    /// environment: a second checkout at another path.
    pub(crate) fn copy(&self) -> Test {
        let copy = Test {
            dir: tempfile::tempdir().expect("temp dir"),
            args: self.args.clone(),
            env: self.env.clone(),
        };
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.dir.path().join("."))
            .arg(copy.dir.path())
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -a failed");
        copy
    }

    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The command, ready to run: plain output, no color, no CI variables from outside.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(clab_path());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("CLAB_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("CLAB_CACHE_DIR");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Run with the builder's arguments.
    #[track_caller]
    pub(crate) fn run(&self) -> Run {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.run_with(&args)
    }

    /// Run with other arguments.
    #[track_caller]
    pub(crate) fn run_with(&self, args: &[&str]) -> Run {
        let output: Output = self.command(args).output().expect("run clab");
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub(crate) fn status(self, expected: i32) -> Self {
        assert_eq!(
            self.status, expected,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn stdout_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout has {needle:?}\n{}",
            self.stdout
        );
        self
    }

    #[track_caller]
    pub(crate) fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }
}

/// Whether a process with this pid still exists (zombies of other parents count as gone).
pub(crate) fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3 is the state; `Z` is a zombie, already dead.
    match stat.rsplit_once(')') {
        Some((_, rest)) => !rest.trim_start().starts_with('Z'),
        None => false,
    }
}

/// Poll until `path` exists and holds a line, or give up after ~10 s.
pub(crate) fn wait_for_file(path: &Path) -> String {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never appeared", path.display());
}

/// The tasks a `--json` run started, in order (its `task_started` events).
pub(crate) fn started_tasks(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "task_started")
        .map(|event| event["task"].as_str().unwrap_or_default().to_owned())
        .collect()
}
