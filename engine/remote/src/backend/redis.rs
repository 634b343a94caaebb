//! Redis through the `redis` crate: `GETRANGE` (a `GET` bounded by the caller), `SET` and
//! `EXISTS` on `clab/ac/<key>` and `clab/cas/<digest>`.
//!
//! In: `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS); the password may also
//! come from `REDIS_PASSWORD` (and the user from `REDIS_USERNAME`). Out: whole values up to
//! the caller's bound, never more than one byte past it (mind
//! Redis's 512 MB limit per value, and its memory: set `maxmemory` with an LRU policy on a
//! server used as a cache).
//!
//! Why not OpenDAL's `services-redis`: it builds a redis `ConnectionManager` with the crate's
//! default reconnect policy (6 retries with exponential backoff) behind a pool that waits up to
//! 10 s for a connection, and OpenDAL exposes neither; against a stopped server each call took
//! about 10 s, so the breaker's three failures cost 28 s of a run. Here the connection manager
//! has the remote's connect timeout, the request timeout per response, and no retries: a
//! stopped server fails each call at once. A read (`GET`, `EXISTS`) must have its whole reply
//! within the idle timeout, so a server that stalls costs that long once (the breaker then
//! opens). The manager is created on first use (creating it connects), and is kept: it
//! reconnects by itself after a broken connection.

use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Backend, BackendError, BoxFuture, Env, ObjectName, OpenError, Timeouts, within_idle};
use crate::remote_url::RemoteUrl;
use crate::secret::Scrubber;

/// The prefix of every key clab writes.
pub const KEY_PREFIX: &str = "clab/";

/// A Redis server as a [`Backend`].
pub struct RedisBackend {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: OnceCell<ConnectionManager>,
    /// How long a read may wait for its whole reply ([`Timeouts::idle`]).
    idle: Duration,
    scrubber: Scrubber,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info holds the password.
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// The backend for `url` (scheme `redis` or `rediss`).
    pub fn new(
        url: &RemoteUrl,
        env: &Env,
        timeouts: Timeouts,
        scrubber: Scrubber,
    ) -> Result<RedisBackend, OpenError> {
        let mut full = url.url().clone();
        full.set_query(None);
        full.set_fragment(None);
        if full.password().is_none()
            && let Some(password) = env.get("REDIS_PASSWORD")
        {
            let _ = full.set_password(Some(password.expose()));
            if full.username().is_empty()
                && let Some(user) = env.get("REDIS_USERNAME")
            {
                let _ = full.set_username(user.expose());
            }
        }
        let client = redis::Client::open(full.as_str())
            .map_err(|e| OpenError(scrubber.scrub(&e.to_string())))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.request));
        Ok(RedisBackend {
            client,
            config,
            idle: timeouts.idle,
            manager: OnceCell::new(),
            scrubber,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        self.manager
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            })
            .await
            .cloned()
            .map_err(|e| self.error(e))
    }

    fn error(&self, error: redis::RedisError) -> BackendError {
        let text = self.scrubber.scrub(&error.to_string());
        let refused = error.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if refused {
            BackendError::Unauthorized(text)
        } else if error.is_timeout() {
            BackendError::TimedOut(text)
        } else {
            BackendError::Transport(text)
        }
    }
}

fn key_of(name: &ObjectName) -> String {
    format!("{KEY_PREFIX}{}", name.path())
}

impl Backend for RedisBackend {
    /// One `GETRANGE key 0 max`: at most `max + 1` bytes come back, and `max + 1` mean the
    /// value is too large. `GETRANGE` answers a missing key with an empty string: clab never
    /// stores an empty value (the empty blob is never uploaded, a manifest is never empty),
    /// so an empty answer is none.
    fn get(
        &self,
        name: ObjectName,
        max: u64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let read = async {
                let mut connection = self.connection().await?;
                // Redis takes a signed 64-bit end; values are at most 512 MB anyway.
                let end = i64::try_from(max).unwrap_or(i64::MAX);
                let bytes: Bytes = redis::cmd("GETRANGE")
                    .arg(key_of(&name))
                    .arg(0)
                    .arg(end)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.error(e))?;
                if bytes.len() as u64 > max {
                    Err(BackendError::too_large(&name, max))
                } else if bytes.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(bytes))
                }
            };
            within_idle(self.idle, "GET", &name, read).await
        })
    }

    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            connection
                .set::<_, _, ()>(key_of(&name), bytes.as_ref())
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            let read = async {
                let mut connection = self.connection().await?;
                connection
                    .exists::<_, bool>(key_of(&name))
                    .await
                    .map_err(|e| self.error(e))
            };
            within_idle(self.idle, "EXISTS", &name, read).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_passwords_hidden() {
        let digest = clab_store::Digest::of_bytes(b"x");
        assert_eq!(
            key_of(&ObjectName::cas(&digest)),
            format!("clab/cas/{digest}")
        );
        let mut env = Env::default();
        env.set("REDIS_PASSWORD", "env-pa55word");
        let url = RemoteUrl::parse("redis://127.0.0.1:1/3").unwrap();
        let backend =
            RedisBackend::new(&url, &env, Timeouts::default(), Scrubber::default()).unwrap();
        assert!(!format!("{backend:?}").contains("pa55"));
    }
}
