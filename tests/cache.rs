//! The incremental cache, end to end: hits, misses and why, restores, early cutoff,
//! concurrency and recovery. Cache hits are proven with counter files, never with timing.

use crate::test::{Test, wait_for_file};

/// gen → (upper, count) → check, each appending its name to `counter` when it really runs.
fn pipeline() -> Test {
    Test::new().file("src/data.txt", "b\na\n").file(
        "tasks.kdl",
        r#"
            task "gen" {
                inputs "src/*.txt"
                outputs "build/sorted.txt"
                run "echo gen >> counter" "mkdir -p build" "sort src/*.txt > build/sorted.txt"
            }
            task "upper" {
                deps "gen"
                inputs "tasks.kdl"
                outputs "build/upper.txt"
                run "echo upper >> counter" "tr a-z A-Z < build/sorted.txt > build/upper.txt"
            }
            task "count" {
                deps "gen"
                inputs "tasks.kdl"
                outputs "build/count.txt"
                run "echo count >> counter" "wc -l < build/sorted.txt > build/count.txt"
            }
            task "check" {
                deps "upper" "count"
                inputs "tasks.kdl"
                run "echo check >> counter" "cat build/upper.txt build/count.txt"
            }
            "#,
    )
}

fn runs(test: &Test) -> Vec<String> {
    let mut lines: Vec<String> = test.read("counter").lines().map(str::to_owned).collect();
    lines.sort();
    std::fs::remove_file(test.path().join("counter")).ok();
    lines
}

#[test]
fn second_run_executes_nothing() {
    let test = pipeline();
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("[gen] runs: no previous run");
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("⚡ check cached")
        .stdout_has("4 tasks: 0 ran, 4 cached");
    assert!(runs(&test).is_empty());
}

#[test]
fn prune_says_how_many_records_of_deleted_files_it_dropped() {
    let test = pipeline().file("src/more.txt", "c\n");
    test.run_with(&["run", "gen"]).status(0);
    std::fs::remove_file(test.path().join("src/more.txt")).unwrap();
    test.run_with(&["cache", "prune", "--max-size", "1G"])
        .status(0)
        .stdout_has("and 1 record of a deleted file (");
    test.run_with(&["cache", "prune", "--max-size", "1G"])
        .status(0)
        .stdout_lacks("deleted file");
}

#[test]
fn a_dependency_writing_into_an_old_input_directory_is_seen() {
    // `use` globs a directory that `make` adds a file to during the run. The directory is
    // older than the planner's walk by more than the racy margin, so only its new ctime
    // tells a rescan that the walk's listing no longer holds.
    let test = Test::new()
        .file("gen/a.txt", "a\n")
        .file("seed.txt", "b\n")
        .file(
            "tasks.kdl",
            r#"
            task "make" {
                inputs "seed.txt"
                outputs "gen/b.txt"
                run "echo make >> counter" "cp seed.txt gen/b.txt"
            }
            task "use" {
                deps "make"
                inputs "gen/*.txt"
                outputs "all.txt"
                run "echo use >> counter" "cat gen/*.txt > all.txt"
            }
            "#,
        );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    test.run_with(&["run", "use"]).status(0);
    assert_eq!(runs(&test), ["make", "use"]);
    assert_eq!(test.read("all.txt"), "a\nb\n");
    // Keyed with gen/b.txt the first time, so nothing is left to run.
    test.run_with(&["run", "use"])
        .status(0)
        .stdout_has("2 tasks: 0 ran, 2 cached");
    assert!(runs(&test).is_empty());
}

#[test]
fn a_restored_output_that_a_dependent_globs_is_among_its_inputs() {
    // `make`'s output lies under `use`'s input glob: deleted, it is absent from the planner's
    // walk and restored during the run, so `use` must look again to be keyed as before (a
    // restore of files no input pattern can match is trusted without looking again).
    let test = Test::new()
        .file("gen/a.txt", "a\n")
        .file("seed.txt", "b\n")
        .file(
            "tasks.kdl",
            r#"
            task "make" {
                inputs "seed.txt"
                outputs "gen/b.txt" "logs/make.log"
                run "echo make >> counter" "cp seed.txt gen/b.txt" "mkdir -p logs" "echo made > logs/make.log"
            }
            task "use" {
                deps "make"
                inputs "gen/*.txt"
                outputs "all.txt"
                run "echo use >> counter" "cat gen/*.txt > all.txt"
            }
            "#,
        );
    test.run_with(&["run", "use"]).status(0);
    assert_eq!(runs(&test), ["make", "use"]);
    for deleted in ["gen/b.txt", "logs/make.log"] {
        std::fs::remove_file(test.path().join(deleted)).unwrap();
        test.run_with(&["run", "use"])
            .status(0)
            .stdout_has("2 tasks: 0 ran, 2 cached");
        assert!(runs(&test).is_empty(), "after deleting {deleted}");
        assert_eq!(test.read("gen/b.txt"), "b\n");
        assert_eq!(test.read("all.txt"), "a\nb\n");
    }
}

