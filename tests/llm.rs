//! LLM steps end to end, against OpenAI- and Anthropic-wire servers on 127.0.0.1 (wiremock)
//! and the `command` provider.

use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::test::{Test, all_bytes_under, require_uv};

pub(crate) const KEY: &str = "sk-test-0123456789abcdefSECRET";

pub(crate) fn answer(code: &str) -> serde_json::Value {
    serde_json::json!({
        "choices": [{ "message": { "role": "assistant", "content": format!("Here:\n```python\n{code}\n```\n") } }],
        "usage": { "prompt_tokens": 40, "completion_tokens": 12 }
    })
}

/// A model server on 127.0.0.1 that answers every request with `code`.
pub(crate) async fn answering(code: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(code)))
        .mount(&server)
        .await;
    server
}

/// A model server on 127.0.0.1 that answers the first request with `first` and every later
/// one with `then` (a repair after a failed check).
pub(crate) async fn answering_first(first: &str, then: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(first)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(then)))
        .mount(&server)
        .await;
    server
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
    let server = answering_first("bad", "good").await;
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

/// Puts pytest in uv's cache, once per test binary: the projects below check answers with uv
/// offline (their sandbox has no network), and a fresh machine's cache is empty — .ci/run
/// passed on a machine whose cache an earlier session had filled, and failed on a new one.
fn warm_uv_cache_with_pytest() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let out = std::process::Command::new("uv")
            .args([
                "run",
                "--no-project",
                "--with",
                "pytest",
                "python",
                "-c",
                "import pytest",
            ])
            .output()
            .expect("uv runs (require_uv checked it is on PATH)");
        assert!(
            out.status.success(),
            "uv could not put pytest in its cache (it needs PyPI once): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A project whose `gen` step writes `tests/generated/test_gen_calc.py`, checked by pytest.
fn pytest_project(server: &MockServer) -> Test {
    warm_uv_cache_with_pytest();
    Test::new()
        .file("src/calc.py", "def add(a, b):\n    return a + b\n")
        .file(
            "pyproject.toml",
            "[tool.pytest.ini_options]\npythonpath = [\"src\"]\n",
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
                    // The check runs sandboxed, in a reduced environment: uv may write its
                    // cache and works offline; Python leaves no bytecode beside the output.
                    sandbox-writable "~/.cache/uv"
                    env UV_OFFLINE="1" PYTHONDONTWRITEBYTECODE="1"
                    llm {{
                        prompt "Write pytest tests for {{{{file}}}}.\n{{{{context}}}}"
                        context "{{{{file}}}}"
                        output "tests/generated/test_gen_{{{{stem}}}}.py"
                        check "uv run --no-project --with pytest pytest -q -p no:cacheprovider {{{{output}}}}"
                        attempts 2
                    }}
                }}
                "#,
                server.uri()
            ),
        )
        .env("TEST_LLM_KEY", KEY)
}

