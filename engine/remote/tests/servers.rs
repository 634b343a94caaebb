//! The remote cache against real servers, each started by the test on 127.0.0.1 at a free
//! port and killed at the end: nginx (WebDAV PUT, the Bazel HTTP layout), redis-server, moto
//! (S3) and turborepo-remote-cache. A missing server binary fails the test with an install
//! hint. One scenario set runs against every server.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clab_remote::backend::{self, Backend, BackendError, ObjectName, Timeouts};
use clab_remote::secret::Scrubber;
use clab_remote::test_servers::{ServerError, TestServer, fake_http_server};
use clab_remote::{
    Env, Fetch, MissReason, RemoteCache, RemoteConfig, RemoteUrl, SigningKey, TrustedKeys, Warning,
};
use clab_store::{CachedResult, Store};

/// A project with outputs (a small text file, a 300 KB file, an executable) and a log,
/// saved in its local store under `key`.
struct Project {
    dir: tempfile::TempDir,
    store: Store,
    result: CachedResult,
}

const KEY: &str = "3b7e4d2a9c1f05e8b6a4d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2";

fn project() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("out/bin")).unwrap();
    fs::write(root.join("out/a.txt"), "alpha\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(root.join("out/data.bin"), big).unwrap();
    fs::write(root.join("out/bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("out/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::open(root.join(".clab")).unwrap().store;
    let outputs = ["out/a.txt", "out/data.bin", "out/bin/tool"]
        .iter()
        .map(|p| store.store_output(root, p).unwrap())
        .collect();
    let log = store.put_log(b"building\ndone\n").unwrap();
    let result = CachedResult::new("build", "ok", 1234, outputs, Some(log));
    store.save_result(KEY, &result).unwrap();
    Project { dir, store, result }
}

/// An empty checkout at another path.
fn checkout() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join(".clab")).unwrap().store;
    (dir, store)
}

fn config(server: &TestServer) -> RemoteConfig {
    let mut config = RemoteConfig::new(Some(RemoteUrl::parse(&server.url()).unwrap()));
    config.env = Env::from_pairs(server.env().iter().cloned());
    config
}