#[test]
fn a_changed_input_reruns_the_task_and_its_dependents_and_says_why() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    test.write("src/data.txt", "c\nb\na\n");
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("[gen] runs: src/data.txt changed")
        .stdout_has("[upper] runs: dep gen's outputs changed");
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);
}

#[test]
fn identical_outputs_stop_the_rerun_early_cutoff() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    // A new input file that sorts into the same bytes: gen reruns, its output is unchanged.
    test.write("src/data.txt", "a\n");
    test.write("src/more.txt", "b\n");
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("⚡ upper cached");
    assert_eq!(runs(&test), ["gen"]);
}

#[test]
fn deleted_outputs_are_restored_without_running() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    let before = test.read("build/upper.txt");
    std::fs::remove_file(test.path().join("build/upper.txt")).unwrap();
    std::fs::write(test.path().join("build/count.txt"), "tampered").unwrap();
    test.run_with(&["run", "check"]).status(0);
    assert!(runs(&test).is_empty());
    assert_eq!(test.read("build/upper.txt"), before);
    assert_eq!(test.read("build/count.txt").trim(), "2");
}

#[test]
fn restored_outputs_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "tool" {
            inputs "tasks.kdl"
            outputs "bin/tool"
            run "mkdir -p bin" "printf '#!/bin/sh\necho hi\n' > bin/tool" "chmod 755 bin/tool"
        }
        "#,
    );
    test.run_with(&["run", "tool"]).status(0);
    std::fs::remove_dir_all(test.path().join("bin")).unwrap();
    test.run_with(&["run", "tool"])
        .status(0)
        .stdout_has("⚡ tool cached");
    let mode = std::fs::metadata(test.path().join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn force_dry_run_and_no_cache() {
    let test = pipeline();
    test.run_with(&["run", "check", "--dry-run"])
        .status(0)
        .stdout_has("▶ gen would run: no previous run")
        .stdout_has("dry run: 4 would run, 0 cached");
    assert!(runs(&test).is_empty(), "--dry-run executed something");
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    let plan = test
        .run_with(&["run", "check", "--dry-run", "--json"])
        .status(0);
    let statuses: Vec<String> = plan
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["status"].to_string())
        .collect();
    assert_eq!(statuses, ["\"cached\""; 4]);
    test.run_with(&["run", "check", "--force"])
        .status(0)
        .stdout_has("[gen] runs: forced");
    assert_eq!(runs(&test).len(), 4);
    test.run_with(&["run", "check", "--no-cache"]).status(0);
    assert_eq!(runs(&test).len(), 4);
}

#[test]
fn explain_names_the_changed_file() {
    let test = pipeline();
    test.run_with(&["explain", "gen"])
        .status(0)
        .stdout_has("gen: would run: no previous run");
    test.run_with(&["run", "check"]).status(0);
    test.run_with(&["explain", "gen"])
        .status(0)
        .stdout_has("gen: up to date");
    test.write("src/data.txt", "z\n");
    let run = test.run_with(&["explain", "gen"]).status(0);
    assert!(
        run.stdout
            .starts_with("gen: would run\n  src/data.txt changed ("),
        "{}",
        run.stdout
    );
    test.run_with(&["explain", "upper"])
        .status(0)
        .stdout_has("dep gen will run first");
}

#[test]
fn a_missing_literal_input_is_absent_until_it_is_created() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "fmt" { inputs "src.txt" "rustfmt.toml"; run "echo x >> counter" }
        "#,
    );
    test.write("src.txt", "a\n");
    test.run_with(&["run", "fmt"]).status(0).stdout_has("✓ fmt");
    test.run_with(&["run", "fmt"])
        .status(0)
        .stdout_has("⚡ fmt cached");
    assert_eq!(test.read("counter").lines().count(), 1);

    test.write("rustfmt.toml", "max_width = 100\n");
    test.run_with(&["explain", "fmt"])
        .status(0)
        .stdout_has("fmt: would run\n  rustfmt.toml added");
    test.run_with(&["run", "fmt"])
        .status(0)
        .stdout_has("[fmt] runs: rustfmt.toml added");
    assert_eq!(test.read("counter").lines().count(), 2);

    std::fs::remove_file(test.path().join("rustfmt.toml")).unwrap();
    test.run_with(&["run", "fmt"])
        .status(0)
        .stdout_has("⚡ fmt cached");
    assert_eq!(
        test.read("counter").lines().count(),
        2,
        "absent again: the first result"
    );
}

