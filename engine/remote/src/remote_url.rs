//! `RemoteUrl`: the remote cache's URL, parsed once, printed only without its secrets.
//!
//! In: the text of `CLAB_REMOTE_CACHE` or of `cache { remote "…" }`. Out: a parsed URL whose
//! `Display` and `Debug` replace the user name, the password and every query value other than
//! `endpoint`, `region` and `root` with `****`, so the URL can go into warnings and `--json`.

use std::fmt;

use url::Url;

use crate::secret::{REDACTED, Scrubber, Secret};

/// Query parameters whose values are printed (they are addresses, not secrets).
const PUBLIC_QUERY: &[&str] = &["endpoint", "region", "root"];

/// A remote cache URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl(Url);

/// The text is not a URL. Holds nothing of the text: it may be a secret pasted by mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a URL ({0})")]
pub struct UrlError(String);

impl RemoteUrl {
    /// Parses `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<RemoteUrl, UrlError> {
        Url::parse(text.trim())
            .map(RemoteUrl)
            .map_err(|e| UrlError(e.to_string()))
    }

    /// The scheme (`https`, `s3`, `turbo+https`, …).
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The parsed URL, secrets included (for backends only).
    pub(crate) fn url(&self) -> &Url {
        &self.0
    }

    /// The environment variables this kind of remote takes its credentials from, for a
    /// server that refuses a call as unauthorized.
    pub fn credential_variables(&self) -> &'static str {
        match self.scheme() {
            "turbo+http" | "turbo+https" => "TURBO_TOKEN and TURBO_TEAM",
            "s3" => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            "gs" => "GOOGLE_APPLICATION_CREDENTIALS",
            "azblob" => {
                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY"
            }
            "ghac" => "ACTIONS_RUNTIME_TOKEN, which the runner sets",
            "redis" | "rediss" => "REDIS_USERNAME and REDIS_PASSWORD",
            _ => "CLAB_REMOTE_CACHE_TOKEN, sent as a bearer token",
        }
    }

    /// Whether the URL carries a user name or a password.
    pub fn has_credentials(&self) -> bool {
        !self.0.username().is_empty() || self.0.password().is_some()
    }

    /// The user name, if any (percent-decoded).
    pub(crate) fn username(&self) -> Option<String> {
        let user = self.0.username();
        (!user.is_empty()).then(|| decode(user))
    }

    /// The password, if any (percent-decoded).
    pub(crate) fn password(&self) -> Option<Secret> {
        self.0.password().map(|p| Secret::new(decode(p)))
    }

    /// A query parameter's value.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        self.0
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Adds the URL's secrets (password, private query values) to `scrubber`.
    pub(crate) fn add_secrets_to(&self, scrubber: &mut Scrubber) {
        if let Some(password) = self.0.password() {
            scrubber.add(password);
            scrubber.add(&decode(password));
        }
        for (name, value) in self.0.query_pairs() {
            if !PUBLIC_QUERY.contains(&name.as_ref()) {
                scrubber.add(&value);
            }
        }
    }

    /// The URL with its secrets replaced by `****`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if !url.username().is_empty() {
            let _ = url.set_username(REDACTED);
        }
        if url.password().is_some() {
            let _ = url.set_password(Some(REDACTED));
        }
        if let Some(query) = url.query().map(str::to_owned) {
            // Rebuilt by hand, not re-encoded: public values print as they were written.
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| {
                    let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
                    if PUBLIC_QUERY.contains(&decode(name).as_str()) {
                        pair.to_owned()
                    } else {
                        format!("{name}={REDACTED}")
                    }
                })
                .collect();
            url.set_query(Some(&redacted.join("&")));
        }
        url.set_fragment(None);
        url.to_string().replace("%2A%2A%2A%2A", REDACTED)
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let url = RemoteUrl::parse(
            "https://ci-user:p%40ss-w0rd@cache.example.com/prefix?token=tok-123&region=eu-west-1#frag",
        )
        .unwrap();
        let shown = format!("{url} {url:?}");
        for secret in ["ci-user", "p%40ss-w0rd", "p@ss-w0rd", "tok-123", "frag"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(
            url.to_string(),
            "https://****:****@cache.example.com/prefix?token=****&region=eu-west-1"
        );
        assert!(url.has_credentials());
        assert_eq!(url.password().unwrap().expose(), "p@ss-w0rd");
        assert_eq!(url.username().as_deref(), Some("ci-user"));
        let mut scrubber = Scrubber::default();
        url.add_secrets_to(&mut scrubber);
        assert_eq!(scrubber.scrub("auth p@ss-w0rd tok-123"), "auth **** ****");
    }

    #[test]
    fn plain_urls_print_as_given() {
        let url = RemoteUrl::parse(" s3://bucket/clab?endpoint=http://127.0.0.1:9000 ").unwrap();
        assert_eq!(url.scheme(), "s3");
        assert!(!url.has_credentials());
        assert_eq!(
            url.query("endpoint").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(
            url.to_string().starts_with("s3://bucket/clab?endpoint="),
            "{url}"
        );
        assert!(RemoteUrl::parse("not a url").is_err());
        assert_eq!(decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
