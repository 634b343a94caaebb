//! LLM steps end to end, against OpenAI- and Anthropic-wire servers on 127.0.0.1 (wiremock)
//! and the `command` provider.

use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::test::Test;

const KEY: &str = "sk-test-0123456789abcdefSECRET";

fn answer(code: &str) -> serde_json::Value {
    serde_json::json!({
        "choices": [{ "message": { "role": "assistant", "content": format!("Here:\n```python\n{code}\n```\n") } }],
        "usage": { "prompt_tokens": 40, "completion_tokens": 12 }
    })
}

fn project(server: &MockServer, check: &str, output: &str) -> Test {
    Test::new()
        .file("src/calc.py", "def add(a, b):\n    return a + b\n")
        .file(
            "prompts/gen.md",
            "Write pytest tests for {{file}}.\n\n{{context}}\n{{rules}}\n",
        )
        .file(
            "tasks.kdl",
            &format!(
                r#"
                llm {{
                    provider "openai"
                    base-url "{}/v1"
                    model "test-model"
                    api-key-env "TEST_LLM_KEY"
                }}
                task "gen" {{
                    for-each "src/*.py"
                    llm {{
                        prompt-file "prompts/gen.md"
                        context "{{{{file}}}}"
                        output "{output}"
                        extract "code"
                        check "{check}"
                        attempts 2
                    }}
                }}
                "#,
                server.uri()
            ),
        )
        .env("TEST_LLM_KEY", KEY)
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap_or_default()
}

fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_caches_and_replays_without_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(answer("def test_add():\n    assert True")),
        )
        .mount(&server)
        .await;
    let test = project(&server, "test -s {{output}}", "tests/test_{{stem}}.py");

    let first = test
        .run_with(&["run", "gen"])
        .status(0)
        .stdout_has("52 LLM tokens");
    assert_eq!(
        test.read("tests/test_calc.py"),
        "def test_add():\n    assert True\n"
    );
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    let body = String::from_utf8_lossy(&sent[0].body);
    assert!(
        body.contains("def add(a, b):"),
        "the context file reaches the request: {body}"
    );
    assert!(body.contains("src/calc.py"));

    test.run_with(&["run", "gen"])
        .status(0)
        .stdout_has("⚡ gen[src/calc.py] cached");
    assert_eq!(
        requests(&server).await.len(),
        1,
        "a second run makes no request"
    );

    std::fs::remove_file(test.path().join("tests/test_calc.py")).unwrap();
    test.run_with(&["run", "gen", "--offline"])
        .status(0)
        .stdout_has("cached");
    assert!(
        test.exists("tests/test_calc.py"),
        "--offline restores from the cache"
    );

    test.write("src/calc.py", "def add(a, b):\n    return b + a\n");
    test.run_with(&["run", "gen", "--offline"])
        .status(1)
        .stdout_has("needs an LLM call (src/calc.py changed")
        .stdout_has("--offline is set");
    test.run_with(&["run", "gen"])
        .status(0)
        .stdout_has("runs: src/calc.py changed");
    assert_eq!(
        requests(&server).await.len(),
        2,
        "a changed context file makes one request"
    );

    let stats = test.run_with(&["stats"]).status(0);
    // Two calls and two cache hits (the second run, the --offline restore), all `test-model`.
    let row = stats
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("test-model"))
        .unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.get(1..3), Some(&["2", "2"][..]), "{}", stats.stdout);

    // The key is nowhere: not in the cache, not in any output.
    let key = KEY.as_bytes();
    let cache = all_bytes_under(&test.path().join(".clab"));
    assert!(
        !cache.windows(key.len()).any(|w| w == key),
        "the key reached .clab/"
    );
    for text in [&first.stdout, &first.stderr, &stats.stdout] {
        assert!(!text.contains(KEY));
    }
    let json = test
        .run_with(&["run", "gen", "--json", "--force"])
        .status(0);
    assert!(!json.stdout.contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    serde_json::json!({"error": {"message": "slow down", "type": "rate_limit"}}),
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("x = 1")))
        .mount(&server)
        .await;
    let test = project(&server, "true", "gen/{{stem}}.py");
    test.run_with(&["run", "gen"]).status(0);
    assert_eq!(requests(&server).await.len(), 2);
    assert_eq!(test.read("gen/calc.py"), "x = 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_sends_its_output_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("bad")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("good")))
        .mount(&server)
        .await;
    let check = r#"grep -q good {{output}} || { echo CHECK-SAYS-NO-GOOD; exit 1; }"#;
    let test = project(&server, &check.replace('"', "\\\""), "gen/{{stem}}.py");
    test.run_with(&["run", "gen"])
        .status(0)
        .stdout_has("after 2 attempts");
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    let repair = String::from_utf8_lossy(&sent[1].body);
    assert!(repair.contains("CHECK-SAYS-NO-GOOD"), "{repair}");
    assert_eq!(test.read("gen/calc.py"), "good\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_escaping_the_project_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("x")))
        .mount(&server)
        .await;
    let test = project(&server, "true", "../escape_{{stem}}.py");
    test.run_with(&["run", "gen"])
        .status(2)
        .stderr_has("is outside the project");

    let outside = tempfile::tempdir().unwrap();
    let test = project(&server, "true", "link/{{stem}}.py");
    std::os::unix::fs::symlink(outside.path(), test.path().join("link")).unwrap();
    test.run_with(&["run", "gen"]).status(1);
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "wrote through the symlink"
    );
    assert!(
        requests(&server).await.is_empty(),
        "asked the model before refusing the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_wire_format_and_its_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "content": [{ "type": "text", "text": "```\nfrom anthropic\n```" }],
            "usage": { "input_tokens": 7, "output_tokens": 3 }
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "type": "error",
            "error": { "type": "invalid_request_error", "message": "model: unknown model claude-nope" }
        })))
        .mount(&server)
        .await;
    let tasks = |model: &str| {
        format!(
            r#"
            task "one" {{
                llm {{
                    provider "anthropic"
                    base-url "{}/v1"
                    model "{model}"
                    api-key-env "TEST_LLM_KEY"
                    prompt "say hi"
                    output "out.txt"
                }}
            }}
            "#,
            server.uri()
        )
    };
    let test = Test::new()
        .file("tasks.kdl", &tasks("claude-test"))
        .env("TEST_LLM_KEY", KEY);
    test.run_with(&["run", "one"]).status(0);
    assert_eq!(test.read("out.txt"), "from anthropic\n");
    test.write("tasks.kdl", &tasks("claude-nope"));
    let run = test
        .run_with(&["run", "one"])
        .status(1)
        .stdout_has("unknown model claude-nope");
    assert!(run.stdout.contains("400"), "{}", run.stdout);
    assert!(!run.stdout.contains(KEY));
}

