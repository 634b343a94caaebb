//! `tasks.kdl` → [`TaskFile`]: the typed model of the file, every value spanned.
//!
//! ```text
//! tasks.kdl ──parse_task_file──▶ TaskFile ──▶ (engine::graph)
//!     └── parse_cache::ParseCache: unchanged bytes → the TaskFile stored last time
//! ```
//!
//! # Purpose
//!
//! The syntax stage: read the task file into a typed model and report every problem that
//! can be seen in one node at a time: the KDL syntax, node and property names, argument
//! counts and types, durations, placeholders, and literal API keys written where a name
//! belongs ([`looks_like_api_key`]).
//!
//! # In
//!
//! The text of `tasks.kdl` as a [`SourceFile`] ([`parse_task_file`]); the [`parse_cache`]
//! also reads and writes its entries under `.clab/`.
//!
//! # Out
//!
//! A [`TaskFile`], or [`Diagnostics`]: the [`Error`]s found, each with a span and help — at
//! most [`MAX_DIAGNOSTICS`] of them, then one [`Error::MoreProblems`] that counts the rest.
//!
//! # Limits
//!
//! Reading is bounded whatever the file holds (issue 18): a file over [`MAX_FILE_BYTES`] is
//! refused before it is parsed, a block nested deeper than [`MAX_DEPTH`] is an error (both
//! parse paths recurse per block), the `kdl` crate reads large texts in pieces on a stack
//! sized for them (`outline`), and each diagnostic's source is read in windows around its
//! span ([`SourceText`]), so no column is too far right to draw and no line is printed whole
//! under each of thousands of problems. An API key found in the file is masked (`*`) in the
//! source every diagnostic of the file shows, and never named in a message.
//!
//! # Invariants
//!
//! Names are not resolved here (an unknown dependency is the graph's error), so every value
//! keeps the span a later stage needs to point at it. A file parses to the same
//! [`TaskFile`] whether the fast reader (`fast_kdl`) or the `kdl` crate reads it. The crate
//! depends on `clab-model` only among clab's crates: it knows nothing of graphs, plans, the
//! store or execution; the list of LLM setting names ([`LLM_SETTING_KEYS`]) lives here and
//! the LLM layer takes it from here.

mod api_key;
mod fast_kdl;
mod kdl;
mod outline;
pub mod parse_cache;
pub mod placeholders;
mod tree;

use std::{collections::BTreeMap, time::Duration};

use miette::{Diagnostic, NamedSource, SourceSpan};

pub use self::{api_key::looks_like_api_key, kdl::parse_task_file};
use clab_model::duration::parse_duration;
use clab_model::source::{SourceFile, SourceText, Spanned};

/// The largest `tasks.kdl` clab reads: 10 MiB. A generated file of 50,000 tasks is about 5 MB;
/// a larger one is a mistake, and parsing 50 MB took 6.7 GB of memory.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// How deep blocks may nest (`task { llm { … } }` is 2 deep).
pub const MAX_DEPTH: usize = 64;

/// How many problems one [`Diagnostics`] shows; the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 50;

/// Miette source code of the file, as every error of this crate carries it.
pub type Src = NamedSource<SourceText>;

/// A parsed `tasks.kdl`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskFile {
    /// The file the model was parsed from (not stored by the parse cache: it holds the
    /// text the cache entry is keyed by).
    #[serde(skip)]
    pub source: SourceFile,
    /// `project "NAME"`.
    pub project: Option<Spanned<String>>,
    /// `members "packages/*" …`: the directory globs of a workspace's members (root file
    /// only; see docs/workspaces.md).
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    /// `uses "core" …`: members this member depends on beyond what its manifests say.
    #[serde(default)]
    pub uses: Vec<Spanned<String>>,
    /// Top-level `env KEY="value"`: set for every task and part of every hash.
    pub env: BTreeMap<String, Spanned<String>>,
    /// `env-inputs "CC" …`: inherited variables whose values are hashed.
    pub env_inputs: Vec<Spanned<String>>,
    /// `dotenv ".env" …`: files of `KEY=value` lines whose variables every task gets (their
    /// values are hashed into keys like `env-inputs`, never stored).
    pub dotenv: Vec<Spanned<String>>,
    /// `rules "DIR" …`: where `*.mdc` rule files live (none written: `.cursor/rules`).
    pub rules_dirs: Vec<Spanned<String>>,
    /// The unnamed top-level `llm { … }` block: defaults for every LLM step.
    pub llm_defaults: Option<LlmSettings>,
    /// Named `llm "NAME" { … }` profiles.
    pub llm_profiles: BTreeMap<String, LlmSettings>,
    /// The top-level `cache { … }` block: the shared remote cache.
    pub cache: Option<CacheDecl>,
    /// The tasks, in file order.
    pub tasks: Vec<TaskDecl>,
}

