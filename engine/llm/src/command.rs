//! The `command` provider: the prompt on the stdin of a shell command, the answer from its
//! stdout (for tools such as `llm -m MODEL`, `ollama run MODEL`, or a script).
//!
//! The command runs with `sh -c` in the project root, with `CLAB_LLM_MODEL` set to the
//! configured model (and `{{model}}` in the command line replaced by it). Stdin is the system
//! prompt, a blank line and the user prompt; a repair conversation is written as a transcript
//! with `### user` / `### assistant` headings, since a command has no notion of messages. A
//! non-zero exit is a failure carrying the tail of stderr; tokens are unknown.

use std::{path::PathBuf, time::Duration};

use super::{
    BoxFuture, ChatRequest, Completion, Failure, LlmConfig, Provider, ProviderKind, Role, Secret,
    shell_run::{ShellEnv, ShellRun, tail},
};

/// A shell command that answers prompts.
pub struct CommandProvider {
    command: String,
    model: String,
    cwd: PathBuf,
    timeout: Duration,
    /// Keys the command may see (it inherits clab's environment), scrubbed from its stderr.
    secrets: Vec<Secret>,
}

impl CommandProvider {
    /// A provider running `config.command` in `root`.
    pub fn new(config: &LlmConfig, root: &std::path::Path) -> CommandProvider {
        let command = config
            .command
            .clone()
            .unwrap_or_default()
            .replace("{{model}}", &config.model);
        CommandProvider {
            command,
            model: config.model.clone(),
            cwd: root.to_owned(),
            timeout: config.timeout,
            secrets: Vec::new(),
        }
    }

    /// The same provider, with `secrets` (the values of the key variables the command
    /// inherits) scrubbed from whatever of its stderr is shown (issue 18).
    pub fn with_secrets(mut self, secrets: impl IntoIterator<Item = Secret>) -> Self {
        self.secrets.extend(secrets);
        self
    }

    /// `text` with every secret (and every partial echo of one) redacted.
    fn scrub(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |text, secret| secret.redact(&text))
    }
}

/// The text a command gets on stdin for `request`.
pub(crate) fn stdin_text(request: &ChatRequest) -> String {
    let mut text = String::new();
    if let Some(system) = &request.system {
        text.push_str(system.trim_end());
        text.push_str("\n\n");
    }
    if let [only] = request.messages.as_slice() {
        text.push_str(&only.content);
    } else {
        for message in &request.messages {
            let heading = match message.role {
                Role::User => "### user",
                Role::Assistant => "### assistant",
            };
            text.push_str(heading);
            text.push_str("\n\n");
            text.push_str(message.content.trim_end());
            text.push_str("\n\n");
        }
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

impl Provider for CommandProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Command
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn endpoint(&self) -> &str {
        &self.command
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, Failure>> {
        Box::pin(async move {
            let stdin = stdin_text(request).into_bytes();
            let run = ShellRun::run(
                &self.command,
                &self.cwd,
                Some(stdin),
                ShellEnv {
                    set: &[("CLAB_LLM_MODEL", &self.model)],
                    ..ShellEnv::default()
                },
                self.timeout,
                false,
            )
            .await
            .map_err(Failure::Spawn)?;
            if !run.success() {
                return Err(Failure::CommandFailed {
                    status: run.status(),
                    stderr_tail: self.scrub(tail(&run.stderr, 2000)),
                });
            }
            let text = String::from_utf8_lossy(&run.stdout).into_owned();
            if text.trim().is_empty() {
                return Err(Failure::BadResponse(
                    "the command printed nothing".to_owned(),
                ));
            }
            Ok(Completion {
                text,
                tokens_in: None,
                tokens_out: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Settings};

    fn provider(command: &str, root: &std::path::Path) -> CommandProvider {
        let config = Settings {
            provider: Some(ProviderKind::Command),
            command: Some(command.into()),
            model: Some("tiny".into()),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        CommandProvider::new(&config, root)
    }

    #[tokio::test]
    async fn answers_from_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            "read first; echo \"model={{model}} env=$CLAB_LLM_MODEL first=$first\"; cat",
            dir.path(),
        );
        let answer = p
            .complete(&ChatRequest {
                system: Some("SYS".into()),
                messages: vec![Message::user("line two")],
            })
            .await
            .unwrap();
        assert_eq!(answer.text, "model=tiny env=tiny first=SYS\n\nline two\n");
        assert_eq!(answer.tokens_in, None);
    }

    #[tokio::test]
    async fn failing_command_reports_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            "cat >/dev/null; echo 'model not found' >&2; exit 7",
            dir.path(),
        );
        let err = p
            .complete(&ChatRequest {
                system: None,
                messages: vec![Message::user("x")],
            })
            .await
            .unwrap_err();
        match err {
            Failure::CommandFailed {
                status,
                stderr_tail,
            } => {
                assert_eq!(status, "exit status 7");
                assert_eq!(stderr_tail, "model not found");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_key_in_the_commands_stderr_is_scrubbed_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let key = "sk-proj-AbCdEfGh1234567890XyZ";
        let p = provider(
            "cat >/dev/null; echo \"debug: key is $TEST_KEY\" >&2; \
             echo \"prefix ${TEST_KEY%%1234*}\" >&2; exit 1",
            dir.path(),
        )
        .with_secrets([Secret::new(key)]);
        // The key reaches the command through its environment, set by the line itself.
        let p = CommandProvider {
            command: format!("TEST_KEY={key}; {}", p.command),
            ..p
        };
        let err = p
            .complete(&ChatRequest {
                system: None,
                messages: vec![Message::user("x")],
            })
            .await
            .unwrap_err();
        let Failure::CommandFailed { stderr_tail, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(stderr_tail, "debug: key is ****\nprefix ****");
        assert!(!stderr_tail.contains("AbCd"));
    }

    #[test]
    fn repair_conversation_becomes_a_transcript() {
        let text = stdin_text(&ChatRequest {
            system: None,
            messages: vec![
                Message::user("write"),
                Message::assistant("code"),
                Message::user("fix"),
            ],
        });
        assert_eq!(
            text,
            "### user\n\nwrite\n\n### assistant\n\ncode\n\n### user\n\nfix\n\n"
        );
    }
}
