//! Backends: where remote entries live, chosen by the URL's scheme, behind one [`Backend`]
//! trait of three byte-object operations (`get`, `put`, `exists`) on names `ac/<key>` and
//! `cas/<digest>` ([`ObjectName`]). Every `get` is bounded: the caller says how many bytes the
//! object may hold, and an object over that is [`BackendError::TooLarge`] after at most one
//! chunk more than the bound was read (HTTP, S3 and the other OpenDAL stores: refused on the
//! response's `Content-Length`, else streamed and cut off; Redis: `GETRANGE`). A hostile or
//! broken server cannot make clab hold more than the bound of any object it asked for.
//!
//! | URL | backend | module |
//! |---|---|---|
//! | `http(s)://host/prefix` | Bazel's HTTP cache layout: `GET/PUT/HEAD prefix/ac/KEY`, `prefix/cas/DIGEST` | [`http`] (reqwest) |
//! | `turbo+http(s)://host[/prefix]` | Turborepo remote cache API v8, `/v8/artifacts/:hash` | [`turbo`] (reqwest) |
//! | `s3://bucket/prefix?endpoint=URL&region=R` | S3 and compatible stores | [`dal`] (OpenDAL `services-s3`) |
//! | `redis://[:password@]host:port/db` (`rediss://` for TLS) | Redis `GET`/`SET`/`EXISTS` | [`redis`] (the redis crate) |
//! | `gs://bucket/prefix` | Google Cloud Storage | [`dal`] (OpenDAL `services-gcs`), untested here |
//! | `azblob://container/prefix?endpoint=URL` | Azure Blob Storage | [`dal`] (OpenDAL `services-azblob`), untested here |
//! | `ghac://prefix` | the GitHub Actions cache | [`dal`] (OpenDAL `services-ghac`), untested here |
//!
//! In: a [`RemoteUrl`], the credentials captured from the environment ([`Env`]) and
//! [`Timeouts`]. Out: an `Arc<dyn Backend>`. A missing object is `Ok(None)` / `Ok(false)`,
//! never an error; every error is a [`BackendError`] whose text has been scrubbed of the
//! credentials it could contain. Backends do not retry and do not count failures: the caller
//! ([`crate::RemoteCache`]) applies the timeout around each call and the circuit breaker.
//!
//! Why reqwest for `http(s)` rather than OpenDAL: OpenDAL's `http` service is read-only and its
//! `webdav` service creates directories with `MKCOL` and checks objects with `PROPFIND`, which
//! Bazel HTTP caches (bazel-remote, a plain nginx `dav_methods PUT` location) do not answer; the
//! Bazel layout is exactly three verbs on two paths, which a shared reqwest client does in a
//! few lines, with the same connect and request timeouts as every other backend.

mod bounded_body;
pub mod dal;
pub mod http;
mod http_client;
pub mod memory;
pub mod redis;
pub mod turbo;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clab_store::Digest;

use crate::remote_url::RemoteUrl;
use crate::secret::{Scrubber, Secret};
use http_client::HttpClient;

/// A boxed, sendable future (what a [`Backend`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which half of the cache an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Manifests by cache key.
    Ac,
    /// Blobs by digest.
    Cas,
}

/// The name of one remote object: `ac/<key>` or `cas/<digest>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName {
    namespace: Namespace,
    name: String,
}

impl ObjectName {
    /// The manifest of `key`; `None` unless the key is 1–128 characters of
    /// `[A-Za-z0-9._-]` (clab's keys are 64 hex characters), so that it is safe in a path, a
    /// URL and a Redis key alike.
    pub fn ac(key: &str) -> Option<ObjectName> {
        let safe = !key.is_empty()
            && key.len() <= 128
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        safe.then(|| ObjectName {
            namespace: Namespace::Ac,
            name: key.to_owned(),
        })
    }

    /// The blob with `digest`.
    pub fn cas(digest: &Digest) -> ObjectName {
        ObjectName {
            namespace: Namespace::Cas,
            name: digest.to_hex(),
        }
    }