fn remote(server: &TestServer, configure: impl FnOnce(&mut RemoteConfig)) -> RemoteCache {
    let mut config = config(server);
    configure(&mut config);
    RemoteCache::from_config(config).unwrap().unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

fn trusting(n: u8) -> impl FnOnce(&mut RemoteConfig) {
    move |config| config.trusted_keys = TrustedKeys::of([key(n).public_key()])
}

fn signing(n: u8) -> impl FnOnce(&mut RemoteConfig) {
    move |config| config.signing_key = Some(key(n))
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// Uploads the project's entry and waits for it.
fn upload(remote: &RemoteCache, project: &Project) {
    remote.upload(KEY, &project.result, project.store.cas());
    let stats = remote.finish(deadline());
    assert_eq!(
        (
            stats.entries_up,
            stats.upload_failed,
            stats.upload_abandoned
        ),
        (1, 0, 0),
        "{stats:?} {:?}",
        remote.warnings()
    );
}

/// The server's backend, used the way an attacker with write access would.
fn raw_backend(server: &TestServer) -> Arc<dyn Backend> {
    let config = config(server);
    backend::open(
        config.url.as_ref().unwrap(),
        &config.env,
        Timeouts::default(),
        &Scrubber::default(),
    )
    .unwrap()
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn files_under(root: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for rel in ["out/a.txt", "out/data.bin", "out/bin/tool"] {
        let path = root.join(rel);
        files.push((
            rel.to_owned(),
            fs::read(&path).unwrap(),
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        ));
    }
    files
}

mod scenarios {
    use super::*;

    pub(super) fn round_trip(server: TestServer) {
        let project = project();
        upload(&remote(&server, signing(1)), &project);
        assert_eq!(
            server.object_count().unwrap(),
            2,
            "a manifest carrying the 3 small blobs, and the 300 KB one"
        );

        let (other, store) = checkout();
        let reader = remote(&server, trusting(1));
        let Fetch::Hit(result) = reader.fetch(KEY, &store) else {
            panic!("expected a hit: {:?}", reader.warnings());
        };
        let report = store.restore_outputs(other.path(), &result).unwrap();
        assert_eq!(report.restored.len(), 3);
        assert_eq!(files_under(other.path()), files_under(project.dir.path()));
        assert_eq!(
            store.read_log(&result.log.unwrap()).unwrap(),
            b"building\ndone\n"
        );
        assert!(store.load_result(KEY).unwrap().is_some(), "kept locally");
        let stats = reader.finish(deadline());
        assert_eq!((stats.hits, stats.blobs_down), (1, 4));
        assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());

        // Uploading again finds the big blob there already (the small ones are carried).
        let again = remote(&server, signing(1));
        again.upload(KEY, &project.result, project.store.cas());
        let stats = again.finish(deadline());
        assert_eq!(
            (stats.blobs_up, stats.blobs_present, stats.entries_up),
            (3, 1, 1)
        );
    }

    pub(super) fn tampered_blob(server: TestServer) {
        let project = project();
        upload(&remote(&server, |_| {}), &project);
        let digest = project.result.outputs[1].hash;
        let original = project.store.cas().read(&digest).unwrap();
        let mut evil = original.clone();
        evil[1000] ^= 0xff;
        let attacker = raw_backend(&server);
        block_on(attacker.put(ObjectName::cas(&digest), evil.into())).unwrap();

        let (other, store) = checkout();
        let reader = remote(&server, |_| {});
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::BlobMismatch { digest })
        );
        assert!(
            !store.cas().contains(&digest),
            "the tampered blob entered the CAS"
        );
        assert!(store.load_result(KEY).unwrap().is_none());
        assert!(!other.path().join("out").exists(), "nothing was restored");
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            matches!(
                &warnings[0],
                Warning::Rejected {
                    reason: MissReason::BlobMismatch { .. },
                    ..
                }
            ),
            "{warnings:?}"
        );

        // The executable, carried in the manifest (last: the biggest of the small blobs),
        // changed inside the signed manifest: refused before any blob is downloaded.
        let tool = project
            .result
            .outputs
            .iter()
            .find(|o| o.path == "out/bin/tool")
            .unwrap()
            .hash;
        // A backend of its own: a Redis connection lives in the runtime that opened it.
        let attacker = raw_backend(&server);
        let name = ObjectName::ac(KEY).unwrap();
        block_on(async {
            let mut manifest = attacker
                .get(name.clone(), clab_remote::MANIFEST_MAX)
                .await
                .unwrap()
                .unwrap()
                .to_vec();
            assert!(manifest.ends_with(b"\necho hi\n"));
            let at = manifest.len() - 3;
            manifest[at] = b'H';
            attacker.put(name, manifest.into()).await.unwrap();
        });
        let (other, store) = checkout();
        let reader = remote(&server, |_| {});
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::BlobMismatch { digest: tool })
        );
        assert!(
            !store.cas().contains(&tool),
            "the tampered blob entered the CAS"
        );
        assert!(store.load_result(KEY).unwrap().is_none());
        assert!(!other.path().join("out").exists(), "nothing was restored");
        assert_eq!(reader.stats().blobs_down, 0, "{:?}", reader.stats());
    }

    /// Objects over their bound: each backend reads an object up to its bound and refuses it
    /// one byte under; a blob replaced by a larger one with the same name, and a manifest
    /// replaced by 64 MiB, are misses with one warning, nothing restored, no outage.
    pub(super) fn oversized_objects(server: TestServer) {
        let project = project();
        upload(&remote(&server, |_| {}), &project);
        let digest = project.result.outputs[1].hash;
        let blob = project.store.cas().read(&digest).unwrap();
        assert_eq!(blob.len(), 300_000);
        let name = ObjectName::cas(&digest);
        let attacker = raw_backend(&server);
        block_on(async {
            let whole = attacker.get(name.clone(), 300_000).await.unwrap();
            assert_eq!(whole.as_deref(), Some(&blob[..]));
            assert_eq!(
                attacker.get(name.clone(), 299_999).await,
                Err(BackendError::too_large(&name, 299_999))
            );
            let missing = ObjectName::cas(&clab_store::Digest::of_bytes(b"nowhere"));
            assert_eq!(attacker.get(missing, 10).await, Ok(None));
            // A larger blob under the same name.
            let mut larger = blob.clone();
            larger.resize(4 << 20, 7);
            attacker.put(name.clone(), larger.into()).await.unwrap();
        });

        let (other, store) = checkout();
        let reader = remote(&server, |_| {});
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::TooLarge {
                digest: Some(digest),
                max: 300_000
            })
        );
        assert!(!store.cas().contains(&digest), "the blob entered the CAS");
        assert!(store.load_result(KEY).unwrap().is_none());
        assert!(!other.path().join("out").exists(), "nothing was restored");

        // The manifest replaced by 64 MiB (a backend of its own: a Redis connection lives in
        // the runtime that opened it).
        let attacker = raw_backend(&server);
        let manifest = ObjectName::ac(KEY).unwrap();
        block_on(attacker.put(manifest, vec![b'{'; 64 << 20].into())).unwrap();
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::TooLarge {
                digest: None,
                max: clab_remote::MANIFEST_MAX
            })
        );
        let stats = reader.stats();
        assert!(!stats.circuit_open && stats.failures == 0, "{stats:?}");
        assert_eq!(stats.misses_of("too_large"), 2, "{stats:?}");
        assert!(stats.bytes_down < 1 << 20, "{stats:?}");
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            matches!(
                &warnings[0],
                Warning::Rejected {
                    reason: MissReason::TooLarge { .. },
                    others: 1,
                    ..
                }
            ),
            "{warnings:?}"
        );
    }

    pub(super) fn untrusted_signer(server: TestServer) {
        let project = project();
        upload(&remote(&server, signing(2)), &project);
        let (_other, store) = checkout();
        let reader = remote(&server, trusting(1));
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::UntrustedSigner {
                signer: key(2).public_key().to_string()
            })
        );
        assert!(store.load_result(KEY).unwrap().is_none());
        assert_eq!(reader.stats().misses_of("untrusted_signer"), 1);
    }

    pub(super) fn unsigned_with_trusted_keys(server: TestServer) {
        let project = project();
        upload(&remote(&server, |_| {}), &project);
        let (_other, store) = checkout();
        assert_eq!(
            remote(&server, trusting(1)).fetch(KEY, &store),
            Fetch::Miss(MissReason::Unsigned)
        );
        // Without trusted keys the same entry is read.
        assert!(matches!(
            remote(&server, |_| {}).fetch(KEY, &store),
            Fetch::Hit(_)
        ));
    }

    pub(super) fn read_only_writes_nothing(server: TestServer) {
        let project = project();
        let reader = remote(&server, |config| {
            config.read_only = true;
            config.signing_key = Some(key(1));
        });
        reader.upload(KEY, &project.result, project.store.cas());
        let stats = reader.finish(deadline());
        assert_eq!((stats.entries_up, stats.upload_skipped_read_only), (0, 1));
        assert_eq!(server.object_count().unwrap(), 0, "the server stays empty");
        let (_other, store) = checkout();
        assert_eq!(reader.fetch(KEY, &store), Fetch::Miss(MissReason::NotFound));
    }

    /// The server stalls (`SIGSTOP`: connections are still accepted, nothing answers): the
    /// first read waits the idle timeout, and the remote is given up on at once.
    pub(super) fn stalled_server(server: TestServer) {
        let project = project();
        upload(&remote(&server, |_| {}), &project);
        let reader = remote(&server, |config| {
            config.timeouts.idle = Duration::from_millis(300);
        });
        server.pause().unwrap();
        let (_other, store) = checkout();
        for _ in 0..5 {
            assert_eq!(
                reader.fetch(KEY, &store),
                Fetch::Miss(MissReason::Unavailable)
            );
        }
        server.resume().unwrap();
        let stats = reader.stats();
        assert!(stats.circuit_open && stats.failures == 1, "{stats:?}");
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .to_string()
                .contains("the server sent nothing for 300 ms"),
            "{}",
            warnings[0]
        );
    }

    /// The server dies mid-run: misses come fast, one warning, the breaker opens, and no
    /// credential shows in any text.
    pub(super) fn stopped_server(
        mut server: TestServer,
        secrets: &[&str],
        configure: fn(&mut RemoteConfig),
    ) {
        let project = project();
        upload(&remote(&server, |_| {}), &project);
        let mut config = config(&server);
        configure(&mut config);
        let reader = RemoteCache::from_config(config.clone()).unwrap().unwrap();
        server.stop();

        let (_other, store) = checkout();
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                reader.fetch(KEY, &store),
                Fetch::Miss(MissReason::Unavailable)
            );
        }
        reader.upload(KEY, &project.result, project.store.cas());
        let stats = reader.finish(deadline());
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
        assert!(stats.circuit_open, "{stats:?}");
        assert_eq!(
            stats.failures, 3,
            "no call after the breaker opened: {stats:?}"
        );
        assert_eq!(stats.misses_of("unavailable"), 5);
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(matches!(
            warnings[0],
            Warning::Unavailable { gave_up: true, .. }
        ));

        let texts = [
            format!("{warnings:?}"),
            warnings
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            serde_json::to_string(&warnings).unwrap(),
            serde_json::to_string(&stats).unwrap(),
            format!("{reader:?}"),
            format!("{config:?}"),
            serde_json::to_string(reader.info()).unwrap(),
        ];
        for text in &texts {
            for secret in secrets {
                assert!(!text.contains(secret), "`{secret}` leaked into: {text}");
            }
        }
        eprintln!("the warning: {}", warnings[0]);
    }
}

