//! The shared remote cache, end to end against real servers started on 127.0.0.1 (nginx with
//! WebDAV, redis-server, moto's S3 server, turborepo-remote-cache): a fresh checkout at another
//! path restores every task (nginx also over TLS, and with a bearer token; over plain HTTP
//! without root certificates too), a tampered blob (carried in its manifest) is never restored,
//! an untrusted signer's entries rerun (with one warning, and without being replaced by the
//! reader's), a signing key that is not trusted uploads nothing, read-only writes nothing, a
//! server that is down or never answers — or an https remote on a machine without root certificates, or one
//! whose certificate no trusted CA signed, or one that wants a token it was not given — costs
//! one warning and changes neither the result nor the exit code, and a server answering
//! gigabytes for a manifest costs a rerun and one warning, never the memory to hold them. A
//! missing server binary fails the test with the command that installs it (`.ci/run` installs
//! all four, and `openssl`, which makes the TLS server's certificates).

use clab_remote::test_servers::TestServer;

use crate::test::{Run, Test, all_bytes_under};

/// base64 of the 32-byte ed25519 seed 0, 1, …, 31.
const SIGNING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// base64 of another seed (32 × 7).
const OTHER_SIGNING_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// gen → (upper, tool) → check; every task appends its name to `counter` when it really runs,
/// and `tool` writes an executable output.
fn project() -> Test {
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
            task "tool" {
                deps "gen"
                inputs "tasks.kdl"
                outputs "build/tool.sh"
                run "echo tool >> counter" "printf '#!/bin/sh\necho hi\n' > build/tool.sh" "chmod 755 build/tool.sh"
            }
            task "check" {
                deps "upper" "tool"
                inputs "tasks.kdl"
                outputs "build/check.txt"
                run "echo check >> counter" "cat build/upper.txt build/tool.sh > build/check.txt"
            }
            "#,
    )
}

/// `test` with the server's URL and credentials (and `extra`) in its environment.
fn with_server(mut test: Test, server: &TestServer, extra: &[(&str, &str)]) -> Test {
    test = test.env("CLAB_REMOTE_CACHE", &server.url());
    for (key, value) in server.env() {
        test = test.env(key, value);
    }
    for (key, value) in extra {
        test = test.env(key, value);
    }
    test
}

/// The tasks that really ran since the last call.
fn ran(test: &Test) -> Vec<String> {
    let mut lines: Vec<String> = test.read("counter").lines().map(str::to_owned).collect();
    lines.sort();
    std::fs::remove_file(test.path().join("counter")).ok();
    lines
}

/// A second checkout of `test`'s sources at another path, with an empty cache.
fn fresh_checkout(test: &Test) -> Test {
    let clone = test.copy();
    std::fs::remove_dir_all(clone.path().join(".clab")).ok();
    std::fs::remove_dir_all(clone.path().join("build")).ok();
    std::fs::remove_file(clone.path().join("counter")).ok();
    clone
}

/// A fresh checkout of `writer`'s sources that trusts the key `writer` signs with.
fn trusting_checkout(writer: &Test, server: &TestServer) -> Test {
    let public_key = writer.run_with(&["cache", "public-key"]).status(0).stdout;
    with_server(
        fresh_checkout(writer),
        server,
        &[("CLAB_CACHE_TRUSTED_KEYS", public_key.trim())],
    )
}

const OUTPUTS: [&str; 4] = [
    "build/sorted.txt",
    "build/upper.txt",
    "build/tool.sh",
    "build/check.txt",
];

/// `reader` (a checkout of `writer`'s sources) restores every task from the remote, running
/// none, with `writer`'s outputs.
#[track_caller]
fn restores_everything(writer: &Test, reader: &Test) {
    reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached (4 remote)");
    same_outputs(writer, reader);
}