/// What `sandbox` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SandboxDecl {
    /// `sandbox #false`.
    Off,
    /// `sandbox #true`: with what the kernel offers (one warning for what it lacks).
    On,
    /// `sandbox "required"`: fully, or the task fails.
    Required,
}

/// The top-level `cache { … }` block: where the shared remote cache is and whom to trust.
/// Credentials never belong here: they come from the environment.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheDecl {
    /// `remote "URL"`: the remote cache (`CLAB_REMOTE_CACHE` overrides it).
    pub remote: Option<Spanned<String>>,
    /// `read-only #true`: fetch, never upload.
    pub read_only: Option<Spanned<bool>>,
    /// `trusted-key "ed25519:…" …`: accept only entries signed by one of these.
    pub trusted_keys: Vec<Spanned<String>>,
}

/// One `task "NAME" { … }` node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskDecl {
    /// The task's name and where it is written.
    pub name: Spanned<String>,
    /// The span of the whole node.
    pub span: SourceSpan,
    /// `description "…"`.
    pub description: Option<Spanned<String>>,
    /// `run "…"` lines, in order; each is a `sh -c` command.
    pub run: Vec<Spanned<String>>,
    /// `deps "…"`: names of tasks that must finish first.
    pub deps: Vec<Spanned<String>>,
    /// `inputs "GLOB" …`: files whose content the cache key hashes; `!` excludes.
    pub inputs: Vec<Spanned<String>>,
    /// `outputs "GLOB" …`: files the task writes, stored in and restored from the cache.
    pub outputs: Vec<Spanned<String>>,
    /// `env KEY="value"`: variables set for this task.
    pub env: BTreeMap<String, Spanned<String>>,
    /// `cwd "DIR"`: where commands run, relative to the project root.
    pub cwd: Option<Spanned<String>>,
    /// `cache #false` turns caching off for the task.
    pub cache: Option<Spanned<bool>>,
    /// `timeout "5m"`: the task's process group is killed after this long.
    pub timeout: Option<Spanned<Duration>>,
    /// `retry N`: run a failing command up to N more times.
    pub retry: Option<Spanned<u32>>,
    /// `persistent #true`: a long-running server, kept alive in watch mode.
    pub persistent: Option<Spanned<bool>>,
    /// `sandbox #true`, `#false` or `"required"`: run the task's commands (or its LLM
    /// step's check, sandboxed unless `#false`) without network and with writes confined.
    pub sandbox: Option<Spanned<SandboxDecl>>,
    /// `sandbox-writable "PATH" …`: more paths the sandbox may write (`~/` is the home
    /// directory; others are relative to the root).
    pub sandbox_writable: Vec<Spanned<String>>,
    /// `for-each "GLOB" …`: one node per matching file.
    pub for_each: Vec<Spanned<String>>,
    /// `junit "PATH"`: a JUnit XML report to read after the task.
    pub junit: Option<Spanned<String>>,
    /// `coverage "PATH" fail-under=N`: a coverage report and its gate.
    pub coverage: Option<CoverageDecl>,
    /// `llm { … }`: the task is an LLM step.
    pub llm: Option<Box<LlmStepDecl>>,
}

/// `coverage "PATH" fail-under=80 show-missing=#true skip-covered=#true`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CoverageDecl {
    /// The report's path.
    pub path: Spanned<String>,
    /// The minimum total percentage.
    pub fail_under: Option<Spanned<f64>>,
    /// List missing line ranges in the table (default on).
    pub show_missing: bool,
    /// Leave fully covered files out of the table.
    pub skip_covered: bool,
}

/// A scalar written in tasks.kdl.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scalar {
    /// A string.
    String(String),
    /// A whole number.
    Integer(i64),
    /// A number with a fraction.
    Float(f64),
    /// `#true` or `#false`.
    Bool(bool),
}

/// Provider settings of an `llm` block: every field optional so that layers can merge.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LlmSettings {
    /// The span of the block, for errors about the block as a whole.
    pub span: SourceSpan,
    /// Setting name (`model`, `base-url`, …) → value.
    #[serde(with = "parse_cache::setting_names")]
    pub values: BTreeMap<&'static str, Spanned<Scalar>>,
}

