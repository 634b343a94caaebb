//! Object stores through Apache OpenDAL: S3 (and compatible stores), Google Cloud Storage,
//! Azure Blob Storage and the GitHub Actions cache, each one Cargo feature of OpenDAL
//! (`services-*`, default features off). Redis has its own module ([`super::redis`]).
//!
//! In: the URL and the environment. Objects live at `<root>/ac/<key>` and
//! `<root>/cas/<digest>`, where the root is the URL's path (`s3://bucket/clab` → `clab/`):
//!
//! - `s3://bucket[/root]?endpoint=URL&region=R`: `endpoint` defaults to `AWS_ENDPOINT_URL`,
//!   then AWS; `region` to `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`.
//!   Credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`); without
//!   `AWS_ACCESS_KEY_ID`, OpenDAL's default AWS chain (web identity, profile, instance
//!   metadata). Path-style requests, which every S3-compatible server answers.
//! - `gs://bucket[/root]`: credentials as OpenDAL's GCS service finds them
//!   (`GOOGLE_APPLICATION_CREDENTIALS`, …). Untested here.
//! - `azblob://container[/root]?endpoint=URL`: `AZURE_STORAGE_CONNECTION_STRING`, or
//!   `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY`. Untested here.
//! - `ghac://[version]`: the GitHub Actions cache, from the runner's `ACTIONS_*` variables
//!   (an action must expose them to the job). Entries there are write-once: rewriting a
//!   manifest fails. Untested here.
//!
//! Out: a [`Backend`]; a `get` is one streamed `GET` refused on its length or cut off at its
//! bound; OpenDAL's `NotFound` is `None`/`false`, any other error a
//! [`BackendError::Transport`] with OpenDAL's text, scrubbed. OpenDAL's HTTP services use the
//! remote cache's shared reqwest client (its connect and request timeouts) through
//! `opendal-http-transport-reqwest`.

use bytes::Bytes;
use futures_util::TryStreamExt;
use opendal::{ErrorKind, HttpTransport, HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;

use super::bounded_body::{BoundedBody, Exceeded};
use super::http_client::HttpClient;
use super::{Backend, BackendError, BoxFuture, Env, ObjectName, OpenError, SILENCE, silence};
use crate::remote_url::RemoteUrl;
use crate::secret::Scrubber;

/// An OpenDAL operator as a [`Backend`].
#[derive(Debug)]
pub struct DalBackend {
    operator: Operator,
    scrubber: Scrubber,
}

impl DalBackend {
    /// The backend for `url` (scheme `s3`, `gs`, `azblob` or `ghac`).
    pub(crate) fn new(
        url: &RemoteUrl,
        env: &Env,
        client: HttpClient,
        scrubber: Scrubber,
    ) -> Result<DalBackend, OpenError> {
        let operator = operator(url, env).map_err(|e| OpenError(scrubber.scrub(&e.to_string())))?;
        let context = OperationContext::new()
            .with_http_transport(HttpTransporter::new(LazyTransport(client)));
        Ok(DalBackend {
            operator: operator.with_context(context),
            scrubber,
        })
    }

    fn error(&self, error: opendal::Error) -> BackendError {
        let text = describe_dal(&error, &self.scrubber);
        // OpenDAL reports credentials it found nowhere as an unexpected error whose text
        // says "failed to load signing credential"; that is a refusal too.
        if error.kind() == ErrorKind::PermissionDenied || text.contains("signing credential") {
            BackendError::Unauthorized(text)
        } else if text.contains(SILENCE) || text.contains("operation timed out") {
            BackendError::TimedOut(text)
        } else {
            BackendError::Transport(text)
        }
    }
}

/// OpenDAL's HTTP transport over the remote cache's client, which is built on the first
/// request (see `http_client`): a client that cannot be built fails each request.
struct LazyTransport(HttpClient);

impl HttpTransport for LazyTransport {
    async fn fetch(
        &self,
        request: http::Request<opendal::Buffer>,
    ) -> opendal::Result<http::Response<opendal::HttpBody>> {
        let client = self
            .0
            .get()
            .map_err(|e| opendal::Error::new(ErrorKind::Unexpected, e.to_string()))?;
        let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        let transport = ReqwestTransport::new(client.clone());
        let fetch = transport.fetch(request);
        if !read {
            return fetch.await;
        }
        // A read's answer head within the idle timeout (its body is bounded by the request
        // timeout only).
        let idle = self.0.idle();
        tokio::time::timeout(idle, fetch)
            .await
            .unwrap_or_else(|_| Err(opendal::Error::new(ErrorKind::Unexpected, silence(idle))))
    }
}

/// An OpenDAL error as a short line: its kind, its message and its causes ("Unexpected: send
/// http request: error sending request: … Connection refused"), without the context map
/// (request URL, path, range) that makes OpenDAL's own text long; scrubbed.
fn describe_dal(error: &opendal::Error, scrubber: &Scrubber) -> String {
    let mut text = format!("{}: {}", error.kind(), error.message());
    let mut source = std::error::Error::source(error);
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

/// The bucket or container (the URL's host) and the root (its path, `/`-terminated).
fn bucket_and_root(url: &RemoteUrl) -> Result<(String, String), opendal::Error> {
    let bucket = url
        .url()
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            opendal::Error::new(
                ErrorKind::ConfigInvalid,
                "the URL names no bucket or container",
            )
        })?
        .to_owned();
    Ok((bucket, root_of(url.url().path())))
}