/// Every output of `b` equals `a`'s, byte for byte and mode for mode.
#[track_caller]
fn same_outputs(a: &Test, b: &Test) {
    use std::os::unix::fs::PermissionsExt;
    for output in OUTPUTS {
        let (pa, pb) = (a.path().join(output), b.path().join(output));
        assert_eq!(
            std::fs::read(&pa).unwrap(),
            std::fs::read(&pb).unwrap(),
            "{output}"
        );
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&pa), mode(&pb), "{output}");
    }
}

/// Writer signs and uploads; a fresh checkout elsewhere that trusts the writer's key restores
/// every task without running one, byte-identical.
fn a_fresh_checkout_restores_everything(server: TestServer) {
    let writer = with_server(
        project(),
        &server,
        &[("CLAB_CACHE_SIGNING_KEY", SIGNING_KEY)],
    );
    writer.run_with(&["run", "check"]).status(0);
    assert_eq!(ran(&writer), ["check", "gen", "tool", "upper"]);
    assert!(server.object_count().unwrap() > 0, "nothing was uploaded");

    let reader = trusting_checkout(&writer, &server);
    reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("⚡ gen cached (remote)")
        .stdout_has("4 tasks: 0 ran, 4 cached (4 remote)");
    assert!(ran(&reader).is_empty());
    same_outputs(&writer, &reader);
    // The entries are local now: the next run needs no server.
    reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached in");
    // Their blobs too, in packs (a pack for each batch of downloads): with the outputs
    // deleted and the server stopped, everything is restored from `.clab/`.
    let packs = std::fs::read_dir(reader.path().join(".clab/cas/packs")).unwrap();
    assert!(
        packs
            .filter_map(Result::ok)
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "pack")),
        "no pack was written"
    );
    drop(server);
    std::fs::remove_dir_all(reader.path().join("build")).unwrap();
    let offline = reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached in");
    assert!(
        !offline.stderr.contains("unavailable"),
        "{}",
        offline.stderr
    );
    same_outputs(&writer, &reader);
}

#[test]
fn a_fresh_checkout_restores_everything_from_nginx() {
    a_fresh_checkout_restores_everything(TestServer::nginx().expect("nginx"));
}

#[test]
fn a_fresh_checkout_restores_everything_from_nginx_over_tls() {
    a_fresh_checkout_restores_everything(TestServer::nginx_tls().expect("nginx over TLS"));
}

#[test]
fn a_server_certificate_from_an_unknown_ca_costs_one_warning() {
    let server = TestServer::nginx_tls().expect("nginx over TLS");
    // The server's URL without its `SSL_CERT_FILE`: only the system's roots are trusted.
    let test = project().env("CLAB_REMOTE_CACHE", &server.url());
    let run = test.run_with(&["run", "check"]).status(0);
    let warnings = unavailable_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}\n{}", run.stdout, run.stderr);
    assert!(warnings[0].contains("UnknownIssuer"), "{}", warnings[0]);
    assert_eq!(ran(&test), ["check", "gen", "tool", "upper"]);
    assert_eq!(server.object_count().unwrap(), 0);
}

#[test]
fn a_fresh_checkout_restores_everything_from_redis() {
    a_fresh_checkout_restores_everything(TestServer::redis().expect("redis-server"));
}

#[test]
fn a_fresh_checkout_restores_everything_from_s3() {
    a_fresh_checkout_restores_everything(TestServer::moto().expect("moto_server"));
}

#[test]
fn a_fresh_checkout_restores_everything_from_the_turborepo_cache() {
    a_fresh_checkout_restores_everything(TestServer::turbo(None).expect("turborepo-remote-cache"));
}

#[test]
fn the_cache_block_names_the_remote_and_dry_run_and_explain_see_it() {
    let server = TestServer::nginx().expect("nginx");
    let url = server.url();
    let writer = project().file(
        "tasks.kdl",
        &format!(
            "cache {{ remote \"{url}\"; }}\n{}",
            std::fs::read_to_string(project().path().join("tasks.kdl")).unwrap()
        ),
    );
    writer.run_with(&["run", "check"]).status(0);
    let reader = fresh_checkout(&writer);
    reader
        .run_with(&["run", "check", "--dry-run"])
        .status(0)
        .stdout_has("⚡ check cached (remote)")
        .stdout_has("0 would run, 4 cached");
    reader
        .run_with(&["explain", "check"])
        .status(0)
        .stdout_has(&format!("on the remote cache `{url}`"));
    assert!(ran(&reader).is_empty(), "dry-run and explain run nothing");
    reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 cached (4 remote)");
}