/// The `llm { … }` block of a task: what to ask, where to write, how to check.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LlmStepDecl {
    /// The span of the block.
    pub span: SourceSpan,
    /// `profile "NAME"`: settings from a named top-level `llm` block.
    pub profile: Option<Spanned<String>>,
    /// Provider settings written in the step itself.
    pub settings: LlmSettings,
    /// `prompt "…"`: the user prompt, inline.
    pub prompt: Option<Spanned<String>>,
    /// `prompt-file "PATH"`.
    pub prompt_file: Option<Spanned<String>>,
    /// `system "…"`.
    pub system: Option<Spanned<String>>,
    /// `system-file "PATH"`.
    pub system_file: Option<Spanned<String>>,
    /// `context "GLOB" …`: files bundled into `{{context}}`.
    pub context: Vec<Spanned<String>>,
    /// `output "PATH"`: where the answer is written.
    pub output: Option<Spanned<String>>,
    /// `extract "code"|"text"`.
    pub extract: Option<Spanned<String>>,
    /// `check "COMMAND"`: must pass before the answer is accepted.
    pub check: Option<Spanned<String>>,
    /// `attempts N`: how many answers to try when the check fails.
    pub attempts: Option<Spanned<u32>>,
    /// `max-context-tokens N`: the budget of `{{context}}`.
    pub max_context_tokens: Option<Spanned<u32>>,
    /// `rules "NAME" …`: manual rules to attach.
    pub rules: Vec<Spanned<String>>,
}

/// The settings an `llm` block may hold, in both the top-level and the task form, as written
/// in `tasks.kdl`; `engine::exec::llm::Settings::KEYS` (which the config file accepts too) is
/// defined as this list, so the two cannot drift.
pub const LLM_SETTING_KEYS: [&str; 11] = [
    "provider",
    "base-url",
    "model",
    "api-key-env",
    "temperature",
    "max-tokens",
    "timeout",
    "requests-per-minute",
    "max-concurrent",
    "command",
    "max-retries",
];

/// [`LLM_SETTING_KEYS`] as a slice.
pub const LLM_SETTINGS: &[&str] = &LLM_SETTING_KEYS;

