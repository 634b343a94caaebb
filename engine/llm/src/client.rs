//! [`Client`]: a provider plus its shared limiter and retry policy; turns one-try
//! [`Failure`]s into final, contextual [`Error`]s.
//!
//! A call: take a limiter permit, send, release the permit; on a retryable failure (timeout,
//! transport, 408, 429 unless `insufficient_quota`, 5xx) wait [`RetryPolicy::delay`] (or the
//! server's `Retry-After`) and try again, at most `max_retries` more times. The permit is not
//! held while waiting, so a backing-off node does not block others.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    ChatRequest, Completion, Error, Failure, LimiterRegistry, LlmConfig, Provider, RetryPolicy,
    build_provider, error::CallContext, limiter::Limiter, settings::format_duration,
};

/// What one successful [`Client::complete`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The answer.
    pub completion: Completion,
    /// Wall time of the call, retries and the waits between them included, but not the
    /// time spent queueing for the limiter (that is [`Exchange::queued`]), so latency
    /// percentiles describe the provider rather than the run's parallelism.
    pub latency: Duration,
    /// Time spent waiting for the limiter (concurrency slot and rate token).
    pub queued: Duration,
    /// Requests sent (1 when the first try succeeded).
    pub tries: u32,
}

/// A provider with its limiter and retry policy. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    provider: Arc<dyn Provider>,
    limiter: Limiter,
    policy: RetryPolicy,
    key_env: Option<String>,
    timeout: Option<Duration>,
}

impl Client {
    /// A client around any provider.
    pub fn new(provider: Arc<dyn Provider>, limiter: Limiter, policy: RetryPolicy) -> Client {
        Client {
            provider,
            limiter,
            policy,
            key_env: None,
            timeout: None,
        }
    }

    /// The client for `config`: its provider ([`build_provider`]), the registry's limiter for
    /// its endpoint, and its `max-retries`.
    pub fn from_config(
        config: &LlmConfig,
        root: &Path,
        task: &str,
        registry: &LimiterRegistry,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Client, Error> {
        let provider = build_provider(config, root, task, lookup)?;
        let mut client = Client::new(
            provider,
            registry.get(config),
            RetryPolicy::with_max_retries(config.max_retries),
        );
        client.key_env = config.api_key_env.clone();
        client.timeout = Some(config.timeout);
        Ok(client)
    }

    /// The same client with another retry policy (tests use millisecond backoffs).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Client {
        self.policy = policy;
        self
    }

