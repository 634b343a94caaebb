//! `check`: the command that decides whether an answer is good enough to keep.
//!
//! [`Check`] is the seam: the call loop hands it the path of the candidate — the step's real
//! output path, where the candidate is staged ([`super::StagedOutput`]) — and gets back
//! pass/fail with the output to show the model. [`ShellCheck`] is the real one: the
//! already-rendered command line with `{{output}}` replaced by that path (relative to the root
//! when possible, shell-quoted), run by `sh -c` in the project root with stdout and stderr
//! merged and a timeout. A timeout is a failed check (generated code that hangs is worth
//! sending back); a check that cannot be started is an error.
//!
//! A check runs code the model wrote, so it gets clab's environment without the provider's
//! key variables ([`ShellCheck::without_env`], filled from [`super::LlmConfig::key_variables`]),
//! and, with a sandbox policy ([`ShellCheck::sandboxed`], the default for LLM steps), no
//! network, writes only to the candidate, a private temp directory and what the task names,
//! and the sandbox's reduced environment instead of clab's.

use std::{path::Path, path::PathBuf, time::Duration};

use super::{
    BoxFuture, Error,
    shell_run::{ShellEnv, ShellRun},
};

/// The result of one check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether the candidate passed.
    pub passed: bool,
    /// What the check printed (stdout and stderr), plus its status when it failed.
    pub output: String,
}

/// Something that judges a candidate output file.
pub trait Check: Send + Sync {
    /// The command as the user wrote it, for messages.
    fn describe(&self) -> &str;
    /// Judge the candidate at `candidate` (the output path, where it is staged).
    fn run<'a>(&'a self, candidate: &'a Path) -> BoxFuture<'a, Result<CheckOutcome, Error>>;
}

/// A shell command check.
#[derive(Debug, Clone)]
pub struct ShellCheck {
    task: String,
    command: String,
    root: PathBuf,
    timeout: Duration,
    unset: Vec<String>,
    env: Vec<(String, String)>,
    sandbox: Option<clab_sandbox::Policy>,
}

impl ShellCheck {
    /// A check running `command` (with `{{output}}` still in it) in `root` for `task`.
    pub fn new(
        task: impl Into<String>,
        command: impl Into<String>,
        root: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        ShellCheck {
            task: task.into(),
            command: command.into(),
            root: root.into(),
            timeout,
            unset: Vec::new(),
            env: Vec::new(),
            sandbox: None,
        }
    }

    /// The same check, run with `vars` set: the values its placeholders refer to where they
    /// are not plain (`CLAB_OUTPUT`, `CLAB_FILE`, …; see clab-graph's quoting rule).
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// The same check, run in a sandbox with `policy` (the candidate is added to the paths it
    /// may write).
    pub fn sandboxed(mut self, policy: clab_sandbox::Policy) -> Self {
        self.sandbox = Some(policy);
        self
    }

    /// The same check, run without the environment variables named in `names` (the
    /// provider's API key variables).
    pub fn without_env(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.unset.extend(names);
        self
    }

    fn script(&self, candidate: &Path) -> String {
        let shown = self
            .root
            .canonicalize()
            .ok()
            .and_then(|root| candidate.strip_prefix(root).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| candidate.to_path_buf());
        self.command
            .replace("{{output}}", &shell_quote(&shown.to_string_lossy()))
    }
}

impl Check for ShellCheck {
    fn describe(&self) -> &str {
        &self.command
    }

    fn run<'a>(&'a self, candidate: &'a Path) -> BoxFuture<'a, Result<CheckOutcome, Error>> {
        Box::pin(async move {
            // A key variable stays out even when `.env` sets it.
            let env: Vec<(&str, &str)> = self
                .env
                .iter()
                .filter(|(name, _)| !self.unset.contains(name))
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let mut sandbox = match &self.sandbox {
                Some(policy) => {
                    let mut policy = policy.clone();
                    policy.writable.push(candidate.to_path_buf());
                    policy.prepare().map_err(|source| Error::CheckSandbox {
                        task: self.task.clone(),
                        source,
                    })?
                }
                None => None,
            };
            let run = ShellRun::run(
                &self.script(candidate),
                &self.root,
                None,
                ShellEnv {
                    set: &env,
                    unset: &self.unset,
                    sandbox: sandbox.as_mut(),
                },
                self.timeout,
                true,
            )
            .await
            .map_err(|source| Error::CheckSpawn {
                task: self.task.clone(),
                command: self.command.clone(),
                source,
            })?;
            let mut output = String::from_utf8_lossy(&run.stdout).into_owned();
            if !run.success() {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&format!("[check {}]", run.status()));
            }
            Ok(CheckOutcome {
                passed: run.success(),
                output,
            })
        })
    }
}

/// `text` as one shell word: unchanged when it is plainly safe, else single-quoted.
pub(crate) fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | ':' | '@')
        });
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("tests/a.py"), "tests/a.py");
        assert_eq!(shell_quote("a b.py"), "'a b.py'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[tokio::test]
    async fn without_env_hides_the_named_variables_only() {
        let dir = tempfile::tempdir().unwrap();
        let candidate = dir.path().join("out.txt");
        std::fs::write(&candidate, "x\n").unwrap();
        // PATH and HOME are in every test's environment; hide one, keep the other.
        let check = ShellCheck::new(
            "t",
            "test -z \"$HOME\" && test -n \"$PATH\"",
            dir.path(),
            Duration::from_secs(10),
        );
        assert!(!check.run(&candidate).await.unwrap().passed);
        let check = check.without_env(["HOME".to_owned()]);
        assert!(check.run(&candidate).await.unwrap().passed);
    }

    #[tokio::test]
    async fn shell_check_sees_the_candidate_and_reports_output() {
        let dir = tempfile::tempdir().unwrap();
        let candidate = dir.path().join("odd name.txt");
        std::fs::write(&candidate, "hello\n").unwrap();
        let pass = ShellCheck::new(
            "t",
            "grep -q hello {{output}} && echo ok",
            dir.path(),
            Duration::from_secs(10),
        );
        assert_eq!(
            pass.run(&candidate).await.unwrap(),
            CheckOutcome {
                passed: true,
                output: "ok\n".into()
            }
        );
        let fail = ShellCheck::new(
            "t",
            "echo checking {{output}}; echo bad >&2; exit 1",
            dir.path(),
            Duration::from_secs(10),
        );
        let outcome = fail.run(&candidate).await.unwrap();
        assert!(!outcome.passed);
        assert_eq!(
            outcome.output,
            "checking odd name.txt\nbad\n[check exit status 1]"
        );
    }
}