/// A server of this kind, or a test failure with the install hint.
fn started(server: Result<TestServer, ServerError>) -> TestServer {
    server.unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! server_tests {
    ($module:ident, $start:expr, $secrets:expr, $configure:expr) => {
        mod $module {
            use super::*;

            fn start() -> TestServer {
                started($start)
            }

            #[test]
            fn round_trip_restores_byte_identical_outputs_elsewhere() {
                scenarios::round_trip(start());
            }

            #[test]
            fn a_tampered_blob_is_never_restored() {
                scenarios::tampered_blob(start());
            }

            #[test]
            fn an_object_over_its_bound_is_a_miss_and_not_an_outage() {
                scenarios::oversized_objects(start());
            }

            #[test]
            fn an_untrusted_signer_is_a_miss() {
                scenarios::untrusted_signer(start());
            }

            #[test]
            fn an_unsigned_entry_is_a_miss_when_keys_are_trusted() {
                scenarios::unsigned_with_trusted_keys(start());
            }

            #[test]
            fn read_only_writes_nothing() {
                scenarios::read_only_writes_nothing(start());
            }

            #[test]
            fn a_stalled_server_costs_one_wait() {
                scenarios::stalled_server(start());
            }

            #[test]
            fn a_stopped_server_costs_one_warning_and_no_secret() {
                scenarios::stopped_server(start(), $secrets, $configure);
            }
        }
    };
}

server_tests!(
    nginx,
    TestServer::nginx(),
    &[
        "n61nx-pa55",
        "http-bearer-t0ken",
        clab_remote::signing::SIGNING_KEY_ENV
    ],
    |config| {
        // Credentials a reader would have: basic auth in the URL and a bearer token.
        let url = config.url.as_ref().unwrap().to_string();
        let with_auth = url.replace("http://", "http://ci:n61nx-pa55@");
        config.url = Some(RemoteUrl::parse(&with_auth).unwrap());
        config
            .env
            .set("CLAB_REMOTE_CACHE_TOKEN", "http-bearer-t0ken");
        config.signing_key = Some(SigningKey::from_seed([9; 32]));
    }
);

server_tests!(redis, TestServer::redis(), &["r3dis-pa55word"], |config| {
    let url = config.url.as_ref().unwrap().to_string();
    let with_auth = url.replace("redis://", "redis://:r3dis-pa55word@");
    config.url = Some(RemoteUrl::parse(&with_auth).unwrap());
});

server_tests!(
    s3_moto,
    TestServer::moto(),
    &["clab-test-secret-access-key", "s3ss10n-t0ken"],
    |config| config.env.set("AWS_SESSION_TOKEN", "s3ss10n-t0ken")
);

server_tests!(
    turbo,
    TestServer::turbo(None),
    &[clab_remote::test_servers::TURBO_TOKEN],
    |_| {}
);

/// Turborepo's artifact tags: a server that keeps them and a client with the same key
/// round-trip; a client with another key rejects what it reads.
#[test]
fn turbo_artifact_tags_are_written_and_verified() {
    let server = started(TestServer::turbo(Some("turbo-signature-k3y")));
    let project = project();
    upload(&remote(&server, |_| {}), &project);
    let (_other, store) = checkout();
    assert!(matches!(
        remote(&server, |_| {}).fetch(KEY, &store),
        Fetch::Hit(_)
    ));

    let (_other, store) = checkout();
    let wrong = remote(&server, |config| {
        config
            .env
            .set("TURBO_REMOTE_CACHE_SIGNATURE_KEY", "another-k3y")
    });
    assert_eq!(
        wrong.fetch(KEY, &store),
        Fetch::Miss(MissReason::BadSignature)
    );
    assert_eq!(wrong.warnings().len(), 1);
}

/// A server that refuses uploads (turborepo-remote-cache's `READ_ONLY`) costs one warning
/// and does not stop reads.
#[test]
fn a_server_refusing_writes_warns_once_and_reads_go_on() {
    let server = started(TestServer::turbo_read_only());
    let project = project();
    let remote = remote(&server, |_| {});
    for n in 0..4 {
        let mut result = project.result.clone();
        result.duration_ms = n;
        remote.upload(&format!("{KEY}{n}"), &result, project.store.cas());
    }
    let stats = remote.finish(deadline());
    assert_eq!((stats.upload_failed, stats.entries_up), (4, 0), "{stats:?}");
    assert!(!stats.circuit_open, "{stats:?}");
    // Four refused uploads later, reads still reach the server.
    let (_other, store) = checkout();
    assert_eq!(remote.fetch(KEY, &store), Fetch::Miss(MissReason::NotFound));
    let warnings = remote.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        matches!(warnings[0], Warning::WriteDenied { .. }),
        "{warnings:?}"
    );
    assert_eq!(server.object_count().unwrap(), 0);
}

