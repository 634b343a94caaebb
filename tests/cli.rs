//! Command-line conventions: `clab run TASK -- ARGS`, `clab` alone, completions, `.env`.

use crate::test::{Test, all_bytes_under};

const ECHO: &str = r#"
    task "prep" {
        run "echo prep >> prep.txt"
        inputs "in.txt"
    }
    task "show" {
        deps "prep"
        run "echo run >> count.txt" "printf '<%s>\\n' >> out.txt"
        inputs "in.txt"
    }
"#;

#[test]
fn arguments_after_a_double_dash_reach_the_last_command_quoted() {
    let test = Test::new().file("tasks.kdl", ECHO).file("in.txt", "x");
    test.run_with(&["run", "show", "--", "a b", "$(touch PWNED)", "--flag"])
        .status(0);
    assert_eq!(test.read("out.txt"), "<a b>\n<$(touch PWNED)>\n<--flag>\n");
    assert!(!test.exists("PWNED"), "an argument was run as shell code");
    // The dependency gets nothing.
    assert_eq!(test.read("prep.txt"), "prep\n");

    // The arguments are part of the key: the same ones hit, others run again.
    test.run_with(&["run", "show", "--", "a b", "$(touch PWNED)", "--flag"])
        .status(0)
        .stdout_has("0 ran");
    assert_eq!(test.read("count.txt"), "run\n");
    test.run_with(&["run", "show", "--", "other"])
        .status(0)
        .stdout_has("show");
    test.run_with(&["run", "show"]).status(0);
    assert_eq!(test.read("count.txt"), "run\nrun\nrun\n");
    assert_eq!(
        test.read("out.txt"),
        "<a b>\n<$(touch PWNED)>\n<--flag>\n<other>\n<>\n"
    );
    assert_eq!(test.read("prep.txt"), "prep\n");
}

#[test]
fn args_placeholder_puts_the_arguments_in_place() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "t" {
            run "printf '<%s>\\n' {{args}} end > out.txt"
        }
        task "u" {
            deps "t"
            run "printf '[%s]\\n' {{ args }} > u.txt"
        }
        "#,
    );
    test.run_with(&["run", "t", "--", "one", "two"]).status(0);
    assert_eq!(test.read("out.txt"), "<one>\n<two>\n<end>\n");
    test.run_with(&["run", "t"]).status(0);
    assert_eq!(test.read("out.txt"), "<end>\n");
    // Only the targets get the arguments; `{{args}}` is empty elsewhere.
    test.run_with(&["run", "u", "--", "x"]).status(0);
    assert_eq!(test.read("out.txt"), "<end>\n");
    assert_eq!(test.read("u.txt"), "[x]\n");
}

#[test]
fn arguments_for_a_target_without_commands_are_a_usage_error() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { run "true" }
        task "ci" { deps "a" }
        "#,
    );
    let run = test.run_with(&["run", "ci", "--", "-k", "slow"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .contains("arguments after `--` go to a task's commands, and `ci` runs none"),
        "{}",
        run.stderr
    );
}

#[test]
fn args_is_a_placeholder_of_run_lines_only() {
    let run = Test::new()
        .file(
            "tasks.kdl",
            r#"task "t" { run "true"; inputs "{{args}}"; }"#,
        )
        .run_with(&["check"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("args"), "{}", run.stderr);
}

#[test]
fn clab_alone_runs_default() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "a" { run "echo a >> count.txt"; }
        task "default" { deps "a"; }
        "#,
    );
    test.run_with(&[]).status(0).stdout_has("1 ran");
    assert_eq!(test.read("count.txt"), "a\n");
}