    /// Its namespace.
    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The key or the digest's hex.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ac/<key>` or `cas/<digest>`.
    pub fn path(&self) -> String {
        match self.namespace {
            Namespace::Ac => format!("ac/{}", self.name),
            Namespace::Cas => format!("cas/{}", self.name),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A backend call failed. The text never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The server could not be reached, or the connection broke (a timeout is
    /// [`TimedOut`](Self::TimedOut)).
    #[error("{0}")]
    Transport(String),
    /// The server answered with an unexpected status.
    #[error("the server answered {status} to {op} `{object}`{}", said_text(said))]
    Status {
        /// `GET`, `PUT` or `HEAD`.
        op: &'static str,
        /// The object.
        object: String,
        /// The HTTP status.
        status: u16,
        /// What the server said about it, when it says it in a form clab reads (the
        /// Turborepo API's JSON `message`), shortened and scrubbed.
        said: Option<String>,
    },
    /// The server answered, but what it sent fails a check of the protocol (a Turborepo
    /// artifact whose `x-artifact-tag` does not verify): not an outage, a rejected object.
    #[error("{0}")]
    Integrity(String),
    /// The call timed out: the server did not connect, answer or go on sending in time. An
    /// outage that gives the remote up for the run at once (a server that stalls once
    /// would stall every call).
    #[error("{0}")]
    TimedOut(String),
    /// The server refused a read for its credentials, or their absence (Redis's `NOAUTH` or a
    /// failed `AUTH`, an object store's permission denied): an outage, like a 401 to a `GET`.
    #[error("{0}")]
    Unauthorized(String),
    /// The server refused a write (401 or 403 to a `PUT`, S3's `AccessDenied`): this job may
    /// read but not write. Not an outage: reads go on.
    #[error("{0}")]
    WriteDenied(String),
    /// The object holds more bytes than the caller's bound (no more than one chunk past the
    /// bound was read). Not an outage: the object is at fault, not the server.
    #[error("`{object}` holds more than {max} bytes")]
    TooLarge {
        /// The object.
        object: String,
        /// The bound it broke.
        max: u64,
    },
}

impl BackendError {
    /// Whether this failure counts toward the circuit breaker (the remote is down or
    /// misbehaving), as opposed to one rejected object or a refused write.
    pub fn is_outage(&self) -> bool {
        !matches!(
            self,
            BackendError::Integrity(_)
                | BackendError::WriteDenied(_)
                | BackendError::TooLarge { .. }
        )
    }

    /// Whether the server refused the call as unauthorized (401 or 403, or a refused write):
    /// wrong or missing credentials, or a job that may not do this.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackendError::Status {
                status: 401 | 403,
                ..
            } | BackendError::Unauthorized(_)
                | BackendError::WriteDenied(_)
        )
    }

    /// The error of `name` holding more than `max` bytes.
    pub fn too_large(name: &ObjectName, max: u64) -> BackendError {
        BackendError::TooLarge {
            object: name.path(),
            max,
        }
    }

    /// The error of an unexpected HTTP status: a refused `PUT` is [`WriteDenied`](Self::WriteDenied).
    pub fn status(op: &'static str, name: &ObjectName, status: u16) -> BackendError {
        BackendError::status_saying(op, name, status, None)
    }

    /// [`status`](Self::status) with what the server said about it.
    pub fn status_saying(
        op: &'static str,
        name: &ObjectName,
        status: u16,
        said: Option<String>,
    ) -> BackendError {
        if op == "PUT" && matches!(status, 401 | 403) {
            BackendError::WriteDenied(format!(
                "the server answered {status} to PUT `{name}`{}",
                said_text(&said)
            ))
        } else {
            BackendError::Status {
                op,
                object: name.path(),
                status,
                said,
            }
        }
    }
}

/// Byte objects by name: the only thing clab needs of a remote store.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The object's bytes, or `None` if there is none; [`BackendError::TooLarge`] if it holds
    /// more than `max` bytes, found in the same single request, without holding more than
    /// `max` of them (nor reading more than one chunk past).
    fn get(&self, name: ObjectName, max: u64)
    -> BoxFuture<'_, Result<Option<Bytes>, BackendError>>;
    /// Stores `bytes` under the name, replacing what was there.
    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Whether an object is stored under the name.
    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>>;
}

/// How long a backend may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a connection (default 2 s).
    pub connect: Duration,
    /// For a whole call, connection included (default 30 s; blobs can be large).
    pub request: Duration,
    /// The longest the server may send nothing while an answer is awaited (default 5 s):
    /// over HTTP between two reads, from Redis for a whole reply. A server that stalls this
    /// long is given up on for the run at once.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(30),
            idle: Duration::from_secs(5),
        }
    }
}

/// Prefixes of the environment variables a backend may read credentials and settings from.
pub const ENV_PREFIXES: &[&str] = &[
    "AWS_",
    "TURBO_",
    "GOOGLE_",
    "AZURE_",
    "ACTIONS_",
    "REDIS_",
    "CLAB_REMOTE_CACHE_TOKEN",
];

/// The environment variables backends read (names with one of [`ENV_PREFIXES`]), captured
/// once. Values are [`Secret`]s: `Debug` lists the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, Secret>);

