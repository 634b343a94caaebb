//! The LLM module's one error type.
//!
//! Every variant that comes from a call names the task, the provider, the model and (for HTTP)
//! the URL and status, with the server's own message. None carries the API key: server
//! messages pass through [`crate::Secret::redact`] before they land here, and the
//! only credential-related field is the *name* of the environment variable.

use std::path::PathBuf;

use miette::{NamedSource, SourceSpan};

/// Everything that can go wrong configuring, calling or checking an LLM step.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A provider name that is not `openai`, `anthropic` or `command`.
    #[error("unknown llm provider `{name}`")]
    #[diagnostic(code(clab::llm::unknown_provider), help("{help}"))]
    UnknownProvider {
        /// What was written.
        name: String,
        /// The list of providers, with a suggestion when one is close.
        help: String,
    },

    /// A setting whose value cannot be used (a bad duration, a negative temperature …).
    #[error("invalid llm setting `{field}` = `{value}` in {origin}")]
    #[diagnostic(code(clab::llm::invalid_setting), help("{help}"))]
    InvalidSetting {
        /// The setting's name, e.g. `timeout`.
        field: String,
        /// What was written.
        value: String,
        /// Where it came from, e.g. `` `CLAB_LLM_PROVIDER` `` or a config file path.
        origin: String,
        /// What a valid value looks like.
        help: String,
    },

    /// No model after all layers were merged.
    #[error("no llm `model` is configured for task `{task}` (provider `{provider}`)")]
    #[diagnostic(
        code(clab::llm::missing_model),
        help(
            "set `model` in the task's `llm` block, a profile, the top-level `llm` block, `~/.config/clab/config.toml`, `CLAB_LLM_MODEL` or `--model`"
        )
    )]
    MissingModel {
        /// The task being configured.
        task: String,
        /// The provider that needs a model.
        provider: String,
    },

    /// The `command` provider without a `command`.
    #[error("the `command` llm provider of task `{task}` has no `command`")]
    #[diagnostic(
        code(clab::llm::missing_command),
        help("add e.g. `command \"llm -m gpt-4o-mini\"` to the `llm` block")
    )]
    MissingCommand {
        /// The task being configured.
        task: String,
    },

    /// The user config file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    #[diagnostic(code(clab::llm::config_read))]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The user config file is not valid TOML for clab.
    #[error(transparent)]
    #[diagnostic(transparent)]
    ConfigParse(Box<ConfigParseError>),

    /// The API key's environment variable is not set.
    #[error(
        "environment variable `{env}` is not set; task `{task}` needs it for llm provider `{provider}`"
    )]
    #[diagnostic(
        code(clab::llm::missing_key),
        help(
            "export `{env}`, point `api-key-env` at the variable that holds the key, or run with `--offline` to use cached answers only"
        )
    )]
    MissingKey {
        /// The task.
        task: String,
        /// The provider.
        provider: String,
        /// The variable's name (never its value).
        env: String,
    },

    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the http client for llm provider `{provider}`")]
    #[diagnostic(code(clab::llm::http_client))]
    HttpClient {
        /// The provider.
        provider: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },

    /// A 429 with `insufficient_quota`: retrying cannot help.
    #[error(
        "llm quota exhausted: `{}` refused task `{}` (model `{}`) with HTTP {status} at `{}`: {message}",
        .call.provider, .call.task, .call.model, .call.url
    )]
    #[diagnostic(
        code(clab::llm::quota_exhausted),
        help(
            "the account's quota or credit is used up, so clab did not retry; add credit or raise the limit in the provider's billing settings, or switch `provider`/`model`"
        )
    )]
    QuotaExhausted {
        /// Which call.
        call: Box<CallContext>,
        /// 429 (`insufficient_quota`) or 402.
        status: u16,
        /// The server's message.
        message: String,
    },

    /// 401 or 403: the key is missing, wrong or lacks permission.
    #[error(
        "llm request of task `{}` was rejected: `{}` (model `{}`) answered HTTP {status} at `{}`: {message}",
        .call.task, .call.provider, .call.model, .call.url
    )]
    #[diagnostic(code(clab::llm::unauthorized), help("{help}"))]
    Unauthorized {
        /// Which call.
        call: Box<CallContext>,
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
        /// Which variable to check.
        help: String,
    },

    /// Any other HTTP error status (after retries, for the retryable ones).
    #[error(
        "llm request of task `{}` failed: `{}` (model `{}`) answered HTTP {status} at `{}` after {tries} tries: {message}",
        .call.task, .call.provider, .call.model, .call.url
    )]
    #[diagnostic(code(clab::llm::http_status))]
    Status {
        /// Which call.
        call: Box<CallContext>,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// How many requests were sent.
        tries: u32,
    },

    /// Every try timed out.
    #[error(
        "llm request of task `{}` timed out: `{}` (model `{}`) at `{}` did not answer within {timeout} ({tries} tries)",
        .call.task, .call.provider, .call.model, .call.url
    )]
    #[diagnostic(
        code(clab::llm::timeout),
        help("raise `timeout` in the `llm` block, or pick a faster model")
    )]
    Timeout {
        /// Which call.
        call: Box<CallContext>,
        /// The per-request timeout, human-readable.
        timeout: String,
        /// How many requests were sent.
        tries: u32,
    },

    /// Connection refused, DNS failure, reset: every try failed below HTTP.
    #[error(
        "llm request of task `{}` could not reach `{}` (model `{}`) at `{}` ({tries} tries)",
        .call.task, .call.provider, .call.model, .call.url
    )]
    #[diagnostic(
        code(clab::llm::unreachable),
        help(
            "is the server running and `base-url` right? for Ollama use `base-url \"http://localhost:11434/v1\"`"
        )
    )]
    Transport {
        /// Which call.
        call: Box<CallContext>,
        /// How many requests were sent.
        tries: u32,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered 2xx with a body clab cannot use.
    #[error(
        "unexpected answer from `{}` (model `{}`) at `{}` for task `{}`: {message}",
        .call.provider, .call.model, .call.url, .call.task
    )]
    #[diagnostic(code(clab::llm::bad_response))]
    BadResponse {
        /// Which call.
        call: Box<CallContext>,
        /// What was wrong.
        message: String,
    },

    /// The `command` provider's command could not be started.
    #[error("cannot start llm command `{command}` for task `{task}`")]
    #[diagnostic(code(clab::llm::command_spawn))]
    CommandSpawn {
        /// The task.
        task: String,
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The `command` provider's command exited unsuccessfully.
    #[error("llm command `{command}` for task `{task}` failed ({status}):\n{stderr_tail}")]
    #[diagnostic(code(clab::llm::command_failed))]
    CommandFailed {
        /// The task.
        task: String,
        /// The command line.
        command: String,
        /// `exit status 1`, `killed by signal 9`, `timed out after 30s`.
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// A context file could not be read.
    #[error("cannot read context file `{path}` of task `{task}`")]
    #[diagnostic(code(clab::llm::context_read))]
    ContextRead {
        /// The task.
        task: String,
        /// The file, relative to the project root.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A context file outside the project root.
    #[error("context file `{path}` of task `{task}` is outside the project: {reason}")]
    #[diagnostic(
        code(clab::llm::context_outside_project),
        help("context files are sent to the model's server, so they must lie inside the project")
    )]
    ContextOutsideProject {
        /// The task.
        task: String,
        /// The path as written.
        path: String,
        /// Why it is refused.
        reason: String,
    },

    /// The context bundle is larger than `max-context-tokens`.
    #[error(
        "context of task `{task}` is about {estimated} tokens, over its budget of {budget} (`max-context-tokens`)"
    )]
    #[diagnostic(
        code(clab::llm::context_budget),
        help(
            "tokens are estimated as bytes / 4; the context files are:\n{files}\nnarrow `context`, or raise `max-context-tokens`"
        )
    )]
    ContextBudget {
        /// The task.
        task: String,
        /// The estimate for the whole bundle.
        estimated: u64,
        /// `max-context-tokens`.
        budget: u64,
        /// One line per file: path, bytes, estimated tokens (largest first).
        files: String,
    },

    /// `extract "code"` and the answer has no fenced code block.
    #[error(
        "the llm answer for task `{task}` has no fenced code block (after {attempts} attempts)"
    )]
    #[diagnostic(
        code(clab::llm::missing_fence),
        help(
            "`extract \"code\"` keeps the first ``` or ~~~ block of the answer; the answer began:\n{answer_head}\nask for one fenced block in the prompt, or use `extract \"text\"`"
        )
    )]
    MissingFence {
        /// The task.
        task: String,
        /// How many answers were tried.
        attempts: u32,
        /// The first lines of the last answer.
        answer_head: String,
    },

    /// Every answer was empty.
    #[error("the llm answers for task `{task}` were empty (after {attempts} attempts)")]
    #[diagnostic(
        code(clab::llm::empty_answer),
        help("check the model's settings (`max-tokens`, content filters) and the prompt")
    )]
    EmptyAnswer {
        /// The task.
        task: String,
        /// How many answers were tried.
        attempts: u32,
    },

    /// `extract "code"` and the first fenced block is never closed.
    #[error(
        "the llm answer for task `{task}` opens a code block it never closes (after {attempts} attempts)"
    )]
    #[diagnostic(
        code(clab::llm::unclosed_fence),
        help("the answer was probably cut off: raise `max-tokens`")
    )]
    UnclosedFence {
        /// The task.
        task: String,
        /// How many answers were tried.
        attempts: u32,
    },

    /// An `output` that would land outside the project.
    #[error("output `{path}` of task `{task}` is outside the project: {reason}")]
    #[diagnostic(
        code(clab::llm::output_outside_project),
        help("LLM outputs must be relative paths inside the project root `{root}`")
    )]
    OutputOutsideProject {
        /// The task.
        task: String,
        /// The path as written.
        path: String,
        /// Why it is refused.
        reason: String,
        /// The project root.
        root: String,
    },

    /// Writing a candidate, renaming it into place or keeping the previous file aside failed.
    #[error("cannot write `{}` for task `{task}`", path.display())]
    #[diagnostic(code(clab::llm::write))]
    Write {
        /// The task.
        task: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Putting the previous output back after no answer passed failed; it is still on disk.
    #[error("cannot put back the previous `{}` for task `{task}`; it is kept as `{}`", path.display(), kept.display())]
    #[diagnostic(code(clab::llm::restore))]
    Restore {
        /// The task.
        task: String,
        /// The output.
        path: PathBuf,
        /// Where the previous file is.
        kept: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The check could not be started.
    #[error("cannot run the check `{command}` of task `{task}`")]
    #[diagnostic(code(clab::llm::check_spawn))]
    CheckSpawn {
        /// The task.
        task: String,
        /// The check command.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The check's sandbox could not be set up (`sandbox "required"` on a kernel that
    /// lacks a feature, a writable path that cannot be opened).
    #[error("cannot sandbox the check of task `{task}`")]
    #[diagnostic(code(clab::llm::check_sandbox))]
    CheckSandbox {
        /// The task.
        task: String,
        /// Why.
        #[source]
        #[diagnostic_source]
        source: clab_sandbox::Error,
    },

    /// No answer passed the check.
    #[error(
        "no llm answer for task `{task}` passed its check `{command}` in {attempts} {}; the last check said:\n{output}", if *attempts == 1 { "attempt" } else { "attempts" }
    )]
    #[diagnostic(
        code(clab::llm::check_failed),
        help("nothing was written; raise `attempts`, improve the prompt, or relax the check")
    )]
    CheckFailed {
        /// The task.
        task: String,
        /// The check command.
        command: String,
        /// How many answers were tried.
        attempts: u32,
        /// The last check's output (tail).
        output: String,
    },
}

