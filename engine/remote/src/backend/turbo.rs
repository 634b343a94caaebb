//! The Turborepo remote cache API (v8) over reqwest, so that a team's Vercel or self-hosted
//! turbo cache (ducktors' `turborepo-remote-cache`, …) also serves clab.
//!
//! In: `turbo+http(s)://host[/prefix]`; from the environment, as turbo reads them:
//! `TURBO_TOKEN` (sent as `Authorization: Bearer`), `TURBO_TEAM` (the team slug, sent as
//! `?slug=`), `TURBO_TEAMID` (sent as `?teamId=` when it starts with `team_`, as turbo does;
//! a `TURBO_TEAM` that starts with `team_` is taken as the id) and
//! `TURBO_REMOTE_CACHE_SIGNATURE_KEY`.
//!
//! Mapping: every clab object is one artifact, `PUT/GET/HEAD <base>/v8/artifacts/<id>` with
//! `Content-Type: application/octet-stream`: a manifest's id is `clab-ac-<key>`, a blob's
//! `clab-cas-<digest>`. The prefixes keep clab's objects apart from turbo's own artifacts
//! (16 hex characters) in a cache both tools share; turbo never reads a clab artifact. An
//! artifact's body is the object's bytes as they are (no tar, no wrapping), so a `GET` is
//! bounded by the object's own bound, as for the HTTP layout.
//!
//! Artifact tags: with `TURBO_REMOTE_CACHE_SIGNATURE_KEY` set, each upload carries
//! `x-artifact-tag`: base64 (standard, padded) of HMAC-SHA256 keyed with the variable's bytes
//! over the artifact id, then the team id (`TURBO_TEAMID`, or empty), then the body — turbo's
//! definition. A download must carry a tag that verifies, else it is rejected
//! ([`BackendError::Integrity`]). The tag proves only that someone with the shared secret
//! wrote the artifact; clab's own ed25519 signature and blake3 digests still apply on top.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::{RequestBuilder, StatusCode};
use sha2::Sha256;

use super::bounded_body::read_bounded;
use super::http::base_of;
use super::http_client::HttpClient;
use super::{
    Backend, BackendError, BoxFuture, Env, Namespace, ObjectName, OpenError, reqwest_error,
    within_idle,
};
use crate::remote_url::RemoteUrl;
use crate::secret::{Scrubber, Secret};

/// The header an artifact's tag travels in.
pub const TAG_HEADER: &str = "x-artifact-tag";

/// The most of a server's message a warning quotes.
const SAID_MAX: usize = 200;

/// A Turborepo remote cache.
#[derive(Debug)]
pub struct TurboBackend {
    client: HttpClient,
    /// `scheme://host:port/prefix/v8/artifacts`.
    artifacts: String,
    token: Option<Secret>,
    /// Query parameters naming the team.
    team_query: Vec<(&'static str, String)>,
    /// The team id that enters artifact tags (empty without one).
    team_id: String,
    signature_key: Option<Secret>,
    scrubber: Scrubber,
}

impl TurboBackend {
    /// The backend for `url`.
    pub(crate) fn new(
        url: &RemoteUrl,
        env: &Env,
        client: HttpClient,
        scrubber: Scrubber,
    ) -> Result<TurboBackend, OpenError> {
        let team = env.get("TURBO_TEAM").map(|t| t.expose().to_owned());
        let team_id = env
            .get("TURBO_TEAMID")
            .map(|t| t.expose().to_owned())
            .or_else(|| team.clone().filter(|t| t.starts_with("team_")));
        let mut team_query = Vec::new();
        if let Some(id) = team_id.as_ref().filter(|t| t.starts_with("team_")) {
            team_query.push(("teamId", id.clone()));
        }
        if let Some(slug) = team.filter(|t| !t.starts_with("team_")) {
            team_query.push(("slug", slug));
        }
        Ok(TurboBackend {
            client,
            artifacts: format!("{}/v8/artifacts", base_of(url.url())?),
            token: env.get("TURBO_TOKEN").cloned(),
            team_query,
            team_id: team_id.unwrap_or_default(),
            signature_key: env.get("TURBO_REMOTE_CACHE_SIGNATURE_KEY").cloned(),
            scrubber,
        })
    }

    /// The artifact id of a clab object.
    pub fn artifact_id(name: &ObjectName) -> String {
        match name.namespace() {
            Namespace::Ac => format!("clab-ac-{}", name.name()),
            Namespace::Cas => format!("clab-cas-{}", name.name()),
        }
    }

    fn request(&self, method: reqwest::Method, id: &str) -> Result<RequestBuilder, BackendError> {
        let mut url = format!("{}/{id}", self.artifacts);
        if !self.team_query.is_empty() {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.team_query)
                .finish();
            url = format!("{url}?{query}");
        }
        let request = self.client.get()?.request(method, url);
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        })
    }

    /// The artifact tag of `body` under `id`, if a signature key is set.
    fn tag(&self, id: &str, body: &[u8]) -> Option<String> {
        let key = self.signature_key.as_ref()?;
        Some(STANDARD.encode(artifact_tag(
            key.expose().as_bytes(),
            id,
            &self.team_id,
            body,
        )))
    }

    /// What the server says about a refusal: the `message` of its JSON body (turbo's API and
    /// ducktors' server put it at `error.message` or `message`: "querystring should have
    /// required property 'team'"), at most [`SAID_MAX`] characters, scrubbed; `None` for
    /// anything else, or a body that does not come within the idle timeout.
    async fn said(&self, response: reqwest::Response, name: &ObjectName) -> Option<String> {
        let idle = self.client.idle();
        let body = read_bounded(response, name, 4096, idle, &self.scrubber)
            .await
            .ok()?;
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let message = json
            .pointer("/error/message")
            .or_else(|| json.get("message"))?
            .as_str()?;
        // Scrubbed whole first: a secret cut in two at the bound would escape the scrubber.
        let scrubbed = self.scrubber.scrub(message);
        Some(scrubbed.chars().take(SAID_MAX).collect())
    }

    fn transport(&self, error: reqwest::Error) -> BackendError {
        reqwest_error(error, &self.scrubber)
    }
}