    /// The provider behind this client.
    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// Send `request` for `task`, retrying what may succeed on another try.
    pub async fn complete(&self, task: &str, request: &ChatRequest) -> Result<Exchange, Error> {
        let started = Instant::now();
        let mut queued = Duration::ZERO;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = {
                let asked = Instant::now();
                let _permit = self.limiter.acquire().await;
                queued += asked.elapsed();
                self.provider.complete(request).await
            };
            let failure = match result {
                Ok(completion) => {
                    return Ok(Exchange {
                        completion,
                        latency: started.elapsed().saturating_sub(queued),
                        queued,
                        tries,
                    });
                }
                Err(failure) => failure,
            };
            if !failure.is_retryable() || tries > self.policy.max_retries {
                return Err(self.error(task, failure, tries));
            }
            tokio::time::sleep(self.policy.delay(tries - 1, failure.retry_after())).await;
        }
    }

    fn error(&self, task: &str, failure: Failure, tries: u32) -> Error {
        let model = self.provider.model().to_owned();
        let call = Box::new(CallContext {
            task: task.to_owned(),
            provider: self.provider.kind().to_string(),
            model: model.clone(),
            url: self.provider.endpoint().to_owned(),
        });
        if failure.is_quota_exhausted() {
            let (status, message) = match failure {
                Failure::Status {
                    status, message, ..
                } => (status, message),
                other => (429, other.to_string()),
            };
            return Error::QuotaExhausted {
                call,
                status,
                message,
            };
        }
        match failure {
            Failure::Status {
                status: status @ (401 | 403),
                message,
                ..
            } => {
                let help = match &self.key_env {
                    Some(env) => format!(
                        "check the key in `{env}` (is it set, current, and allowed to use model `{model}`?)"
                    ),
                    None => "check the provider's credentials".to_owned(),
                };
                Error::Unauthorized {
                    call,
                    status,
                    message,
                    help,
                }
            }
            Failure::Status {
                status, message, ..
            } => Error::Status {
                call,
                status,
                message,
                tries,
            },
            Failure::Timeout => Error::Timeout {
                call,
                timeout: self
                    .timeout
                    .map(format_duration)
                    .unwrap_or_else(|| "the timeout".to_owned()),
                tries,
            },
            Failure::Transport(source) => Error::Transport {
                call,
                tries,
                source,
            },
            Failure::BadResponse(message) => Error::BadResponse { call, message },
            Failure::Spawn(source) => Error::CommandSpawn {
                task: call.task,
                command: call.url,
                source,
            },
            Failure::CommandFailed {
                status,
                stderr_tail,
            } => Error::CommandFailed {
                task: call.task,
                command: call.url,
                status,
                stderr_tail,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_string_contains, header, method, path},
    };

    use super::*;
    use crate::{
        Message, ProviderKind, Settings,
        error::render,
        test_support::{filters, openai_answer},
    };

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn client(server: &MockServer, provider: ProviderKind, key: &'static str) -> Client {
        let config = Settings {
            provider: Some(provider),
            base_url: Some(format!("{}/v1", server.uri())),
            model: Some("test-model".into()),
            api_key_env: Some("TEST_KEY".into()),
            timeout: Some(Duration::from_secs(5)),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let lookup = move |name: &str| (name == "TEST_KEY").then(|| key.to_owned());
        Client::from_config(
            &config,
            Path::new("."),
            "gen",
            &LimiterRegistry::new(),
            &lookup,
        )
        .unwrap()
        .with_policy(fast())
    }

    fn hello() -> ChatRequest {
        ChatRequest {
            system: None,
            messages: vec![Message::user("hello")],
        }
    }

    #[tokio::test]
    async fn retries_429_honouring_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer("fine")))
            .expect(1)
            .mount(&server)
            .await;
        let started = Instant::now();
        let exchange = client(&server, ProviderKind::OpenAi, "sk-test-key-123456")
            .complete("gen", &hello())
            .await
            .unwrap();
        assert_eq!(exchange.completion.text, "fine");
        assert_eq!(exchange.tries, 2);
        // The policy's own backoff is ≤ 20 ms, so a wait of ~1 s can only be Retry-After.
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn retries_500_then_gives_up_with_status_and_message() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"message": "boom", "type": "server_error"}})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer("after 500")))
            .mount(&server)
            .await;
        let exchange = client(&server, ProviderKind::OpenAi, "sk-test-key-123456")
            .complete("gen", &hello())
            .await
            .unwrap();
        assert_eq!(
            (exchange.completion.text.as_str(), exchange.tries),
            ("after 500", 2)
        );

        let always = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
            .expect(4)
            .mount(&always)
            .await;
        let err = client(&always, ProviderKind::OpenAi, "sk-test-key-123456")
            .complete("gen", &hello())
            .await
            .unwrap_err();
        match &err {
            Error::Status {
                status: 503,
                tries: 4,
                message,
                ..
            } => assert_eq!(message, "upstream down"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn insufficient_quota_is_final() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(json!({
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota", "param": null, "code": "insufficient_quota"
                }
            })))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server, ProviderKind::OpenAi, "sk-test-key-123456")
            .complete("gen", &hello())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::QuotaExhausted { .. }), "{err:?}");
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!("quota_exhausted", render::graphical(&err));
            insta::assert_snapshot!("quota_exhausted_json", render::json(&err));
        });
    }

    #[tokio::test]
    async fn unauthorized_names_the_variable_not_the_key() {
        let key = "sk-test-secret-abcdef0123456789";
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": {"message": format!("Incorrect API key provided: {key}."), "type": "invalid_request_error", "code": "invalid_api_key"}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server, ProviderKind::OpenAi, key)
            .complete("gen", &hello())
            .await
            .unwrap_err();
        let graphical = render::graphical(&err);
        for shown in [
            err.to_string(),
            format!("{err:?}"),
            graphical.clone(),
            render::json(&err),
        ] {
            assert!(!shown.contains(key), "key leaked: {shown}");
        }
        assert!(graphical.contains("TEST_KEY"), "{graphical}");
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!("unauthorized", graphical);
            insta::assert_snapshot!("unauthorized_json", render::json(&err));
        });
    }

    #[tokio::test]
    async fn anthropic_happy_path_and_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", "sk-ant-test-0123456789"))
            .and(header("anthropic-version", "2023-06-01"))
            .and(body_string_contains("\"system\":\"be terse\""))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "content": [{"type": "text", "text": "bonjour"}],
                "usage": {"input_tokens": 11, "output_tokens": 3}
            })))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server, ProviderKind::Anthropic, "sk-ant-test-0123456789");
        let request = ChatRequest {
            system: Some("be terse".into()),
            messages: vec![Message::user("hello")],
        };
        let exchange = client.complete("gen", &request).await.unwrap();
        assert_eq!(
            exchange.completion,
            Completion {
                text: "bonjour".into(),
                tokens_in: Some(11),
                tokens_out: Some(3)
            }
        );
        let err = client.complete("gen", &request).await.unwrap_err();
        match &err {
            Error::Status {
                status: 400,
                tries: 1,
                message,
                call,
            } => {
                assert_eq!(message, "max_tokens: too large");
                assert_eq!(call.provider, "anthropic");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeouts_are_retried_then_reported() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(openai_answer("late"))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;
        let config = Settings {
            base_url: Some(format!("{}/v1", server.uri())),
            model: Some("m".into()),
            timeout: Some(Duration::from_millis(150)),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let client = Client::from_config(
            &config,
            Path::new("."),
            "gen",
            &LimiterRegistry::new(),
            &|_| Some("k-123".to_owned()),
        )
        .unwrap()
        .with_policy(RetryPolicy {
            max_retries: 1,
            ..fast()
        });
        let err = client.complete("gen", &hello()).await.unwrap_err();
        match &err {
            Error::Timeout {
                tries: 2, timeout, ..
            } => assert_eq!(timeout, "150ms"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Bind and drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Settings {
            base_url: Some(format!("http://127.0.0.1:{port}/v1")),
            model: Some("m".into()),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let client = Client::from_config(
            &config,
            Path::new("."),
            "gen",
            &LimiterRegistry::new(),
            &|_| None,
        )
        .unwrap()
        .with_policy(RetryPolicy {
            max_retries: 2,
            ..fast()
        });
        let err = client.complete("gen", &hello()).await.unwrap_err();
        assert!(matches!(err, Error::Transport { tries: 3, .. }), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_limiter_caps_concurrent_requests() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(openai_answer("ok"))
                    .set_delay(Duration::from_millis(200)),
            )
            .expect(6)
            .mount(&server)
            .await;
        let config = Settings {
            base_url: Some(format!("{}/v1", server.uri())),
            model: Some("m".into()),
            max_concurrent: Some(2),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let registry = LimiterRegistry::new();
        let started = Instant::now();
        let mut calls = Vec::new();
        for i in 0..6 {
            // One client per node, as the scheduler builds them: the registry shares the limiter.
            let client = Client::from_config(&config, Path::new("."), "gen", &registry, &|_| {
                Some("k-123".to_owned())
            })
            .unwrap();
            calls.push(tokio::spawn(async move {
                client.complete(&format!("gen[{i}]"), &hello()).await
            }));
        }
        let mut exchanges = Vec::new();
        for call in calls {
            let exchange = call.await.unwrap().unwrap();
            assert_eq!(exchange.completion.text, "ok");
            exchanges.push(exchange);
        }
        // Six 200 ms requests, two at a time: three rounds.
        let elapsed = started.elapsed();
        let exchanges: Vec<Exchange> = exchanges;
        let queued = exchanges
            .iter()
            .filter(|e| e.queued >= Duration::from_millis(150))
            .count();
        assert_eq!(queued, 4, "four of six requests had to wait for a slot");
        assert!(
            exchanges
                .iter()
                .all(|e| e.latency < Duration::from_millis(400))
        );
        assert!(elapsed >= Duration::from_millis(590), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn retry_after_ms_is_preferred() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "30")
                    .insert_header("retry-after-ms", "50"),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(openai_answer("ok")))
            .mount(&server)
            .await;
        let started = Instant::now();
        let exchange = client(&server, ProviderKind::OpenAi, "sk-test-key-123456")
            .complete("gen", &hello())
            .await
            .unwrap();
        assert_eq!(exchange.tries, 2);
        // `fast()` caps Retry-After at 5 s: waiting for the 30 s header would show here.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn command_provider_failures_become_errors_naming_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let config = Settings {
            provider: Some(ProviderKind::Command),
            command: Some("cat >/dev/null; echo 'no such model' >&2; exit 2".into()),
            ..Settings::default()
        }
        .resolve("gen")
        .unwrap();
        let client =
            Client::from_config(&config, dir.path(), "gen", &LimiterRegistry::new(), &|_| {
                None
            })
            .unwrap();
        let err = client.complete("gen", &hello()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "llm command `cat >/dev/null; echo 'no such model' >&2; exit 2` for task `gen` failed (exit status 2):\nno such model"
        );
    }

    #[tokio::test]
    async fn the_key_never_appears_in_any_error() {
        let key = "sk-proj-LEAKCHECK0123456789abcdef";
        let echo = format!("key {key} rejected");
        let answers = [
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": echo, "code": "invalid_api_key"}})),
            ResponseTemplate::new(429)
                .set_body_json(json!({"error": {"message": echo, "code": "insufficient_quota"}})),
            ResponseTemplate::new(500).set_body_string(echo.clone()),
            ResponseTemplate::new(400).set_body_json(json!({"detail": echo})),
            ResponseTemplate::new(200).set_body_string(format!("<html>{echo}</html>")),
            ResponseTemplate::new(200).set_body_json(json!({"choices": [], "note": echo})),
        ];
        for answer in answers {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(answer)
                .mount(&server)
                .await;
            let client = client(&server, ProviderKind::OpenAi, key).with_policy(RetryPolicy {
                max_retries: 1,
                ..fast()
            });
            let err = client.complete("gen", &hello()).await.unwrap_err();
            let shown = [
                err.to_string(),
                format!("{err:?}"),
                render::graphical(&err),
                render::json(&err),
            ];
            for text in shown {
                assert!(!text.contains(key), "key leaked: {text}");
            }
        }
    }
}
