//! The `anthropic` provider: Anthropic's Messages API.
//!
//! Request: `POST {base-url}/messages` with headers `x-api-key` and `anthropic-version`
//! (`2023-06-01`) and `{"model", "max_tokens", "system"?, "messages", "temperature"?}`: the
//! system prompt is a top-level field, not a message, and `max_tokens` is required. Answer: the
//! `text` of every `content` block of type `text`, joined; tokens from `usage.input_tokens` and
//! `usage.output_tokens`.

use serde_json::{Value, json};

use super::{
    BoxFuture, ChatRequest, Completion, Failure, LlmConfig, Provider, ProviderKind, Secret,
    provider::{http_client, send_json},
};

/// Anthropic's Messages API.
pub struct Anthropic {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<Secret>,
    version: String,
    temperature: Option<f64>,
    max_tokens: u32,
}

impl Anthropic {
    /// A provider for `config`, authenticating with `key`.
    pub fn new(config: &LlmConfig, key: Option<Secret>) -> Result<Anthropic, reqwest::Error> {
        Ok(Anthropic {
            http: http_client(config.timeout)?,
            url: format!("{}/messages", config.base_url.trim_end_matches('/')),
            model: config.model.clone(),
            key,
            version: config.anthropic_version.clone(),
            temperature: config.temperature,
            max_tokens: config.max_tokens.unwrap_or(4096),
        })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body =
            json!({"model": self.model, "max_tokens": self.max_tokens, "messages": messages});
        if let Some(system) = &request.system {
            body["system"] = json!(system);
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

impl Provider for Anthropic {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
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
            let mut builder = self
                .http
                .post(&self.url)
                .header("anthropic-version", &self.version)
                .json(&self.body(request));
            if let Some(key) = &self.key {
                builder = builder.header("x-api-key", key.expose());
            }
            let answer = send_json(builder, self.key.as_ref()).await?;
            parse_answer(&answer)
        })
    }
}

fn parse_answer(answer: &Value) -> Result<Completion, Failure> {
    let blocks = answer["content"]
        .as_array()
        .ok_or_else(|| Failure::BadResponse("no `content` array in the answer".to_owned()))?;
    let text: String = blocks
        .iter()
        .filter(|block| block["type"] == "text")
        .filter_map(|block| block["text"].as_str())
        .collect::<Vec<_>>()
        .join("");
    if text.is_empty() {
        let reason = answer["stop_reason"].as_str().unwrap_or("none");
        return Err(Failure::BadResponse(format!(
            "no text block in the answer (stop_reason `{reason}`)"
        )));
    }
    Ok(Completion {
        text,
        tokens_in: answer["usage"]["input_tokens"].as_u64(),
        tokens_out: answer["usage"]["output_tokens"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, ProviderKind, Settings};

    #[test]
    fn body_puts_system_at_top_level() {
        let config = Settings {
            provider: Some(ProviderKind::Anthropic),
            model: Some("claude-x".into()),
            ..Settings::default()
        }
        .resolve("t")
        .unwrap();
        let provider = Anthropic::new(&config, None).unwrap();
        let body = provider.body(&ChatRequest {
            system: Some("sys".into()),
            messages: vec![Message::user("hi")],
        });
        assert_eq!(body["system"], "sys");
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
        assert_eq!(provider.endpoint(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn answer_joins_text_blocks() {
        let answer = json!({
            "content": [{"type": "text", "text": "a"}, {"type": "tool_use"}, {"type": "text", "text": "b"}],
            "usage": {"input_tokens": 3, "output_tokens": 4}
        });
        assert_eq!(
            parse_answer(&answer).unwrap(),
            Completion {
                text: "ab".into(),
                tokens_in: Some(3),
                tokens_out: Some(4)
            }
        );
        assert!(parse_answer(&json!({"content": []})).is_err());
    }
}
