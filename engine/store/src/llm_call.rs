//! `LlmCall`: one LLM request (or a cache hit standing in for one), as kept in `llm_calls`.
//!
//! In: filled by the LLM executor per attempt. Out: `clab stats` (latency percentiles, tokens,
//! hit rate). Never holds the prompt, the answer or an API key.

use serde::{Deserialize, Serialize};

/// One call to an LLM provider (or a cache hit standing in for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmCall {
    /// Display id of the node.
    pub task: String,
    /// Provider name (`openai`, `anthropic`, `command`).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Prompt tokens, when the provider reports them.
    pub tokens_in: Option<u64>,
    /// Completion tokens, when the provider reports them.
    pub tokens_out: Option<u64>,
    /// Round-trip latency.
    pub latency_ms: u64,
    /// Outcome label (`ok`, `check-failed`, `http-429`, …).
    pub status: String,
    /// Whether the answer came from the cache.
    pub cache_hit: bool,
    /// When the call was made (Unix ms).
    pub at_ms: i64,
}
