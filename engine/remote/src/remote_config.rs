//! `RemoteConfig`: the remote cache's settings, from tasks.kdl's `cache { }` block and the
//! environment.
//!
//! In: [`CacheSettings`] (what tasks.kdl says: `remote "URL"`, `read-only #true`,
//! `trusted-key "ed25519:…"`, filled in by the caller) and environment variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `CLAB_REMOTE_CACHE` | the URL; overrides tasks.kdl's `remote`; `off` disables the remote |
//! | `CLAB_REMOTE_CACHE_READ_ONLY` | `1`/`true`: fetch, never upload (`0`/`false`/empty: the tasks.kdl setting) |
//! | `CLAB_CACHE_SIGNING_KEY` | base64 of a 32-byte ed25519 seed: sign every uploaded manifest |
//! | `CLAB_CACHE_TRUSTED_KEYS` | comma-separated `ed25519:…` keys, added to tasks.kdl's |
//! | `CLAB_REMOTE_CACHE_TOKEN` | bearer token for `http(s)` remotes |
//! | `AWS_*`, `TURBO_*`, `REDIS_*`, `GOOGLE_*`, `AZURE_*`, `ACTIONS_*` | backend credentials ([`Env`]) |
//!
//! Out: a [`RemoteConfig`] (no URL: no remote) or a [`ConfigError`]. Invariants: credentials
//! come only from the environment — a URL from tasks.kdl with a user name or password is
//! refused ([`ConfigError::CredentialsInConfig`]); no error or `Debug` output holds a secret.

use crate::backend::{Env, Timeouts};
use crate::breaker::DEFAULT_THRESHOLD;
use crate::remote_url::RemoteUrl;
use crate::signing::{KeyError, SIGNING_KEY_ENV, SigningKey, TRUSTED_KEYS_ENV, TrustedKeys};

/// The environment variable holding the remote cache's URL.
pub const REMOTE_CACHE_ENV: &str = "CLAB_REMOTE_CACHE";

/// The environment variable that makes the remote read-only.
pub const READ_ONLY_ENV: &str = "CLAB_REMOTE_CACHE_READ_ONLY";

/// Uploads in flight at once (default).
pub const DEFAULT_UPLOAD_PARALLELISM: usize = 8;

/// What tasks.kdl's `cache { }` block says about the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// `remote "URL"`.
    pub remote: Option<String>,
    /// `read-only #true`.
    pub read_only: bool,
    /// Each `trusted-key "ed25519:…"`.
    pub trusted_keys: Vec<String>,
}

/// The remote cache's configuration.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Where the remote is; `None`: no remote.
    pub url: Option<RemoteUrl>,
    /// Fetch only; never upload.
    pub read_only: bool,
    /// Accept only entries signed by one of these (empty: any entry).
    pub trusted_keys: TrustedKeys,
    /// Sign uploaded manifests with this.
    pub signing_key: Option<SigningKey>,
    /// Backend credentials and settings captured from the environment.
    pub env: Env,
    /// Connect and request timeouts.
    pub timeouts: Timeouts,
    /// Consecutive failures after which the remote is given up on for the run.
    pub breaker_threshold: u32,
    /// Uploads (and downloads of one fetch) in flight at once.
    pub parallelism: usize,
    /// How much memory the blobs in transfer may hold at once, in MiB (default
    /// [`DEFAULT_TRANSFER_MEMORY_MIB`]).
    pub transfer_memory_mib: u32,
}

/// The memory the blobs in transfer (downloads and uploads together) may hold at once: 512
/// MiB. Each is held whole while it moves; without the bound, four 200 MB outputs restored at
/// once held 800 MB, and eight 1 GB outputs would have held 8 GB.
pub const DEFAULT_TRANSFER_MEMORY_MIB: u32 = 512;