impl Error {
    /// Whether the error is in the user's configuration (`tasks.kdl`, the config file, the
    /// environment's `CLAB_LLM_*` or key variables) rather than in a call: the CLI exits 2 for
    /// these, and watch mode keeps waiting for an edit instead of retrying.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::UnknownProvider { .. }
                | Error::InvalidSetting { .. }
                | Error::MissingModel { .. }
                | Error::MissingCommand { .. }
                | Error::ConfigRead { .. }
                | Error::ConfigParse(_)
                | Error::MissingKey { .. }
                | Error::OutputOutsideProject { .. }
                | Error::ContextBudget { .. }
                | Error::ContextOutsideProject { .. }
        )
    }
}

/// Which call failed: the context every provider error carries (boxed, to keep [`Error`]
/// small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The node, e.g. `gen-tests[src/pkg/a.py]`.
    pub task: String,
    /// `openai`, `anthropic` or `command`.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The full request URL (or the command line).
    pub url: String,
}

/// A config file that is not valid TOML for clab, pointing at the problem.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("invalid config file `{}`: {message}", path.display())]
#[diagnostic(code(clab::llm::config_parse))]
pub struct ConfigParseError {
    /// The file.
    pub path: PathBuf,
    /// The parser's message.
    pub message: String,
    /// The file's text.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// Where the problem is.
    #[label("here")]
    pub span: Option<SourceSpan>,
}

#[cfg(test)]
pub(crate) use clab_model::test_render as render;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_are_told_apart_from_call_errors() {
        let config = Error::MissingModel {
            task: "t".into(),
            provider: "openai".into(),
        };
        assert!(config.is_config());
        let call = Error::CheckFailed {
            task: "t".into(),
            command: "false".into(),
            attempts: 1,
            output: String::new(),
        };
        assert!(!call.is_config());
    }

    #[test]
    fn the_error_stays_small() {
        // Results of `Error` are returned along every path; keep the enum under clippy's
        // `result_large_err` threshold by boxing large payloads.
        assert!(
            std::mem::size_of::<Error>() <= 128,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
