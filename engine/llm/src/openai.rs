//! The `openai` provider: chat completions on any OpenAI-compatible server.
//!
//! Request: `POST {base-url}/chat/completions` with `Authorization: Bearer KEY` (omitted when
//! there is no key, as for a local Ollama) and `{"model", "messages", "temperature"?,
//! "max_tokens"?}`; the system prompt is the first message with role `system`. Answer:
//! `choices[0].message.content`, tokens from `usage.prompt_tokens` and
//! `usage.completion_tokens`. The same shape is served by OpenAI, Ollama (`/v1`), llama.cpp's
//! server, vLLM, LM Studio and OpenRouter.

use serde_json::{Value, json};

use super::{
    BoxFuture, ChatRequest, Completion, Failure, LlmConfig, Provider, ProviderKind, Secret,
    provider::{http_client, send_json},
};

/// An OpenAI-compatible chat-completions endpoint.
pub struct OpenAi {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<Secret>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
}

impl OpenAi {
    /// A provider for `config`, authenticating with `key` when given.
    pub fn new(config: &LlmConfig, key: Option<Secret>) -> Result<OpenAi, reqwest::Error> {
        Ok(OpenAi {
            http: http_client(config.timeout)?,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            model: config.model.clone(),
            key,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
        })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in &request.messages {
            messages.push(json!({"role": message.role.as_str(), "content": message.content}));
        }
        let mut body = json!({"model": self.model, "messages": messages});
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    }
}

impl Provider for OpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn endpoint(&self) -> &str {
        &self.url
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, Failure>> {
        Box::pin(async move {
            let mut builder = self.http.post(&self.url).json(&self.body(request));
            if let Some(key) = &self.key {
                builder = builder.bearer_auth(key.expose());
            }
            let answer = send_json(builder, self.key.as_ref()).await?;
            parse_answer(&answer)
        })
    }
}

fn parse_answer(answer: &Value) -> Result<Completion, Failure> {
    let choice = &answer["choices"][0];
    let text = choice["message"]["content"].as_str().ok_or_else(|| {
        let reason = choice["finish_reason"].as_str().unwrap_or("none");
        Failure::BadResponse(format!(
            "no `choices[0].message.content` in the answer (finish_reason `{reason}`)"
        ))
    })?;
    Ok(Completion {
        text: text.to_owned(),
        tokens_in: answer["usage"]["prompt_tokens"].as_u64(),
        tokens_out: answer["usage"]["completion_tokens"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Settings};

    #[test]
    fn body_has_system_first_and_sampling_settings() {
        let config = Settings {
            model: Some("gpt-x".into()),
            temperature: Some(0.2),
            max_tokens: Some(100),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        let provider = OpenAi::new(&config, None).unwrap();
        let body = provider.body(&ChatRequest {
            system: Some("be brief".into()),
            messages: vec![
                Message::user("hi"),
                Message::assistant("a"),
                Message::user("again"),
            ],
        });
        assert_eq!(body["model"], "gpt-x");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["max_tokens"], 100);
        let roles: Vec<_> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].clone())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(
            provider.endpoint(),
            "https://api.openai.com/v1/chat/completions"
        );
    }

    #[test]
    fn answer_parsing() {
        let ok = json!({"choices": [{"message": {"content": "hello"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
        assert_eq!(
            parse_answer(&ok).unwrap(),
            Completion {
                text: "hello".into(),
                tokens_in: Some(5),
                tokens_out: Some(2)
            }
        );
        let refused =
            json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]});
        let err = parse_answer(&refused).unwrap_err();
        assert!(err.to_string().contains("content_filter"), "{err}");
    }
}
