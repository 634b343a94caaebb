//! LLM steps: settings, the user's config file, secrets, providers behind one trait, rate
//! limiting, retries and the generate/check/repair loop.
//!
//! # Purpose
//!
//! Everything about talking to a model, and nothing about graphs or the cache: the planner
//! (`clab-plan`) renders prompts with this crate's settings and context types; the LLM node
//! kind of `clab-exec` drives [`generate`].
//!
//! # In and out
//!
//! What comes in: a resolved [`LlmConfig`] (layered [`Settings`] from CLI flags, `CLAB_LLM_*`
//! variables, the task's `llm` block, its profile, the top-level `llm` block and the user's
//! [`ConfigFile`]), a rendered prompt, the output path and an optional check. What goes out: the
//! text that passed the check, written into place, and one [`LlmCall`] per attempt for the
//! LLM call log.
//!
//! ```text
//! Settings ──resolve──▶ LlmConfig ──build_provider──▶ dyn Provider ─┐
//!                                   LimiterRegistry ──▶ Limiter ───┴─▶ Client (retries)
//! prompt + Context ──▶ generate(): send ─▶ extract ─▶ staged at output ─▶ Check ─┬─▶ keep
//!                                   ▲                                           │
//!                                   └─────── repair message (check output) ◀────┘
//!                                            no answer passed: previous file put back
//! ```
//!
//! Typical use by the LLM node kind, for one node:
//!
//! ```text
//! let config = Settings::stack([cli, Settings::from_env(&env)?, task, profile, defaults,
//!                               ConfigFile::load(&path)?.layer(profile_name)]).resolve(&node)?;
//! let client = Client::from_config(&config, root, &node, &registry, &env)?;   // share per config
//! let context = ContextBundle::read(&node, root, &files)?.render_within(&node, budget)?;
//! let output = confine_output(&node, root, &rendered_output)?;
//! let check = ShellCheck::new(&node, rendered_check, root, check_timeout);
//! let mut calls = Vec::new();
//! let result = generate(&client, &request, Some(&check), &mut calls).await;  // log `calls`
//! ```
//!
//! A [`Client`] is cheap to clone and takes the task name per call, so build one per distinct
//! [`LlmConfig`] and share it: nodes then share its HTTP connection pool as well as the
//! [`LimiterRegistry`]'s limiter.
//!
//! # Invariants
//!
//! The API key lives only in a [`Secret`], is read from the environment variable
//! named by `api-key-env` and nowhere else, and is exposed only where the request header is
//! built; no error, record or `Debug` output contains it. Nothing is written outside the
//! project root ([`confine_output`]); candidates are tried at the output path and only one that
//! passed its check stays there ([`StagedOutput`] puts the previous file back otherwise). A
//! check never sees the provider's key variables ([`LlmConfig::key_variables`]). Among
//! clab's crates this one depends on `clab-syntax` only (the setting names and the API-key
//! shape live there, so `clab check` and this crate agree).

mod anthropic;
mod check;
mod client;
mod command;
mod config_file;
mod context;
mod error;
mod extract;
mod generate;
mod limiter;
mod openai;
mod output_path;
mod provider;
mod retry_policy;
mod secret;
mod settings;
mod shell_run;
mod staged_output;

pub use anthropic::Anthropic;
pub use check::{Check, CheckOutcome, ShellCheck};
use clab_model::llm_call::{CallOutcome, LlmCall};
pub use client::{Client, Exchange};
pub use command::CommandProvider;
pub use config_file::ConfigFile;
pub use context::{ContextBundle, ContextFile, estimate_tokens, fence_for};
pub use error::{CallContext, ConfigParseError, Error};
pub use extract::{Extract, Problem, extract};
pub use generate::{GenerateRequest, Generated, generate};
pub use limiter::{Limiter, LimiterRegistry, Permit};
pub use openai::OpenAi;
pub use output_path::confine_output;
pub use provider::{
    BoxFuture, ChatRequest, Completion, Failure, Message, Provider, Role, build_provider,
};
pub use retry_policy::{RetryPolicy, parse_retry_after};
pub use secret::Secret;
use secret::looks_like_api_key;
pub use settings::{LlmConfig, ProviderKind, Settings, ai_enabled};
pub use staged_output::StagedOutput;

#[cfg(test)]
mod test_support;
