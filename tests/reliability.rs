//! Issue 18, end to end: hostile file names, escaped processes, a killed clab, temp files,
//! symbolic links out of the project, secrets in stderr, an unreadable user config, tasks
//! that write their inputs, long logs — and the two suites that must keep holding: killing
//! clab at random points of a run, a store and a restore (crash consistency), and four runs
//! at once on one project (concurrency). docs/reliability.md quotes their figures.
//!
//! Every test that starts processes kills what it started when it ends, passed or not
//! ([`Reaper`]).

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::test::{Test, alive, wait_for_file};

/// Kills the processes it holds when dropped, so a failed assertion leaves nothing running
/// — each only if it is still the process it held (same pid *and* start time): pids are
/// reused, and a test must never kill a stranger.
#[derive(Default)]
struct Reaper(Vec<(u32, String)>);

impl Reaper {
    fn hold(&mut self, pid: u32) -> u32 {
        if let Some(started) = start_time(pid) {
            self.0.push((pid, started));
        }
        pid
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, started) in &self.0 {
            if start_time(*pid).as_ref() == Some(started) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`), while it runs.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| (*s).to_owned()))?
}

/// Wait up to `limit` for every pid in `pids` to be gone; the ones still alive.
fn survivors(pids: &[u32], limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid written into `name` in the project.
fn pid_file(test: &Test, name: &str) -> u32 {
    wait_for_file(&test.path().join(name))
        .trim()
        .parse()
        .expect("a pid")
}

/// Send `signal` to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

// ── 1. placeholders: a file name is data, never code ────────────────────────────────────────

#[test]
fn a_file_name_is_data_never_code_issue_18() {
    let names = [
        "$(touch PWNED1).txt",
        "`touch PWNED2`.txt",
        "a; touch PWNED3.txt",
        "a & touch PWNED4 &.txt",
        "new\nline; touch PWNED5.txt",
        "quote' ; touch PWNED6; '.txt",
        "dq\" ; touch PWNED7; \".txt",
        "back\\slash.txt",
        "[id].txt",
        "sp ace.txt",
        "plain-name_1.txt",
    ];
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "count" {
            for-each "src/*.txt"
            inputs "{{file}}"
            run "wc -c < \"{{file}}\" > /dev/null && printf '%s|' '{{name}}' >> seen.txt && cat {{file}} >> ran.txt"
        }
        "#,
    );
    std::fs::create_dir_all(test.path().join("src")).unwrap();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(test.path().join("src").join(name), format!("{i}\n")).unwrap();
    }
    test.run_with(&["run", "count", "-q"]).status(0);
    let pwned: Vec<String> = std::fs::read_dir(test.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("PWNED"))
        .collect();
    assert!(pwned.is_empty(), "a file name ran as code: {pwned:?}");
    let seen = test.read("seen.txt");
    for name in names {
        assert!(
            seen.contains(&format!("{name}|")),
            "{name:?} not seen: {seen:?}"
        );
    }
    assert_eq!(test.read("ran.txt").lines().count(), names.len());
    // Each node found its own input: all cached, and a change reruns exactly its node.
    test.run_with(&["run", "count", "-q"])
        .status(0)
        .stdout_has(&format!("{} cached", names.len()));
    std::fs::write(test.path().join("src/[id].txt"), "changed\n").unwrap();
    std::fs::write(test.path().join("src/back\\slash.txt"), "changed too\n").unwrap();
    test.run_with(&["run", "count", "-q"])
        .status(0)
        .stdout_has("2 ran");
}

#[test]
fn arguments_are_data_never_code_issue_18() {
    let test = Test::new().file(
        "tasks.kdl",
        r#"task "echo" { run "printf '[%s]' {{args}} > plain.txt; printf '%s' \"{{args}}\" > quoted.txt" }"#,
    );
    test.run_with(&[
        "run",
        "echo",
        "-q",
        "--",
        "a b",
        "$(touch PWNED)",
        "`touch PWNED`",
        "-k",
    ])
    .status(0);
    assert!(!test.exists("PWNED"), "an argument ran as code");
    assert_eq!(
        test.read("plain.txt"),
        "[a b][$(touch PWNED)][`touch PWNED`][-k]"
    );
    assert_eq!(
        test.read("quoted.txt"),
        "a b $(touch PWNED) `touch PWNED` -k"
    );
}

#[test]
fn a_file_name_that_is_not_utf8_is_refused_issue_18() {
    use std::os::unix::ffi::OsStrExt;
    let test = Test::new().file(
        "tasks.kdl",
        r#"task "count" { for-each "src/*.txt"; run "wc -c {{file}}" }"#,
    );
    std::fs::create_dir_all(test.path().join("src")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    std::fs::write(test.path().join("src").join(name), "x").unwrap();
    test.run_with(&["run", "count"])
        .status(2)
        .stderr_has("whose name is not UTF-8")
        .stderr_has("clab::tasks::unnamable_file");
}

// ── 2. interrupts and escaped processes ──────────────────────────────────────────────────────

#[test]
fn an_escaped_process_does_not_hold_up_the_run_issue_18() {
    let mut reaper = Reaper::default();
    let test = Test::new().file(
        "tasks.kdl",
        r#"task "t" { run "setsid sleep 12 & echo $! > esc.pid; sleep 0.5; echo ok" }"#,
    );
    let started = Instant::now();
    test.run_with(&["run", "t"])
        .status(0)
        .stdout_has("ok")
        .stdout_has("left 1 process running outside its process group");
    let esc = reaper.hold(pid_file(&test, "esc.pid"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(survivors(&[esc], Duration::from_secs(2)).is_empty());
}

#[test]
fn ctrl_c_ends_the_run_within_the_grace_period_issue_18() {
    let mut reaper = Reaper::default();
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "t" {
            run "setsid sh -c 'trap \"\" INT TERM; echo $$ > esc.pid; sleep 30; sleep 30' & sleep 30 & echo $! > bg.pid; wait"
        }
        "#,
    );
    for sig in ["INT", "TERM"] {
        let _ = std::fs::remove_file(test.path().join("esc.pid"));
        let _ = std::fs::remove_file(test.path().join("bg.pid"));
        let mut child = test
            .command(&["run", "t"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn clab");
        reaper.hold(child.id());
        let esc = reaper.hold(pid_file(&test, "esc.pid"));
        let bg = reaper.hold(pid_file(&test, "bg.pid"));
        let sent = Instant::now();
        signal(child.id(), sig);
        let exit = child.wait().expect("wait");
        // The grace period is 3 s; the escapee ignores both signals.
        assert!(
            sent.elapsed() < Duration::from_secs(6),
            "{sig}: {:?}",
            sent.elapsed()
        );
        assert_eq!(exit.code(), Some(130), "{sig}");
        assert!(
            survivors(&[esc, bg], Duration::from_secs(2)).is_empty(),
            "{sig}: a task outlived the run"
        );
    }
}

/// The watchdog of the clab with pid `clab`, once it has started (it starts 100 ms into a
/// run: a kill sooner is left to the next run's reaping).
fn watchdog_of(clab: u32) -> Option<u32> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = find_watchdog(clab) {
            return Some(pid);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child of `clab` running the watchdog script, if there is one now.
fn find_watchdog(clab: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(clab) && String::from_utf8_lossy(&cmdline).contains("clab-watchdog") {
            return Some(pid);
        }
    }
    None
}

const LEAVES_THREE: &str = r#"
task "t" {
    run "sleep 30 & echo $! > bg.pid; setsid sleep 30 & echo $! > esc.pid; (setsid sh -c 'echo $$ > daemon.pid; exec sleep 30' > /dev/null 2>&1 &); wait"
}
task "other" { run "true" }
"#;

/// Start `clab run t` in `test` and wait until its three processes are up.
fn start_three(test: &Test, reaper: &mut Reaper) -> (Child, Vec<u32>) {
    for name in ["bg.pid", "esc.pid", "daemon.pid"] {
        let _ = std::fs::remove_file(test.path().join(name));
    }
    let child = test
        .command(&["run", "t"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn clab");
    reaper.hold(child.id());
    let pids = ["bg.pid", "esc.pid", "daemon.pid"]
        .iter()
        .map(|name| reaper.hold(pid_file(test, name)))
        .collect();
    (child, pids)
}

#[test]
fn after_kill_9_of_clab_no_task_outlives_it_issue_18() {
    let mut reaper = Reaper::default();
    let test = Test::new().file("tasks.kdl", LEAVES_THREE);
    let (mut child, pids) = start_three(&test, &mut reaper);
    reaper.hold(watchdog_of(child.id()).expect("clab runs a watchdog"));
    child.kill().expect("SIGKILL clab");
    child.wait().expect("wait");
    // The watchdog sees clab's end and kills the rest.
    assert_eq!(survivors(&pids, Duration::from_secs(5)), Vec::<u32>::new());
}

#[test]
fn the_next_run_reaps_what_a_killed_clab_left_issue_18() {
    let mut reaper = Reaper::default();
    let test = Test::new().file("tasks.kdl", LEAVES_THREE);
    let (mut child, pids) = start_three(&test, &mut reaper);
    // The watchdog dies first (as if the whole tree had been killed but the tasks' own).
    let dog = watchdog_of(child.id()).expect("clab runs a watchdog");
    reaper.hold(dog);
    signal(dog, "KILL");
    child.kill().expect("SIGKILL clab");
    child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        survivors(&pids, Duration::ZERO).len(),
        3,
        "nothing killed them yet"
    );
    let run = test.run_with(&["run", "other"]).status(0);
    assert!(
        run.stdout
            .contains("left running by a clab that did not finish"),
        "{}",
        run.stdout
    );
    assert_eq!(survivors(&pids, Duration::from_secs(2)), Vec::<u32>::new());
    // The slots stay for the next clab, holding no record (empty, or blanked: line ends).
    let slots: Vec<String> = std::fs::read_dir(test.path().join(".clab/processes"))
        .expect("the slots")
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!slots.is_empty());
    assert!(
        slots.iter().all(|text| text.bytes().all(|b| b == b'\n')),
        "no record is left: {slots:?}"
    );
}

// ── 3. temp files ────────────────────────────────────────────────────────────────────────────

#[test]
fn temp_files_never_match_an_output_glob_and_stale_ones_are_swept_issue_18() {
    let test = Test::new()
        .file("in.txt", "in\n")
        .file(
            "tasks.kdl",
            r#"task "gen" { inputs "in.txt"; outputs "out/**"; run "mkdir -p out && cp in.txt out/a.txt" }"#,
        )
        .file("out/.clab-tmp-partial", "half a restore\n")
        .file("out/sub/.clab-restore-old", "half a restore\n");
    // One is stale (a killed clab's), one fresh (a live writer's, maybe).
    let old = std::process::Command::new("touch")
        .args(["-d", "2 hours ago", "out/sub/.clab-restore-old"])
        .current_dir(test.path())
        .status()
        .unwrap();
    assert!(old.success());
    test.run_with(&["run", "gen", "-q"]).status(0);
    // Stored: the output, not the temp files. Restored: the output only.
    std::fs::remove_dir_all(test.path().join("out")).unwrap();
    test.run_with(&["run", "gen", "-q"])
        .status(0)
        .stdout_has("1 cached");
    let mut restored: Vec<String> = walk(&test.path().join("out"));
    restored.sort();
    assert_eq!(restored, ["a.txt"]);
    // The sweep runs beside the run: the stale one went, the fresh one was left.
    test.write("out/.clab-tmp-fresh", "live\n");
    test.write("out/sub/.clab-tmp-stale", "dead\n");
    let old = std::process::Command::new("touch")
        .args(["-d", "2 hours ago", "out/sub/.clab-tmp-stale"])
        .current_dir(test.path())
        .status()
        .unwrap();
    assert!(old.success());
    test.run_with(&["run", "gen", "-q"]).status(0);
    let until = Instant::now() + Duration::from_secs(5);
    while test.exists("out/sub/.clab-tmp-stale") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!test.exists("out/sub/.clab-tmp-stale"));
    assert!(test.exists("out/.clab-tmp-fresh"));
}

/// Every file below `dir`, relative, `/`-separated.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found
}

// ── 4. smaller holes ─────────────────────────────────────────────────────────────────────────

#[test]
fn a_glob_base_symlinked_out_of_the_project_is_refused_issue_18() {
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("secret.txt"), "secret\n").unwrap();
    let test = Test::new().file("tasks.kdl", r#"task "t" { inputs "srcl/**"; run "true" }"#);
    std::os::unix::fs::symlink(elsewhere.path(), test.path().join("srcl")).unwrap();
    test.run_with(&["run", "t"])
        .status(1)
        .stdout_has("input `srcl/**` is outside the project root");
}

#[test]
fn the_command_providers_stderr_is_scrubbed_issue_18() {
    let key = "sk-proj-AbCdEfGh1234567890XyZqwerty";
    let test = Test::new().env("OPENAI_API_KEY", key).file(
        "tasks.kdl",
        r#"
        task "gen" {
            llm {
                provider "command"
                command "cat > /dev/null; echo \"debug: key is $OPENAI_API_KEY\" >&2; echo \"starts ${OPENAI_API_KEY%%1234*}\" >&2; exit 3"
                prompt "q"
                output "o.txt"
                extract "text"
            }
        }
        "#,
    );
    let run = test.run_with(&["run", "gen"]).status(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("debug: key is ****"), "{all}");
    assert!(
        !all.contains("AbCdEf"),
        "a part of the key was shown: {all}"
    );
    assert!(
        !crate::test::all_bytes_under(&test.path().join(".clab"))
            .windows(8)
            .any(|w| w == b"AbCdEfGh")
    );
}

#[test]
fn an_unreadable_user_config_is_a_warning_unless_an_llm_step_needs_it_issue_18() {
    let config = tempfile::tempdir().unwrap();
    // A directory where the file should be: it exists, and cannot be read.
    std::fs::create_dir(config.path().join("config.toml")).unwrap();
    let dir = config.path().to_str().unwrap();
    let test = Test::new()
        .env("CLAB_CONFIG_DIR", dir)
        .file("tasks.kdl", r#"task "plain" { run "echo fine" }"#);
    test.run_with(&["run", "plain"])
        .status(0)
        .stdout_has("fine")
        .stdout_has("cannot read the user config")
        .stdout_has("no LLM step runs");
    test.write(
        "tasks.kdl",
        r#"task "gen" { llm { provider "command"; command "echo hi"; prompt "q"; output "o.txt"; extract "text"; } }"#,
    );
    test.run_with(&["run", "gen"])
        .status(1)
        .stdout_has("cannot read the user config");
}

#[test]
fn a_task_that_writes_its_own_inputs_gets_one_warning_issue_18() {
    let test = Test::new().file("src/a.txt", "a\n").file(
        "tasks.kdl",
        r#"task "stamp" { inputs "src/**"; run "date +%N >> src/stamp.txt; echo x >> src/a.txt" }"#,
    );
    let run = test.run_with(&["run", "stamp"]).status(0);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.contains("changed while it ran"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(warnings[0].contains("`src/a.txt`"), "{}", warnings[0]);
    // It reruns, and says so again.
    test.run_with(&["run", "stamp"])
        .status(0)
        .stdout_has("1 ran")
        .stdout_has("changed while it ran");
}

#[test]
fn a_100_mb_log_is_streamed_not_held_in_memory_issue_18() {
    let test = Test::new().file("in.txt", "x\n").file(
        "tasks.kdl",
        r#"task "loud" { inputs "in.txt"; run "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 100000000; echo; echo the-end" }"#,
    );
    let output = std::process::Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M"])
        .arg(crate::test::clab_path())
        .args(["run", "loud", "-q"])
        .current_dir(test.path())
        .env("CLAB_NO_PROGRESS", "1")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let kb: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("maxrss="))
        .and_then(|kb| kb.trim().parse().ok())
        .expect("max RSS");
    // Held whole, the log alone would be 100 MB (twice that while copied).
    assert!(kb < 60_000, "clab peaked at {kb} KB for a 100 MB log");
    // The whole log is in the CAS, and a cache hit replays its end.
    let run = test.run_with(&["run", "loud", "--json"]).status(0);
    assert!(run.stdout.contains("earlier bytes of this log not shown"));
    assert!(run.stdout.contains("the-end"), "the log's end is replayed");
    assert!(run.stdout.len() < 2_000_000, "only the end is replayed");
    let blobs = walk(&test.path().join(".clab/cas"));
    let biggest = blobs
        .iter()
        .map(|rel| {
            std::fs::metadata(test.path().join(".clab/cas").join(rel)).map_or(0, |m| m.len())
        })
        .max()
        .unwrap_or(0);
    assert!(
        biggest > 100_000_000,
        "the whole log is stored ({biggest} bytes)"
    );
}

// ── 5. the adversarial suites ────────────────────────────────────────────────────────────────

/// A small seeded generator (xorshift64*): the same seed, the same kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seed: `CLAB_TEST_SEED` when set (to replay a failure), else fixed.
fn seed() -> u64 {
    std::env::var("CLAB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x18)
}

const STEMS: usize = 10;
const OUTPUTS_PER_TASK: usize = 20;

/// A project of `STEMS` `for-each` nodes, each writing `OUTPUTS_PER_TASK` files of ~2 KB
/// (shell built-ins only: fast to run, many small stores and restores, so a kill has
/// windows to land in).
fn crash_project() -> Test {
    let test = Test::new().file(
        "tasks.kdl",
        r#"
        task "gen" {
            for-each "src/*.txt"
            inputs "{{file}}"
            outputs "out/{{stem}}/**"
            run "mkdir -p out/{{stem}} && read -r c < {{file}} && i=0 && while [ $i -lt 20 ]; do i=$((i+1)); printf '%s:%s:%s\n' {{stem}} $i \"$c\" > out/{{stem}}/$i.txt; done"
        }
        "#,
    );
    for n in 0..STEMS {
        test.write(&format!("src/s{n}.txt"), &input_text(n, 0));
    }
    test
}

fn input_text(n: usize, version: u64) -> String {
    format!("{}\n", format!("v{version}-s{n}-").repeat(200))
}

/// What `out/` must hold for the inputs as they are: relative path → contents.
fn reference(test: &Test) -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    for n in 0..STEMS {
        let content = test.read(&format!("src/s{n}.txt"));
        let line = content.trim_end();
        for i in 1..=OUTPUTS_PER_TASK {
            expected.insert(format!("s{n}/{i}.txt"), format!("s{n}:{i}:{line}\n"));
        }
    }
    expected
}

/// What `out/` holds; with `temp_files`, clab's temp files too (a killed restore may leave
/// one, which globs never match and a later run sweeps).
fn outputs(test: &Test, temp_files: bool) -> BTreeMap<String, String> {
    walk(&test.path().join("out"))
        .into_iter()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            temp_files || !name.starts_with(".clab-")
        })
        .map(|rel| {
            let text = test.read(&format!("out/{rel}"));
            (rel, text)
        })
        .collect()
}

/// Run `clab run gen` and SIGKILL it after `after` (if it has not finished by then).
fn run_and_kill(test: &Test, after: Duration) -> bool {
    let mut child = test
        .command(&["run", "gen", "-q", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn clab");
    let until = Instant::now() + after;
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

/// How long an unkilled `clab run gen` takes now.
fn timed_run(test: &Test) -> Duration {
    let started = Instant::now();
    test.run_with(&["run", "gen", "-q", "-j", "2"]).status(0);
    started.elapsed()
}

/// `out/` holds exactly the reference outputs — and, restored from the cache into an empty
/// `out/`, exactly them again, no temp file among them: nothing wrong was stored.
#[track_caller]
fn assert_outputs_match(test: &Test, what: &str) {
    assert_outputs_are(test, what, false);
    std::fs::remove_dir_all(test.path().join("out")).unwrap();
    test.run_with(&["run", "gen", "-q"])
        .status(0)
        .stdout_has(&format!("{STEMS} cached"));
    assert_outputs_are(test, &format!("{what}, then restored"), true);
}

#[track_caller]
fn assert_outputs_are(test: &Test, what: &str, temp_files: bool) {
    let expected = reference(test);
    let found = outputs(test, temp_files);
    if found != expected {
        let wrong: Vec<&String> = expected
            .keys()
            .filter(|k| found.get(*k) != expected.get(*k))
            .take(5)
            .collect();
        panic!(
            "{what}: {} of {} outputs wrong or missing (e.g. {wrong:?}); extra: {:?}",
            expected
                .keys()
                .filter(|k| found.get(*k) != expected.get(*k))
                .count(),
            expected.len(),
            found
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect::<Vec<_>>()
        );
    }
}

/// The span kill points are drawn from: the first two thirds of a run as long as `timed`,
/// so that a run a little faster than the timed one (a busy machine varies) is still killed
/// inside most of the time.
fn kill_window(timed: Duration) -> u64 {
    timed.as_millis() as u64 * 2 / 3 + 1
}

/// Kills clab at seeded random points of a cold run (running and storing), of a restore, and
/// of a rebuild of some nodes (over what the killed restore left); after each kill a normal
/// run must leave every output equal to the reference, and a restore from the cache into an
/// empty `out/` exactly the reference — no wrong output, and no temp file, is ever stored.
#[test]
fn a_killed_clab_never_leaves_a_wrong_output_issue_18() {
    let mut rng = Rng::new(seed());
    let test = crash_project();
    let cold = timed_run(&test);
    assert_outputs_match(&test, "first run");
    let mut kills = 0;
    let mut left_temp = 0;
    let rounds = 3;
    for round in 0..rounds {
        // A cold run: nothing cached, nothing written.
        std::fs::remove_dir_all(test.path().join(".clab")).unwrap();
        std::fs::remove_dir_all(test.path().join("out")).unwrap();
        let at = Duration::from_millis(rng.below(kill_window(cold)));
        kills += usize::from(run_and_kill(&test, at));
        test.run_with(&["run", "gen", "-q"]).status(0);
        assert_outputs_match(
            &test,
            &format!("round {round}: after a kill {at:?} into a cold run"),
        );

        // A restore: every output gone, all of them in the cache.
        std::fs::remove_dir_all(test.path().join("out")).unwrap();
        let restore = timed_run(&test);
        std::fs::remove_dir_all(test.path().join("out")).unwrap();
        let at = Duration::from_millis(rng.below(kill_window(restore)));
        kills += usize::from(run_and_kill(&test, at));
        test.run_with(&["run", "gen", "-q"]).status(0);
        assert_outputs_are(
            &test,
            &format!("round {round}: after a kill {at:?} into a restore"),
            false,
        );
        left_temp += outputs(&test, true).len() - outputs(&test, false).len();

        // Every input changes, over what the killed restore left: every node runs and
        // stores (issue 18: a partial restore temp file was stored as an output).
        for n in 0..STEMS {
            test.write(&format!("src/s{n}.txt"), &input_text(n, rng.next() % 1000));
        }
        let at = Duration::from_millis(rng.below(kill_window(cold)));
        kills += usize::from(run_and_kill(&test, at));
        test.run_with(&["run", "gen", "-q"]).status(0);
        assert_outputs_match(
            &test,
            &format!("round {round}: after a kill {at:?} into a rebuild"),
        );
    }
    // Most kill points fall inside a run (an unlucky draw may come after its end).
    assert!(kills >= rounds * 3 / 2, "only {kills} kills landed");
    eprintln!(
        "crash consistency: {kills} kills in {} runs, {} outputs checked after each, \
         {left_temp} temp files left by killed restores",
        rounds * 3,
        STEMS * OUTPUTS_PER_TASK
    );
}

/// Four `clab run`s at once on one project, twice (cold, then with some inputs changed):
/// every task runs exactly once (a counter file each, appended to without locks), every
/// output is right.
#[test]
fn four_runs_at_once_run_each_task_once_issue_18() {
    let mut tasks = String::new();
    for n in 0..8 {
        let deps = if n >= 4 {
            format!("deps \"t{}\"; ", n - 4)
        } else {
            String::new()
        };
        tasks.push_str(&format!(
            "task \"t{n}\" {{ {deps}inputs \"src/{n}.txt\"; outputs \"out/{n}.txt\"; run \"echo ran >> counts/{n}; sleep 0.2; mkdir -p out; cp src/{n}.txt out/{n}.txt\" }}\n"
        ));
    }
    let deps: Vec<String> = (0..8).map(|n| format!("\"t{n}\"")).collect();
    tasks.push_str(&format!("task \"all\" {{ deps {} }}\n", deps.join(" ")));
    let test = Test::new().file("tasks.kdl", &tasks);
    std::fs::create_dir_all(test.path().join("counts")).unwrap();
    for n in 0..8 {
        test.write(&format!("src/{n}.txt"), &format!("{n}\n"));
    }
    for round in 0..2 {
        if round == 1 {
            for n in [1, 2, 5] {
                test.write(&format!("src/{n}.txt"), &format!("{n} changed\n"));
            }
            for n in 0..8 {
                let _ = std::fs::remove_file(test.path().join(format!("counts/{n}")));
            }
        }
        // Different `-j`: a run with one job reaches a node it found missing at the start
        // long after another run built it (the case a lookup at the start alone misses).
        let children: Vec<Child> = ["4", "1", "2", "1"]
            .into_iter()
            .map(|jobs| {
                test.command(&["run", "all", "-q", "-j", jobs])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn clab")
            })
            .collect();
        let mut said = String::new();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            said.push_str(&String::from_utf8_lossy(&output.stdout));
            said.push_str(&String::from_utf8_lossy(&output.stderr));
            assert!(
                output.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let expected: Vec<usize> = match round {
            0 => (0..8).collect(),
            // t5 and t6 depend on t1 and t2, whose outputs changed.
            _ => vec![1, 2, 5, 6],
        };
        for n in 0..8 {
            let runs = test.read(&format!("counts/{n}")).lines().count();
            let want = usize::from(expected.contains(&n));
            assert_eq!(runs, want, "round {round}: t{n} ran {runs} times\n{said}");
            assert_eq!(
                test.read(&format!("out/{n}.txt")),
                test.read(&format!("src/{n}.txt"))
            );
        }
    }
}
