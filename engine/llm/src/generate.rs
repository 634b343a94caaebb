//! The call loop: send → extract → stage at the output → check → repair → keep or put back.
//!
//! In: a [`Client`], a [`GenerateRequest`] (rendered prompts, extract mode, confined output
//! path, attempts) and an optional [`Check`]. Out: the text that passed, written to the output
//! path, and one [`LlmCall`] per attempt pushed to the caller's log (also when the loop
//! fails, so failed calls are logged too).
//!
//! Each attempt puts the extracted text at the real output path through a [`StagedOutput`]
//! (the file that was there before kept aside, each candidate renamed into place), so the
//! check sees it under its real name and directory, where a test runner can import it. A
//! failed check or an unusable answer appends the answer and a repair request (with the
//! check's output, tail-limited) to the conversation and tries again, up to `attempts`. A
//! passing candidate stays; when none passes, or on any error, the previous file is put back
//! (or the candidate removed when there was none). A provider error (after the client's own
//! retries) ends the loop at once.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    CallOutcome, ChatRequest, Check, Client, Error, Exchange, Extract, LlmCall, Message,
    StagedOutput, context::fence_for, extract, extract::Problem, provider::head, shell_run::tail,
};

/// How many bytes of check output go back to the model and into the final error.
const CHECK_OUTPUT_LIMIT: usize = 6000;

/// One LLM step, ready to run.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The node's display name, e.g. `gen-tests[src/pkg/a.py]`.
    pub task: String,
    /// The rendered system prompt, if any.
    pub system: Option<String>,
    /// The rendered user prompt (`{{context}}` and `{{rules}}` already in it).
    pub prompt: String,
    /// What to keep of the answer.
    pub extract: Extract,
    /// Where the result goes: an absolute path from [`super::confine_output`].
    pub output: PathBuf,
    /// Answers to try (at least 1).
    pub attempts: u32,
}

/// A successful generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The text written to the output.
    pub text: String,
    /// The attempt that passed (1-based).
    pub attempts: u32,
}

/// What one answer led to.
enum Step {
    /// It passed and is staged at the output; the text written.
    Kept(String),
    /// It was refused; ask again with `message`.
    Repair {
        /// The repair request for the model.
        message: String,
        /// Why, for the final error if no later answer passes.
        failure: Refusal,
    },
}

/// Why an answer was refused.
enum Refusal {
    /// Nothing usable could be extracted (the answer is kept for the error message).
    Extract(Problem, String),
    /// The check failed with this output (tail).
    Check(String),
}

/// Run the loop for `request`; every attempt is pushed to `calls`.
pub async fn generate(
    client: &Client,
    request: &GenerateRequest,
    check: Option<&dyn Check>,
    calls: &mut Vec<LlmCall>,
) -> Result<Generated, Error> {
    // Begun at the first answer to stage, so a failed call leaves the output untouched; if
    // this future is dropped mid-check, dropping `staged` puts the previous file back.
    let mut staged = None;
    let result = attempt_all(client, request, check, calls, &mut staged).await;
    match (result, staged) {
        (Ok(generated), Some(staged)) => {
            staged.commit();
            Ok(generated)
        }
        (Err(err), Some(staged)) => staged.restore().and(Err(err)),
        (result, None) => result,
    }
}

/// The attempts of [`generate`]; the passing answer is left staged in `staged`.
async fn attempt_all(
    client: &Client,
    request: &GenerateRequest,
    check: Option<&dyn Check>,
    calls: &mut Vec<LlmCall>,
    staged: &mut Option<StagedOutput>,
) -> Result<Generated, Error> {
    let attempts = request.attempts.max(1);
    let mut messages = vec![Message::user(request.prompt.clone())];
    let mut last = None;
    for attempt in 1..=attempts {
        let chat = ChatRequest {
            system: request.system.clone(),
            messages: messages.clone(),
        };
        let started = Instant::now();
        let exchange = match client.complete(&request.task, &chat).await {
            Ok(exchange) => exchange,
            Err(err) => {
                let latency_ms = millis(started.elapsed());
                calls.push(record(
                    client,
                    request,
                    attempt,
                    None,
                    latency_ms,
                    CallOutcome::Error,
                ));
                return Err(err);
            }
        };
        let answer = exchange.completion.text.clone();
        let (outcome, step) = judge(request, check, &answer, staged).await;
        let latency_ms = millis(exchange.latency);
        calls.push(record(
            client,
            request,
            attempt,
            Some(&exchange),
            latency_ms,
            outcome,
        ));
        match step? {
            Step::Kept(text) => {
                return Ok(Generated {
                    text,
                    attempts: attempt,
                });
            }
            Step::Repair { message, failure } => {
                messages.push(Message::assistant(answer));
                messages.push(Message::user(message));
                last = Some(failure);
            }
        }
    }
    let task = request.task.clone();
    Err(match last {
        Some(Refusal::Extract(Problem::Unclosed, _)) => Error::UnclosedFence { task, attempts },
        Some(Refusal::Extract(Problem::Empty, _)) => Error::EmptyAnswer { task, attempts },
        Some(Refusal::Check(output)) => Error::CheckFailed {
            task,
            command: check.map(|c| c.describe().to_owned()).unwrap_or_default(),
            attempts,
            output,
        },
        Some(Refusal::Extract(Problem::NoFence, answer)) => Error::MissingFence {
            task,
            attempts,
            answer_head: indent(&head_lines(&answer)),
        },
        // Unreachable: the loop runs at least once, and each pass returns or sets `last`.
        None => Error::EmptyAnswer { task, attempts },
    })
}