#[test]
fn a_tampered_blob_is_never_restored() {
    let server = TestServer::nginx().expect("nginx");
    let writer = with_server(project(), &server, &[]);
    writer.run_with(&["run", "check"]).status(0);
    // Rewrite the uppercased output on the server, keeping its size: small, it travels in
    // its entry's manifest, after the JSON line (and the empty log is carried by no one).
    let upper = std::fs::read(writer.path().join("build/upper.txt")).unwrap();
    let mut tampered = 0;
    for entry in walk(&server.data_dir().unwrap()) {
        let Ok(bytes) = std::fs::read(&entry) else {
            continue;
        };
        let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
            continue;
        };
        if bytes[newline + 1..] == upper {
            let mut evil = bytes[..=newline].to_vec();
            evil.extend(upper.to_ascii_lowercase());
            std::fs::write(&entry, evil).unwrap();
            tampered += 1;
        }
    }
    assert_eq!(
        tampered, 1,
        "the manifest carrying build/upper.txt is on the server"
    );

    let reader = with_server(fresh_checkout(&writer), &server, &[]);
    let run = reader.run_with(&["run", "check"]).status(0);
    assert!(
        run.stderr.contains("rejected") || run.stdout.contains("rejected"),
        "a rejected entry is warned about\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(ran(&reader), ["upper"], "only the tampered entry reruns");
    same_outputs(&writer, &reader);
}

#[test]
fn an_untrusted_signer_s_entries_rerun() {
    let server = TestServer::nginx().expect("nginx");
    let writer = with_server(
        project(),
        &server,
        &[("CLAB_CACHE_SIGNING_KEY", SIGNING_KEY)],
    );
    writer.run_with(&["run", "check"]).status(0);
    let other =
        with_server(Test::new(), &server, &[]).env("CLAB_CACHE_SIGNING_KEY", OTHER_SIGNING_KEY);
    let trusted = other.run_with(&["cache", "public-key"]).status(0).stdout;

    let reader = with_server(
        fresh_checkout(&writer),
        &server,
        &[("CLAB_CACHE_TRUSTED_KEYS", trusted.trim())],
    );
    let run = reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 4 ran in");
    assert_eq!(ran(&reader), ["check", "gen", "tool", "upper"]);
    // Why the remote did not serve them: one warning for the four.
    let untrusted = lines_saying(&run, "is not trusted");
    assert_eq!(untrusted.len(), 1, "{}", run.stdout);
    assert!(
        untrusted[0].contains("signed by untrusted key")
            && untrusted[0].ends_with("(and 3 more entries)"),
        "{}",
        run.stdout
    );

    // The reader could not sign an entry it trusts, so it wrote none: the writer's entries
    // are still there for those who trust its key.
    restores_everything(&writer, &trusting_checkout(&writer, &server));
}

#[test]
fn a_signing_key_that_is_not_trusted_uploads_nothing_and_says_so() {
    let server = TestServer::nginx().expect("nginx");
    let trusted = signer_of(OTHER_SIGNING_KEY);
    let test = with_server(
        project(),
        &server,
        &[
            ("CLAB_CACHE_SIGNING_KEY", SIGNING_KEY),
            ("CLAB_CACHE_TRUSTED_KEYS", &trusted),
        ],
    );
    let run = test.run_with(&["run", "check"]).status(0);
    assert_eq!(server.object_count().unwrap(), 0, "the server stays empty");
    let warnings = lines_saying(&run, "gets no uploads");
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0].contains(&format!("`{}`", signer_of(SIGNING_KEY))),
        "{}",
        run.stdout
    );
    test.run_with(&["cache", "stats"])
        .status(0)
        .stdout_has("(read-only: the signing key is not a trusted key)");
}

