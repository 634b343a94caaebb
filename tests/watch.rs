//! `clab watch`: the real binary as a child process, its stdout read line by line with a
//! deadline. Reruns are proven with counter files the tasks append to; "nothing ran" is proven
//! by a later notice (`-v` prints one for changes no target depends on), never by sleeping.

use std::{
    io::Read,
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use crate::test::{Test, alive};

/// Generous: the machine is small and shared.
const DEADLINE: Duration = Duration::from_secs(10);

/// A running `clab watch`, killed (SIGINT, then SIGKILL) when dropped.
struct Watch {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Everything written to stderr so far (diagnostics).
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    fn start(test: &Test, args: &[&str]) -> Watch {
        let mut all = vec!["watch", "-v", "--debounce", "50ms"];
        all.extend_from_slice(args);
        let mut child = test
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clab watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = collected.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Read lines until one contains `needle`; every line read is kept in `seen`.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        self.expect_all(&[needle])
    }

    /// Read lines until one contains all of `needles`.
    #[track_caller]
    fn expect_all(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|needle| line.contains(needle)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {DEADLINE:?}; output so far:\n{}\n--- stderr\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many lines read so far contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send SIGINT and wait for the exit code.
    #[track_caller]
    fn interrupt(&mut self) -> i32 {
        signal(self.pid(), "INT");
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("clab watch did not exit after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), "INT");
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Poll until `condition` holds, or fail after the deadline.
#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn lines(text: &str) -> usize {
    text.lines().count()
}

const BUILD: &str = r#"
    task "build" {
        run "echo run >> count.txt; cat src/a.txt > out.txt"
        inputs "src/*.txt"
        outputs "out.txt"
    }
    task "default" { deps "build" }
"#;

#[test]
fn first_run_then_an_input_change_reruns_and_updates_the_output() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("[watch] running");
    let status = watch.expect("waiting for changes");
    assert!(status.contains("1 task: 1 ran"), "{status}");
    assert_eq!(test.read("count.txt"), "run\n");
    assert_eq!(test.read("out.txt"), "one\n");

    test.write("src/a.txt", "two");
    watch.expect("changed: `src/a.txt`");
    watch.expect("waiting for changes");
    assert_eq!(test.read("count.txt"), "run\nrun\n");
    assert_eq!(test.read("out.txt"), "two\n");
}

#[test]
fn an_unrelated_file_reruns_nothing() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");
    test.write("notes.txt", "hello");
    watch.expect_all(&["no target depends on", "`notes.txt`"]);
    assert_eq!(watch.count("changed:"), 0, "{:?}", watch.seen);
    assert_eq!(test.read("count.txt"), "run\n");
}

#[test]
fn a_task_writing_its_own_output_does_not_retrigger_itself() {
    // The output lies inside the task's own input glob.
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "gen" {
                run "echo run >> count.txt; cat src/a.txt src/a.txt > src/gen.out"
                inputs "src/**"
                outputs "src/gen.out"
            }
            task "default" { deps "gen" }
            "#,
        )
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");
    // Events are handled in order: once this later change is seen, the output's were too.
    test.write("notes.txt", "hello");
    watch.expect_all(&["no target depends on", "`notes.txt`"]);
    assert_eq!(watch.count("changed:"), 0, "{:?}", watch.seen);
    assert_eq!(test.read("count.txt"), "run\n");
    assert_eq!(test.read("src/gen.out"), "one\none\n");
}

#[test]
fn a_broken_tasks_file_keeps_the_last_good_graph_and_a_fix_resumes() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");

    test.write("tasks.kdl", "task \"build\" {\n");
    watch.expect("the graph does not load");
    wait_until("the diagnostic", || {
        watch.stderr().contains("clab::tasks::syntax")
    });
    // Still watching, with the old graph.
    test.write("src/a.txt", "two");
    watch.expect("changed: `src/a.txt`");
    watch.expect("waiting for changes");
    assert_eq!(test.read("count.txt"), "run\nrun\n");

    test.write("tasks.kdl", &BUILD.replace("echo run", "echo fixed"));
    watch.expect("reloaded the graph");
    watch.expect("waiting for changes");
    assert_eq!(test.read("count.txt"), "run\nrun\nfixed\n");
}