impl Env {
    /// The variables of this process that backends may read.
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars())
    }

    /// The variables among `pairs` that backends may read.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Env {
        Env(pairs
            .into_iter()
            .filter(|(name, _)| ENV_PREFIXES.iter().any(|p| name.starts_with(p)))
            .map(|(name, value)| (name, Secret::new(value)))
            .collect())
    }

    /// A variable's value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name).filter(|v| !v.expose().is_empty())
    }

    /// Sets a variable (for tests and callers that assemble settings themselves).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), Secret::new(value));
    }

    /// A scrubber that knows every captured value that looks like a credential (names ending
    /// in `KEY`, `TOKEN`, `SECRET`, `PASSWORD` or containing `CREDENTIAL`).
    pub fn scrubber(&self) -> Scrubber {
        let mut scrubber = Scrubber::default();
        for (name, value) in &self.0 {
            let secretish = ["KEY", "TOKEN", "SECRET", "PASSWORD"]
                .iter()
                .any(|s| name.ends_with(s))
                || name.contains("CREDENTIAL")
                || name.contains("CONNECTION_STRING");
            if secretish {
                scrubber.add(value.expose());
            }
        }
        scrubber
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Why a URL cannot be turned into a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

/// The backend for `url`.
pub fn open(
    url: &RemoteUrl,
    env: &Env,
    timeouts: Timeouts,
    scrubber: &Scrubber,
) -> Result<Arc<dyn Backend>, OpenError> {
    crate::install_crypto_provider();
    // TLS only where the URL speaks it (OpenDAL's services: always, their endpoints and
    // credential providers are mostly https).
    let tls = !matches!(url.scheme(), "http" | "turbo+http");
    let client = HttpClient::new(timeouts, tls);
    let backend: Arc<dyn Backend> = match url.scheme() {
        "http" | "https" => Arc::new(http::HttpBackend::new(url, env, client, scrubber.clone())?),
        "turbo+http" | "turbo+https" => Arc::new(turbo::TurboBackend::new(
            url,
            env,
            client,
            scrubber.clone(),
        )?),
        "redis" | "rediss" => Arc::new(self::redis::RedisBackend::new(
            url,
            env,
            timeouts,
            scrubber.clone(),
        )?),
        "s3" | "gs" | "azblob" | "ghac" => {
            Arc::new(dal::DalBackend::new(url, env, client, scrubber.clone())?)
        }
        other => return Err(OpenError(format!("unsupported scheme `{other}`"))),
    };
    Ok(backend)
}

/// `: what the server said`, or nothing.
fn said_text(said: &Option<String>) -> String {
    said.as_ref().map(|s| format!(": {s}")).unwrap_or_default()
}

/// `read` (a read's answer head, or the next piece of its body), given up as
/// [`BackendError::TimedOut`] when the server sends nothing for `idle` — reqwest's own
/// `read_timeout` also counts the time a `PUT` spends sending its body, so it is not used.
pub(crate) async fn within_idle<T>(
    idle: Duration,
    op: &'static str,
    name: &ObjectName,
    read: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(idle, read).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::TimedOut(format!(
            "{} ({op} `{name}`)",
            silence(idle)
        ))),
    }
}

/// How a timed-out read begins its text (and how it is known again once a library wrapped it).
pub(crate) const SILENCE: &str = "the server sent nothing for";

/// "the server sent nothing for 5 s" (or "… for 300 ms").
pub(crate) fn silence(idle: Duration) -> String {
    let millis = idle.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{SILENCE} {} s", millis / 1000)
    } else {
        format!("{SILENCE} {millis} ms")
    }
}

/// A reqwest error as a [`BackendError`]: a timeout is [`BackendError::TimedOut`], anything else
/// [`BackendError::Transport`].
pub(crate) fn reqwest_error(error: reqwest::Error, scrubber: &Scrubber) -> BackendError {
    if error.is_timeout() {
        BackendError::TimedOut(describe_reqwest(error, scrubber))
    } else {
        BackendError::Transport(describe_reqwest(error, scrubber))
    }
}

/// The text of a reqwest error and its causes ("error sending request: client error
/// (Connect): tcp connect error: Connection refused"), without its URL (which can hold
/// credentials) and scrubbed.
pub(crate) fn describe_reqwest(error: reqwest::Error, scrubber: &Scrubber) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    scrubber.scrub(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_safe_paths() {
        assert_eq!(ObjectName::ac("abc123").unwrap().path(), "ac/abc123");
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "k?x=1",
            &"k".repeat(129),
        ] {
            assert!(ObjectName::ac(bad).is_none(), "{bad:?}");
        }
        let digest = Digest::of_bytes(b"x");
        assert_eq!(ObjectName::cas(&digest).path(), format!("cas/{digest}"));
    }

    #[test]
    fn env_keeps_only_backend_variables_and_hides_values() {
        let env = Env::from_pairs([
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                "s3cr3t-value".to_owned(),
            ),
            ("TURBO_TOKEN".to_owned(), "turbo-token-value".to_owned()),
            ("TURBO_TEAM".to_owned(), "my-team".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
            ("AWS_REGION".to_owned(), String::new()),
        ]);
        let debug = format!("{env:?}");
        assert!(
            debug.contains("TURBO_TOKEN") && !debug.contains("HOME"),
            "{debug}"
        );
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("turbo-token"),
            "{debug}"
        );
        assert!(env.get("AWS_REGION").is_none(), "empty means unset");
        let scrubbed = env
            .scrubber()
            .scrub("failed with s3cr3t-value and turbo-token-value for my-team");
        assert_eq!(scrubbed, "failed with **** and **** for my-team");
    }
}
