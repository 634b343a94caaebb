//! LLM steps: providers behind one trait, rate limiting, retries and the call loop.