/// The public key of `signing_key`, as `clab cache public-key` prints it.
fn signer_of(signing_key: &str) -> String {
    let test = Test::new().env("CLAB_CACHE_SIGNING_KEY", signing_key);
    test.run_with(&["cache", "public-key"])
        .status(0)
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn a_server_that_wants_a_token_gets_it_and_a_run_without_it_says_where_it_comes_from() {
    const TOKEN: &str = "t0ken-5ecret-4-nginx";
    let server = TestServer::nginx_with_token(TOKEN).expect("nginx");
    let writer = with_server(project(), &server, &[]);
    let wrote = writer.run_with(&["run", "check"]).status(0);
    assert!(server.object_count().unwrap() > 0, "nothing was uploaded");
    let reader = with_server(fresh_checkout(&writer), &server, &[]);
    let read = reader
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 0 ran, 4 cached (4 remote)");
    for run in [&wrote, &read] {
        assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));
    }

    // A first run without the token: one warning that names the variable, the same result.
    let tokenless = project().env("CLAB_REMOTE_CACHE", &server.url());
    let warning = the_outage_of_a_run_of_everything(&tokenless);
    assert!(
        warning.contains("answered 401 to GET")
            && warning.contains(
                "(credentials come from CLAB_REMOTE_CACHE_TOKEN, sent as a bearer token)"
            ),
        "{warning}"
    );
}

#[test]
fn read_only_writes_nothing() {
    let server = TestServer::nginx().expect("nginx");
    let test = with_server(project(), &server, &[("CLAB_REMOTE_CACHE_READ_ONLY", "1")]);
    test.run_with(&["run", "check"]).status(0);
    assert_eq!(server.object_count().unwrap(), 0);
}

#[test]
fn a_stopped_server_costs_one_warning_and_the_same_exit_code() {
    let mut server = TestServer::nginx().expect("nginx");
    server.stop();
    let test = with_server(
        project(),
        &server,
        &[("CLAB_CACHE_SIGNING_KEY", SIGNING_KEY)],
    );
    let run = test.run_with(&["run", "check"]).status(0);
    assert_eq!(
        run.stderr.matches("is unavailable").count() + run.stdout.matches("is unavailable").count(),
        1,
        "one warning\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(ran(&test), ["check", "gen", "tool", "upper"]);
    // A failing task still fails with its own exit code.
    test.write("src/data.txt", "c\n");
    test.write(
        "tasks.kdl",
        r#"task "gen" { inputs "src/*.txt"; run "exit 3"; }"#,
    );
    test.run_with(&["run", "gen"]).status(1);
}

/// The lines of `run`'s output that say the remote is unavailable.
#[test]
fn a_bad_remote_url_from_the_environment_is_not_pinned_on_tasks_kdl() {
    let test = project().file(
        "tasks.kdl",
        r#"cache { remote "https://cache.example.com/clab"; }
task "a" { run "true" }"#,
    );
    let run = test
        .env("CLAB_REMOTE_CACHE", "ftp://cache.example.com/clab")
        .run_with(&["check"])
        .status(2);
    assert!(
        run.stderr
            .contains("`ftp://cache.example.com/clab` has an unsupported scheme")
            && !run.stderr.contains("[tasks.kdl"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_silent_server_costs_one_wait_not_one_per_task() {
    // It accepts connections and never answers.
    let port = clab_remote::test_servers::fake_http_server(None);
    let test = project().env(
        "CLAB_REMOTE_CACHE",
        &format!("http://127.0.0.1:{port}/cache"),
    );
    // The four tasks wait on each other; the first lookup's silence gives the remote up.
    let warning = the_outage_of_a_run_of_everything(&test);
    assert!(
        warning.contains("the server sent nothing for 5 s (GET `ac/")
            && warning.ends_with("(1 failed call); not using it for the rest of this run"),
        "{warning}"
    );
}

#[test]
fn on_github_actions_a_remote_warning_is_an_annotation() {
    let port = clab_remote::test_servers::free_port().unwrap();
    let run = project()
        .env("GITHUB_ACTIONS", "true")
        .env(
            "CLAB_REMOTE_CACHE",
            &format!("http://127.0.0.1:{port}/cache"),
        )
        .run_with(&["run", "check"])
        .status(0);
    let warnings = unavailable_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0].starts_with(&format!(
            "::warning title=clab::remote cache `http://127.0.0.1:{port}/cache` is unavailable"
        )),
        "{}",
        warnings[0]
    );
}

/// The one "unavailable" warning of a run of `check` in `test` that runs every task, exit 0.
#[track_caller]
fn the_outage_of_a_run_of_everything(test: &Test) -> String {
    let run = test
        .run_with(&["run", "check"])
        .status(0)
        .stdout_has("4 tasks: 4 ran in");
    let warnings = unavailable_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    warnings[0].to_owned()
}

fn unavailable_warnings(run: &Run) -> Vec<&str> {
    lines_saying(run, "is unavailable")
}

/// The lines of `run`'s output (stdout, then stderr) that contain `text`.
fn lines_saying<'r>(run: &'r Run, text: &str) -> Vec<&'r str> {
    (run.stdout.lines().chain(run.stderr.lines()))
        .filter(|line| line.contains(text))
        .collect()
}

