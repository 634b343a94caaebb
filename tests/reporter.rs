//! What a run tells: the line that stays on a terminal, which command failed, counts that add
//! up between the summary line and `--json`, and the cache's hit counters.

use std::process::Command;

use crate::test::{Test, clab_path};

/// An inline snapshot with times filtered out (they vary from run to run).
macro_rules! assert_timeless {
    ($value:expr, @$snapshot:literal) => {
        insta::with_settings!({filters => vec![(r"\b\d+(\.\d+)?(ms|s)\b", "[time]")]}, {
            insta::assert_snapshot!($value, @$snapshot)
        })
    };
}

/// The summary of `--json`'s `run_finished` event.
fn finished(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "run_finished")
        .expect("a run_finished event")
}

/// The screen a terminal shows after `clab ARGS` ran in a pseudo-terminal (util-linux
/// `script`), as a terminal emulator (vt100) draws what clab wrote: progress bars, cursor
/// moves and all.
fn screen(test: &Test, args: &str) -> String {
    let line = format!("stty cols 120 rows 40; {} {args}", clab_path());
    let output = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(test.path())
        .env_remove("CI")
        .env_remove("CLAB_NO_PROGRESS")
        .env_remove("NO_COLOR")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("CLAB_CACHE_DIR")
        .env("TERM", "xterm-256color")
        .output()
        .expect("run clab under `script`");
    assert!(output.status.success(), "clab under `script` failed");
    let mut parser = vt100::Parser::new(nonzero(40), nonzero(120), 0);
    parser.process(&output.stdout);
    let rows: Vec<String> = parser.screen().rows(0, 120).collect();
    rows.iter()
        .map(|row| row.trim_end())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn nonzero(n: u16) -> std::num::NonZero<u16> {
    std::num::NonZero::new(n).expect("not zero")
}

#[test]
fn on_a_terminal_the_line_that_stays_keeps_why_the_task_ran() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"task "generate" { inputs "data/veg.csv"; outputs "out.txt"; run "sleep 0.3; cp data/veg.csv out.txt" }"#,
        )
        .file("data/veg.csv", "leek\n");
    screen(&test, "run generate");
    test.write("data/veg.csv", "leek\nkale\n");
    let shown = screen(&test, "run generate");
    let done = shown
        .lines()
        .find(|line| line.starts_with("✓ generate"))
        .unwrap_or_else(|| panic!("no final line for `generate` on the screen:\n{shown}"));
    assert!(done.ends_with("(data/veg.csv changed)"), "{shown}");
    // Nothing of the spinner is left behind.
    assert_eq!(shown.matches("generate").count(), 1, "{shown}");
    assert_timeless!(shown, @r"
    ✓ generate [time] (data/veg.csv changed)
    1 task: 1 ran in [time]
    ");
}

#[test]
fn piped_the_line_that_stays_keeps_why_the_task_ran() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"task "generate" { inputs "data/veg.csv"; outputs "out.txt"; run "cp data/veg.csv out.txt" }"#,
        )
        .file("data/veg.csv", "leek\n");
    let first = test.run_with(&["run", "generate"]).status(0);
    assert_timeless!(first.stdout, @r"
    [generate] runs: no previous run
    ✓ generate [time] (no previous run)
    1 task: 1 ran in [time]
    ");
    test.write("data/veg.csv", "kale\n");
    let second = test.run_with(&["run", "generate"]).status(0);
    assert!(
        second
            .stdout
            .lines()
            .any(|line| line.starts_with("✓ generate") && line.ends_with("(data/veg.csv changed)")),
        "{}",
        second.stdout
    );
    // A cache hit did not run: no reason.
    test.write("data/veg.csv", "leek\n");
    let hit = test.run_with(&["run", "generate"]).status(0);
    assert_timeless!(hit.stdout, @"
    ⚡ generate cached
    1 task: 0 ran, 1 cached in [time], [time] saved by the cache
    ");
}

#[test]
fn a_failed_task_of_several_commands_names_the_one_that_failed() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "bad" { run "echo one" "test -f nothere" "echo three" }
        task "single" { run "exit 3" }
        "#,
    );
    let run = test.run_with(&["run", "bad"]).status(1);
    assert_timeless!(run.stdout, @r"
    [bad] one
    ✗ bad command 2 of 3 `test -f nothere` exited 1 ([time])
    1 task: 1 ran (1 failed) in [time]
    ");
    let json = test.run_with(&["run", "bad", "--json"]).status(1);
    let failure = json
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "task_finished")
        .expect("a task_finished event");
    assert_eq!(
        failure["status"],
        serde_json::json!({"kind": "failed", "message": "command 2 of 3 `test -f nothere` exited 1"})
    );
    // One command: the exit alone says it.
    test.run_with(&["run", "single"])
        .status(1)
        .stdout_has("✗ single exit 3 (");
}