#[test]
fn failures_are_not_cached() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "flaky" { inputs "tasks.kdl"; run "echo x >> counter" "test -f ok" }
        "#,
    );
    test.run_with(&["run", "flaky"]).status(1);
    test.write("ok", "");
    test.run_with(&["run", "flaky"]).status(0);
    test.run_with(&["run", "flaky"])
        .status(0)
        .stdout_has("cached");
    assert_eq!(test.read("counter").lines().count(), 2);
}

#[test]
fn a_task_without_inputs_always_runs() {
    let test = Test::new().file("tasks.kdl", r#"task "t" { run "echo x >> counter" }"#);
    test.run_with(&["run", "t"]).status(0);
    test.run_with(&["run", "t"]).status(0);
    assert_eq!(test.read("counter").lines().count(), 2);
}

#[test]
fn env_inputs_are_part_of_the_key() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        env-inputs "MY_FLAG"
        task "t" { inputs "tasks.kdl"; run "echo x >> counter" }
        "#,
    );
    let run = |value: &str| {
        test.command(&["run", "t"])
            .env("MY_FLAG", value)
            .output()
            .unwrap()
    };
    run("1");
    run("1");
    let third = run("2");
    assert!(String::from_utf8_lossy(&third.stdout).contains("env MY_FLAG changed"));
    assert_eq!(test.read("counter").lines().count(), 2);
    // The value itself never reaches the cache.
    let db = std::fs::read(test.path().join(".clab/cache.db")).unwrap();
    assert!(
        !db.windows(b"MY_FLAG\":\"2".len())
            .any(|w| w == b"MY_FLAG\":\"2")
    );
}

#[test]
fn a_killed_run_leaves_a_usable_cache() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "fast" { inputs "tasks.kdl"; outputs "fast.txt"; run "echo fast >> counter; echo 1 > fast.txt" }
        task "slow" {
            deps "fast"
            inputs "tasks.kdl" "delay"
            outputs "slow.txt"
            run "echo slow >> counter; echo started > started; sleep $(cat delay); echo 2 > slow.txt"
        }
        "#,
    )
    .file("delay", "30");
    let mut child = test.command(&["run", "slow"]).spawn().expect("spawn");
    wait_for_file(&test.path().join("started"));
    child.kill().expect("SIGKILL clab");
    child.wait().unwrap();
    // The orphaned `sleep` of the killed run must not matter: finish the job properly.
    std::fs::remove_file(test.path().join("started")).unwrap();
    test.write("delay", "0");
    test.run_with(&["run", "slow"])
        .status(0)
        .stdout_has("⚡ fast cached");
    assert_eq!(test.read("slow.txt"), "2\n");
    assert_eq!(runs(&test), ["fast", "slow", "slow"]);
}

#[test]
fn a_garbage_cache_db_is_moved_aside_and_rebuilt() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    std::fs::write(
        test.path().join(".clab/cache.db"),
        b"this is not a database at all",
    )
    .unwrap();
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(test.path().join(format!(".clab/cache.db{suffix}"))).ok();
    }
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("warning: cache database");
    assert_eq!(runs(&test).len(), 4);
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 cached");
}