/// Extract, stage the candidate at the output, and check it there.
async fn judge(
    request: &GenerateRequest,
    check: Option<&dyn Check>,
    answer: &str,
    staged: &mut Option<StagedOutput>,
) -> (CallOutcome, Result<Step, Error>) {
    let text = match extract(request.extract, answer) {
        Ok(text) => text,
        Err(problem) => {
            let message = problem.repair_request().to_owned();
            let failure = Refusal::Extract(problem, answer.to_owned());
            return (
                CallOutcome::ExtractFailed,
                Ok(Step::Repair { message, failure }),
            );
        }
    };
    let stage = match staged {
        Some(stage) => stage,
        None => match StagedOutput::begin(&request.task, &request.output) {
            Ok(stage) => staged.insert(stage),
            Err(err) => return (CallOutcome::Error, Err(err)),
        },
    };
    if let Err(err) = stage.place(&text) {
        return (CallOutcome::Error, Err(err));
    }
    if let Some(check) = check {
        match check.run(&request.output).await {
            Ok(outcome) if !outcome.passed => {
                let output = tail(outcome.output.as_bytes(), CHECK_OUTPUT_LIMIT);
                let message = repair_request(check.describe(), &output, request.extract);
                let failure = Refusal::Check(output);
                return (
                    CallOutcome::CheckFailed,
                    Ok(Step::Repair { message, failure }),
                );
            }
            Ok(_) => {}
            Err(err) => return (CallOutcome::Error, Err(err)),
        }
    }
    (CallOutcome::Passed, Ok(Step::Kept(text)))
}