#[test]
fn command_provider_reads_the_prompt_on_stdin() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "one" {
            llm {
                provider "command"
                command "cat > prompt.seen; printf 'ok:\n```\nanswer\n```\n'"
                model "local"
                prompt "the question"
                output "out.txt"
            }
        }
        "#,
    );
    test.run_with(&["run", "one"]).status(0);
    assert_eq!(test.read("out.txt"), "answer\n");
    assert!(test.read("prompt.seen").contains("the question"));
}

#[test]
fn ai_off_fails_uncached_steps_with_the_real_reason() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "one" { llm { provider "command"; command "echo hi"; prompt "q"; output "o.txt"; extract "text"; } }
        task "after" { deps "one"; run "touch after" }
        "#,
    );
    let run = |ai: &str| {
        test.command(&["run", "after"])
            .env("CODEGEN_LAB_CONFIG_ENABLE_AI", ai)
            .output()
            .unwrap()
    };
    let off = run("false");
    let stdout = String::from_utf8_lossy(&off.stdout);
    // A requested target that did not run is not a success.
    assert_eq!(off.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "✗ one AI is off (CODEGEN_LAB_CONFIG_ENABLE_AI=false) and an LLM call is needed: no previous run"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("after skipped: dependency `one` did not succeed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 tasks: 0 ran, 1 failed before start, 1 skipped"),
        "{stdout}"
    );
    assert!(!test.exists("after"));
    // Once cached, the step restores even with AI off.
    assert!(run("true").status.success());
    std::fs::remove_file(test.path().join("o.txt")).unwrap();
    let restored = run("false");
    assert!(String::from_utf8_lossy(&restored.stdout).contains("⚡ one cached"));
    assert_eq!(test.read("o.txt"), "hi\n");
}
