//! `clab run`: order, parallelism, failures, interrupts, timeouts.

use std::time::Duration;

use crate::test::{Test, alive, wait_for_file};

#[test]
fn diamond_runs_dependencies_first() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { run "echo a >> order" }
        task "b" { deps "a"; run "echo b >> order" }
        task "c" { deps "a"; run "echo c >> order" }
        task "d" { deps "b" "c"; run "echo d >> order" }
        "#,
    );
    test.run_with(&["run", "d"])
        .status(0)
        .stdout_has("4 tasks: 4 ran");
    let order: Vec<String> = test.read("order").lines().map(str::to_owned).collect();
    assert_eq!(order.len(), 4);
    assert_eq!(order[0], "a");
    assert_eq!(order[3], "d");
}

#[test]
fn independent_tasks_overlap_with_two_jobs() {
    // Each task writes its start and end time; with -j 2 both must start before either ends.
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "x" { run "date +%s%N > x.start; sleep 1; date +%s%N > x.end" }
        task "y" { run "date +%s%N > y.start; sleep 1; date +%s%N > y.end" }
        task "both" { deps "x" "y" }
        "#,
    );
    test.run_with(&["run", "both", "-j", "2"]).status(0);
    let time = |name: &str| -> u128 { test.read(name).trim().parse().expect("a timestamp") };
    let last_start = time("x.start").max(time("y.start"));
    let first_end = time("x.end").min(time("y.end"));
    assert!(last_start < first_end, "tasks did not overlap");
}

#[test]
fn one_job_runs_one_task_at_a_time() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "x" { run "date +%s%N > x.start; sleep 0.2; date +%s%N > x.end" }
        task "y" { run "date +%s%N > y.start; sleep 0.2; date +%s%N > y.end" }
        task "both" { deps "x" "y" }
        "#,
    );
    test.run_with(&["run", "both", "-j", "1"]).status(0);
    let time = |name: &str| -> u128 { test.read(name).trim().parse().expect("a timestamp") };
    let last_start = time("x.start").max(time("y.start"));
    let first_end = time("x.end").min(time("y.end"));
    assert!(first_end <= last_start, "tasks overlapped with -j 1");
}

#[test]
fn failure_exits_one_and_skips_dependents() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "broken" { run "echo about to fail; exit 3" }
        task "after" { deps "broken"; run "touch after-ran" }
        "#,
    );
    test.run_with(&["run", "after"])
        .status(1)
        .stdout_has("✗ broken exit 3")
        .stdout_has("[broken] about to fail")
        .stdout_has("after skipped: dependency `broken` did not succeed")
        .stdout_lacks("✓ after");
    assert!(!test.exists("after-ran"));
}

#[test]
fn fail_fast_stops_new_work_and_keep_going_runs_the_rest() {
    let tasks = r#"
        task "broken" { run "exit 1" }
        task "slow" { run "sleep 0.5; touch slow-ran" }
        task "independent" { deps "slow"; run "touch independent-ran" }
        task "after" { deps "broken"; run "touch after-ran" }
        task "all" { deps "independent" "after" }
        "#;
    let test = Test::new().file("tasks.kdl", tasks);
    test.run_with(&["run", "all", "-j", "2"]).status(1);
    assert!(test.exists("slow-ran"), "a running task finishes");
    assert!(
        !test.exists("independent-ran"),
        "fail-fast starts nothing new"
    );

    let test = Test::new().file("tasks.kdl", tasks);
    test.run_with(&["run", "all", "-j", "2", "--keep-going"])
        .status(1)
        .stdout_has("after skipped");
    assert!(test.exists("independent-ran"));
    assert!(!test.exists("after-ran"));
}

#[test]
fn fail_fast_starts_no_command_that_waited_for_a_slot() {
    // With -j 1 the second task is already being prepared while the first runs; after the
    // first fails it must not start.
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "broken" { run "sleep 0.3; exit 1" }
        task "next" { run "touch next-ran" }
        task "all" { deps "broken" "next" }
        "#,
    );
    test.run_with(&["run", "all", "-j", "1"])
        .status(1)
        .stdout_has("next skipped: stopped after a failure");
    assert!(
        !test.exists("next-ran"),
        "a command started after the failure"
    );
}

#[test]
fn retry_reruns_a_flaky_command() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "flaky" {
            retry 2
            run "echo x >> tries; test $(wc -l < tries) -ge 3"
        }
        "#,
    );
    test.run_with(&["run", "flaky"]).status(0);
    assert_eq!(test.read("tries").lines().count(), 3);
}