fn record(
    client: &Client,
    request: &GenerateRequest,
    attempt: u32,
    exchange: Option<&Exchange>,
    latency_ms: u64,
    outcome: CallOutcome,
) -> LlmCall {
    let provider = client.provider();
    LlmCall {
        task: request.task.clone(),
        provider: provider.kind().to_string(),
        model: provider.model().to_owned(),
        attempt,
        tokens_in: exchange.and_then(|e| e.completion.tokens_in),
        tokens_out: exchange.and_then(|e| e.completion.tokens_out),
        latency_ms,
        queued_ms: exchange.map(|e| millis(e.queued)).unwrap_or(0),
        tries: exchange.map(|e| e.tries).unwrap_or(0),
        outcome,
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The message that asks for a corrected answer.
fn repair_request(command: &str, output: &str, mode: Extract) -> String {
    let fence = fence_for(output);
    let what = match mode {
        Extract::Code => "Reply with the complete corrected file in a single fenced code block.",
        Extract::Text => "Reply with the complete corrected answer.",
    };
    format!(
        "The check `{command}` failed on your answer. Its output:\n\n{fence}\n{output}\n{fence}\n\n{what}"
    )
}

fn head_lines(answer: &str) -> String {
    let first: Vec<&str> = answer.trim().lines().take(5).collect();
    head(&first.join("\n"), 400)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Mutex};

    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_string_contains, header, method, path},
    };

    use super::*;
    use crate::{
        BoxFuture, CheckOutcome, ContextBundle, LimiterRegistry, RetryPolicy, Settings, ShellCheck,
        confine_output, error::render, test_support::openai_answer,
    };

    const KEY: &str = "sk-test-0123456789abcdef";

    fn client(server: &MockServer) -> Client {
        let config = Settings {
            base_url: Some(format!("{}/v1", server.uri())),
            model: Some("gpt-test".into()),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let lookup = |name: &str| (name == "OPENAI_API_KEY").then(|| KEY.to_owned());
        Client::from_config(
            &config,
            Path::new("."),
            "gen",
            &LimiterRegistry::new(),
            &lookup,
        )
        .unwrap()
        .with_policy(RetryPolicy {
            base_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
    }

    fn request(task: &str, output: PathBuf, prompt: String, attempts: u32) -> GenerateRequest {
        GenerateRequest {
            task: task.into(),
            system: Some("You write Python.".into()),
            prompt,
            extract: Extract::Code,
            output,
            attempts,
        }
    }

    /// A fake check: fails while the candidate contains `bad`, records what it saw.
    struct Fake {
        seen: Mutex<Vec<String>>,
    }

    impl Check for Fake {
        fn describe(&self) -> &str {
            "fake-check {{output}}"
        }

        fn run<'a>(&'a self, candidate: &'a Path) -> BoxFuture<'a, Result<CheckOutcome, Error>> {
            Box::pin(async move {
                let text = std::fs::read_to_string(candidate).unwrap_or_default();
                self.seen.lock().unwrap().push(text.clone());
                let passed = !text.contains("bad");
                Ok(CheckOutcome {
                    passed,
                    output: if passed {
                        String::new()
                    } else {
                        "E1: found `bad` on line 1".into()
                    },
                })
            })
        }
    }

    #[tokio::test]
    async fn happy_path_writes_the_extracted_code() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(
            dir.path().join("src/a.py"),
            "def add(a, b):\n    return a + b  # CONTEXT-MARKER\n",
        )
        .unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_string_contains("CONTEXT-MARKER"))
            .and(body_string_contains("src/a.py"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer(
                "Here you go:\n```python\ndef test_add():\n    assert add(1, 2) == 3\n```\n",
            )))
            .expect(1)
            .mount(&server)
            .await;
        let context = ContextBundle::read("gen", dir.path(), &["src/a.py".to_owned()]).unwrap();
        let prompt = format!(
            "Write tests for:\n{}",
            context.render_within("gen", Some(1000)).unwrap()
        );
        let output = confine_output("gen", dir.path(), "tests/test_a.py").unwrap();
        let check = ShellCheck::new(
            "gen",
            "grep -q 'def test_' {{output}}",
            dir.path(),
            Duration::from_secs(10),
        );
        let mut calls = Vec::new();
        let generated = generate(
            &client(&server),
            &request("gen", output.clone(), prompt, 3),
            Some(&check),
            &mut calls,
        )
        .await
        .unwrap();
        assert_eq!(
            generated,
            Generated {
                text: "def test_add():\n    assert add(1, 2) == 3\n".into(),
                attempts: 1
            }
        );
        assert_eq!(std::fs::read_to_string(&output).unwrap(), generated.text);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&output).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (
                calls[0].outcome,
                calls[0].tokens_in,
                calls[0].tokens_out,
                calls[0].provider.as_str(),
                calls[0].model.as_str()
            ),
            (CallOutcome::Passed, Some(10), Some(5), "openai", "gpt-test")
        );
        // No temp files are left beside the output.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("tests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["test_a.py"]);
    }

    #[tokio::test]
    async fn failed_check_sends_a_repair_request_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("E1: found `bad` on line 1"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(openai_answer("```python\ngood = 1\n```")),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(openai_answer("```python\nbad = 1\n```")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let output = confine_output("gen", dir.path(), "out.py").unwrap();
        let fake = Fake {
            seen: Mutex::new(Vec::new()),
        };
        let mut calls = Vec::new();
        let generated = generate(
            &client(&server),
            &request("gen", output.clone(), "go".into(), 3),
            Some(&fake),
            &mut calls,
        )
        .await
        .unwrap();
        assert_eq!(generated.attempts, 2);
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "good = 1\n");
        assert_eq!(*fake.seen.lock().unwrap(), ["bad = 1\n", "good = 1\n"]);
        let outcomes: Vec<_> = calls.iter().map(|c| (c.attempt, c.outcome)).collect();
        assert_eq!(
            outcomes,
            [(1, CallOutcome::CheckFailed), (2, CallOutcome::Passed)]
        );
        // The repair request carries the conversation: the first answer, then the check output.
        let requests = server.received_requests().await.unwrap();
        let second: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
        let roles: Vec<_> = second["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(second["messages"][2]["content"], "```python\nbad = 1\n```");
    }

    #[tokio::test]
    async fn all_attempts_failing_shows_the_last_check_output_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer("```\nbad\n```")))
            .expect(2)
            .mount(&server)
            .await;
        let output = confine_output("gen", dir.path(), "out.py").unwrap();
        let fake = Fake {
            seen: Mutex::new(Vec::new()),
        };
        let mut calls = Vec::new();
        let err = generate(
            &client(&server),
            &request("gen", output.clone(), "go".into(), 2),
            Some(&fake),
            &mut calls,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no llm answer for task `gen` passed its check `fake-check {{output}}` in 2 attempts; the last check said:\nE1: found `bad` on line 1"
        );
        assert!(!output.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp files left behind"
        );
        assert_eq!(calls.len(), 2);
    }

    /// A check that sees the candidate at the output, then never finishes.
    struct Hangs {
        seen: Mutex<Option<String>>,
    }

    impl Check for Hangs {
        fn describe(&self) -> &str {
            "hangs"
        }

        fn run<'a>(&'a self, candidate: &'a Path) -> BoxFuture<'a, Result<CheckOutcome, Error>> {
            Box::pin(async move {
                *self.seen.lock().unwrap() = std::fs::read_to_string(candidate).ok();
                std::future::pending().await
            })
        }
    }

    #[tokio::test]
    async fn a_step_dropped_mid_check_puts_the_previous_output_back() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer(
                "```python
new = 1
```",
            )))
            .mount(&server)
            .await;
        std::fs::write(dir.path().join("out.py"), "old = 1\n").unwrap();
        let output = confine_output("gen", dir.path(), "out.py").unwrap();
        let hangs = Hangs {
            seen: Mutex::new(None),
        };
        let client = client(&server);
        let request = request("gen", output.clone(), "go".into(), 1);
        let mut calls = Vec::new();
        let run = generate(&client, &request, Some(&hangs), &mut calls);
        // The interrupt: the future is dropped while the check runs.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), run)
                .await
                .is_err()
        );
        assert_eq!(
            hangs.seen.lock().unwrap().as_deref(),
            Some("new = 1\n"),
            "the check saw the candidate at the output path"
        );
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "old = 1\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn missing_fence_is_retried_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer(
                "Sure! The function adds two numbers.\nIt returns their sum.",
            )))
            .expect(2)
            .mount(&server)
            .await;
        let output = confine_output("gen-tests[src/a.py]", dir.path(), "out.py").unwrap();
        let mut calls = Vec::new();
        let err = generate(
            &client(&server),
            &request("gen-tests[src/a.py]", output, "go".into(), 2),
            None,
            &mut calls,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::MissingFence { attempts: 2, .. }),
            "{err:?}"
        );
        assert!(
            calls
                .iter()
                .all(|c| c.outcome == CallOutcome::ExtractFailed)
        );
        let requests = server.received_requests().await.unwrap();
        let second = String::from_utf8_lossy(&requests[1].body).into_owned();
        assert!(second.contains("no fenced code block"), "{second}");
        insta::assert_snapshot!("missing_fence", render::graphical(&err));
        insta::assert_snapshot!("missing_fence_json", render::json(&err));
    }

    #[tokio::test]
    async fn provider_errors_end_the_loop_and_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "bad request", "type": "invalid_request_error"}}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let output = confine_output("gen", dir.path(), "out.py").unwrap();
        let mut calls = Vec::new();
        let err = generate(
            &client(&server),
            &request("gen", output, "go".into(), 3),
            None,
            &mut calls,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Status { status: 400, .. }), "{err:?}");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome, CallOutcome::Error);
        assert!(!serde_json::to_string(&calls).unwrap().contains(KEY));
    }

    #[tokio::test]
    async fn text_mode_keeps_the_whole_answer_and_refuses_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer("   ")))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(openai_answer("\n# Notes\n\nAll good.\n\n")),
            )
            .mount(&server)
            .await;
        let output = confine_output("notes", dir.path(), "docs/notes.md").unwrap();
        let text_request = |attempts| GenerateRequest {
            extract: Extract::Text,
            ..request("notes", output.clone(), "summarise".into(), attempts)
        };
        let mut calls = Vec::new();
        let err = generate(&client(&server), &text_request(1), None, &mut calls)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::EmptyAnswer { attempts: 1, .. }),
            "{err:?}"
        );
        let generated = generate(&client(&server), &text_request(1), None, &mut calls)
            .await
            .unwrap();
        assert_eq!(generated.text, "# Notes\n\nAll good.\n");
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            "# Notes\n\nAll good.\n"
        );
    }
}