/// A missing server binary is a failure that says how to install it.
#[test]
fn a_missing_server_binary_fails_with_an_install_hint() {
    use clab_remote::test_servers::ServerKind;
    for kind in [
        ServerKind::Nginx,
        ServerKind::Redis,
        ServerKind::Moto,
        ServerKind::Turbo,
    ] {
        let err = ServerError::NotInstalled {
            binary: kind.binary(),
            hint: kind.install_hint(),
        };
        let text = err.to_string();
        assert!(
            text.contains(" not found: ") && text.contains(" -g ") || text.contains("install"),
            "{text}"
        );
    }
    assert_eq!(
        ServerError::NotInstalled {
            binary: "nginx",
            hint: ServerKind::Nginx.install_hint()
        }
        .to_string(),
        "nginx not found: apt-get install -y nginx"
    );
}

/// A remote cache at `url` that gives a connection `connect` and a request `request` (and
/// the server's silences the default idle timeout).
fn reader_with_timeouts(url: &str, connect: Duration, request: Duration) -> RemoteCache {
    reader_with(
        url,
        Timeouts {
            connect,
            request,
            ..Timeouts::default()
        },
    )
}

/// A remote cache at `url` with `timeouts`.
fn reader_with(url: &str, timeouts: Timeouts) -> RemoteCache {
    let mut config = RemoteConfig::new(Some(RemoteUrl::parse(url).unwrap()));
    config.timeouts = timeouts;
    RemoteCache::from_config(config).unwrap().unwrap()
}