#[test]
fn a_step_that_cannot_start_fails_before_start_and_counts_add_up_with_json() {
    // An LLM step with AI off and nothing cached cannot start (a missing literal input, the
    // other way before, is now hashed as absent: the task runs).
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "ok" { run "true" }
            task "bad" { run "false" }
            task "missing" { llm { provider "command"; command "touch started; echo hi"; prompt "q"; output "m.txt"; extract "text"; } }
            task "after" { deps "missing"; run "touch after" }
            task "all" { deps "ok" "bad" "after" }
            "#,
        )
        .env("CLAB_AI", "off");
    let run = test
        .run_with(&["run", "all", "--keep-going", "-j", "1"])
        .status(1);
    assert!(!test.exists("started"), "a node that cannot start started");
    assert!(
        run.stdout
            .contains("4 tasks: 2 ran (1 failed), 1 failed before start, 1 skipped in"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("✗ missing AI is off (CLAB_AI=off) and an LLM call is needed"),
        "{}",
        run.stdout
    );
    let json = test
        .run_with(&["run", "all", "--keep-going", "-j", "1", "--json"])
        .status(1);
    let summary = finished(&json.stdout);
    for (field, expected) in [
        ("succeeded", 1),
        ("failed", 1),
        ("failed_before_start", 1),
        ("cached", 0),
        ("skipped", 1),
        ("interrupted_tasks", 0),
    ] {
        assert_eq!(summary[field], expected, "{field} in {summary}");
    }
}

#[test]
fn an_interrupted_task_counts_as_interrupted_not_skipped() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "long" { run "echo started > long.started; sleep 30" }
        task "after" { deps "long"; run "true" }
        "#,
    );
    let summary = interrupted(&test, &["run", "after", "--json"], &["long.started"]);
    assert_eq!(summary["interrupted_tasks"], 1, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["interrupted"], true, "{summary}");
}

/// The `--json` summary of `clab ARGS` sent SIGINT once `started` files exist: it must exit
/// 130 within 5 s (the commands sleep 30 s).
fn interrupted(test: &Test, args: &[&str], started: &[&str]) -> serde_json::Value {
    let child = test
        .command(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn clab");
    for file in started {
        crate::test::wait_for_file(&test.path().join(file));
    }
    let sent = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(output.status.code(), Some(130));
    finished(&String::from_utf8_lossy(&output.stdout))
}

/// Commands on job threads (two at once): Ctrl-C reaches them through the run's interrupt,
/// which a run without LLM steps watches without an I/O driver.
#[test]
fn ctrl_c_stops_commands_running_side_by_side() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { run "echo > a.started; sleep 30" }
        task "b" { run "echo > b.started; sleep 30" }
        task "both" { deps "a" "b" }
        "#,
    );
    let summary = interrupted(
        &test,
        &["run", "both", "-j2", "--json"],
        &["a.started", "b.started"],
    );
    assert_eq!(summary["interrupted_tasks"], 2, "{summary}");
    assert_eq!(summary["interrupted"], true, "{summary}");
}

#[test]
fn ai_off_names_itself_even_after_a_failed_attempt() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "gen" { llm { provider "command"; command "exit 1"; prompt "q"; output "o.txt"; extract "text"; } }
        "#,
    );
    // A failed attempt leaves its key parts behind: the next miss's reason is then
    // `no cached result (…)`, which must not stand for the reason with AI off.
    test.run_with(&["run", "gen"]).status(1);
    let off = test
        .command(&["run", "gen"])
        .env("CLAB_AI", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&off.stdout);
    assert_eq!(off.status.code(), Some(1), "{stdout}");
    assert_timeless!(stdout, @r"
    ✗ gen AI is off (CLAB_AI=off) and an LLM call is needed: no cached result (last run failed or was pruned) ([time])
    1 task: 0 ran, 1 failed before start in [time]
    ");
    test.run_with(&["run", "gen", "--offline"])
        .status(1)
        .stdout_has("and --offline is set")
        .stdout_has("1 failed before start");
}

#[test]
fn only_run_moves_the_hit_rate() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
        task "a" { inputs "in.txt"; outputs "a.txt"; run "cp in.txt a.txt" }
        task "b" { deps "a"; inputs "a.txt"; outputs "b.txt"; run "cp a.txt b.txt" }
        "#,
        )
        .file("in.txt", "x\n");
    test.run_with(&["run", "b"]).status(0);
    test.run_with(&["run", "b"]).status(0);
    let rate = || {
        let run = test.run_with(&["cache", "stats"]).status(0);
        run.stdout
            .lines()
            .find(|line| line.starts_with("hit rate:"))
            .unwrap_or_else(|| panic!("no hit rate in\n{}", run.stdout))
            .to_owned()
    };
    let before = rate();
    assert!(before.contains("hits"), "{before}");
    test.run_with(&["run", "b", "--dry-run"]).status(0);
    test.run_with(&["explain", "b"]).status(0);
    assert_eq!(rate(), before);
    // A run does move it (the test above could not fail otherwise).
    test.run_with(&["run", "b"]).status(0);
    assert_ne!(rate(), before);
}