#[test]
fn two_processes_do_not_build_the_same_key_twice() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "slow" { inputs "tasks.kdl"; outputs "out.txt"; run "echo x >> counter; sleep 1; echo done > out.txt" }
        "#,
    );
    let spawn = || {
        test.command(&["run", "slow"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    assert!(a.status.success() && b.status.success());
    assert_eq!(
        test.read("counter").lines().count(),
        1,
        "the task ran twice"
    );
    assert_eq!(test.read("out.txt"), "done\n");
}

#[test]
fn github_step_summary_gets_a_table_of_the_run() {
    let test = pipeline();
    let summary = test.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let run = |test: &Test| {
        test.command(&["run", "check"])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap()
    };
    run(&test);
    run(&test);
    test.write("src/data.txt", "z\n");
    run(&test);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("earlier step\n### clab run"), "{text}");
    assert!(text.contains("| `gen` | ✅ ran |"), "{text}");
    assert!(text.contains("| src/data.txt changed |"), "{text}");
    assert!(text.contains("| `upper` | ⚡ cached |"), "{text}");
}

#[test]
fn cache_dir_override_stats_prune_clean_and_history() {
    let test = pipeline().env("CLAB_CACHE_DIR", "elsewhere");
    // `clab` alone lists the tasks of a project without `default`.
    test.run().status(0).stdout_has("Tasks:");
    test.run_with(&["run", "check"]).status(0);
    assert!(test.exists("elsewhere/cache.db"));
    assert!(!test.exists(".clab"));
    let run = test.run_with(&["cache", "stats"]).status(0);
    assert!(run.stdout.contains("entries:  4"), "{}", run.stdout);
    test.run_with(&["history"]).status(0).stdout_has("check");
    test.run_with(&["cache", "prune", "--max-size", "lots"])
        .status(2)
        .stderr_has("lots");
    test.run_with(&["cache", "prune", "--max-size", "0"])
        .status(0)
        .stdout_has("removed");
    test.run_with(&["cache", "clean"]).status(0);
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_lacks("cached");
}

#[test]
fn a_run_with_nothing_to_cache_keeps_its_history_without_the_database() {
    let test = pipeline().file(
        "tasks.kdl",
        r#"
            task "hi" { run "echo hi" }
            task "gen" {
                inputs "src/*.txt"
                outputs "build/sorted.txt"
                run "mkdir -p build" "sort src/*.txt > build/sorted.txt"
            }
            "#,
    );
    test.run_with(&["run", "hi"]).status(0);
    test.run_with(&["run", "hi", "--", "again"]).status(0);
    // A task without inputs looks nothing up: its history row is a line in the journal, and
    // cache.db is never opened (its WAL set-up and checkpoint cost more than `echo hi`).
    assert!(!test.exists(".clab/cache.db"));
    assert!(
        test.exists(".clab/.gitignore"),
        "the cache stays out of git"
    );
    let journal = || {
        std::fs::read_to_string(test.path().join(".clab/history.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(journal(), 2);
    // The next run that writes history imports the journal first, then adds its own row.
    test.run_with(&["run", "gen"]).status(0);
    assert_eq!(journal(), 0);
    test.run_with(&["run", "hi"]).status(0);
    let history = test.run_with(&["history"]).status(0);
    let targets: Vec<&str> = history
        .stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    assert_eq!(targets, ["hi", "gen", "hi", "hi"], "{}", history.stdout);
    assert_eq!(journal(), 0, "`clab history` imported the last one");
}

#[test]
fn a_full_history_journal_is_imported_by_the_run_that_fills_it() {
    let test = pipeline().file("tasks.kdl", r#"task "hi" { run "echo hi" }"#);
    test.run_with(&["run", "hi"]).status(0);
    // Runs that never open cache.db: the journal grows until one finds it full.
    let line = std::fs::read_to_string(test.path().join(".clab/history.jsonl")).unwrap();
    let lines = 256 * 1024 / line.len() + 1;
    let mut many = String::new();
    for i in 0..lines {
        many.push_str(&line.replace("\"id\":\"", &format!("\"id\":\"{i}x")));
    }
    test.write(".clab/history.jsonl", &many);
    assert!(!test.exists(".clab/cache.db"));
    test.run_with(&["run", "hi"]).status(0);
    assert!(
        test.exists(".clab/cache.db"),
        "the full journal was imported"
    );
    assert_eq!(test.read(".clab/history.jsonl"), "");
    let history = test.run_with(&["history", "-n", "100000"]).status(0);
    assert_eq!(
        history.stdout.lines().skip(1).count(),
        lines + 1,
        "every line is one run: {}",
        &history.stdout[..200]
    );
}

/// Files must be older than the racy-git margin (1 s) before their stats are trusted.
fn quiet_second() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

/// After a quiet second, one all-cached run writes the no-op snapshot and the next uses it.
fn arm_snapshot(test: &Test) {
    quiet_second();
    test.run_with(&["run", "check"]).status(0);
    test.run_with(&["run", "check", "--json"])
        .stdout_has("\"from_snapshot\":true");
}

/// A run that must take the normal path: the snapshot may not answer it.
fn run_without_snapshot(test: &Test) {
    test.run_with(&["run", "check", "--json"])
        .status(0)
        .stdout_lacks("\"from_snapshot\":true");
}

#[test]
fn a_quiet_no_op_is_answered_by_the_snapshot_and_every_change_falls_back() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);
    quiet_second();
    // All hits, nothing restored, every stat old enough: this run writes the snapshot.
    test.run_with(&["run", "check", "--json"])
        .status(0)
        .stdout_lacks("from_snapshot");
    test.run_with(&["run", "check", "--json"])
        .status(0)
        .stdout_has("\"from_snapshot\":true")
        .stdout_has(r#""task":"check","status":{"kind":"cached"}"#)
        .stdout_has("A\\nB"); // check's log, replayed
    test.run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached");
    assert!(runs(&test).is_empty());

    // A changed input: the normal run, and the task reruns.
    test.write("src/data.txt", "b\na\nc\n");
    run_without_snapshot(&test);
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);

    // A file added to an input directory.
    arm_snapshot(&test);
    test.write("src/more.txt", "d\n");
    run_without_snapshot(&test);
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);

    // A deleted output is restored, not taken on trust.
    arm_snapshot(&test);
    std::fs::remove_file(test.path().join("build/upper.txt")).unwrap();
    run_without_snapshot(&test);
    assert_eq!(test.read("build/upper.txt"), "A\nB\nC\nD\n");
    assert!(runs(&test).is_empty());

    // An ignore file above the inputs, a cleaned cache: never trusted.
    arm_snapshot(&test);
    test.write(".gitignore", "src/more.txt\n");
    run_without_snapshot(&test);
    // Without more.txt the inputs are those of an earlier run: restored from the cache.
    assert_eq!(test.read("build/sorted.txt"), "a\nb\nc\n");
    assert!(runs(&test).is_empty());
    arm_snapshot(&test);
    test.run_with(&["cache", "clean"]).status(0);
    run_without_snapshot(&test);
    assert_eq!(runs(&test), ["check", "count", "gen", "upper"]);
}

#[test]
fn a_no_op_vouches_for_outputs_in_the_tree_and_a_restore_without_their_blob_reruns() {
    let test = pipeline();
    test.run_with(&["run", "check"]).status(0);
    runs(&test);
    arm_snapshot(&test);
    // upper.txt's copy in the CAS is deleted; the file in the tree is as recorded.
    let upper = test.read("build/upper.txt");
    let mut deleted = 0;
    for shard in std::fs::read_dir(test.path().join(".clab/cas")).unwrap() {
        for blob in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let blob = blob.unwrap().path();
            if std::fs::read(&blob).unwrap() == upper.as_bytes() {
                std::fs::remove_file(&blob).unwrap();
                deleted += 1;
            }
        }
    }
    assert_eq!(deleted, 1);
    test.run_with(&["run", "check", "--json"])
        .status(0)
        .stdout_has("\"from_snapshot\":true");
    assert!(runs(&test).is_empty());
    // Once the file must be restored, the missing copy is a miss: `upper` runs again.
    std::fs::remove_file(test.path().join("build/upper.txt")).unwrap();
    run_without_snapshot(&test);
    assert_eq!(runs(&test), ["upper"]);
    assert_eq!(test.read("build/upper.txt"), upper);
}

/// `a` ← `c`, and `b` alone, each appending its name to `counter` when it really runs; `a`
/// writes its inputs' distinct lines, so some edits leave its output as it was.
fn three_tasks() -> Test {
    Test::new()
        .file("a/one.txt", "a1\n")
        .file("b/one.txt", "b1\n")
        .file("c/one.txt", "c1\n")
        .file(
            "tasks.kdl",
            r#"
            task "a" {
                inputs "a/*.txt"
                outputs "out/a.txt"
                run "echo a >> counter" "mkdir -p out" "sort -u a/*.txt > out/a.txt"
            }
            task "b" {
                inputs "b/*.txt"
                outputs "out/b.txt"
                run "echo b >> counter" "mkdir -p out" "cat b/*.txt > out/b.txt"
            }
            task "c" {
                deps "a"
                inputs "c/*.txt"
                outputs "out/c.txt"
                run "echo c >> counter" "cat out/a.txt c/*.txt > out/c.txt"
            }
            task "all" {
                deps "b" "c"
            }
            "#,
        )
}

/// Run `all` with `--json`; return how many nodes the no-op snapshot vouched for.
fn known_after_run(test: &Test) -> usize {
    let output = test.run_with(&["run", "all", "--json"]).status(0);
    let text = output.stdout;
    let Some(at) = text.find("\"snapshot_known\":") else {
        return 0;
    };
    text[at + "\"snapshot_known\":".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn after_one_change_only_the_changed_task_and_its_dependents_are_hashed_and_keyed() {
    let test = three_tasks();
    test.run_with(&["run", "all"]).status(0);
    assert_eq!(runs(&test), ["a", "b", "c"]);
    quiet_second();
    // All hits: the snapshot records every node.
    test.run_with(&["run", "all"]).status(0);
    test.run_with(&["run", "all", "--json"])
        .status(0)
        .stdout_has("\"from_snapshot\":true");

    // One leaf input changed: `b` alone is keyed (and runs); `a` and `c` are known.
    test.write("b/one.txt", "b2\n");
    assert_eq!(known_after_run(&test), 2);
    assert_eq!(runs(&test), ["b"]);
    assert_eq!(test.read("out/b.txt"), "b2\n");
    // Right after: `b`'s stats are too fresh to trust, so it is keyed again (a hit).
    assert_eq!(known_after_run(&test), 2);
    assert!(runs(&test).is_empty());

    // A same-size edit with the old mtime put back: the ctime tells. `a` and its dependent
    // `c` are keyed; both run (the digest `c` sees changed).
    quiet_second();
    test.run_with(&["run", "all"]).status(0);
    assert_no_repeated_checks(&test);
    let path = test.path().join("a/one.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    test.write("a/one.txt", "a9\n");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(known_after_run(&test), 1);
    assert_eq!(runs(&test), ["a", "c"]);
    assert_eq!(test.read("out/c.txt"), "a9\nc1\n");

    // Reverted: both are restored from the cache, nothing runs.
    test.write("a/one.txt", "a1\n");
    known_after_run(&test);
    assert!(runs(&test).is_empty());
    assert_eq!(test.read("out/c.txt"), "a1\nc1\n");

    // A new file matching a glob of a known task: its directory's stat tells.
    quiet_second();
    test.run_with(&["run", "all"]).status(0);
    assert_no_repeated_checks(&test);
    test.write("c/two.txt", "c2\n");
    assert_eq!(known_after_run(&test), 2);
    assert_eq!(runs(&test), ["c"]);
    assert_eq!(test.read("out/c.txt"), "a1\nc1\nc2\n");

    // A deleted input.
    quiet_second();
    test.run_with(&["run", "all"]).status(0);
    assert_no_repeated_checks(&test);
    std::fs::remove_file(test.path().join("c/two.txt")).unwrap();
    assert_eq!(known_after_run(&test), 2);
    // `c`'s inputs are those of an earlier run again: restored, not run.
    assert!(runs(&test).is_empty());
    assert_eq!(test.read("out/c.txt"), "a1\nc1\n");

    // A deleted output of a known task is restored, not taken on trust.
    quiet_second();
    test.run_with(&["run", "all"]).status(0);
    assert_no_repeated_checks(&test);
    std::fs::remove_file(test.path().join("out/b.txt")).unwrap();
    assert_eq!(known_after_run(&test), 2);
    assert!(runs(&test).is_empty());
    assert_eq!(test.read("out/b.txt"), "b2\n");
    // Each run after a change appended the changed nodes' checks: those the snapshot had
    // already (the ignore files above the inputs) were not written again.
    assert_no_repeated_checks(&test);
}

/// The no-op snapshot of `test` lists each check once.
fn assert_no_repeated_checks(test: &Test) {
    let dir = test.path().join(".clab");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("noop-")
        })
        .expect("a no-op snapshot");
    let text = std::fs::read_to_string(file).unwrap();
    let checks: Vec<&str> = text
        .lines()
        .skip(2)
        .take_while(|line| !line.starts_with("node ") && !line.starts_with("dirty "))
        .collect();
    assert!(checks.len() > 4, "{text}");
    let mut seen = std::collections::BTreeSet::new();
    for check in &checks {
        assert!(seen.insert(*check), "written twice: {check}\n{text}");
    }
}

#[test]
fn early_cutoff_holds_when_a_changed_task_writes_the_same_output() {
    let test = three_tasks();
    test.run_with(&["run", "all"]).status(0);
    runs(&test);
    quiet_second();
    test.run_with(&["run", "all"]).status(0);
    // A line `a` already had: `a` runs and writes the same bytes; `c` is keyed (its
    // dependency was), finds the same key, and does not run; `b` is known.
    test.write("a/one.txt", "a1\na1\n");
    assert_eq!(known_after_run(&test), 1);
    assert_eq!(runs(&test), ["a"]);
    assert_eq!(test.read("out/c.txt"), "a1\nc1\n");
}