/// The environment of a machine without root certificates (a slim CI container): rustls
/// finds none where these point.
const NO_CA_CERTIFICATES: [(&str, &str); 2] = [
    ("SSL_CERT_FILE", "/nonexistent/ca-certificates.crt"),
    ("SSL_CERT_DIR", "/nonexistent/certs"),
];

#[test]
fn a_plain_http_remote_needs_no_root_certificates() {
    let server = TestServer::nginx().expect("nginx");
    let writer = with_server(project(), &server, &NO_CA_CERTIFICATES);
    let wrote = writer.run_with(&["run", "check"]).status(0);
    assert!(
        !(wrote.stdout.contains("warning") || wrote.stderr.contains("warning")),
        "{}\n{}",
        wrote.stdout,
        wrote.stderr
    );
    let reader = with_server(fresh_checkout(&writer), &server, &NO_CA_CERTIFICATES);
    restores_everything(&writer, &reader);
}

#[test]
fn an_https_remote_without_root_certificates_costs_one_warning_saying_so() {
    // Nothing listens there: the client is never built before a request, and a request
    // fails on the missing certificates before it would connect.
    let test = project()
        .env("CLAB_REMOTE_CACHE", "https://127.0.0.1:9/cache")
        .env(NO_CA_CERTIFICATES[0].0, NO_CA_CERTIFICATES[0].1)
        .env(NO_CA_CERTIFICATES[1].0, NO_CA_CERTIFICATES[1].1);
    let run = test.run_with(&["run", "check"]).status(0);
    let warnings = unavailable_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        warnings[0].contains("No CA certificates were loaded"),
        "{}",
        warnings[0]
    );
    assert_eq!(ran(&test), ["check", "gen", "tool", "upper"]);
}

#[test]
fn the_signing_key_is_never_printed_or_stored() {
    let server = TestServer::nginx().expect("nginx");
    let test = with_server(
        project(),
        &server,
        &[("CLAB_CACHE_SIGNING_KEY", SIGNING_KEY)],
    );
    let run = test.run_with(&["run", "check", "--json"]).status(0);
    assert!(!run.stdout.contains(SIGNING_KEY) && !run.stderr.contains(SIGNING_KEY));
    let stored = all_bytes_under(&test.path().join(".clab"));
    assert!(
        !stored
            .windows(SIGNING_KEY.len())
            .any(|w| w == SIGNING_KEY.as_bytes())
    );
    let bad = Test::new().env("CLAB_CACHE_SIGNING_KEY", "c2stbm90LWEta2V5LWJ1dC1zZWNyZXQ=");
    let run = bad.run_with(&["cache", "public-key"]).status(2);
    assert!(
        !run.stderr.contains("c2stbm90LWEta2V5LWJ1dC1zZWNyZXQ="),
        "{}",
        run.stderr
    );
}