/// A problem in tasks.kdl, pointing at the span that causes it.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    #[diagnostic(code(clab::tasks::io))]
    Io {
        /// The path that failed.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The KDL itself does not parse.
    #[error("{message}")]
    #[diagnostic(code(clab::tasks::syntax))]
    Syntax {
        /// What the KDL parser said.
        message: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("{label}")]
        span: SourceSpan,
        /// The label text.
        label: String,
        /// The parser's hint, if any.
        #[help]
        help: Option<String>,
    },

    /// A node name that is not part of the format.
    #[error("unknown {context} `{name}`")]
    #[diagnostic(code(clab::tasks::unknown_node))]
    UnknownNode {
        /// The name written.
        name: String,
        /// Where it was: `node`, `task child`, `llm setting` …
        context: &'static str,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("not a known {context}")]
        span: SourceSpan,
        /// "did you mean" or the list of valid names.
        #[help]
        help: String,
    },

    /// A property (`key=value`) the node does not take.
    #[error("unknown property `{name}` on `{node}`")]
    #[diagnostic(code(clab::tasks::unknown_property))]
    UnknownProperty {
        /// The property written.
        name: String,
        /// The node it was written on.
        node: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("unknown property")]
        span: SourceSpan,
        /// "did you mean" or the valid properties.
        #[help]
        help: String,
    },

    /// A node has the wrong number or type of arguments.
    #[error("`{node}` {expected}")]
    #[diagnostic(code(clab::tasks::bad_argument))]
    BadArgument {
        /// The node.
        node: String,
        /// What it takes: "takes one string", "takes #true or #false" …
        expected: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("{found}")]
        span: SourceSpan,
        /// What was found.
        found: String,
    },

    /// Two tasks with one name.
    #[error("task `{name}` is defined twice")]
    #[diagnostic(code(clab::tasks::duplicate_task), help("rename one of them"))]
    DuplicateTask {
        /// The name.
        name: String,
        /// The file.
        #[source_code]
        src: Src,
        /// The second definition.
        #[label("defined again here")]
        span: SourceSpan,
        /// The first definition.
        #[label("first defined here")]
        first: SourceSpan,
    },

    /// A duration that does not parse.
    #[error("invalid duration `{value}`")]
    #[diagnostic(
        code(clab::tasks::bad_duration),
        help("write a number with a unit: `500ms`, `30s`, `5m`, `1h30m`")
    )]
    BadDuration {
        /// The text written.
        value: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("not a duration")]
        span: SourceSpan,
    },

    /// `run` and `llm` in one task.
    #[error("task `{task}` has both `run` and `llm`")]
    #[diagnostic(
        code(clab::tasks::run_and_llm),
        help(
            "a task either runs commands or asks an LLM: split it into two tasks and make one depend on the other"
        )
    )]
    RunAndLlm {
        /// The task.
        task: String,
        /// The file.
        #[source_code]
        src: Src,
        /// The `run` node.
        #[label("commands here")]
        run: SourceSpan,
        /// The `llm` node.
        #[label("LLM step here")]
        llm: SourceSpan,
    },

    /// A placeholder that is not defined where it is used.
    #[error("unknown placeholder `{{{{{name}}}}}`")]
    #[diagnostic(code(clab::tasks::unknown_placeholder))]
    UnknownPlaceholder {
        /// The name between the braces.
        name: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("not available here")]
        span: SourceSpan,
        /// What is available.
        #[help]
        help: String,
    },

    /// Something that looks like an API key, written into the file.
    #[error("an API key is written in `{file}`")]
    #[diagnostic(
        code(clab::tasks::api_key_in_file),
        help(
            "keys come from the environment only: remove it, rotate it, and name its variable with `api-key-env \"OPENAI_API_KEY\"`"
        )
    )]
    ApiKeyInFile {
        /// The file name.
        file: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where (the value itself is never printed in the message).
        #[label("this looks like a secret")]
        span: SourceSpan,
    },

    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("`{file}` is {size} bytes, more than the limit of {limit}")]
    #[diagnostic(
        code(clab::tasks::too_large),
        help("a task file this large is likely generated by mistake; split it or generate less")
    )]
    TooLarge {
        /// The file name.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// [`MAX_FILE_BYTES`].
        limit: u64,
    },

    /// Blocks nested deeper than [`MAX_DEPTH`].
    #[error("blocks nest more than {limit} deep")]
    #[diagnostic(
        code(clab::tasks::too_deep),
        help(
            "a task file needs two levels (`task {{ llm {{ … }} }}`); look for a `}}` missing above"
        )
    )]
    TooDeep {
        /// [`MAX_DEPTH`].
        limit: usize,
        /// The file.
        #[source_code]
        src: Src,
        /// The `{` that goes too deep.
        #[label("block {} opens here", limit + 1)]
        span: SourceSpan,
    },

    /// One top-level node is too large for the `kdl` crate's path.
    #[error("a top-level node of {size} bytes is too large to read")]
    #[diagnostic(
        code(clab::tasks::node_too_large),
        help(
            "nodes over {limit} bytes are read only when they use plain KDL (quoted strings, no raw or multi-line strings, no `/-`); split the node or move long text to a file (`prompt-file`)"
        )
    )]
    NodeTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
        /// The file.
        #[source_code]
        src: Src,
        /// Where it starts.
        #[label("this node")]
        span: SourceSpan,
    },

    /// A property set twice in one node (`timeout`, `cwd`, an llm setting …).
    #[error("`{name}` is set twice in {node}")]
    #[diagnostic(
        code(clab::tasks::duplicate_property),
        help("remove one of them: only one value is used")
    )]
    DuplicateProperty {
        /// The property.
        name: String,
        /// The node it is in: "task `build`", "the `llm` block" …
        node: String,
        /// The file.
        #[source_code]
        src: Src,
        /// The second occurrence.
        #[label(primary, "set again here")]
        span: SourceSpan,
        /// The first occurrence.
        #[label("first set here")]
        first: SourceSpan,
    },

    /// More problems than [`MAX_DIAGNOSTICS`]: how many are not shown.
    #[error("{}", more_message(*count, *partial))]
    #[diagnostic(code(clab::tasks::more_problems), help("{}", more_help(*partial)))]
    MoreProblems {
        /// How many were found beyond those shown.
        count: usize,
        /// Reading stopped early: there may be more.
        partial: bool,
    },

    /// An `llm` step that is missing something it needs.
    #[error("the `llm` step of task `{task}` {problem}")]
    #[diagnostic(code(clab::tasks::bad_llm_step))]
    BadLlmStep {
        /// The task.
        task: String,
        /// What is wrong.
        problem: String,
        /// The file.
        #[source_code]
        src: Src,
        /// Where.
        #[label("here")]
        span: SourceSpan,
    },
}

fn more_message(count: usize, partial: bool) -> String {
    match (count, partial) {
        (0, true) => "and maybe more problems".to_owned(),
        (1, partial) => format!(
            "and {}1 more problem",
            if partial { "at least " } else { "" }
        ),
        (count, partial) => format!(
            "and {}{count} more problems",
            if partial { "at least " } else { "" }
        ),
    }
}

