//! The Bazel HTTP cache layout over reqwest: `GET`/`PUT`/`HEAD` on `<base>/ac/<key>` and
//! `<base>/cas/<digest>`.
//!
//! In: `http(s)://host[:port]/prefix` (a query or fragment is ignored). Credentials, from the
//! environment only: the URL's `user:password` when the URL itself comes from
//! `CLAB_REMOTE_CACHE` (HTTP basic auth), or `CLAB_REMOTE_CACHE_TOKEN` (a bearer token). Out:
//! 200 → the bytes (no more than the caller's bound: see `bounded_body::read_bounded`), 404 →
//! none; `PUT` succeeds on any 2xx. Works with any server that stores a `PUT` body under its
//! path and serves it back: nginx with `dav_methods PUT; create_full_put_path on;` is what the
//! tests run. bazel-remote is not compatible: it checks
//! that a `cas/` object's name is the SHA-256 of its bytes (clab names blobs by blake3) and
//! that `ac/` holds Bazel `ActionResult` protobufs.

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use url::Url;

use super::bounded_body::read_bounded;
use super::http_client::HttpClient;
use super::{
    Backend, BackendError, BoxFuture, Env, ObjectName, OpenError, reqwest_error, within_idle,
};
use crate::remote_url::RemoteUrl;
use crate::secret::{Scrubber, Secret};

/// The environment variable holding a bearer token for `http(s)` remotes.
pub const TOKEN_ENV: &str = "CLAB_REMOTE_CACHE_TOKEN";

/// How requests authenticate.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        user: String,
        password: Option<Secret>,
    },
    Bearer(Secret),
}

/// A Bazel-layout HTTP cache.
#[derive(Debug)]
pub struct HttpBackend {
    client: HttpClient,
    /// `scheme://host:port/prefix` without credentials, query or trailing slash, parsed once:
    /// each request's URL is this with its path extended (parsing a whole URL per request,
    /// host and all, was ~1% of a 2,000-entry restore's CPU).
    base: Url,
    /// `base`'s path, without the trailing slash the parser gives an empty one.
    prefix: String,
    auth: Auth,
    scrubber: Scrubber,
}

impl HttpBackend {
    /// The backend for `url`.
    pub(crate) fn new(
        url: &RemoteUrl,
        env: &Env,
        client: HttpClient,
        scrubber: Scrubber,
    ) -> Result<HttpBackend, OpenError> {
        let auth = match (url.username(), env.get(TOKEN_ENV)) {
            (Some(user), _) => Auth::Basic {
                user,
                password: url.password(),
            },
            (None, Some(token)) => Auth::Bearer(token.clone()),
            (None, None) => Auth::None,
        };
        let base = base_of(url.url())?;
        let base = Url::parse(&base).map_err(|e| OpenError(format!("bad URL {base}: {e}")))?;
        Ok(HttpBackend {
            client,
            prefix: base.path().trim_end_matches('/').to_owned(),
            base,
            auth,
            scrubber,
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        name: &ObjectName,
    ) -> Result<RequestBuilder, BackendError> {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/{}", self.prefix, name.path()));
        let request = self.client.get()?.request(method, url);
        Ok(match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => {
                request.basic_auth(user, password.as_ref().map(Secret::expose))
            }
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
        })
    }

    fn transport(&self, error: reqwest::Error) -> BackendError {
        reqwest_error(error, &self.scrubber)
    }
}

/// `scheme://host:port/prefix` of `url`, without credentials, query, fragment or trailing `/`.
pub(crate) fn base_of(url: &Url) -> Result<String, OpenError> {
    let host = url
        .host_str()
        .ok_or_else(|| OpenError("the URL has no host".to_owned()))?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let scheme = url.scheme().trim_start_matches("turbo+");
    Ok(format!(
        "{scheme}://{host}{port}{}",
        url.path().trim_end_matches('/')
    ))
}

impl Backend for HttpBackend {
    /// One `GET`: a `Content-Length` over `max` is refused before the body is read; a body
    /// without one is read chunk by chunk and cut off past `max` (`bounded_body::read_bounded`).
    fn get(
        &self,
        name: ObjectName,
        max: u64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let request = self.request(reqwest::Method::GET, &name)?;
            let idle = self.client.idle();
            let sent = async { request.send().await.map_err(|e| self.transport(e)) };
            let response = within_idle(idle, "GET", &name, sent).await?;
            match response.status() {
                StatusCode::NOT_FOUND => Ok(None),
                status if status.is_success() => {
                    read_bounded(response, &name, max, idle, &self.scrubber)
                        .await
                        .map(Some)
                }
                status => Err(BackendError::status("GET", &name, status.as_u16())),
            }
        })
    }

    /// A PUT is idempotent (the same name always holds the same bytes), so a server error
    /// (a busy server's 503, a proxy's 502) is tried again twice, briefly, before it counts
    /// as a failure toward the breaker.
    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let mut status = StatusCode::OK;
            for pause_ms in [0, 20, 100] {
                if pause_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                }
                let response = self
                    .request(reqwest::Method::PUT, &name)?
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport(e))?;
                status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                if !status.is_server_error() {
                    break;
                }
            }
            Err(BackendError::status("PUT", &name, status.as_u16()))
        })
    }

    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            let request = self.request(reqwest::Method::HEAD, &name)?;
            let sent = async { request.send().await.map_err(|e| self.transport(e)) };
            let response = within_idle(self.client.idle(), "HEAD", &name, sent).await?;
            match response.status() {
                StatusCode::NOT_FOUND => Ok(false),
                status if status.is_success() => Ok(true),
                status => Err(BackendError::status("HEAD", &name, status.as_u16())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_keeps_host_port_and_prefix_only() {
        let url = RemoteUrl::parse("https://u:p@cache.example:8443/team/clab/?x=1#f").unwrap();
        assert_eq!(
            base_of(url.url()).unwrap(),
            "https://cache.example:8443/team/clab"
        );
        let url = RemoteUrl::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(base_of(url.url()).unwrap(), "http://127.0.0.1:9090");
    }
}
