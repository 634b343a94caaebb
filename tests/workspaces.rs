//! Workspaces (issue 17): members listed in the root tasks.kdl, one graph over their tasks,
//! `^build` from the ecosystems' manifests, targets at the root, inside a member and as
//! `member:task`, `--filter` and `--since`.

use std::process::Command;

use crate::test::Test;

/// A member's tasks: `build` after its dependencies' builds, `test` after its own build;
/// each appends its name to `order` at the root when it runs.
fn member_tasks(name: &str) -> String {
    format!(
        r#"
        task "build" {{
            deps "^build"
            inputs "src/**"
            outputs "out/{name}.txt"
            run "mkdir -p out && cp src/{name}.txt out/{name}.txt" "echo build-{name} >> {{{{root}}}}/order"
        }}
        task "test" {{
            deps "build"
            inputs "src/**"
            run "echo test-{name} >> {{{{root}}}}/order"
        }}
        "#
    )
}

/// `root` with three uv members: packages/core, packages/lib (uses core), apps/cli (uses lib).
fn uv_workspace() -> Test {
    let mut test = Test::new()
        .file(
            "tasks.kdl",
            r#"
            members "packages/*" "apps/*"
            task "lint" { run "echo lint-root >> order" }
            "#,
        )
        .file(
            "pyproject.toml",
            r#"
            [tool.uv.workspace]
            members = ["packages/*", "apps/*"]
            "#,
        );
    for (dir, name, deps) in [
        ("packages/core", "core", ""),
        ("packages/lib", "lib", "demo-core"),
        ("apps/cli", "cli", "demo-lib"),
    ] {
        let sources = if deps.is_empty() {
            String::new()
        } else {
            format!("[tool.uv.sources]\n{deps} = {{ workspace = true }}\n")
        };
        let dependencies = if deps.is_empty() {
            String::new()
        } else {
            format!("\"{deps}>=0.1\"")
        };
        test = test
            .file(&format!("{dir}/tasks.kdl"), &member_tasks(name))
            .file(&format!("{dir}/src/{name}.txt"), name)
            .file(
                &format!("{dir}/pyproject.toml"),
                &format!(
                    "[project]\nname = \"demo-{name}\"\ndependencies = [{dependencies}]\n{sources}"
                ),
            );
    }
    test
}

/// The lines of `order`, then empties it.
fn order(test: &Test) -> Vec<String> {
    let lines = test.read("order").lines().map(str::to_owned).collect();
    test.write("order", "");
    lines
}

/// `a` comes before `b` in `lines`.
#[track_caller]
fn before(lines: &[String], a: &str, b: &str) {
    let at = |x: &str| {
        lines
            .iter()
            .position(|l| l == x)
            .unwrap_or_else(|| panic!("`{x}` did not run: {lines:?}"))
    };
    assert!(at(a) < at(b), "`{a}` ran after `{b}`: {lines:?}");
}

