//! [`LlmCall`]: one LLM request (or a cache hit standing in for one), from the attempt that
//! made it to the store's call log.
//!
//! In: made by `clab-llm`'s generate loop per attempt, and by the LLM node kind for a hit.
//! Out: kept by `clab-store` in the `llm_calls` table; read by `clab stats` (latency
//! percentiles, tokens, hit rate). It never holds the prompt, the answer or an API key.
//! `queued_ms` and `tries` describe the attempt for the reporter and are not stored.

use serde::{Deserialize, Serialize};

/// What one call led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The answer passed (or there was no check) and was written.
    Passed,
    /// The check failed.
    CheckFailed,
    /// No usable code block (or an empty answer).
    ExtractFailed,
    /// The provider call failed.
    Error,
    /// No call was made: the node's result came from the cache.
    Cached,
}

impl CallOutcome {
    /// The outcome as stored in `cache.db`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Passed => "passed",
            CallOutcome::CheckFailed => "check_failed",
            CallOutcome::ExtractFailed => "extract_failed",
            CallOutcome::Error => "error",
            CallOutcome::Cached => "cached",
        }
    }

    /// The outcome stored as `text`, if clab knows it.
    pub fn parse(text: &str) -> Option<CallOutcome> {
        [
            CallOutcome::Passed,
            CallOutcome::CheckFailed,
            CallOutcome::ExtractFailed,
            CallOutcome::Error,
            CallOutcome::Cached,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }
}

/// One call to an LLM provider (or a cache hit standing in for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmCall {
    /// Display id of the node.
    pub task: String,
    /// Provider name (`openai`, `anthropic`, `command`).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Attempt number, from 1 (0 for a cache hit).
    pub attempt: u32,
    /// Prompt tokens, when the provider reports them.
    pub tokens_in: Option<u64>,
    /// Completion tokens, when the provider reports them.
    pub tokens_out: Option<u64>,
    /// Wall time of the provider call, retries included, limiter queueing excluded.
    pub latency_ms: u64,
    /// Time spent queueing for the provider's limiter (not stored).
    pub queued_ms: u64,
    /// HTTP requests sent for this attempt (not stored).
    pub tries: u32,
    /// How it ended.
    pub outcome: CallOutcome,
    /// When the call was made (Unix ms).
    pub at_ms: i64,
}

impl LlmCall {
    /// The record of a cache hit of node `task`, whose key names `provider` and `model`.
    pub fn cache_hit(task: String, provider: String, model: String, at_ms: i64) -> LlmCall {
        LlmCall {
            task,
            provider,
            model,
            attempt: 0,
            tokens_in: None,
            tokens_out: None,
            latency_ms: 0,
            queued_ms: 0,
            tries: 0,
            outcome: CallOutcome::Cached,
            at_ms,
        }
    }

    /// Whether the answer came from the cache.
    pub fn is_cache_hit(&self) -> bool {
        self.outcome == CallOutcome::Cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_from_its_stored_text() {
        for outcome in [
            CallOutcome::Passed,
            CallOutcome::CheckFailed,
            CallOutcome::ExtractFailed,
            CallOutcome::Error,
            CallOutcome::Cached,
        ] {
            assert_eq!(CallOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(CallOutcome::parse("http-429"), None);
    }
}