/// The remote cache's configuration is unusable. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    /// The URL does not parse.
    #[error("the remote cache URL in {source_name} is {reason}")]
    #[diagnostic(
        code(clab::remote::bad_url),
        help(
            "use http(s)://host/prefix, s3://bucket/prefix?endpoint=URL&region=R, \
             redis://host:port/db or turbo+https://host"
        )
    )]
    BadUrl {
        /// `CLAB_REMOTE_CACHE` or `tasks.kdl`.
        source_name: &'static str,
        /// Why.
        reason: String,
    },

    /// No backend for the URL's scheme.
    #[error("remote cache URL `{url}` has an unsupported scheme `{scheme}`")]
    #[diagnostic(
        code(clab::remote::unsupported_scheme),
        help(
            "supported: http, https, s3, redis, rediss, turbo+http, turbo+https, gs, azblob, ghac"
        )
    )]
    UnsupportedScheme {
        /// The URL, redacted.
        url: String,
        /// Its scheme.
        scheme: String,
    },

    /// A URL in tasks.kdl carries a user name or password.
    #[error("the remote cache URL in tasks.kdl holds credentials")]
    #[diagnostic(
        code(clab::remote::credentials_in_config),
        help(
            "tasks.kdl is committed: pass credentials in the environment instead \
             (CLAB_REMOTE_CACHE with the full URL, CLAB_REMOTE_CACHE_TOKEN, AWS_*, TURBO_TOKEN, REDIS_PASSWORD)"
        )
    )]
    CredentialsInConfig,

    /// A key does not parse.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Key(#[from] KeyError),

    /// A yes/no variable holds something else.
    #[error("{name} is `{value}`; expected 1, 0, true or false")]
    #[diagnostic(code(clab::remote::bad_flag))]
    BadFlag {
        /// The variable.
        name: &'static str,
        /// Its value (not a secret).
        value: String,
    },

    /// The backend could not be set up.
    #[error("cannot use remote cache `{url}`: {reason}")]
    #[diagnostic(code(clab::remote::backend))]
    Backend {
        /// The URL, redacted.
        url: String,
        /// Why (scrubbed).
        reason: String,
    },
}

impl RemoteConfig {
    /// A configuration for `url` with the defaults: writable, no trusted keys, no signing
    /// key, an empty environment, 2 s connect and 30 s request timeouts, a breaker after 3
    /// failures, 8 transfers in flight.
    pub fn new(url: Option<RemoteUrl>) -> RemoteConfig {
        RemoteConfig {
            url,
            read_only: false,
            trusted_keys: TrustedKeys::default(),
            signing_key: None,
            env: Env::default(),
            timeouts: Timeouts::default(),
            breaker_threshold: DEFAULT_THRESHOLD,
            parallelism: DEFAULT_UPLOAD_PARALLELISM,
            transfer_memory_mib: DEFAULT_TRANSFER_MEMORY_MIB,
        }
    }

    /// The configuration from tasks.kdl's `settings` and this process's environment.
    pub fn from_env_and(settings: &CacheSettings) -> Result<RemoteConfig, ConfigError> {
        // The backends' variables are captured only where a backend may be made: copying
        // the whole environment was ~5% of the instructions of a trivial `clab run`.
        let env = if settings.remote.is_some() || std::env::var_os(REMOTE_CACHE_ENV).is_some() {
            Env::from_process()
        } else {
            Env::default()
        };
        RemoteConfig::from_vars(settings, |name| std::env::var(name).ok(), env)
    }

    /// The configuration from `settings`, variables read through `var`, and backend
    /// credentials `env` (what [`from_env_and`](Self::from_env_and) does with the process's
    /// environment; tests pass their own).
    pub fn from_vars(
        settings: &CacheSettings,
        var: impl Fn(&str) -> Option<String>,
        env: Env,
    ) -> Result<RemoteConfig, ConfigError> {
        let from_env = var(REMOTE_CACHE_ENV).filter(|v| !v.trim().is_empty());
        let url = match (from_env, &settings.remote) {
            (Some(text), _) if matches!(text.trim(), "off" | "none") => None,
            (Some(text), _) => Some(parse_url(&text, REMOTE_CACHE_ENV)?),
            (None, Some(text)) => {
                let url = parse_url(text, "tasks.kdl")?;
                if url.has_credentials() {
                    return Err(ConfigError::CredentialsInConfig);
                }
                Some(url)
            }
            (None, None) => None,
        };
        let read_only = match var(READ_ONLY_ENV).as_deref().map(str::trim) {
            None | Some("") => settings.read_only,
            Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => settings.read_only,
            Some(other) => {
                return Err(ConfigError::BadFlag {
                    name: READ_ONLY_ENV,
                    value: other.to_owned(),
                });
            }
        };
        let trusted_keys =
            TrustedKeys::parse(&settings.trusted_keys, var(TRUSTED_KEYS_ENV).as_deref())?;
        let signing_key = match var(SIGNING_KEY_ENV).filter(|v| !v.trim().is_empty()) {
            Some(text) => Some(SigningKey::from_base64(&text, SIGNING_KEY_ENV)?),
            None => None,
        };
        Ok(RemoteConfig {
            read_only,
            trusted_keys,
            signing_key,
            env,
            ..RemoteConfig::new(url)
        })
    }
}