#[test]
fn a_read_refused_for_its_credentials_says_where_they_come_from() {
    const PASSWORD: &str = "pa55-for-redis";
    let server = started(TestServer::redis_with_password(PASSWORD));
    let project = project();
    upload(&remote(&server, |_| {}), &project);
    assert!(server.object_count().unwrap() > 0, "nothing was uploaded");
    let (_with, store) = checkout();
    assert!(matches!(
        remote(&server, |_| {}).fetch(KEY, &store),
        Fetch::Hit(_)
    ));

    // The same server asked without the password.
    let text = warning_without_credentials(&server);
    assert!(
        text.contains("NOAUTH")
            && text.contains("(credentials come from REDIS_USERNAME and REDIS_PASSWORD)"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn an_s3_remote_without_credentials_says_where_they_come_from() {
    let text = warning_without_credentials(&started(TestServer::moto()));
    assert!(
        text.contains("(credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
        "{text}"
    );
}

#[test]
fn the_turborepo_cache_s_reason_for_a_refusal_is_quoted() {
    let server = started(TestServer::turbo(None));
    let text = warning_without_credentials(&server);
    assert!(
        text.contains("the server answered 400 to GET `ac/")
            && text.contains(": Missing Authorization header"),
        "{text}"
    );
}

/// The one warning of a fetch from `server` by a reader given none of its environment.
fn warning_without_credentials(server: &TestServer) -> String {
    let (_checkout, store) = checkout();
    let reader = RemoteCache::from_config(RemoteConfig::new(Some(
        RemoteUrl::parse(&server.url()).unwrap(),
    )))
    .unwrap()
    .unwrap();
    assert_eq!(
        reader.fetch(KEY, &store),
        Fetch::Miss(MissReason::Unavailable)
    );
    let warnings = reader.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    warnings[0].to_string()
}

#[test]
fn a_server_answering_errors_is_unavailable_after_three_calls() {
    let port = fake_http_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let reader = reader_with_timeouts(
        &format!("http://127.0.0.1:{port}/cache"),
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let (_other, store) = checkout();
    for _ in 0..5 {
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::Unavailable)
        );
    }
    let stats = reader.finish(deadline());
    assert!(stats.circuit_open && stats.failures == 3, "{stats:?}");
    let warnings = reader.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].to_string().contains("503"), "{}", warnings[0]);
}

#[test]
fn a_silent_server_is_given_up_on_after_its_first_silence() {
    let warning = given_up_after_one_silence(fake_http_server(None));
    assert!(
        warning.contains("the server sent nothing for 300 ms (GET `ac/")
            && warning.contains("(1 failed call)"),
        "{warning}"
    );
}

#[test]
fn a_body_that_stalls_halfway_is_given_up_on_at_its_first_silence() {
    // The head and 10 of the 1,000 bytes it announces, then silence.
    let port = fake_http_server(Some(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
    ));
    let warning = given_up_after_one_silence(port);
    assert!(
        warning.contains("the server sent nothing for 300 ms"),
        "{warning}"
    );
}

/// Five fetches from the server at `port` with a minute per call but 300 ms of silence
/// allowed: the idle timeout ends the first call, which gives the remote up for the run.
/// Returns the run's one warning.
fn given_up_after_one_silence(port: u16) -> String {
    let reader = reader_with(
        &format!("http://127.0.0.1:{port}/cache"),
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(60),
            idle: Duration::from_millis(300),
        },
    );
    let (_other, store) = checkout();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::Unavailable)
        );
    }
    // (Not a measurement: without the idle timeout the first call alone takes a minute.)
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let stats = reader.stats();
    assert!(stats.circuit_open && stats.failures == 1, "{stats:?}");
    let warnings = reader.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    warnings[0].to_string()
}

