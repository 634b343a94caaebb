//! Snapshots of the diagnostics `clab check` prints for broken tasks.kdl files.

use crate::test::Test;

#[track_caller]
fn check(tasks: &str) -> String {
    let run = Test::new()
        .file("tasks.kdl", tasks)
        .args(&["check"])
        .run()
        .status(2);
    run.stderr
}

#[test]
fn cycle() {
    insta::assert_snapshot!(check(
        r#"
        task "a" { deps "b"; run "true" }
        task "b" { deps "c"; run "true" }
        task "c" { deps "a"; run "true" }
        "#
    ));
}

#[test]
fn unknown_dependency_with_a_close_name() {
    insta::assert_snapshot!(check(
        r#"
        task "build" { run "cargo build" }
        task "test" {
            deps "biuld"
            run "cargo test"
        }
        "#
    ));
}

#[test]
fn unknown_property() {
    insta::assert_snapshot!(check(
        r#"
        task "cov" {
            run "pytest"
            coverage "build/coverage.xml" fail-undr=80
        }
        "#
    ));
}

#[test]
fn kdl_syntax_error() {
    insta::assert_snapshot!(check(
        r#"
        task "a" {
            run "echo "unbalanced"
        }
        "#
    ));
}

#[test]
fn several_problems_at_once() {
    insta::assert_snapshot!(check(
        r#"
        task "a" { run "x"; timeout "soon"; retry "twice" }
        task "a" { rnu "y" }
        task "g" {
            run "x"
            llm { prompt "hi"; output "out.txt" }
        }
        "#
    ));
}

#[test]
fn a_for_each_name_that_is_not_utf8_issue_18() {
    use std::os::unix::ffi::OsStrExt;
    let test = Test::new().file(
        "tasks.kdl",
        r#"task "count" { for-each "src/*.txt"; run "wc -c {{file}}" }"#,
    );
    std::fs::create_dir_all(test.path().join("src")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    std::fs::write(test.path().join("src").join(name), "x").unwrap();
    insta::assert_snapshot!(test.args(&["check"]).run().status(2).stderr);
}

#[test]
fn a_file_name_in_arithmetic_issue_18() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"task "n" { for-each "*.n"; run "echo $(( {{stem}} + 1 ))" }"#,
    );
    std::fs::write(test.path().join("a[$(id)].n"), "x").unwrap();
    insta::assert_snapshot!(test.args(&["check"]).run().status(2).stderr);
}

#[test]
fn check_accepts_a_valid_file() {
    Test::new()
        .file("tasks.kdl", r#"task "a" { run "true" }"#)
        .args(&["check"])
        .run()
        .status(0)
        .stdout_has("tasks.kdl: 1 task, 1 node, no problems");
}

#[test]
fn a_remote_url_of_an_unknown_scheme_in_the_cache_block() {
    insta::assert_snapshot!(check(
        r#"
        cache {
            remote "htp://cache.example.com/clab"
        }
        task "a" { run "true" }
        "#
    ));
}

#[test]
fn a_trusted_key_that_is_not_a_public_key() {
    insta::assert_snapshot!(check(
        r#"
        cache {
            remote "https://cache.example.com/clab"
            trusted-key "ed25519:Uq0oAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw="
            trusted-key "ed25519:not-a-key"
        }
        task "a" { run "true" }
        "#
    ));
}
