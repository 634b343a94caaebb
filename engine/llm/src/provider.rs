//! The [`Provider`] trait: one request in, one [`Completion`] or [`Failure`] out.
//!
//! A provider makes exactly one try; retries, the limiter and error context (task, provider,
//! model) are the [`super::Client`]'s job, so every provider gets them the same way. A
//! [`Failure`] carries what the retry decision needs (status, `Retry-After`, the server's
//! error code) and messages already stripped of the key.
//!
//! Why a trait object rather than an enum: the scheduler keeps one `Arc<dyn Provider>` per
//! resolved config and shares it across nodes, and tests (here and in the lead's scheduler)
//! can plug in a fake without a server. Async methods in traits are not object-safe, so
//! [`Provider::complete`] returns a boxed future; one allocation per HTTP request is nothing
//! next to the request.

use std::{future::Future, path::Path, pin::Pin, sync::Arc, time::Duration};

use super::{
    Anthropic, CommandProvider, Error, LlmConfig, OpenAi, ProviderKind, Secret,
    retry_policy::parse_retry_after,
};

/// A boxed, sendable future, as returned by [`Provider::complete`] and [`super::Check::run`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The prompt, or a repair request.
    User,
    /// An earlier answer.
    Assistant,
}

impl Role {
    /// The role as both wire formats spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// What to send: an optional system prompt and the conversation so far (ending with a user
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatRequest {
    /// The system prompt.
    pub system: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer's text.
    pub text: String,
    /// Prompt tokens, when the provider reports them.
    pub tokens_in: Option<u64>,
    /// Answer tokens, when the provider reports them.
    pub tokens_out: Option<u64>,
}

/// Why one try failed. Messages never contain the key.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request timed out.
    #[error("request timed out")]
    Timeout,
    /// No connection, or it broke before an HTTP status arrived.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// An HTTP error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The error's code or type from the body (`insufficient_quota`, `rate_limit_error` …).
        code: Option<String>,
        /// The server's message (or the start of the body).
        message: String,
        /// The `Retry-After` delay, when sent.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer clab cannot use.
    #[error("{0}")]
    BadResponse(String),
    /// The command could not be started.
    #[error("cannot start the command")]
    Spawn(#[source] std::io::Error),
    /// The command failed.
    #[error("{status}")]
    CommandFailed {
        /// `exit status 1`, `timed out after 30s` …
        status: String,
        /// The end of stderr.
        stderr_tail: String,
    },
}

impl Failure {
    /// Whether another try may succeed: timeouts, transport errors, 408, 429 (unless the
    /// quota is exhausted) and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Timeout | Failure::Transport(_) => true,
            Failure::Status { status, .. } => {
                !self.is_quota_exhausted() && (*status == 408 || *status == 429 || *status >= 500)
            }
            Failure::BadResponse(_) | Failure::Spawn(_) | Failure::CommandFailed { .. } => false,
        }
    }

    /// A 429 whose code or type is `insufficient_quota` (OpenAI), or a 402 Payment Required
    /// (OpenRouter and others when credit runs out): final, retrying cannot help.
    pub fn is_quota_exhausted(&self) -> bool {
        match self {
            Failure::Status { status: 402, .. } => true,
            Failure::Status {
                status: 429,
                code: Some(code),
                ..
            } => code == "insufficient_quota",
            _ => false,
        }
    }

    /// The server's requested delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A language model behind some wire protocol; one try per call.
pub trait Provider: Send + Sync {
    /// Which protocol.
    fn kind(&self) -> ProviderKind;
    /// The model name (may be empty for `command`).
    fn model(&self) -> &str;
    /// Where requests go: the full URL, or the command line.
    fn endpoint(&self) -> &str;
    /// Send `request` once.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, Failure>>;
}

/// The provider for `config`. Reads the key from the variable named by `api-key-env` through
/// `lookup`; a missing key is an error, except for an `openai` provider whose `base-url` is on
/// this machine (Ollama, llama.cpp and LM Studio need none). `root` is the `command`
/// provider's working directory; `task` names the task in errors.
pub fn build_provider(
    config: &LlmConfig,
    root: &Path,
    task: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Provider>, Error> {
    let key = match &config.api_key_env {
        Some(env) => match Secret::from_env(lookup, env) {
            Some(key) => Some(key),
            None if config.provider == ProviderKind::OpenAi && config.is_local() => None,
            None => {
                return Err(Error::MissingKey {
                    task: task.to_owned(),
                    provider: config.provider.to_string(),
                    env: env.clone(),
                });
            }
        },
        None => None,
    };
    let http_error = |source| Error::HttpClient {
        provider: config.provider.to_string(),
        source,
    };
    Ok(match config.provider {
        ProviderKind::OpenAi => Arc::new(OpenAi::new(config, key).map_err(http_error)?),
        ProviderKind::Anthropic => Arc::new(Anthropic::new(config, key).map_err(http_error)?),
        // The command inherits clab's environment, key variables included: what it prints
        // of them is scrubbed.
        ProviderKind::Command => Arc::new(
            CommandProvider::new(config, root).with_secrets(
                config
                    .key_variables()
                    .iter()
                    .filter_map(|name| Secret::from_env(lookup, name)),
            ),
        ),
    })
}

/// An HTTP client with the request timeout set.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("clab/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Send a prepared POST and return the JSON body of a 2xx answer, or the [`Failure`].
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
    key: Option<&Secret>,
) -> Result<serde_json::Value, Failure> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
    // OpenAI also sends `retry-after-ms`, finer-grained; prefer it when present.
    let retry_after = response
        .headers()
        .get("retry-after-ms")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0))
        .or(retry_after);
    let body = response.text().await.map_err(transport_failure)?;
    let redact = |text: &str| match key {
        Some(key) => key.redact(text),
        None => text.to_owned(),
    };
    if !status.is_success() {
        let (message, code) = parse_error_body(&body);
        return Err(Failure::Status {
            status: status.as_u16(),
            code,
            message: redact(&message),
            retry_after,
        });
    }
    serde_json::from_str(&body).map_err(|err| {
        Failure::BadResponse(redact(&format!(
            "the body is not JSON ({err}): {}",
            head(&body, 200)
        )))
    })
}