#[test]
fn env_cwd_and_for_each_reach_the_command() {
    let test = Test::new()
        .file("src/a.txt", "A")
        .file("src/b.txt", "B")
        .file("sub/.keep", "")
        .file(
            "tasks.kdl",
            r#"
            env GREETING="hello"
            task "where" { cwd "sub"; env WHO="world"; run "echo $GREETING $WHO > here" }
            task "each" { for-each "src/*.txt"; run "cp {{file}} out-{{stem}}-{{name}}" }
            "#,
        );
    test.run_with(&["run", "where", "each"]).status(0);
    assert_eq!(test.read("sub/here"), "hello world\n");
    assert_eq!(test.read("out-a-a.txt"), "A\n");
    assert_eq!(test.read("out-b-b.txt"), "B\n");
    test.run_with(&["run", "each[src/b.txt]"])
        .status(0)
        .stdout_has("1 task: 1 ran");
}

#[test]
fn timeout_kills_the_process_group() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "hang" { timeout "500ms"; run "sleep 30 & echo $! > pid; wait" }
        "#,
    );
    test.run_with(&["run", "hang"])
        .status(1)
        .stdout_has("✗ hang timed out after 500ms");
    let pid: u32 = test.read("pid").trim().parse().expect("pid");
    assert!(!alive(pid), "the background sleep survived the timeout");
}

#[test]
fn sigint_stops_everything_and_exits_130() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "one" { run "sleep 30 & echo $! > one.pid; wait" }
        task "two" { run "sh -c 'sleep 30' & echo $! > two.pid; wait" }
        task "both" { deps "one" "two" }
        "#,
    );
    let mut child = test
        .command(&["run", "both", "-j", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn clab");
    let pids: Vec<u32> = ["one.pid", "two.pid"]
        .iter()
        .map(|name| {
            wait_for_file(&test.path().join(name))
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert_eq!(exit.code(), Some(130));
    // Give the kernel a moment to reap what SIGKILL hit.
    std::thread::sleep(Duration::from_millis(100));
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived clab");
    }
}

#[test]
fn no_target_runs_default_or_lists_and_exits_two() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "build" { description "Build it"; run "touch built" }
        "#,
    );
    test.run_with(&["run"])
        .status(2)
        .stderr_has("no `default` task")
        .stderr_has("build  # Build it");
    test.write("tasks.kdl", r#"task "default" { run "touch d" }"#);
    test.run_with(&["run"]).status(0);
    assert!(test.exists("d"));
}

#[test]
fn unknown_target_suggests_a_name() {
    Test::new()
        .file("tasks.kdl", r#"task "build" { run "true" }"#)
        .args(&["run", "biuld"])
        .run()
        .status(2)
        .stderr_has("no task named `biuld`")
        .stderr_has("did you mean `build`?");
}

#[test]
fn json_events_and_profile_trace() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { run "echo hi" }
        "#,
    );
    let run = test
        .run_with(&["run", "a", "--json", "--profile", "trace.json"])
        .status(0);
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "task_started",
            "task_output",
            "task_finished",
            "run_finished"
        ]
    );
    assert_eq!(events[2]["line"], "hi");
    assert_eq!(events[3]["status"]["kind"], "succeeded");
    let trace: serde_json::Value =
        serde_json::from_str(&test.read("trace.json")).expect("trace is JSON");
    let first = &trace["traceEvents"][0];
    assert_eq!(first["name"], "a");
    assert_eq!(first["ph"], "X");
}

#[test]
fn github_actions_groups_output() {
    let run = Test::new()
        .file("tasks.kdl", r#"task "a" { run "echo inside"; }"#)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "a"])
        .run()
        .status(0);
    assert!(run.stdout.contains("::group::✓ a"), "{}", run.stdout);
    assert!(
        run.stdout.contains("inside\n::endgroup::"),
        "{}",
        run.stdout
    );
}

#[test]
fn graph_list_and_completions() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { description "first"; inputs "x"; run "true" }
        task "b" { deps "a"; run "true" }
        "#,
    );
    test.run_with(&["graph"])
        .status(0)
        .stdout_has("\"a\" -> \"b\";");
    test.run_with(&["graph", "--format", "mermaid"])
        .status(0)
        .stdout_has("-->");
    let json = test.run_with(&["graph", "b", "--format", "json"]).status(0);
    let graph: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(graph["nodes"][1]["deps"][0], "a");
    test.run_with(&["list"])
        .status(0)
        .stdout_has("a  # first")
        .stdout_has("b  # after a; not cached: no inputs");
    test.run_with(&["completions", "bash"])
        .status(0)
        .stdout_has("clab");
}

