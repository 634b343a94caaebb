//! The one HTTP client of a remote cache (connection pool, timeouts), shared by the reqwest
//! backends and OpenDAL's HTTP services, and built on its first request.
//!
//! Why on first use: building a client that speaks TLS loads the system's root certificates
//! (~5.5 ms here, `/etc/ssl/certs`), which every run naming a remote paid before it did
//! anything — a no-op run that never calls the remote as well (76 ms, against 71 ms without a
//! remote or with this change: hyperfine means of 30 on the 2,000-task workspace). And a
//! machine without root certificates (a slim CI container) cannot build one at all: that made
//! every run naming a remote fail at start with "builder error". Now a client that cannot be
//! built fails its requests, like a server that is down: one warning saying why, and the run
//! goes on without the remote.
//!
//! A plain `http://` remote gets a client without TLS: no certificates are loaded, so it
//! works on such a machine, and a redirect that leaves plain HTTP is refused with a message
//! saying so (rather than a TLS error about an unknown issuer: it has no certificates).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{BackendError, Timeouts, describe_reqwest};
use crate::secret::Scrubber;

/// How many redirects a plain-HTTP client follows (reqwest's default limit).
const MAX_REDIRECTS: usize = 10;

/// A reqwest client built on first use; clones share it.
#[derive(Clone)]
pub(crate) struct HttpClient {
    built: Arc<OnceLock<Result<reqwest::Client, String>>>,
    timeouts: Timeouts,
    tls: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with `timeouts`; with `tls` false, one for plain `http://` URLs only.
    pub(crate) fn new(timeouts: Timeouts, tls: bool) -> HttpClient {
        HttpClient {
            built: Arc::new(OnceLock::new()),
            timeouts,
            tls,
        }
    }

    /// How long a read may wait for the server to send something ([`Timeouts::idle`]).
    pub(crate) fn idle(&self) -> Duration {
        self.timeouts.idle
    }

    /// The client, built by the first call; when it cannot be built, every call fails with
    /// the reason, as a transport error (an outage: warned once, and the breaker opens).
    pub(crate) fn get(&self) -> Result<&reqwest::Client, BackendError> {
        self.built
            .get_or_init(|| build(self.timeouts, self.tls))
            .as_ref()
            .map_err(|reason| BackendError::Transport(reason.clone()))
    }
}

fn build(timeouts: Timeouts, tls: bool) -> Result<reqwest::Client, String> {
    // Without a provider installed, reqwest panics (built without a default one).
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("clab/", env!("CARGO_PKG_VERSION")));
    if !tls {
        builder = builder
            .tls_certs_only(std::iter::empty())
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.url().scheme() != "http" {
                    attempt.error(
                        "the server redirected to another scheme: name that URL as the remote cache",
                    )
                } else if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }));
    }
    builder.build().map_err(|e| {
        format!(
            "cannot build an HTTP client: {}",
            describe_reqwest(e, &Scrubber::default())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_client_is_built_once_and_shared_by_clones() {
        let client = HttpClient::new(timeouts(), false);
        let copy = client.clone();
        assert!(
            client.built.get().is_none(),
            "nothing is built before the first request"
        );
        let first: *const reqwest::Client = client.get().unwrap();
        let second: *const reqwest::Client = copy.get().unwrap();
        assert_eq!(first, second);
    }

    /// A server on 127.0.0.1 that answers each of `answers` connections with a redirect to
    /// `location` (`{port}` is its own port) and closes it.
    fn redirecting(location: &'static str, answers: usize) -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(answers) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let location = location.replace("{port}", &port.to_string());
                let answer = format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        port
    }

    /// The text of the error a GET of `url` through a plain-HTTP client ends in.
    fn get_error(url: String) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = HttpClient::new(timeouts(), false);
        let result = runtime.block_on(async { client.get().unwrap().get(url).send().await });
        describe_reqwest(result.unwrap_err(), &Scrubber::default())
    }

    #[test]
    fn a_plain_client_refuses_a_redirect_out_of_plain_http() {
        let port = redirecting("https://127.0.0.1:{port}/elsewhere", 1);
        let error = get_error(format!("http://127.0.0.1:{port}/cache/ac/k"));
        assert!(error.contains("redirected to another scheme"), "{error}");
    }

    #[test]
    fn a_plain_client_follows_plain_redirects_ten_times_at_most() {
        let port = redirecting("http://127.0.0.1:{port}/again", 11);
        let error = get_error(format!("http://127.0.0.1:{port}/cache/ac/k"));
        assert!(error.contains("too many redirects"), "{error}");
    }
}