fn transport_failure(err: reqwest::Error) -> Failure {
    if err.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Transport(err)
    }
}

/// The message and code of an error body, in the shapes OpenAI (`{"error": {"message",
/// "type", "code"}}`), Anthropic (`{"type": "error", "error": {"type", "message"}}`), vLLM
/// (`{"message", "type", "code"}`) and others (`{"error": "text"}`, `{"detail": …}`) use; the
/// start of the body when it is not JSON.
pub(crate) fn parse_error_body(body: &str) -> (String, Option<String>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        let text = head(body.trim(), 300);
        return (
            if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text
            },
            None,
        );
    };
    let object = match value.get("error") {
        Some(error @ serde_json::Value::Object(_)) => error,
        _ => &value,
    };
    let string = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let message = string(object.get("message"))
        .or_else(|| string(value.get("error")))
        .or_else(|| {
            value.get("detail").map(|d| {
                d.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| d.to_string())
            })
        })
        .unwrap_or_else(|| head(body.trim(), 300));
    // OpenAI puts `insufficient_quota` in `code` (and in `type`); Anthropic only has `type`.
    let code = string(object.get("code"))
        .filter(|code| code == "insufficient_quota")
        .or_else(|| string(object.get("type")).filter(|t| t == "insufficient_quota"))
        .or_else(|| string(object.get("code")))
        .or_else(|| string(object.get("type")));
    (message, code)
}

/// The first `max` characters of `text`, with `…` when cut.
pub(crate) fn head(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_each_shape() {
        let openai = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert_eq!(
            parse_error_body(openai),
            (
                "You exceeded your current quota".to_owned(),
                Some("insufficient_quota".to_owned())
            )
        );
        let anthropic =
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert_eq!(
            parse_error_body(anthropic),
            ("slow down".to_owned(), Some("rate_limit_error".to_owned()))
        );
        let vllm =
            r#"{"object":"error","message":"model not found","type":"NotFoundError","code":404}"#;
        assert_eq!(
            parse_error_body(vllm),
            (
                "model not found".to_owned(),
                Some("NotFoundError".to_owned())
            )
        );
        let ollama = r#"{"error":"model 'x' not found"}"#;
        assert_eq!(
            parse_error_body(ollama),
            ("model 'x' not found".to_owned(), None)
        );
        assert_eq!(
            parse_error_body("Bad Gateway"),
            ("Bad Gateway".to_owned(), None)
        );
        assert_eq!(parse_error_body(""), ("(empty body)".to_owned(), None));
    }

    #[test]
    fn retry_classification() {
        let status = |status, code: Option<&str>| Failure::Status {
            status,
            code: code.map(str::to_owned),
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429, Some("rate_limit_exceeded")).is_retryable());
        assert!(!status(429, Some("insufficient_quota")).is_retryable());
        assert!(status(429, Some("insufficient_quota")).is_quota_exhausted());
        assert!(status(402, None).is_quota_exhausted());
        assert!(!status(402, None).is_retryable());
        assert!(!status(429, None).is_quota_exhausted());
        assert!(status(500, None).is_retryable());
        assert!(status(529, Some("overloaded_error")).is_retryable());
        assert!(!status(400, None).is_retryable());
        assert!(!status(401, None).is_retryable());
        assert!(Failure::Timeout.is_retryable());
        assert!(!Failure::BadResponse("x".into()).is_retryable());
    }

    #[test]
    fn missing_key_is_an_error_except_for_local_openai() {
        let none = |_: &str| None;
        let remote = crate::Settings {
            model: Some("m".into()),
            ..Default::default()
        }
        .resolve("t")
        .unwrap();
        match build_provider(&remote, Path::new("."), "gen", &none) {
            Err(err @ Error::MissingKey { .. }) => {
                assert_eq!(
                    err.to_string(),
                    "environment variable `OPENAI_API_KEY` is not set; task `gen` needs it for llm provider `openai`"
                );
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a remote provider without a key was built"),
        }
        let local = crate::Settings {
            model: Some("m".into()),
            base_url: Some("http://127.0.0.1:11434/v1".into()),
            ..Default::default()
        }
        .resolve("t")
        .unwrap();
        let provider = build_provider(&local, Path::new("."), "gen", &none)
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(
            provider.endpoint(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
    }
}
