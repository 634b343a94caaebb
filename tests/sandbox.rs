//! Issue 19, the sandbox end to end: an LLM step's check runs the model's code without the
//! network, writing only its output, and without the key; `sandbox #false` lifts it; a
//! command task can ask for it; and the python-uv template's real check (ruff with the
//! bandit rules, then pytest, through uv) passes inside it.
//!
//! The kernels of this machine and of CI offer the whole sandbox (Landlock ABI 7, user
//! namespaces): `clab_sandbox`'s unit tests say so plainly when one does not.

use std::{
    io::ErrorKind,
    net::TcpListener,
    time::{Duration, Instant},
};

use wiremock::MockServer;

use crate::{
    llm::{KEY, answering, answering_first},
    test::{Test, require_uv},
};

/// A project whose `gen` step writes `gen/calc.py` and runs `check` on it; `extra` goes into
/// the task (`sandbox #false` …).
fn project(server: &MockServer, check: &str, extra: &str) -> Test {
    Test::new()
        .file("src/calc.py", "def add(a, b):\n    return a + b\n")
        .file(
            "tasks.kdl",
            &format!(
                r##"
                llm {{
                    provider "openai"
                    base-url "{}/v1"
                    model "test-model"
                    api-key-env "TEST_LLM_KEY"
                }}
                task "gen" {{
                    for-each "src/*.py"
                    {extra}
                    llm {{
                        prompt "Write {{{{file}}}} again."
                        output "gen/{{{{stem}}}}.py"
                        extract "code"
                        check #"{check}"#
                        attempts 1
                    }}
                }}
                "##,
                server.uri()
            ),
        )
        .env("TEST_LLM_KEY", KEY)
}

/// Whether `listener` was connected to (it is non-blocking).
fn was_connected(listener: &TcpListener) -> bool {
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_cannot_reach_a_server_on_loopback_unless_the_task_says_sandbox_false() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = answering("x = 1").await;
    let check = format!(
        r#"python3 -c "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); print('reached-' + str(6 * 7))""#
    );

    let sandboxed = project(&server, &check, "");
    let run = sandboxed.run_with(&["run", "gen"]).status(1);
    assert!(!run.stdout.contains("reached-42"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Network is unreachable") || run.stdout.contains("Connection refused"),
        "the check's own error is shown: {}",
        run.stdout
    );
    assert!(!was_connected(&listener), "the sandboxed check got through");
    assert!(
        !sandboxed.exists("gen/calc.py"),
        "a refused answer is not kept"
    );

    let open = project(&server, &check, "sandbox #false");
    open.run_with(&["run", "gen"]).status(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !was_connected(&listener) {
        assert!(
            Instant::now() < deadline,
            "the unsandboxed check did not connect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open.read("gen/calc.py"), "x = 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_writes_to_home_fails_and_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let server = answering("x = 1").await;
    let check = r#"echo owned > "$HOME/.bashrc" && mkdir "$HOME/.ssh""#;
    let test = project(&server, check, "").env("HOME", home.path().to_str().unwrap());
    let run = test.run_with(&["run", "gen"]).status(1);
    assert!(
        run.stdout.contains("Permission denied"),
        "the check's own error is shown: {}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_dir(home.path()).unwrap().count(),
        0,
        "nothing was written to $HOME"
    );
    assert!(!test.exists("gen/calc.py"), "the answer is not kept");
    assert!(
        !test.path().join("gen").exists()
            || std::fs::read_dir(test.path().join("gen")).unwrap().count() == 0,
        "no candidate is left beside the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_may_write_its_output_its_temp_dir_and_what_the_task_names() {
    let server = answering("x = 1").await;
    // The output rewritten in place (as a formatter does), a file in TMPDIR, one in a
    // directory the task names.
    let check = r#"echo "y = 2" >> {{output}} && echo t > "$TMPDIR/t" && echo r > reports/check.txt && env > reports/env.txt"#;
    let test = project(&server, check, r#"sandbox-writable "reports/""#)
        .env("OPENAI_API_KEY", "sk-other-0123456789abcdefSECRET");
    test.run_with(&["run", "gen"]).status(0);
    assert_eq!(test.read("gen/calc.py"), "x = 1\ny = 2\n");
    assert_eq!(test.read("reports/check.txt"), "r\n");
    let env = test.read("reports/env.txt");
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("SECRET"), "no key reaches the check: {env}");
}

#[test]
fn a_command_task_asks_for_the_sandbox_and_writes_only_its_outputs() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "build" {
                sandbox #true
                run "mkdir -p out && echo a > out/a.txt && env > out/env.txt"
                outputs "out/*.txt"
            }
            task "escape" {
                sandbox "required"
                run "echo b > elsewhere.txt"
                outputs "out/b.txt"
            }
            task "open" {
                sandbox #false
                run "echo c > elsewhere.txt"
            }
            "#,
        )
        .env("CLAB_TEST_SECRET_TOKEN", "hunter2-not-for-tasks");
    test.run_with(&["run", "build"]).status(0);
    assert_eq!(test.read("out/a.txt"), "a\n");
    let env = test.read("out/env.txt");
    assert!(env.contains("TMPDIR="), "{env}");
    assert!(!env.contains("hunter2"), "{env}");

    test.run_with(&["run", "escape"])
        .status(1)
        .stdout_has("Permission denied");
    assert!(!test.exists("elsewhere.txt"));
    test.run_with(&["run", "open"]).status(0);
    assert_eq!(test.read("elsewhere.txt"), "c\n");
}

#[test]
fn a_bad_sandbox_value_is_a_diagnostic_at_its_span() {
    let test = Test::new().file(
        "tasks.kdl",
        "task \"t\" {\n    sandbox \"yes\"\n    run \"true\"\n}\n",
    );
    test.run_with(&["check"])
        .status(2)
        .stderr_has("takes #true, #false or \"required\"")
        .stderr_has("tasks.kdl:2:");
}

/// The python-uv template's `gen-tests`: the model's test file goes through the real check
/// (ruff format, ruff check with the bandit rules, pytest, all through uv) in the sandbox.
/// An answer that shells out is refused by ruff's `S` rules and the model is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_uv_templates_real_check_passes_in_the_sandbox() {
    require_uv();
    let test = Test::new();
    test.run_with(&["init", "--template", "python-uv", "--name", "demo-app"])
        .status(0);
    test.run_with(&["run", "sync"]).status(0);

    let unsafe_test = "import subprocess\n\nfrom demo_app import mean\n\n\ndef test_mean() -> None:\n    subprocess.run(\"echo hi\", shell=True)\n    assert mean([2.0]) == 2.0";
    let good_test = "from demo_app import mean\n\n\ndef test_mean_of_one() -> None:\n    assert mean([2.0]) == 2.0";
    let server = answering_first(unsafe_test, good_test).await;

    let mut command = test.command(&["run", "gen-tests"]);
    command
        .env("CLAB_LLM_BASE_URL", format!("{}/v1", server.uri()))
        .env("OPENAI_API_KEY", KEY);
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("after 2 attempts"), "{stdout}");
    // The repair request carries the check's output: ruff's bandit rule refused the answer.
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 2);
    let repair = String::from_utf8_lossy(&requests[1].body);
    assert!(repair.contains("S602"), "{repair}");
    assert!(
        !stdout.contains("sandbox runs with what this kernel offers"),
        "{stdout}"
    );
    let kept = test.read("tests/generated/test_gen_core.py");
    assert!(kept.contains("def test_mean_of_one"), "{kept}");
    assert!(!test.exists(".ruff_cache"), "ruff ran without its cache");
}