#[test]
fn directory_and_file_flags() {
    let test = Test::new().file("proj/other.kdl", r#"task "t" { run "touch ran" }"#);
    test.run_with(&["-C", "proj", "-f", "other.kdl", "run", "t"])
        .status(0);
    assert!(test.exists("proj/ran"));
    test.run_with(&["-C", "proj", "run", "t"])
        .status(2)
        .stderr_has("no `tasks.kdl` found");
}

/// clab's heap is the C library's for a short run and mimalloc's once its tasks file says the
/// graph will be large; neither asks for transparent huge pages (each fresh 2 MiB page cost
/// ~5 ms on a VM that returns free memory to its host), and none of it reaches the commands
/// it starts (their process flag and environment are untouched). A large graph's run on
/// several job threads (each starting mimalloc's heap of its own after the switch, and freeing
/// blocks the C library made before it) goes right.
#[cfg(target_os = "linux")]
#[test]
fn a_large_graph_runs_on_mimalloc_without_huge_pages_and_the_commands_see_none_of_it() {
    let probe = r#"task "probe" {
        run "grep THP_enabled /proc/self/status" "echo vars $(env | grep -c '^MIMALLOC_')" "echo advised $(grep -c '^VmFlags:.* hg' /proc/$PPID/smaps)"
    }
    "#;
    let small = Test::new().file("tasks.kdl", probe);
    small
        .run_with(&["run", "probe", "--no-cache"])
        .status(0)
        .stdout_has("THP_enabled:\t1")
        .stdout_has("vars 0")
        .stdout_has("advised 0");
    // A tasks file past the size that marks a large graph (padding: comment lines), and
    // tasks enough to keep two job threads busy.
    let padding = "// a comment that makes the tasks file large\n".repeat(3_000);
    let mut tasks = String::new();
    for i in 0..40 {
        tasks.push_str(&format!(
            "task \"t{i}\" {{ run \"echo {i} > out{i}.txt\"; outputs \"out{i}.txt\" }}\n"
        ));
    }
    let all: Vec<String> = (0..40).map(|i| format!("\"t{i}\"")).collect();
    tasks.push_str(&format!("task \"all\" {{ deps {} }}\n", all.join(" ")));
    let large = Test::new().file("tasks.kdl", &format!("{padding}{probe}{tasks}"));
    large
        .run_with(&["run", "probe", "--no-cache"])
        .status(0)
        .stdout_has("THP_enabled:\t1")
        .stdout_has("vars 0")
        .stdout_has("advised 0");
    large
        .run_with(&["run", "all", "-j2"])
        .status(0)
        .stdout_has("40 tasks: 40 ran");
    for i in 0..40 {
        assert_eq!(large.read(&format!("out{i}.txt")), format!("{i}\n"));
    }
}

/// A simple command runs without `sh` (as GNU make does); what it prints, exits with and sees
/// is what `sh -c` would have given: the shell's `echo` for options, its "not found" and 127,
/// a script without `#!` run by the shell, and the `PWD` the shell would export.
#[test]
fn a_simple_command_behaves_as_under_the_shell() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "opts" { run "echo -e x" }
            task "missing" { run "no-such-command-here arg" }
            task "script" { run "./plain" }
            task "pwd" { run "env" }
            task "sub" { cwd "sub"; run "env" }
            task "own" { env PWD="/elsewhere"; run "env" }
            "#,
        )
        .file("plain", "echo from-a-script-without-shebang\n")
        .file("sub/keep", "");
    let plain = test.path().join("plain");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();

    test.run_with(&["run", "opts", "-v"])
        .status(0)
        .stdout_has("[opts] -e x\n");
    let missing = test.run_with(&["run", "missing", "-v"]).status(1);
    missing.stdout_has("not found").stdout_has("exit 127");
    test.run_with(&["run", "script", "-v"])
        .status(0)
        .stdout_has("from-a-script-without-shebang");
    let real = std::fs::canonicalize(test.path()).unwrap();
    let env = |task: &str| {
        let out = test
            .command(&["run", task, "-v", "--no-cache"])
            .env("PWD", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let root = env("pwd");
    assert!(
        root.contains(&format!("PWD={}\n", real.display())),
        "{root}"
    );
    let sub = env("sub");
    assert!(
        sub.contains(&format!("PWD={}\n", real.join("sub").display())),
        "{sub}"
    );
    // A task's own PWD that names another directory is replaced, as `sh` replaces it.
    let own = env("own");
    assert!(own.contains(&format!("PWD={}\n", real.display())), "{own}");
}
