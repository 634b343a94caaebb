//! [`LlmKind`]: an LLM step — its request rendered into the key, then a client for its
//! resolved settings, the generate/check/repair loop (`clab-llm`), and one record per
//! attempt in the store's LLM call log.
//!
//! Everything before (the key, the lookup) and after (storing the output) is the runner's,
//! as for any node. The kind refuses to call when `--offline` is set or AI is off; a cache
//! hit is logged as a call that was not made, for `clab stats`' hit rate.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use clab_graph::NodeId;
use clab_llm::{
    Check, Client, GenerateRequest, LimiterRegistry, ShellCheck, confine_output, generate,
};
use clab_model::llm_call::LlmCall;
use clab_plan::{
    Reason,
    llm_prompt::{self, LlmLayers, LlmPrompt},
};

use crate::{
    context::{Context, failed, now_ms},
    kind::{Kind, RunResult, Work},
};

/// How long a check may run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs LLM steps.
pub struct LlmKind {
    /// LLM settings from flags, variables and the user's config file.
    layers: LlmLayers,
    /// LLM steps may only come from the cache (`--offline`).
    offline: bool,
    /// LLM calls are turned off, and by what (`CLAB_AI=off`).
    ai_off: Option<String>,
    /// For the async calls, driven from the job thread.
    runtime: tokio::runtime::Handle,
    /// One rate limiter per provider, shared by all nodes.
    limiters: LimiterRegistry,
    /// Requests rendered for a key, until their node runs.
    prompts: Mutex<HashMap<NodeId, LlmPrompt>>,
    /// Tokens sent and received.
    tokens: Mutex<(u64, u64)>,
}

impl LlmKind {
    /// The LLM kind of a run; made inside the Tokio runtime its calls use.
    pub fn new(layers: LlmLayers, offline: bool, ai_off: Option<String>) -> LlmKind {
        LlmKind {
            layers,
            offline,
            ai_off,
            runtime: tokio::runtime::Handle::current(),
            limiters: LimiterRegistry::new(),
            prompts: Mutex::new(HashMap::new()),
            tokens: Mutex::new((0, 0)),
        }
    }

    /// Tokens sent and received by this run's LLM calls.
    pub fn tokens(&self) -> (u64, u64) {
        self.tokens.lock().map(|t| *t).unwrap_or_default()
    }

    /// Keep the tokens of `calls` and log each one in the store.
    fn record(&self, cx: &Context, id: NodeId, calls: &[LlmCall]) {
        if let Ok(mut tokens) = self.tokens.lock() {
            for call in calls {
                tokens.0 += call.tokens_in.unwrap_or(0);
                tokens.1 += call.tokens_out.unwrap_or(0);
            }
        }
        let Some(store) = cx.store() else {
            return;
        };
        for call in calls {
            if let Err(err) = store.record_llm_call(call) {
                cx.warn(format!(
                    "cannot log the LLM call of `{}`: {err}",
                    cx.node(id).name
                ));
            }
        }
    }
}

impl Kind for LlmKind {
    fn key_extra(&self, cx: &Context, id: NodeId) -> Result<BTreeMap<String, String>, String> {
        let prompt = llm_prompt::render(&cx.graph, id, &self.layers, cx.stat_cache())?;
        let extra = prompt.extra.clone();
        if let Ok(mut prompts) = self.prompts.lock() {
            prompts.insert(id, prompt);
        }
        Ok(extra)
    }

    fn refuse(&self, _cx: &Context, _id: NodeId, reason: Option<&Reason>) -> Option<String> {
        let why = reason.map_or_else(|| "not cached".to_owned(), ToString::to_string);
        if self.offline {
            return Some(format!("needs an LLM call ({why}) and --offline is set"));
        }
        // Asked for and not made: a failure, with the real reason first.
        let switch = self.ai_off.as_ref()?;
        Some(format!(
            "AI is off ({switch}) and an LLM call is needed: {why}"
        ))
    }

    /// Render the request (unless the key computation already did), call, check, and log
    /// every attempt.
    fn run(&self, cx: &Context, work: Work<'_>) -> RunResult {
        let id = work.id;
        let node = cx.node(id);
        let rendered = self.prompts.lock().ok().and_then(|mut p| p.remove(&id));
        let prompt = match rendered {
            Some(prompt) => prompt,
            None => llm_prompt::render(&cx.graph, id, &self.layers, cx.stat_cache())
                .map_err(|message| (failed(&message), Default::default()))?,
        };
        let (result, calls) =
            self.runtime
                .block_on(call(&node.name, cx, id, &prompt, &self.limiters));
        self.record(cx, id, &calls);
        match result {
            Ok(line) => {
                cx.output(id, line.clone());
                Ok(format!("{line}\n").into_bytes().into())
            }
            Err(message) => Err((failed(&message), message.into_bytes().into())),
        }
    }

    /// Log the hit, for the hit rate of `clab stats`. The provider and model are the
    /// resolved ones, from the key parts.
    fn restored(&self, cx: &Context, id: NodeId, extra: &BTreeMap<String, String>) {
        if let Ok(mut prompts) = self.prompts.lock() {
            prompts.remove(&id);
        }
        let Some(store) = cx.store() else {
            return;
        };
        let part = |name: &str| extra.get(name).cloned().unwrap_or_default();
        let _ = store.record_llm_call(&LlmCall::cache_hit(
            cx.node(id).name.clone(),
            part("llm.provider"),
            part("llm.model"),
            now_ms(),
        ));
    }
}

/// Ask, check, repair; on success the answer is in place at the prompt's output. Returns a
/// line for the log, or the failure message; the records of every attempt either way.
async fn call(
    task: &str,
    cx: &Context,
    id: NodeId,
    prompt: &LlmPrompt,
    limiters: &LimiterRegistry,
) -> (Result<String, String>, Vec<LlmCall>) {
    let root = cx.graph.root();
    let lookup = |name: &str| std::env::var(name).ok();
    let mut calls = Vec::new();
    let client = match Client::from_config(&prompt.config, root, task, limiters, &lookup) {
        Ok(client) => client,
        Err(err) => return (Err(err.to_string()), calls),
    };
    let output = match confine_output(task, root, &prompt.output) {
        Ok(output) => output,
        Err(err) => return (Err(err.to_string()), calls),
    };
    let request = GenerateRequest {
        task: task.to_owned(),
        system: prompt.system.clone(),
        prompt: prompt.user.clone(),
        extract: prompt.extract,
        output,
        attempts: prompt.attempts,
    };
    let check = prompt.check.as_ref().map(|command| {
        let check = ShellCheck::new(task, command.clone(), root, CHECK_TIMEOUT)
            .with_env(cx.graph.command_env(id))
            .without_env(prompt.config.key_variables());
        // Model-written code: sandboxed unless the task says `sandbox #false`.
        match crate::sandbox_policy::policy_of(cx, id, clab_sandbox::Mode::BestEffort) {
            Some(policy) => check.sandboxed(policy),
            None => check,
        }
    });
    let check = check.as_ref().map(|c| c as &dyn Check);
    let result = generate(&client, &request, check, &mut calls).await;
    let result = result
        .map(|generated| {
            format!(
                "wrote {} ({} bytes) from {} after {} attempt{}",
                prompt.output,
                generated.text.len(),
                prompt.config.model,
                generated.attempts,
                if generated.attempts == 1 { "" } else { "s" }
            )
        })
        .map_err(|err| err.to_string());
    (result, calls)
}