/// A server that answers every request with a chunked body that does not end (64 KiB chunks
/// until the client hangs up, or 512 MiB went out, then the connection is cut); returns its
/// port and how many body bytes it managed to send.
fn endless_http_server() -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { break };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                // Endless as far as a bound of a few MiB can tell; stopping at 512 MiB keeps
                // a client without a bound (this test failing) from exhausting the machine.
                let mut left: u64 = 512 << 20;
                while left > 0 && stream.write_all(&framed).is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::AcqRel);
                    left -= chunk.len() as u64;
                }
            });
        }
    });
    (port, sent)
}

/// A manifest `GET` answered with an endless body (no `Content-Length`) stops at the bound:
/// a miss with a warning, fast, not an outage, and the server could send only about the
/// bound (plus what the sockets buffer) before clab hung up.
#[test]
fn an_endless_body_is_cut_off_at_its_bound() {
    use std::sync::atomic::Ordering;
    let (port, sent) = endless_http_server();
    for scheme in ["http", "turbo+http"] {
        let reader = reader_with_timeouts(
            &format!("{scheme}://127.0.0.1:{port}/cache"),
            Duration::from_secs(1),
            Duration::from_secs(20),
        );
        let (_other, store) = checkout();
        let started = Instant::now();
        assert_eq!(
            reader.fetch(KEY, &store),
            Fetch::Miss(MissReason::TooLarge {
                digest: None,
                max: clab_remote::MANIFEST_MAX
            }),
            "{scheme}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{scheme}: took {:?}",
            started.elapsed()
        );
        let stats = reader.stats();
        assert!(!stats.circuit_open && stats.failures == 0, "{stats:?}");
        assert_eq!(reader.warnings().len(), 1, "{:?}", reader.warnings());
    }
    // Give the writers a moment to notice the closed connections.
    std::thread::sleep(Duration::from_millis(200));
    let sent = sent.load(Ordering::Acquire);
    assert!(
        sent < 2 * clab_remote::MANIFEST_MAX + (32 << 20),
        "the server sent {sent} bytes"
    );
}