fn more_help(partial: bool) -> &'static str {
    if partial {
        "fix these first: the rest of the file was not read"
    } else {
        "fix these first: the others are listed once these are gone"
    }
}

impl Error {
    /// The source and the labels of a variant that has them.
    fn parts_mut(&mut self) -> Option<(&mut Src, Vec<&mut SourceSpan>)> {
        Some(match self {
            Error::Io { .. } | Error::TooLarge { .. } | Error::MoreProblems { .. } => return None,
            Error::Syntax { src, span, .. }
            | Error::UnknownNode { src, span, .. }
            | Error::UnknownProperty { src, span, .. }
            | Error::BadArgument { src, span, .. }
            | Error::BadDuration { src, span, .. }
            | Error::UnknownPlaceholder { src, span, .. }
            | Error::ApiKeyInFile { src, span, .. }
            | Error::BadLlmStep { src, span, .. }
            | Error::TooDeep { src, span, .. }
            | Error::NodeTooLarge { src, span, .. } => (src, vec![span]),
            Error::DuplicateTask {
                src, span, first, ..
            }
            | Error::DuplicateProperty {
                src, span, first, ..
            } => (src, vec![span, first]),
            Error::RunAndLlm { src, run, llm, .. } => (src, vec![run, llm]),
        })
    }

    /// Keep labels short (miette draws a long one only whole: see [`SourceText`]) and, when
    /// the file holds a secret, show `masked` as its source.
    fn finish(&mut self, masked: Option<&Src>) {
        if let Some((src, spans)) = self.parts_mut() {
            for span in spans {
                let len = span.len().min(clab_model::source_text::MAX_SPAN);
                *span = SourceSpan::new(span.offset().into(), len);
            }
            if let Some(masked) = masked {
                *src = NamedSource::new(masked.name(), masked.inner().clone());
            }
        }
    }
}

/// Every problem found in one file: the parser collects them instead of stopping at the first.
/// At most [`MAX_DIAGNOSTICS`] are kept, and then a last [`Error::MoreProblems`].
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} in `{file}`", plural(problem_count(errors), "problem"))]
#[diagnostic(code(clab::tasks::invalid))]
pub struct Diagnostics {
    /// The file's display name.
    pub file: String,
    /// The problems, in file order.
    #[related]
    pub errors: Vec<Error>,
}

/// How many problems `errors` stands for, counting those [`Error::MoreProblems`] holds back.
fn problem_count(errors: &[Error]) -> usize {
    errors
        .iter()
        .map(|error| match error {
            Error::MoreProblems { count, .. } => *count,
            _ => 1,
        })
        .sum()
}

impl Diagnostics {
    /// `errors` found in `source`, bounded: at most [`MAX_DIAGNOSTICS`] (and a count of the
    /// rest; `partial` says reading stopped early), labels cut short, and every byte of
    /// `secrets` masked in the source each error shows.
    pub(crate) fn bounded(
        source: &SourceFile,
        mut errors: Vec<Error>,
        partial: bool,
        secrets: &[std::ops::Range<usize>],
    ) -> Diagnostics {
        let masked = (!secrets.is_empty()).then(|| {
            let mut text = source.text().as_bytes().to_vec();
            for range in secrets {
                let Some(bytes) = text.get_mut(range.clone()) else {
                    continue;
                };
                // A quoted value (after `KEY=` in an `env` property) is masked between its
                // quotes; a bare word whole.
                let inner = match (
                    bytes.iter().position(|&b| b == b'"'),
                    bytes.iter().rposition(|&b| b == b'"'),
                ) {
                    (Some(open), Some(close)) if open < close => &mut bytes[open + 1..close],
                    _ => bytes,
                };
                for byte in inner {
                    if byte.is_ascii_alphanumeric() || matches!(*byte, b'-' | b'_' | b'.') {
                        *byte = b'*';
                    }
                }
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            NamedSource::new(source.name(), SourceText::new(text))
        });
        if errors.len() > MAX_DIAGNOSTICS || partial {
            let count = errors.len().saturating_sub(MAX_DIAGNOSTICS);
            errors.truncate(MAX_DIAGNOSTICS);
            errors.push(Error::MoreProblems { count, partial });
        }
        for error in &mut errors {
            error.finish(masked.as_ref());
        }
        Diagnostics {
            file: source.name().to_owned(),
            errors,
        }
    }
}

/// `1 problem`, `2 problems`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The closest of `candidates` to `name`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// A help line: "did you mean `x`?" or the list of what is valid.
pub(crate) fn suggestion(name: &str, valid: &[&str]) -> String {
    match did_you_mean(name, valid.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!(
            "expected one of {}",
            valid
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