#[test]
fn changes_during_a_run_queue_one_follow_up_run() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "slow" {
                run "echo start >> count.txt; sleep 1.5; echo end >> count.txt"
                inputs "src/*.txt"
            }
            task "default" { deps "slow" }
            "#,
        )
        .file("src/a.txt", "0");
    let mut watch = Watch::start(&test, &[]);
    wait_until("the first run to start", || {
        test.read("count.txt") == "start\n"
    });
    for i in 1..=3 {
        test.write("src/a.txt", &i.to_string());
        std::thread::sleep(Duration::from_millis(150));
    }
    watch.expect("running again");
    watch.expect("waiting for changes");
    // The first run was not cancelled, and three changes made one more run, not three.
    assert_eq!(test.read("count.txt"), "start\nend\nstart\nend\n");
    assert_eq!(watch.count("changed:"), 1, "{:?}", watch.seen);
}

#[test]
fn restart_cancels_the_running_tasks() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "slow" {
                run "echo start >> count.txt; sleep 30; echo end >> count.txt"
                inputs "src/*.txt"
            }
            task "default" { deps "slow" }
            "#,
        )
        .file("src/a.txt", "0");
    let mut watch = Watch::start(&test, &["--restart"]);
    wait_until("the first run to start", || {
        test.read("count.txt") == "start\n"
    });
    test.write("src/a.txt", "1");
    wait_until("a second start", || {
        test.read("count.txt") == "start\nstart\n"
    });
    watch.expect("changed: `src/a.txt`");
}

#[test]
fn a_persistent_task_restarts_when_its_input_changes() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "serve" {
                persistent #true
                inputs "server.conf"
                run "echo $$ >> pids; exec sleep 300"
            }
            task "default" { deps "serve" }
            "#,
        )
        .file("server.conf", "a");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("started `serve`");
    wait_until("the first pid", || lines(&test.read("pids")) == 1);
    let first: u32 = test.read("pids").trim().parse().expect("pid");
    assert!(alive(first));

    test.write("server.conf", "b");
    watch.expect("stopped `serve`");
    watch.expect("started `serve`");
    wait_until("the second pid", || lines(&test.read("pids")) == 2);
    wait_until("the first server to be gone", || !alive(first));
    let pids = test.read("pids");
    let second: u32 = pids
        .lines()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert_ne!(first, second);
    assert!(alive(second));

    assert_eq!(watch.interrupt(), 130);
    wait_until("the second server to be gone", || !alive(second));
}

/// A service whose task asks for the sandbox runs in it under `clab watch` too.
#[test]
fn a_sandboxed_persistent_task_is_sandboxed_in_watch() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
            task "serve" {
                persistent #true
                sandbox #true
                inputs "server.conf"
                outputs "out/*.txt"
                run "mkdir -p out; (echo x > escaped.txt) 2>/dev/null || echo denied > out/denied.txt; echo ok > out/served.txt; exec sleep 300"
            }
            task "default" { deps "serve" }
            "#,
    )
    .file("server.conf", "a");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("started `serve`");
    wait_until("the service to write", || test.exists("out/served.txt"));
    assert!(
        test.exists("out/denied.txt"),
        "the write outside was refused"
    );
    assert!(!test.exists("escaped.txt"));
    assert_eq!(watch.interrupt(), 130);
}

#[test]
fn sigint_stops_a_running_task_and_leaves_no_process() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "slow" {
            run "echo $$ >> pids; sleep 300 & echo $! >> pids; wait"
        }
        task "default" { deps "slow" }
        "#,
    );
    let mut watch = Watch::start(&test, &[]);
    wait_until("the task's processes", || lines(&test.read("pids")) == 2);
    assert_eq!(watch.interrupt(), 130);
    let pids: Vec<u32> = test
        .read("pids")
        .lines()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        wait_until(&format!("pid {pid} to be gone"), || !alive(pid));
    }
}

#[test]
fn sigint_stops_services() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "serve" {
            persistent #true
            run "echo $$ >> spids; sleep 300 & echo $! >> spids; wait"
        }
        task "default" { deps "serve" }
        "#,
    );
    let mut watch = Watch::start(&test, &[]);
    watch.expect("started `serve`");
    wait_until("the service's processes", || {
        lines(&test.read("spids")) == 2
    });
    let pids: Vec<u32> = test
        .read("spids")
        .lines()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(pids.iter().all(|&pid| alive(pid)));
    assert_eq!(watch.interrupt(), 130);
    for pid in pids {
        wait_until(&format!("pid {pid} to be gone"), || !alive(pid));
    }
}