const PASSING_TEST: &str = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3";
const FAILING_TEST: &str = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 4";

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytest_checks_the_generated_test_file_at_its_output_path() {
    require_uv();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(PASSING_TEST)))
        .mount(&server)
        .await;
    let test = pytest_project(&server);
    test.run_with(&["run", "gen"])
        .status(0)
        .stdout_has("wrote tests/generated/test_gen_calc.py")
        .stdout_has("after 1 attempt");
    assert_eq!(
        test.read("tests/generated/test_gen_calc.py"),
        format!("{PASSING_TEST}\n")
    );
    assert_eq!(
        names_in(&test.path().join("tests/generated")),
        ["test_gen_calc.py"],
        "nothing but the output is left beside it"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pytest_answer_is_repaired_on_the_second_attempt() {
    require_uv();
    let server = answering_first(FAILING_TEST, PASSING_TEST).await;
    let test = pytest_project(&server).file("tests/generated/test_gen_calc.py", "# old\n");
    test.run_with(&["run", "gen"])
        .status(0)
        .stdout_has("after 2 attempts");
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    let repair = String::from_utf8_lossy(&sent[1].body);
    assert!(
        repair.contains("assert 3 == 4") && repair.contains("1 failed"),
        "pytest's report goes back to the model: {repair}"
    );
    assert_eq!(
        test.read("tests/generated/test_gen_calc.py"),
        format!("{PASSING_TEST}\n")
    );
    assert_eq!(
        names_in(&test.path().join("tests/generated")),
        ["test_gen_calc.py"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_answer_passes_the_previous_output_is_put_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("bad")))
        .mount(&server)
        .await;
    // The check sees each candidate at the output path itself.
    let check = r#"grep -q good gen/calc.py || { echo NOT-GOOD; exit 1; }"#;
    let test = project(&server, &check.replace('"', "\\\""), "gen/{{stem}}.py")
        .file("gen/calc.py", "previous\n");
    test.run_with(&["run", "gen"])
        .status(1)
        .stdout_has("NOT-GOOD");
    assert_eq!(requests(&server).await.len(), 2);
    assert_eq!(test.read("gen/calc.py"), "previous\n");
    assert_eq!(names_in(&test.path().join("gen")), ["calc.py"]);

    // Without a previous file, a refused candidate leaves nothing behind.
    std::fs::remove_file(test.path().join("gen/calc.py")).unwrap();
    test.run_with(&["run", "gen"]).status(1);
    assert!(names_in(&test.path().join("gen")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_runs_without_the_api_key_the_provider_gets() {
    let server = MockServer::start().await;
    // Only a request carrying the key gets an answer.
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("x = 1")))
        .expect(1)
        .mount(&server)
        .await;
    let check = r#"echo "home=${HOME:+set} key=${TEST_LLM_KEY:-unset} openai=${OPENAI_API_KEY:-unset}" > check-env.txt; test -z "$TEST_LLM_KEY" && test -z "$OPENAI_API_KEY""#;
    let test = project(&server, &check.replace('"', "\\\""), "gen/{{stem}}.py")
        .env("OPENAI_API_KEY", "sk-other-0123456789abcdefSECRET")
        .env("HOME", "/tmp");
    // The check is sandboxed (writes confined): let it write its report.
    let tasks = test.read("tasks.kdl").replacen(
        "for-each \"src/*.py\"",
        "for-each \"src/*.py\"; sandbox-writable \"check-env.txt\"",
        1,
    );
    test.write("tasks.kdl", &tasks);
    test.run_with(&["run", "gen"]).status(0);
    assert_eq!(
        test.read("check-env.txt"),
        "home=set key=unset openai=unset\n",
        "the check keeps ordinary variables and loses the key variables"
    );
    assert_eq!(test.read("gen/calc.py"), "x = 1\n");
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_checkout_replays_every_entry_offline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer("generated = 1")))
        .mount(&server)
        .await;
    let rule = "---\nglobs: *.py\n---\n<rule>\nname: no-print\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"print\\\\(\"\n        message: \"no print\"\n</rule>\n";
    let test = Test::new()
        .file("src/calc.py", "def add(a, b):\n    return a + b\n")
        .file(".cursor/rules/no-print.mdc", rule)
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
                task "build" {{
                    cwd "src"
                    run "mkdir -p {{{{root}}}}/out && cp calc.py {{{{root}}}}/out/calc.py" "echo ran >> {{{{root}}}}/count.txt"
                    env WHERE="{{{{root}}}}/src"
                    inputs "src/*.py"
                    outputs "out/calc.py"
                }}
                task "gen" {{
                    for-each "src/*.py"
                    llm {{
                        prompt "Tests for {{{{file}}}} of the project at {{{{root}}}}:\n{{{{context}}}}"
                        context "{{{{file}}}}"
                        output "gen/test_{{{{stem}}}}.py"
                        check "test -s {{{{output}}}} && test -d {{{{root}}}}/src"
                    }}
                }}
                task "after" {{
                    deps "build" "gen" "rules"
                    run "cat out/calc.py gen/test_calc.py > all.txt" "echo ran >> count.txt"
                    inputs "src/*.py"
                    outputs "all.txt"
                }}
                "#,
                server.uri()
            ),
        )
        .env("TEST_LLM_KEY", KEY);
    test.run_with(&["run", "after"])
        .status(0)
        .stdout_has("4 ran");
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    let root = test.path().display().to_string();
    assert!(
        String::from_utf8_lossy(&sent[0].body).contains(&root),
        "the prompt sent holds the real root"
    );
    assert_eq!(test.read("count.txt"), "ran\nran\n");

    let moved = test.copy();
    for output in ["out/calc.py", "gen/test_calc.py", "all.txt"] {
        std::fs::remove_file(moved.path().join(output)).unwrap();
    }
    moved
        .run_with(&["run", "after", "--offline"])
        .status(0)
        .stdout_has("0 ran, 4 cached");
    assert_eq!(moved.read("count.txt"), "ran\nran\n", "no command ran");
    assert_eq!(moved.read("gen/test_calc.py"), "generated = 1\n");
    assert_eq!(moved.read("all.txt"), test.read("all.txt"));
    assert_eq!(requests(&server).await.len(), 1, "no LLM call");
}

/// `timeout "1h30m"` passed `clab check` and failed at run time: the LLM settings had a
/// duration grammar of their own.
#[test]
fn an_llm_timeout_reads_like_a_task_timeout() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "one" { llm { provider "command"; command "echo hi"; prompt "q"; output "o.txt"; extract "text"; timeout "1h30m"; } }
        "#,
    );
    test.run_with(&["check"]).status(0);
    test.run_with(&["run", "one"]).status(0);
    assert_eq!(test.read("o.txt"), "hi\n");
    // The user's config file reads durations the same way: a bare number is refused.
    test.write("config/config.toml", "[llm]\ntimeout = \"45\"\n");
    let bare = test
        .command(&["run", "one", "--force"])
        .env(
            "CLAB_CONFIG_DIR",
            test.path().join("config").to_str().expect("utf-8 path"),
        )
        .output()
        .expect("run clab");
    assert_ne!(bare.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bare.stderr).contains("write a duration such as"),
        "{bare:?}"
    );
}
