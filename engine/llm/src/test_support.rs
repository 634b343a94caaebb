//! Shared pieces of the LLM tests: canned answers and snapshot filters.

/// An OpenAI chat-completions answer carrying `text`, with 10 tokens in and 5 out.
pub(crate) fn openai_answer(text: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// insta filters for wiremock's random port.
pub(crate) fn filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]")]
}