#[test]
fn poll_mode_sees_changes_too() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &["--poll"]);
    watch.expect("waiting for changes");
    test.write("src/a.txt", "two");
    watch.expect("changed: `src/a.txt`");
    watch.expect("waiting for changes");
    assert_eq!(test.read("out.txt"), "two\n");
}

#[test]
fn a_rule_file_change_reloads_the_graph() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");
    test.write(
        ".cursor/rules/style.mdc",
        "---\ndescription: x\n---\nbody\n",
    );
    watch.expect_all(&["reloaded the graph", "`.cursor/rules/style.mdc`"]);
    let status = watch.expect("waiting for changes");
    // Nothing the build reads changed: the rerun is a cache hit.
    assert!(status.contains("1 cached"), "{status}");
    assert_eq!(test.read("count.txt"), "run\n");
}

#[test]
fn files_in_a_new_directory_are_seen() {
    let test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "build" {
                run "echo run >> count.txt"
                inputs "src/**/*.txt"
            }
            task "default" { deps "build" }
            "#,
        )
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");
    // `write` creates the directory and the file at once.
    test.write("src/new/deeper/b.txt", "two");
    watch.expect_all(&["changed:", "`src/new/deeper/b.txt`"]);
    watch.expect("waiting for changes");
    assert_eq!(test.read("count.txt"), "run\nrun\n");
}

#[test]
fn a_rule_that_does_not_compile_keeps_the_last_good_graph() {
    let test = Test::new()
        .file("tasks.kdl", BUILD)
        .file("src/a.txt", "one");
    let mut watch = Watch::start(&test, &[]);
    watch.expect("waiting for changes");
    test.write(
        ".cursor/rules/bad.mdc",
        "---\ndescription: x\nglobs: *.txt\n---\n<rule>\nname: bad\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"foo(\"\n</rule>\n",
    );
    watch.expect("the graph does not load");
    wait_until("the diagnostic", || {
        watch.stderr().contains("clab::rules::bad_regex")
    });
    // Still watching, with the old graph.
    test.write("src/a.txt", "two");
    watch.expect("changed: `src/a.txt`");
    watch.expect("waiting for changes");
    assert_eq!(test.read("count.txt"), "run\nrun\n");
}

#[test]
fn a_member_tasks_file_or_manifest_change_reloads_the_workspace() {
    let test = Test::new()
        .file("tasks.kdl", r#"members "pkgs/*""#)
        .file(
            "pkgs/core/tasks.kdl",
            r#"task "build" { run "echo core >> {{root}}/count.txt"; inputs "src/**" }"#,
        )
        .file("pkgs/core/src/a.txt", "one")
        .file("pkgs/core/package.json", r#"{ "name": "core" }"#)
        .file(
            "pkgs/app/tasks.kdl",
            r#"task "build" { deps "^build"; run "echo app >> {{root}}/count.txt"; inputs "src/**" }"#,
        )
        .file("pkgs/app/src/a.txt", "one")
        .file("pkgs/app/package.json", r#"{ "name": "app" }"#);
    let mut watch = Watch::start(&test, &["build"]);
    watch.expect("waiting for changes");
    let first = test.read("count.txt");
    assert_eq!(lines(&first), 2, "{first}");

    // app now depends on core: a manifest change reloads the graph.
    test.write(
        "pkgs/app/package.json",
        r#"{ "name": "app", "dependencies": { "core": "workspace:*" } }"#,
    );
    watch.expect_all(&["reloaded the graph", "`pkgs/app/package.json`"]);
    watch.expect("waiting for changes");

    // A member's tasks.kdl change reloads it and reruns the changed task.
    test.write(
        "pkgs/core/tasks.kdl",
        r#"task "build" { run "echo core2 >> {{root}}/count.txt"; inputs "src/**" }"#,
    );
    watch.expect_all(&["reloaded the graph", "`pkgs/core/tasks.kdl`"]);
    watch.expect("waiting for changes");
    assert!(
        test.read("count.txt").contains("core2"),
        "{}",
        test.read("count.txt")
    );
}
