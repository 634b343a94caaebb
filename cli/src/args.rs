//! Command-line arguments: clap derives only, no logic.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCandidates;

/// clab: a declarative task runner and build-graph engine for AI-assisted development.
#[derive(Debug, Parser)]
#[command(name = "clab", version, about, max_term_width = 100)]
pub(crate) struct Args {
    /// Run as if started in DIR.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// Use FILE instead of looking for tasks.kdl.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Run at most N tasks at once [default: number of cores].
    #[arg(short = 'j', long = "jobs", global = true, value_name = "N")]
    pub jobs: Option<usize>,

    /// Show task output as it happens and replay cached logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only failures and the summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// When to use colors (NO_COLOR is respected with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// What to do; none: run the `default` task, or list the tasks when there is none.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colors on a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands. Each one's arguments are defined only when it is the one run (`defer`):
/// building every subcommand's arguments was half of the argument parsing of `clab run`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum Command {
    /// Run tasks and what they depend on.
    Run(RunArgs),
    /// Run tasks, then run them again whenever a file they depend on changes.
    Watch(WatchArgs),
    /// List the tasks.
    List,
    /// Validate tasks.kdl and the rule files without running anything.
    Check,
    /// Print the task graph.
    Graph(GraphArgs),
    /// Say why a task would run, or that it is up to date.
    Explain {
        /// The task (or node id) to explain.
        #[arg(add = ArgValueCandidates::new(crate::commands::task_names))]
        task: String,
    },
    /// Inspect, validate and create Cursor rule files (`*.mdc`).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Inspect or trim the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// LLM calls per model (hit rate, tokens, latency percentiles), tests and coverage over
    /// recent runs.
    Stats,
    /// Recent runs.
    History {
        /// How many runs to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// Write a working tasks.kdl (and a starter project) from a template.
    Init {
        /// The template.
        #[arg(long, value_enum, default_value_t = Template::Blank)]
        template: Template,
        /// The project name [default: the directory's name].
        #[arg(long)]
        name: Option<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the shell code that completes clab's commands, flags and task names
    /// (`source <(clab completions bash)`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

// `clab run`. This doc line is also `clab run --help`'s first line: the arguments are
// deferred (`Command`), so this struct's help is applied after the variant's. Keep the two
// the same (also for `WatchArgs` and `GraphArgs`).
/// Run tasks and what they depend on.
#[derive(Debug, Default, ClapArgs)]
pub(crate) struct RunArgs {
    /// Tasks to run (task names, `member:task`, or node ids such as `gen[src/a.py]`); none:
    /// `default`.
    #[arg(add = ArgValueCandidates::new(crate::commands::task_names))]
    pub tasks: Vec<String>,

    /// Run everything that does not depend on a failed task.
    #[arg(short, long)]
    pub keep_going: bool,

    /// Only these workspace members' tasks for bare names (globs over member names; `NAME...`
    /// adds its dependents, `...NAME` its dependencies, `//` the root); may be repeated.
    #[arg(long, value_name = "NAME")]
    pub filter: Vec<String>,

    /// Only workspace members with files changed since the git revision REF (and untracked
    /// files), and their dependents.
    #[arg(long, value_name = "REF")]
    pub since: Option<String>,

    /// Write events as JSON lines to stdout instead of a human report.
    #[arg(long)]
    pub json: bool,

    /// Write a Chrome trace of the run (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Run every task even when the cache has its result (results are still stored).
    #[arg(long)]
    pub force: bool,

    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Print what would run and why, without running anything.
    #[arg(long)]
    pub dry_run: bool,

    /// LLM steps only from the cache: fail those that would need a call.
    #[arg(long)]
    pub offline: bool,

    /// The model for LLM steps (over `CLAB_LLM_MODEL` and tasks.kdl).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Arguments for the tasks' commands (after `--`): shell-quoted, in place of `{{args}}`
    /// or at the end of the last `run` line; part of the cache key.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

// `clab watch` (its help line: see `RunArgs`).
/// Run tasks, then run them again whenever a file they depend on changes.
#[derive(Debug, ClapArgs)]
pub(crate) struct WatchArgs {
    /// Tasks to run (task names or node ids); none: `default`.
    #[arg(add = ArgValueCandidates::new(crate::commands::task_names))]
    pub tasks: Vec<String>,

    /// How long files must be quiet before a run starts (`50ms`, `1s`).
    #[arg(long, value_name = "DURATION", default_value = "50ms")]
    pub debounce: String,

    /// Cancel a run in progress when files change, instead of queueing one more run.
    #[arg(long)]
    pub restart: bool,

    /// Clear the screen before each run.
    #[arg(long)]
    pub clear: bool,

    /// Poll for changes (every 200ms) instead of using file system events.
    #[arg(long)]
    pub poll: bool,

    /// Run what does not depend on a failed task.
    #[arg(short, long)]
    pub keep_going: bool,

    /// Only these workspace members' tasks for bare names (globs over member names; `NAME...`
    /// adds its dependents, `...NAME` its dependencies, `//` the root); may be repeated.
    #[arg(long, value_name = "NAME")]
    pub filter: Vec<String>,

    /// Only workspace members with files changed since the git revision REF (and untracked
    /// files), and their dependents.
    #[arg(long, value_name = "REF")]
    pub since: Option<String>,

    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// `clab cache …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Entries, size and hit rate.
    Stats,
    /// Remove everything cached.
    Clean,
    /// Remove least recently used entries until the cache fits in SIZE (`500M`, `5G`).
    Prune {
        /// The size to fit in.
        #[arg(long, value_name = "SIZE")]
        max_size: String,
    },
    /// Print the public key of `CLAB_CACHE_SIGNING_KEY` (`ed25519:…`), for
    /// `cache { trusted-key … }` or `CLAB_CACHE_TRUSTED_KEYS`.
    PublicKey,
}

/// `clab rules …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Check every rule file; exit 1 on any error.
    Validate {
        /// Output format.
        #[arg(long, value_enum, default_value_t = RulesFormat::Human)]
        format: RulesFormat,
    },
    /// A table of the rule files: type, globs, filters, actions.
    List,
    /// One rule file in detail: front matter, `<rule>` blocks, references, body.
    Show {
        /// The rule's id (`python/uv`), last id segment, or `<rule>` name.
        id: String,
    },
    /// Write a new rule file from a template into the first rules directory.
    New {
        /// The rule id, folders allowed (`python/no-print`).
        name: String,
        /// How the rule is attached [default: auto with --globs, agent with --description,
        /// else manual].
        #[arg(long = "type", value_enum)]
        rule_type: Option<RuleTypeArg>,
        /// Globs for an auto-attached rule (`'*.py, src/**/*.ts'`); may be repeated.
        #[arg(long)]
        globs: Vec<String>,
        /// A one-line description.
        #[arg(long)]
        description: Option<String>,
    },
}

/// `clab rules validate --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RulesFormat {
    /// Rendered diagnostics on stderr and a summary line.
    Human,
    /// One JSON document on stdout: a summary and the flat diagnostics.
    Json,
}

/// `clab rules new --type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuleTypeArg {
    /// `alwaysApply: true`: attached to every request.
    Always,
    /// Attached when a file matches `--globs`.
    #[value(alias = "auto-attached")]
    Auto,
    /// Attached when the agent picks it by its description.
    #[value(alias = "agent-requested")]
    Agent,
    /// Attached only when named.
    Manual,
}

// `clab graph` (its help line: see `RunArgs`).
/// Print the task graph.
#[derive(Debug, ClapArgs)]
pub(crate) struct GraphArgs {
    /// Only this task and what it depends on.
    #[arg(add = ArgValueCandidates::new(crate::commands::task_names))]
    pub task: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// `clab graph --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// JSON (schema: schemas/graph.schema.json).
    Json,
}

/// `clab init --template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Template {
    /// uv workspace: sync, ruff, basedpyright, pytest with coverage, an LLM test generator.
    PythonUv,
    /// cargo: fmt, clippy, tests (nextest JUnit when available), coverage with cargo-llvm-cov.
    Rust,
    /// A commented minimal tasks.kdl.
    Blank,
}