fn parse_url(text: &str, source_name: &'static str) -> Result<RemoteUrl, ConfigError> {
    RemoteUrl::parse(text).map_err(|e| ConfigError::BadUrl {
        source_name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn config(
        settings: &CacheSettings,
        vars: &[(&str, &str)],
    ) -> Result<RemoteConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = Env::from_pairs(vars.clone());
        RemoteConfig::from_vars(settings, |name| vars.get(name).cloned(), env)
    }

    #[test]
    fn the_environment_overrides_tasks_kdl() {
        let settings = CacheSettings {
            remote: Some("https://cache.example/clab".into()),
            read_only: false,
            trusted_keys: vec![],
        };
        let from_file = config(&settings, &[]).unwrap();
        assert_eq!(
            from_file.url.unwrap().to_string(),
            "https://cache.example/clab"
        );
        assert!(!from_file.read_only && from_file.signing_key.is_none());

        let from_env = config(
            &settings,
            &[
                (REMOTE_CACHE_ENV, "redis://127.0.0.1:6379/0"),
                (READ_ONLY_ENV, "1"),
                (SIGNING_KEY_ENV, SEED),
            ],
        )
        .unwrap();
        assert_eq!(from_env.url.unwrap().scheme(), "redis");
        assert!(from_env.read_only);
        assert!(from_env.signing_key.is_some());

        let off = config(&settings, &[(REMOTE_CACHE_ENV, "off")]).unwrap();
        assert!(off.url.is_none());
        assert!(
            config(&CacheSettings::default(), &[])
                .unwrap()
                .url
                .is_none()
        );
    }

    #[test]
    fn read_only_and_trusted_keys_combine() {
        let key = SigningKey::from_seed([1; 32]).public_key().to_string();
        let other = SigningKey::from_seed([2; 32]).public_key().to_string();
        let settings = CacheSettings {
            remote: Some("https://cache.example".into()),
            read_only: true,
            trusted_keys: vec![key.clone()],
        };
        let config = config(
            &settings,
            &[(READ_ONLY_ENV, "0"), (TRUSTED_KEYS_ENV, &other)],
        )
        .unwrap();
        assert!(
            config.read_only,
            "the environment cannot make a read-only file writable"
        );
        assert_eq!(config.trusted_keys.iter().count(), 2);
    }

    #[test]
    fn errors_are_typed_and_hold_no_secret() {
        let settings = CacheSettings {
            remote: Some("https://ci:hunter2-pass@cache.example".into()),
            ..CacheSettings::default()
        };
        let err = config(&settings, &[]).unwrap_err();
        assert_eq!(err, ConfigError::CredentialsInConfig);
        // The same URL is fine from the environment, and never printed with its password.
        let ok = config(
            &CacheSettings::default(),
            &[
                (REMOTE_CACHE_ENV, "https://ci:hunter2-pass@cache.example"),
                (SIGNING_KEY_ENV, SEED),
                ("AWS_SECRET_ACCESS_KEY", "aws-secret-value"),
            ],
        )
        .unwrap();
        let debug = format!("{ok:?}");
        for secret in ["hunter2-pass", SEED, "aws-secret-value"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }

        let err = config(
            &CacheSettings::default(),
            &[(SIGNING_KEY_ENV, "dGhpcyBpcyBhIHNlY3JldCBidXQgc2hvcnQ=")],
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Key(KeyError::WrongLength { .. })),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("dGhpcyBpcyBhIHNlY3JldCBidXQgc2hvcnQ="));

        let err = config(&CacheSettings::default(), &[(READ_ONLY_ENV, "maybe")]).unwrap_err();
        assert!(
            err.to_string().contains("CLAB_REMOTE_CACHE_READ_ONLY"),
            "{err}"
        );
        let err = config(&CacheSettings::default(), &[(REMOTE_CACHE_ENV, "::nope")]).unwrap_err();
        assert!(matches!(err, ConfigError::BadUrl { .. }), "{err:?}");
    }

    #[test]
    fn config_diagnostics() {
        let with_password = CacheSettings {
            remote: Some("https://ci:hunter2-pass@cache.example".into()),
            ..CacheSettings::default()
        };
        let unsupported = config(
            &CacheSettings::default(),
            &[(REMOTE_CACHE_ENV, "ftp://u:secret-pw@x/y")],
        )
        .map(crate::RemoteCache::from_config)
        .unwrap()
        .unwrap_err();
        let errors = [
            config(&with_password, &[]).unwrap_err(),
            config(
                &CacheSettings::default(),
                &[(REMOTE_CACHE_ENV, "cache.example.com")],
            )
            .unwrap_err(),
            unsupported,
            config(&CacheSettings::default(), &[(SIGNING_KEY_ENV, "c2hvcnQ=")]).unwrap_err(),
            config(&CacheSettings::default(), &[(TRUSTED_KEYS_ENV, "AAAA")]).unwrap_err(),
            config(&CacheSettings::default(), &[(READ_ONLY_ENV, "maybe")]).unwrap_err(),
        ];
        let rendered: String = errors.iter().map(|e| crate::render::both(e)).collect();
        assert!(!rendered.contains("hunter2") && !rendered.contains("secret-pw"));
        insta::assert_snapshot!(rendered);
    }
}