#[test]
fn clab_alone_without_default_lists_the_tasks() {
    let run = Test::new()
        .file(
            "tasks.kdl",
            r#"
            task "build" { description "Build it"; run "true"; }
            "#,
        )
        .run_with(&[])
        .status(0);
    assert!(run.stdout.starts_with("Tasks:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("build") && run.stdout.contains("Build it"));
    assert_eq!(run.stderr, "");
}

#[test]
fn clab_alone_without_a_project_says_how_to_make_one() {
    Test::new().run_with(&[]).status(2).stderr_has("clab init");
}

/// What the shell gets when it asks for completions at `clab ARGS…` (the last one being the
/// word under the cursor), as fish asks for them.
fn complete(test: &Test, words: &[&str]) -> String {
    let mut args = vec!["--", "clab"];
    args.extend(words);
    let output = test
        .command(&args)
        .env("COMPLETE", "fish")
        .output()
        .expect("run clab");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn task_names_complete_with_their_descriptions() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "build" { description "Build it"; run "true"; }
        task "bench" { run "true"; }
        task "test" { run "true"; }
        "#,
    );
    let all = complete(&test, &["run", ""]);
    let names: Vec<&str> = all
        .lines()
        .filter(|l| !l.starts_with('-'))
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["build", "bench", "test"], "{all}");
    assert!(all.contains("build\tBuild it"), "{all}");
    assert_eq!(complete(&test, &["run", "bu"]), "build\tBuild it\n");
    for command in ["watch", "explain", "graph"] {
        assert!(
            complete(&test, &[command, "te"]).starts_with("test"),
            "{command}"
        );
    }
    // Outside a project, nothing (and no error in the shell's line).
    assert_eq!(complete(&Test::new(), &["run", "b"]), "");
}

#[test]
fn completions_print_the_dynamic_registration_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let run = Test::new().run_with(&["completions", shell]).status(0);
        assert!(
            run.stdout.contains(r#"COMPLETE="#) && run.stdout.contains("clab"),
            "{shell}: {}",
            run.stdout
        );
    }
}

const DOTENV: &str = r#"
    dotenv ".env"
    task "greet" {
        run "echo run >> count.txt; printf '%s' \"$GREETING\" > greeting.txt"
        inputs "in.txt"
    }
"#;

#[test]
fn dotenv_variables_reach_commands_enter_the_key_and_are_never_stored() {
    let test = Test::new()
        .file("tasks.kdl", DOTENV)
        .file("in.txt", "x")
        .file(".env", "# local settings\nGREETING=sekrit-one\n");
    test.run_with(&["run", "greet"]).status(0);
    assert_eq!(test.read("greeting.txt"), "sekrit-one");
    test.run_with(&["run", "greet"])
        .status(0)
        .stdout_has("0 ran");
    test.write(".env", "GREETING=sekrit-two\n");
    test.run_with(&["run", "greet"])
        .status(0)
        .stdout_has("GREETING");
    assert_eq!(test.read("greeting.txt"), "sekrit-two");
    assert_eq!(test.read("count.txt"), "run\nrun\n");
    let stored = all_bytes_under(&test.path().join(".clab"));
    for value in ["sekrit-one", "sekrit-two"] {
        assert!(
            !stored.windows(value.len()).any(|w| w == value.as_bytes()),
            "`{value}` is stored under .clab/"
        );
    }
    // The caller's environment wins over `.env`.
    test.command(&["run", "greet"])
        .env("GREETING", "from-env")
        .output()
        .expect("run clab");
    assert_eq!(test.read("greeting.txt"), "from-env");
}

#[test]
fn a_missing_dotenv_file_adds_nothing_and_a_bad_one_points_at_its_line() {
    let test = Test::new().file("tasks.kdl", DOTENV).file("in.txt", "x");
    test.run_with(&["run", "greet"]).status(0);
    assert_eq!(test.read("greeting.txt"), "");
    test.write(".env", "GREETING=ok\nnot a line\n");
    let run = test.run_with(&["run", "greet"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("clab::tasks::dotenv"), "{}", run.stderr);
    assert!(run.stderr.contains("cannot load `.env`"), "{}", run.stderr);
    assert!(run.stderr.contains("not a line"), "{}", run.stderr);
}