#[test]
fn cache_stats_has_a_remote_section() {
    let server = TestServer::nginx().expect("nginx");
    let test = with_server(project(), &server, &[]);
    test.run_with(&["run", "check"]).status(0);
    test.run_with(&["cache", "stats"])
        .status(0)
        .stdout_has(&format!("remote:   {} (read-write)", server.url()))
        .stdout_has("entries (");
    // A checkout that got everything from the remote counts hits, not misses.
    let reader = with_server(fresh_checkout(&test), &server, &[]);
    restores_everything(&test, &reader);
    reader
        .run_with(&["cache", "stats"])
        .status(0)
        .stdout_has("hit rate: 100.0% (4 hits, 4 of them from the remote; 0 misses)");
}

/// Runs `clab args` in `test` and returns what it printed and its peak resident memory in
/// bytes (`VmHWM` of `/proc/<pid>/status`, read every few milliseconds until it exits: the
/// high-water mark only grows, so the last reading is within a few milliseconds of the end).
fn run_with_peak_memory(test: &Test, args: &[&str]) -> (Run, u64) {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = test
        .command(args)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run clab");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib: u64 = 0;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(|status| status.lines().find(|l| l.starts_with("VmHWM:")))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let run = Run {
        status: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&stdout).unwrap(),
        stderr: std::fs::read_to_string(&stderr).unwrap(),
    };
    assert!(peak_kib > 0, "no reading of clab's memory");
    (run, peak_kib * 1024)
}

/// Every manifest on the server replaced by 2 GiB (sparse files in its data directory):
/// nginx sends their `Content-Length`, the Turborepo cache streams them chunked without one.
/// Each is a miss with one warning for all, every task reruns (exit 0, same outputs), and
/// clab's peak memory stays far below what one such manifest would take.
fn an_oversized_manifest_is_a_miss_and_never_held(
    server: TestServer,
    is_manifest: fn(&std::path::Path) -> bool,
) {
    let writer = with_server(project(), &server, &[]);
    writer.run_with(&["run", "check"]).status(0);
    let mut replaced = 0;
    for file in walk(&server.data_dir().unwrap()) {
        if is_manifest(&file) {
            std::fs::File::create(&file)
                .unwrap()
                .set_len(2 << 30)
                .unwrap();
            replaced += 1;
        }
    }
    assert_eq!(replaced, 4, "the four manifests are on the server");

    let reader = with_server(fresh_checkout(&writer), &server, &[]);
    let (run, peak) = run_with_peak_memory(&reader, &["run", "check"]);
    let run = run.status(0).stdout_has("4 tasks: 4 ran in");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(
        output
            .matches("was rejected: remote manifest is larger than")
            .count(),
        1,
        "one warning\n{output}"
    );
    assert!(output.contains("(and 3 more entries)"), "{output}");
    assert!(
        !output.contains("is unavailable"),
        "not an outage\n{output}"
    );
    assert_eq!(ran(&reader), ["check", "gen", "tool", "upper"]);
    same_outputs(&writer, &reader);
    eprintln!("clab's peak memory: {} MiB\n{output}", peak >> 20);
    assert!(
        peak < 256 << 20,
        "clab's peak memory was {} MiB",
        peak >> 20
    );
}

#[test]
fn an_oversized_manifest_from_nginx_is_a_miss_and_never_held() {
    an_oversized_manifest_is_a_miss_and_never_held(TestServer::nginx().expect("nginx"), |path| {
        path.parent().is_some_and(|dir| dir.ends_with("cache/ac"))
    });
}

#[test]
fn an_oversized_manifest_from_the_turborepo_cache_is_a_miss_and_never_held() {
    an_oversized_manifest_is_a_miss_and_never_held(
        TestServer::turbo(None).expect("turborepo-remote-cache"),
        |path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("clab-ac-") && !name.ends_with(".tag"))
        },
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