/// HMAC-SHA256 keyed with `key` over `id`, `team_id` and `body`, in that order.
pub fn artifact_tag(key: &[u8], id: &str, team_id: &str, body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        <Hmac<Sha256> as Mac>::new_from_slice(&[]).expect("an empty HMAC key is valid")
    });
    mac.update(id.as_bytes());
    mac.update(team_id.as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

impl Backend for TurboBackend {
    /// One `GET`, its body bounded as for the HTTP layout (`bounded_body::read_bounded`):
    /// an artifact is the object's bytes as they are (no wrapping), so its bound is the
    /// object's.
    fn get(
        &self,
        name: ObjectName,
        max: u64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let id = Self::artifact_id(&name);
            let request = self.request(reqwest::Method::GET, &id)?;
            let idle = self.client.idle();
            let sent = async { request.send().await.map_err(|e| self.transport(e)) };
            let response = within_idle(idle, "GET", &name, sent).await?;
            match response.status() {
                StatusCode::NOT_FOUND => Ok(None),
                status if status.is_success() => {
                    let tag = response
                        .headers()
                        .get(TAG_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let bytes = read_bounded(response, &name, max, idle, &self.scrubber).await?;
                    if let Some(expected) = self.tag(&id, &bytes) {
                        match tag {
                            None => {
                                return Err(BackendError::Integrity(format!(
                                    "artifact `{id}` has no {TAG_HEADER}"
                                )));
                            }
                            Some(tag) if tag != expected => {
                                return Err(BackendError::Integrity(format!(
                                    "artifact `{id}`'s {TAG_HEADER} does not verify"
                                )));
                            }
                            Some(_) => {}
                        }
                    }
                    Ok(Some(bytes))
                }
                status => {
                    let said = self.said(response, &name).await;
                    Err(BackendError::status_saying(
                        "GET",
                        &name,
                        status.as_u16(),
                        said,
                    ))
                }
            }
        })
    }

    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let id = Self::artifact_id(&name);
            let mut request = self
                .request(reqwest::Method::PUT, &id)?
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
            if let Some(tag) = self.tag(&id, &bytes) {
                request = request.header(TAG_HEADER, tag);
            }
            let response = request
                .body(bytes)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                let said = self.said(response, &name).await;
                Err(BackendError::status_saying(
                    "PUT",
                    &name,
                    status.as_u16(),
                    said,
                ))
            }
        })
    }

    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            let id = Self::artifact_id(&name);
            let request = self.request(reqwest::Method::HEAD, &id)?;
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

    fn client() -> HttpClient {
        crate::install_crypto_provider();
        HttpClient::new(crate::backend::Timeouts::default(), true)
    }
    use clab_store::Digest;

    fn backend(pairs: &[(&str, &str)]) -> TurboBackend {
        let mut env = Env::default();
        for (name, value) in pairs {
            env.set(name, value);
        }
        let url = RemoteUrl::parse("turbo+https://cache.example/api/").unwrap();
        TurboBackend::new(&url, &env, client(), Scrubber::default()).unwrap()
    }

    #[test]
    fn ids_and_team_parameters_follow_turbo() {
        let digest = Digest::of_bytes(b"x");
        assert_eq!(
            TurboBackend::artifact_id(&ObjectName::cas(&digest)),
            format!("clab-cas-{digest}")
        );
        assert_eq!(
            TurboBackend::artifact_id(&ObjectName::ac("k1").unwrap()),
            "clab-ac-k1"
        );
        let slug = backend(&[("TURBO_TEAM", "acme")]);
        assert_eq!(slug.artifacts, "https://cache.example/api/v8/artifacts");
        assert_eq!(slug.team_query, vec![("slug", "acme".to_owned())]);
        assert_eq!(slug.team_id, "");
        let id = backend(&[("TURBO_TEAM", "acme"), ("TURBO_TEAMID", "team_123")]);
        assert_eq!(
            id.team_query,
            vec![
                ("teamId", "team_123".to_owned()),
                ("slug", "acme".to_owned())
            ]
        );
        assert_eq!(id.team_id, "team_123");
        let team_as_id = backend(&[("TURBO_TEAM", "team_456")]);
        assert_eq!(
            team_as_id.team_query,
            vec![("teamId", "team_456".to_owned())]
        );
    }

    #[test]
    fn tags_are_hmac_sha256_over_id_team_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?", split over
        // the three parts to show they are concatenated.
        let tag = artifact_tag(b"Jefe", "what do ya", " want ", b"for nothing?");
        assert_eq!(
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = backend(&[
            ("TURBO_TEAMID", "team_1"),
            ("TURBO_REMOTE_CACHE_SIGNATURE_KEY", "secret"),
        ]);
        let tag = signed.tag("clab-ac-k", b"body").unwrap();
        assert_eq!(
            STANDARD.decode(&tag).unwrap(),
            artifact_tag(b"secret", "clab-ac-k", "team_1", b"body")
        );
        assert!(backend(&[]).tag("id", b"body").is_none());
    }
}
