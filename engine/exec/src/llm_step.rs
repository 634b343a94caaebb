//! An LLM node's run: a client for its resolved settings, the generate/check/repair loop,
//! and the call records for the log. Everything before (rendering, the key, the cache) and
//! after (storing the output) is the runner's, as for any node.

use std::{path::Path, time::Duration};

use super::llm::{
    CallRecord, Client, GenerateRequest, LimiterRegistry, ShellCheck, confine_output, generate,
};
use clab_plan::llm_prompt::LlmPrompt;

/// How long a check may run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Ask, check, repair; on success the answer is in place at the prompt's output. Returns a
/// line for the log, or the failure message; the records of every attempt either way.
pub async fn run_llm(
    task: &str,
    root: &Path,
    prompt: &LlmPrompt,
    limiters: &LimiterRegistry,
) -> (Result<String, String>, Vec<CallRecord>) {
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
        ShellCheck::new(task, command.clone(), root, CHECK_TIMEOUT)
            .without_env(prompt.config.key_variables())
    });
    let check = check.as_ref().map(|c| c as &dyn super::llm::Check);
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