fn git(test: &Test, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(test.path())
        .args([
            "-c",
            "user.name=clab",
            "-c",
            "user.email=clab@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git is installed");
    assert!(output.status.success(), "git {args:?}: {output:?}");
}

#[test]
fn members_are_listed_as_member_task() {
    let test = uv_workspace();
    let run = test.run_with(&["list"]).status(0);
    assert_eq!(
        run.stdout,
        "Tasks:\n    lint        # not cached: no inputs\n\
         cli (apps/cli; depends on lib):\n    \
         cli:build   # after ^build\n    cli:test    # after build\n\
         core (packages/core):\n    \
         core:build  # after ^build\n    core:test   # after build\n\
         lib (packages/lib; depends on core):\n    \
         lib:build   # after ^build\n    lib:test    # after build\n"
    );
    let json = test.run_with(&["graph", "--format", "json"]).status(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let lib = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "lib:build")
        .unwrap();
    assert_eq!(lib["member"], "lib");
    assert_eq!(lib["deps"], serde_json::json!(["core:build"]));
    assert_eq!(lib["inputs"], serde_json::json!(["packages/lib/src/**"]));
    assert_eq!(doc["members"][2]["deps"], serde_json::json!(["core"]));
    test.run_with(&["graph"])
        .status(0)
        .stdout_has("subgraph \"cluster_lib\" {")
        .stdout_has("\"core:build\" -> \"lib:build\";");
}

#[test]
fn caret_build_follows_uv_workspace_sources_and_runs_in_each_member() {
    let test = uv_workspace();
    test.run_with(&["run", "test"])
        .status(0)
        .stdout_has("6 tasks: 6 ran");
    let lines = order(&test);
    before(&lines, "build-core", "build-lib");
    before(&lines, "build-lib", "build-cli");
    before(&lines, "build-core", "test-core");
    // The root's own `lint` is not `test`.
    assert!(!lines.contains(&"lint-root".to_owned()), "{lines:?}");
    // Commands ran in the member's directory, outputs went there.
    assert_eq!(test.read("packages/lib/out/lib.txt"), "lib\n");
    // An unchanged workspace reruns nothing.
    test.run_with(&["run", "test"])
        .status(0)
        .stdout_has("6 tasks: 0 ran, 6 cached");
    assert!(order(&test).is_empty());
    // A change in lib reruns lib and what builds on it, not core; cli's test stays cached
    // because cli's build wrote the same bytes (early cutoff).
    test.write("packages/lib/src/lib.txt", "lib 2");
    test.run_with(&["run", "test"])
        .status(0)
        .stdout_has("3 ran, 3 cached");
    let lines = order(&test);
    assert_eq!(lines, ["build-lib", "test-lib", "build-cli"]);
}

#[test]
fn caret_build_follows_cargo_path_dependencies() {
    let test = Test::new()
        .file("tasks.kdl", r#"members "crates/*""#)
        .file(
            "Cargo.toml",
            r#"
            [workspace]
            members = ["crates/*"]
            [workspace.dependencies]
            base = { path = "crates/base" }
            "#,
        )
        .file("crates/base/Cargo.toml", "[package]\nname = \"base\"\n")
        .file("crates/base/tasks.kdl", &member_tasks("base"))
        .file("crates/base/src/base.txt", "base")
        .file(
            "crates/mid/Cargo.toml",
            "[package]\nname = \"mid\"\n[dependencies]\nbase = { workspace = true }\n",
        )
        .file("crates/mid/tasks.kdl", &member_tasks("mid"))
        .file("crates/mid/src/mid.txt", "mid")
        // `top` has no tasks.kdl: a Cargo package `^build` passes through.
        .file(
            "crates/top/Cargo.toml",
            "[package]\nname = \"top\"\n[dev-dependencies]\nmid = { path = \"../mid\" }\n",
        )
        .file(
            "crates/app/Cargo.toml",
            "[package]\nname = \"app\"\n[build-dependencies]\ntop = { path = \"../top\" }\n",
        )
        .file("crates/app/tasks.kdl", &member_tasks("app"))
        .file("crates/app/src/app.txt", "app");
    test.run_with(&["run", "app:build"])
        .status(0)
        .stdout_has("3 tasks: 3 ran");
    let lines = order(&test);
    assert_eq!(lines, ["build-base", "build-mid", "build-app"]);
}

#[test]
fn caret_build_follows_npm_workspaces() {
    let test = Test::new()
        .file("tasks.kdl", r#"members "packages/*""#)
        .file(
            "package.json",
            r#"{ "name": "root", "private": true, "workspaces": ["packages/*"] }"#,
        )
        .file(
            "packages/ui/package.json",
            r#"{ "name": "@acme/ui", "version": "1.0.0" }"#,
        )
        .file("packages/ui/tasks.kdl", &member_tasks("ui"))
        .file("packages/ui/src/ui.txt", "ui")
        .file(
            "packages/web/package.json",
            r#"{ "name": "@acme/web", "dependencies": { "@acme/ui": "workspace:*", "left-pad": "1" } }"#,
        )
        .file("packages/web/tasks.kdl", &member_tasks("web"))
        .file("packages/web/src/web.txt", "web")
        .file(
            "packages/docs/package.json",
            r#"{ "name": "@acme/docs", "devDependencies": { "@acme/web": "^1.0.0" } }"#,
        )
        .file("packages/docs/tasks.kdl", &member_tasks("docs"))
        .file("packages/docs/src/docs.txt", "docs");
    test.run_with(&["run", "build"])
        .status(0)
        .stdout_has("3 tasks: 3 ran");
    assert_eq!(order(&test), ["build-ui", "build-web", "build-docs"]);
}

#[test]
fn targets_at_the_root_inside_a_member_and_qualified() {
    let test = uv_workspace();
    // Inside a member (or below its directory) bare names are its tasks.
    test.write("packages/lib/src/deep/.keep", "");
    test.run_with(&["-C", "packages/lib/src/deep", "run", "test"])
        .status(0)
        .stdout_has("3 tasks: 3 ran");
    let lines = order(&test);
    assert_eq!(lines, ["build-core", "build-lib", "test-lib"]);
    // `member:task` from anywhere; the root's as `//:task`.
    test.run_with(&["-C", "packages/core", "run", "cli:build", "//:lint"])
        .status(0)
        .stdout_has("4 tasks: 2 ran, 2 cached");
    let mut lines = order(&test);
    lines.sort();
    assert_eq!(lines, ["build-cli", "lint-root"]);
    // A name the member lacks points at the root's.
    test.run_with(&["-C", "apps/cli", "run", "lint"])
        .status(2)
        .stderr_has("`cli` has no task `lint`; the root's is `//:lint`");
    // A typo at the root gets a suggestion; an unknown member in `deps` too.
    test.run_with(&["run", "tset"])
        .status(2)
        .stderr_has("did you mean `test`?");
    test.write(
        "apps/cli/tasks.kdl",
        r#"task "build" { deps "lbi:build"; run "true" }"#,
    );
    test.run_with(&["run", "build"])
        .status(2)
        .stderr_has("task `cli:build` depends on unknown task `lbi:build`")
        .stderr_has("did you mean `lib`?");
}

#[test]
fn filter_selects_members_with_dependents_or_dependencies() {
    let test = uv_workspace();
    test.run_with(&["run", "test", "--filter", "lib"])
        .status(0)
        .stdout_has("3 tasks: 3 ran");
    assert_eq!(order(&test), ["build-core", "build-lib", "test-lib"]);
    test.run_with(&["run", "test", "--filter", "lib..."])
        .status(0);
    let mut lines = order(&test);
    lines.sort();
    assert_eq!(lines, ["build-cli", "test-cli"]);
    test.run_with(&["run", "test", "--filter", "...lib"])
        .status(0);
    assert_eq!(order(&test), ["test-core"]);
    test.run_with(&["run", "lint", "--filter", "core"])
        .status(0)
        .stdout_has("0 tasks");
    test.run_with(&["run", "test", "--filter", "lbi"])
        .status(2)
        .stderr_has("`--filter lbi` matches no member")
        .stderr_has("did you mean `lib`?");
    // Outside a workspace the flags are an error, not ignored.
    Test::new()
        .file("tasks.kdl", r#"task "test" { run "true" }"#)
        .args(&["run", "test", "--since", "HEAD"])
        .run()
        .status(2)
        .stderr_has("`--since` selects workspace members, and this project has none");
}

#[test]
fn since_head_runs_the_changed_member_and_its_dependents_only() {
    let test = uv_workspace().file(".gitignore", ".clab/\norder\nout/\n");
    git(&test, &["init", "-q"]);
    git(&test, &["add", "."]);
    git(&test, &["commit", "-q", "-m", "start"]);
    // Nothing changed since HEAD: nothing is selected, nothing runs.
    test.run_with(&["run", "test", "--since", "HEAD"])
        .status(0)
        .stdout_has("0 tasks");
    assert!(order(&test).is_empty());
    test.run_with(&["run", "test"]).status(0);
    order(&test);

    test.write("packages/lib/src/lib.txt", "lib changed");
    test.run_with(&["run", "test", "--since", "HEAD"])
        .status(0)
        .stdout_has("⚡ core:build cached");
    let mut lines = order(&test);
    lines.sort();
    // cli's test is selected but cached: cli's build wrote the same bytes.
    assert_eq!(lines, ["build-cli", "build-lib", "test-lib"]);
    // Run again: the same members are selected, and now cached.
    test.run_with(&["run", "test", "--since", "HEAD"])
        .status(0)
        .stdout_has("0 ran");
    // An untracked file counts as a change too.
    git(&test, &["commit", "-q", "-am", "lib changed"]);
    test.write("apps/cli/src/new.txt", "new");
    test.run_with(&["run", "test", "--since", "HEAD", "--dry-run"])
        .status(0)
        .stdout_has("▶ cli:build would run")
        .stdout_lacks("lib:test");
    test.run_with(&["run", "test", "--since", "no-such-ref"])
        .status(2)
        .stderr_has("cannot list the files changed since `no-such-ref`");
}

#[test]
fn member_dependency_cycle() {
    let test = Test::new()
        .file("tasks.kdl", r#"members "p/*""#)
        .file("p/a/tasks.kdl", r#"task "build" { run "true" }"#)
        .file(
            "p/a/package.json",
            r#"{ "name": "a", "dependencies": { "c": "*" } }"#,
        )
        .file("p/b/tasks.kdl", "uses \"a\"\n")
        .file(
            "p/c/tasks.kdl",
            "task \"build\" { deps \"^build\"; run \"true\" }\n",
        )
        .file(
            "p/c/package.json",
            r#"{ "name": "c", "dependencies": { "b": "workspace:*" } }"#,
        )
        .file("p/b/package.json", r#"{ "name": "b" }"#);
    let run = test.run_with(&["check"]).status(2);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn broken_manifest_points_at_the_file() {
    let test = uv_workspace().file(
        "packages/lib/pyproject.toml",
        r#"
        [project]
        name = "demo-lib"
        dependencies = "demo-core"
        "#,
    );
    let run = test.run_with(&["list"]).status(2);
    insta::assert_snapshot!(run.stderr);
}