fn root_of(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

fn operator(url: &RemoteUrl, env: &Env) -> Result<Operator, opendal::Error> {
    let var = |name: &str| env.get(name).map(|v| v.expose().to_owned());
    match url.scheme() {
        "s3" => {
            let (bucket, root) = bucket_and_root(url)?;
            let mut builder = opendal::services::S3::default().bucket(&bucket).root(&root);
            let region = url
                .query("region")
                .or_else(|| var("AWS_REGION"))
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned());
            builder = builder.region(&region);
            if let Some(endpoint) = url.query("endpoint").or_else(|| var("AWS_ENDPOINT_URL")) {
                builder = builder.endpoint(&endpoint);
            }
            if let Some(id) = var("AWS_ACCESS_KEY_ID") {
                builder = builder
                    .disable_config_load()
                    .disable_ec2_metadata()
                    .access_key_id(&id)
                    .secret_access_key(&var("AWS_SECRET_ACCESS_KEY").unwrap_or_default());
                if let Some(token) = var("AWS_SESSION_TOKEN") {
                    builder = builder.session_token(&token);
                }
            }
            Operator::new(builder)
        }
        "gs" => {
            let (bucket, root) = bucket_and_root(url)?;
            let builder = opendal::services::Gcs::default()
                .bucket(&bucket)
                .root(&root);
            Operator::new(builder)
        }
        "azblob" => {
            let (container, root) = bucket_and_root(url)?;
            let mut builder = match var("AZURE_STORAGE_CONNECTION_STRING") {
                Some(connection) => opendal::services::Azblob::from_connection_string(&connection)?,
                None => {
                    let mut builder = opendal::services::Azblob::default();
                    if let Some(account) = var("AZURE_STORAGE_ACCOUNT") {
                        builder = builder.account_name(&account);
                    }
                    if let Some(key) = var("AZURE_STORAGE_KEY") {
                        builder = builder.account_key(&key);
                    }
                    builder
                }
            };
            builder = builder.container(&container).root(&root);
            if let Some(endpoint) = url.query("endpoint") {
                builder = builder.endpoint(&endpoint);
            }
            Operator::new(builder)
        }
        "ghac" => {
            let mut builder = opendal::services::Ghac::default().root("/clab/");
            if let Some(version) = url.url().host_str().filter(|h| !h.is_empty()) {
                builder = builder.version(version);
            }
            if let Some(endpoint) = var("ACTIONS_RESULTS_URL").or_else(|| var("ACTIONS_CACHE_URL"))
            {
                builder = builder.endpoint(&endpoint);
            }
            if let Some(token) = var("ACTIONS_RUNTIME_TOKEN") {
                builder = builder.runtime_token(&token);
            }
            Operator::new(builder)
        }
        other => Err(opendal::Error::new(
            ErrorKind::Unsupported,
            format!("unsupported scheme `{other}`"),
        )),
    }
}

impl Backend for DalBackend {
    /// One `GET` of the whole object, streamed: a length over `max` (the response's
    /// `Content-Length`, which OpenDAL's S3 reader always has and holds the body to) is
    /// refused before the body is read; otherwise the body is gathered under `max`
    /// (`bounded_body::BoundedBody`), so a store without the length still stops one chunk
    /// past it. Not a ranged read: OpenDAL refuses a range answered with fewer bytes than
    /// asked for, which every object smaller than its bound would be.
    fn get(
        &self,
        name: ObjectName,
        max: u64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let opened = async {
                let reader = self.operator.reader(&name.path()).await?;
                let mut stream = reader.into_stream(..).await?;
                let length = match stream.metadata().await {
                    Ok(metadata) => Some(metadata.content_length()),
                    Err(e) if e.kind() == ErrorKind::Unsupported => None,
                    Err(e) => return Err(e),
                };
                Ok((stream, length))
            };
            let (mut stream, length) = match opened.await {
                Ok(opened) => opened,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            let too_large = |_: Exceeded| BackendError::too_large(&name, max);
            let mut body = BoundedBody::new(length, max).map_err(too_large)?;
            while let Some(buffer) = stream.try_next().await.map_err(|e| self.error(e))? {
                for chunk in buffer {
                    body.push(chunk).map_err(too_large)?;
                }
            }
            Ok(Some(body.finish()))
        })
    }

    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            match self.operator.write(&name.path(), bytes).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    Err(BackendError::WriteDenied(describe_dal(&e, &self.scrubber)))
                }
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            match self.operator.stat(&name.path()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(self.error(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> HttpClient {
        crate::install_crypto_provider();
        HttpClient::new(crate::backend::Timeouts::default(), true)
    }

    #[test]
    fn roots_come_from_the_path() {
        assert_eq!(root_of(""), "/");
        assert_eq!(root_of("/"), "/");
        assert_eq!(root_of("/clab/ci/"), "/clab/ci/");
        let url = RemoteUrl::parse("s3://bucket/team/clab?region=eu-west-1").unwrap();
        assert_eq!(
            bucket_and_root(&url).unwrap(),
            ("bucket".to_owned(), "/team/clab/".to_owned())
        );
    }

    #[test]
    fn every_scheme_builds_an_operator_without_touching_the_network() {
        let mut env = Env::default();
        env.set("AWS_ACCESS_KEY_ID", "id");
        env.set("AWS_SECRET_ACCESS_KEY", "secret");
        env.set("AZURE_STORAGE_ACCOUNT", "account");
        env.set("AZURE_STORAGE_KEY", "a2V5");
        env.set("ACTIONS_RESULTS_URL", "http://127.0.0.1:1/");
        env.set("ACTIONS_RUNTIME_TOKEN", "token");
        for url in [
            "s3://bucket/clab?endpoint=http://127.0.0.1:1&region=r",
            "gs://bucket/clab",
            "azblob://container/clab?endpoint=http://127.0.0.1:1",
            "ghac://v1",
        ] {
            let url = RemoteUrl::parse(url).unwrap();
            let built = DalBackend::new(&url, &env, client(), Scrubber::default());
            assert!(built.is_ok(), "{url}: {:?}", built.err());
        }
        let url = RemoteUrl::parse("s3:///no-bucket").unwrap();
        assert!(DalBackend::new(&url, &env, client(), Scrubber::default()).is_err());
    }
}
