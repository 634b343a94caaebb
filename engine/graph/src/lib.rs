//! [`clab_syntax::TaskFile`] → [`Graph`]: names resolved, `for-each` expanded,
//! placeholders rendered, globs checked, and no cycles.
//!
//! ```text
//! tasks.kdl ──(clab-syntax)──▶ TaskFile ──build──▶ Graph ──▶ (clab-plan, clab-exec)
//!  *.mdc ────(clab-rules)───▶ RuleFile ───┘
//! ```
//!
//! # Purpose
//!
//! The graph stage: turn the parsed task file and the rule files it finds into the one
//! value every later stage reads. [`project`] finds `tasks.kdl` and loads it (through the
//! parse cache) into a [`Graph`]; in a workspace, [`workspace`] reads the members and their
//! manifests and [`build_workspace`] puts every member's tasks into the one graph, whose
//! [`Scope`] says what bare names on the command line mean.
//!
//! # In
//!
//! A [`TaskFile`] and the project root ([`build`]), or a directory to search ([`project::Project`]).
//!
//! # Out
//!
//! A [`Graph`] of [`Node`]s with [`NodeKind`]s (command, LLM step, rule scan, aggregate), or
//! [`Diagnostics`]: every problem, each with its span and help.
//!
//! # Invariants
//!
//! A [`Graph`] can only be made by [`build`] or [`build_workspace`], so holding one means the
//! files were valid: later
//! stages never re-check names or look for cycles. Edges run from a dependency to its
//! dependent. A placeholder in a command is data, never code: a value that is not plain is
//! passed in an environment variable the line refers to ([`Graph::command_env`]; the rule is
//! in the `quoting` module). Node ids display the same way everywhere: `lint`, `gen-tests[src/pkg/a.py]`,
//! `rule:no-pip-install`, `core:build` (a member's). Every path a node holds is relative to
//! the root, a member's included. Among clab's crates this one depends on `clab-model`,
//! `clab-syntax` and `clab-rules` only: it knows nothing of keys, the store or execution.

mod build;
mod cycle;
pub mod project;
mod quoting;
mod scope;
pub mod workspace;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use miette::{Diagnostic, SourceSpan};
use petgraph::{
    Direction,
    graph::{DiGraph, NodeIndex},
};
use serde::Serialize;

pub use self::build::{build, build_workspace};
pub use self::scope::{Scope, Selection};
use self::workspace::{Member, MemberId, Workspace};
use clab_syntax::{LlmStepDecl, TaskFile};

/// Whether `name` (a file name, without its directory) is one of clab's temp files: the
/// store's restores and `clab_model::atomic_write` name them
/// [`TEMP_PREFIX`](clab_model::atomic_write::TEMP_PREFIX)`…` (clab before issue 18 named
/// restores `.clab-restore-…`). Walks skip them: they are never inputs, outputs or `for-each`
/// items, and a run sweeps the stale ones away.
pub fn is_temp_file_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    [clab_model::atomic_write::TEMP_PREFIX, LEGACY_RESTORE_PREFIX]
        .iter()
        .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// What restore temp files were named before issue 18 gave every clab temp file one prefix.
pub const LEGACY_RESTORE_PREFIX: &str = ".clab-restore-";

/// A node's index in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex);

impl NodeId {
    /// The dense index of the node, `0..graph.len()`.
    pub fn index(self) -> usize {
        self.0.index()
    }
}

/// What a node does when it runs.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// Shell commands, run in order with `sh -c`.
    Command {
        /// The rendered command lines.
        run: Vec<String>,
    },
    /// An LLM step.
    Llm(Box<LlmNode>),
    /// A compiled `.mdc` rule that scans the files it selects.
    Rule(Box<clab_rules::CompiledRule>),
    /// No work of its own: done when its dependencies are.
    Aggregate,
}

impl NodeKind {
    /// A short name for listings and JSON: `command`, `llm`, `aggregate`.
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Command { .. } => "command",
            NodeKind::Llm(_) => "llm",
            NodeKind::Rule(_) => "rule",
            NodeKind::Aggregate => "aggregate",
        }
    }
}

/// An LLM step with its placeholders rendered for this node.
#[derive(Clone, Debug)]
pub struct LlmNode {
    /// The declaration, with spans, as written.
    pub decl: LlmStepDecl,
    /// The rendered `output` path, relative to the root.
    pub output: String,
    /// The rendered `context` globs, relative to the root.
    pub context: Vec<String>,
    /// The rendered `prompt-file`, relative to the root.
    pub prompt_file: Option<String>,
    /// The rendered `system-file`, relative to the root.
    pub system_file: Option<String>,
    /// The rendered `check` command: `{{output}}` still in place for a plain output path
    /// (the check fills it), else a reference to `CLAB_OUTPUT` (see [`Graph::command_env`]).
    pub check: Option<String>,
    /// Values of the file placeholders for this node, for rendering prompts.
    pub vars: BTreeMap<String, String>,
}

/// `coverage "PATH" fail-under=N` after rendering.
#[derive(Clone, Debug)]
pub struct Coverage {
    /// The report's path, relative to the root.
    pub path: String,
    /// The gate.
    pub fail_under: Option<f64>,
    /// Show missing line ranges.
    pub show_missing: bool,
    /// Leave fully covered files out of the table.
    pub skip_covered: bool,
}

/// One unit of work: a task, or one file of a `for-each` task.
#[derive(Clone, Debug)]
pub struct Node {
    /// The display id: `lint`, `gen-tests[src/pkg/a.py]`, `core:build` in a workspace.
    pub name: String,
    /// The task it comes from (`core:build` for a member's).
    pub task: String,
    /// The workspace member whose tasks.kdl declares it; `None`: the root's.
    pub member: Option<MemberId>,
    /// The file of a `for-each` node.
    pub item: Option<String>,
    /// What it does.
    pub kind: NodeKind,
    /// `description`.
    pub description: Option<String>,
    /// Rendered input globs, relative to the root (`!` excludes).
    pub inputs: Vec<String>,
    /// Rendered output globs, relative to the root.
    pub outputs: Vec<String>,
    /// The environment it sets: the file's `env`, then the task's.
    pub env: BTreeMap<String, String>,
    /// Where its commands run, relative to the root (empty: the root).
    pub cwd: String,
    /// Whether results may be cached (`cache #false` and no `inputs` turn it off).
    pub cache: bool,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// Extra attempts for a failing command.
    pub retry: u32,
    /// A long-running server.
    pub persistent: bool,
    /// Whether its commands (a command node) or its check (an LLM step) run sandboxed:
    /// [`Sandbox::Default`] is on for an LLM step's check, off for commands.
    pub sandbox: Sandbox,
    /// More paths the sandbox may write, as written (`~/…` or relative to the root).
    pub sandbox_writable: Vec<String>,
    /// A JUnit report to read afterwards.
    pub junit: Option<String>,
    /// A coverage report and gate.
    pub coverage: Option<Coverage>,
    /// A command's lines when one of them uses `{{args}}`, with the place marked for
    /// [`Graph::pass_args`]; `None`: arguments go at the end of the last line.
    pub args_template: Option<Vec<String>>,
    /// The span of the task's name in tasks.kdl.
    pub span: SourceSpan,
}

/// A node's `sandbox` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sandbox {
    /// Not written: sandboxed when the node runs model-written code (an LLM step's check).
    #[default]
    Default,
    /// `sandbox #false`.
    Off,
    /// `sandbox #true`.
    On,
    /// `sandbox "required"`.
    Required,
}

impl Sandbox {
    /// The setting as the key holds it (`None`: the default, which old keys did not name).
    pub fn key_text(self) -> Option<&'static str> {
        match self {
            Sandbox::Default => None,
            Sandbox::Off => Some("off"),
            Sandbox::On => Some("on"),
            Sandbox::Required => Some("required"),
        }
    }
}

impl Node {
    /// Whether the node is cached at all: it must not opt out, and a command must declare
    /// inputs (LLM steps and rules know theirs).
    pub fn is_cacheable(&self) -> bool {
        match self.kind {
            NodeKind::Aggregate => false,
            NodeKind::Command { .. } => self.cache && !self.inputs.is_empty(),
            NodeKind::Llm(_) | NodeKind::Rule(_) => self.cache,
        }
    }
}

/// A hash map keyed by names clab made itself (not by an attacker): foldhash, not SipHash
/// (building the 10,000-node graph hashed each name several times).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The validated, acyclic task graph.
#[derive(Debug)]
pub struct Graph {
    dag: DiGraph<Node, ()>,
    ids: FastMap<String, NodeId>,
    tasks: BTreeMap<String, Vec<NodeId>>,
    root: PathBuf,
    file: Arc<TaskFile>,
    rules: Arc<Vec<clab_rules::RuleFile>>,
    dotenv: Arc<BTreeMap<String, String>>,
    /// Each member's own `dotenv` variables (on top of the root's).
    member_dotenv: Arc<Vec<BTreeMap<String, String>>>,
    workspace: Arc<Workspace>,
    scope: Scope,
}

impl Graph {
    /// The variables of the `dotenv` files that the process environment does not already
    /// set (a variable set by the caller wins, as with just's `dotenv-load`).
    pub fn dotenv(&self) -> &BTreeMap<String, String> {
        &self.dotenv
    }

    /// The `dotenv` variables a node gets: the root's, then its member's.
    pub fn dotenv_of(&self, id: NodeId) -> BTreeMap<String, String> {
        let mut env = (*self.dotenv).clone();
        if let Some(member) = self.node(id).member
            && let Some(vars) = self.member_dotenv.get(member.index())
        {
            env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env
    }

    /// The `env-inputs` names a node's key hashes: the root's, then its member's.
    pub fn env_inputs_of(&self, member: Option<MemberId>) -> Vec<&str> {
        let own = member
            .and_then(|m| self.workspace.members[m.index()].file.as_deref())
            .map(|f| f.env_inputs.as_slice())
            .unwrap_or_default();
        self.file
            .env_inputs
            .iter()
            .chain(own)
            .map(|name| name.value.as_str())
            .collect()
    }

    /// The `dotenv` variables of `member` (the root's for `None`), as [`Self::dotenv_of`].
    pub fn member_dotenv(&self, member: Option<MemberId>) -> BTreeMap<String, String> {
        let mut env = (*self.dotenv).clone();
        if let Some(vars) = member.and_then(|m| self.member_dotenv.get(m.index())) {
            env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env
    }

    /// The environment a node's commands get on top of clab's own: the `dotenv` variables,
    /// then the node's `env` (tasks.kdl wins over `.env`), then the values of its
    /// placeholders — `CLAB_ROOT`, and `CLAB_FILE`, `CLAB_STEM`, `CLAB_DIR`, `CLAB_NAME` for
    /// a `for-each` node, `CLAB_OUTPUT` for an LLM step — which its lines refer to where a
    /// value is not plain (issue 18), and which a script inside a line can read. They are
    /// not in the key: the node's id and the root marker stand for them there.
    pub fn command_env(&self, id: NodeId) -> BTreeMap<String, String> {
        let node = self.node(id);
        let mut env = self.dotenv_of(id);
        env.extend(node.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, value) in build::placeholder_values(&self.root, node.item.as_deref()) {
            if let Some(var) = build::placeholder_var(&name) {
                env.insert(var.to_owned(), value);
            }
        }
        if let NodeKind::Llm(llm) = &node.kind
            && !llm.output.is_empty()
        {
            env.insert("CLAB_OUTPUT".to_owned(), llm.output.clone());
        }
        env
    }

    /// The project root every relative path is resolved against.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed file the graph was built from (a workspace's root tasks.kdl).
    pub fn file(&self) -> &TaskFile {
        &self.file
    }

    /// The tasks file that declares node `id`: its member's, or the root's.
    pub fn file_of(&self, id: NodeId) -> &TaskFile {
        self.node(id)
            .member
            .and_then(|m| self.workspace.members[m.index()].file.as_deref())
            .unwrap_or(&self.file)
    }

    /// The workspace's members (none for a single project).
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// A member of the workspace.
    pub fn member(&self, id: MemberId) -> &Member {
        &self.workspace.members[id.index()]
    }

    /// Every file the graph was read from besides the root tasks.kdl: the members'
    /// tasks.kdl and the manifests (relative to the root), for watch mode.
    pub fn workspace_files(&self) -> Vec<String> {
        let mut files = self.workspace.files.clone();
        for member in &self.workspace.members {
            files.extend(member.files.iter().cloned());
        }
        files
    }

    /// The rule files of the project (for LLM context and `clab rules`).
    pub fn rule_files(&self) -> &[clab_rules::RuleFile] {
        &self.rules
    }

    /// Every rule node's prefilters in one set (see [`clab_rules::PrefilterSet::new`]).
    pub fn prefilter_set(&self) -> Option<clab_rules::PrefilterSet> {
        clab_rules::PrefilterSet::new(self.ids().filter_map(|id| match &self.node(id).kind {
            NodeKind::Rule(rule) => Some(&**rule),
            _ => None,
        }))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// The node behind an id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id.0]
    }

    /// Every node id, in insertion order (tasks in file order).
    pub fn ids(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.dag.node_indices().map(NodeId)
    }

    /// The node with this display id.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.ids.get(name).copied()
    }

    /// Task names with their nodes, sorted by name.
    pub fn tasks(&self) -> &BTreeMap<String, Vec<NodeId>> {
        &self.tasks
    }

    /// What `id` depends on, sorted by display id.
    pub fn dependencies(&self, id: NodeId) -> Vec<NodeId> {
        self.neighbours(id, Direction::Incoming)
    }

    /// What depends on `id`, sorted by display id.
    pub fn dependents(&self, id: NodeId) -> Vec<NodeId> {
        self.neighbours(id, Direction::Outgoing)
    }

    fn neighbours(&self, id: NodeId, direction: Direction) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .dag
            .neighbors_directed(id.0, direction)
            .map(NodeId)
            .collect();
        ids.sort_by(|a, b| self.node(*a).name.cmp(&self.node(*b).name));
        ids.dedup();
        ids
    }

    /// Pass `clab run TASK -- ARGS` to the command nodes among `targets`, in place of
    /// `{{args}}` where the task's lines use it, else at the end of its last line: plain
    /// arguments as they are, others shell-quoted where `{{args}}` stands unquoted, and read
    /// from `CLAB_ARGS` (the arguments joined by spaces, set on the node) where it stands
    /// inside quotes — an argument is data, never code (issue 18). The commands and the
    /// node's environment are part of the key, so the arguments are too. Dependencies of
    /// the targets get nothing. `Err` when no target runs a command (an aggregate or an LLM
    /// step cannot take arguments), an argument holds a NUL, or one that is not plain would
    /// stand inside `$(( … ))`.
    pub fn pass_args(&mut self, targets: &[NodeId], args: &[String]) -> Result<(), ArgsError> {
        if args.is_empty() {
            return Ok(());
        }
        if let Some(arg) = args.iter().find(|arg| arg.contains('\0')) {
            return Err(ArgsError::Nul { arg: arg.clone() });
        }
        let words = quoting::quote_words(args).ok_or_else(|| ArgsError::Nul {
            arg: args.join(" "),
        })?;
        let mut passed = false;
        for &id in targets {
            let node = &mut self.dag[id.0];
            let NodeKind::Command { run } = &mut node.kind else {
                continue;
            };
            match &node.args_template {
                Some(template) => {
                    *run = template
                        .iter()
                        .map(|line| quoting::fill_args(line, Some(args)))
                        .collect::<Result<_, _>>()
                        .map_err(|arg| ArgsError::Arithmetic { arg })?;
                }
                None => {
                    if let Some(last) = run.last_mut() {
                        last.push(' ');
                        last.push_str(&words);
                    }
                }
            }
            node.env
                .insert(quoting::ARGS_VAR.to_owned(), args.join(" "));
            passed = true;
        }
        if passed {
            Ok(())
        } else {
            let names: Vec<String> = targets
                .iter()
                .map(|&id| format!("`{}`", self.dag[id.0].name))
                .collect();
            Err(ArgsError::NoCommand {
                targets: names.join(", "),
            })
        }
    }

    /// The targets and everything they depend on, in topological order (dependencies first).
    pub fn closure(&self, targets: &[NodeId]) -> Vec<NodeId> {
        let mut wanted = vec![false; self.len()];
        let mut stack: Vec<NodeId> = targets.to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut wanted[id.index()], true) {
                stack.extend(
                    self.dag
                        .neighbors_directed(id.0, Direction::Incoming)
                        .map(NodeId),
                );
            }
        }
        self.topological_order()
            .into_iter()
            .filter(|id| wanted[id.index()])
            .collect()
    }

    /// All nodes, dependencies before dependents.
    pub fn topological_order(&self) -> Vec<NodeId> {
        // `build` refused cycles, so the sort cannot fail; fall back to insertion order
        // rather than panic if that invariant were ever broken.
        petgraph::algo::toposort(&self.dag, None)
            .map(|order| order.into_iter().map(NodeId).collect())
            .unwrap_or_else(|_| self.ids().collect())
    }

    /// For each node, the length of the longest chain of work from it to the end of the graph
    /// (itself included): the scheduler starts the largest first, so the critical path is
    /// never left waiting behind short side branches.
    pub fn critical_path_lengths(&self) -> Vec<u32> {
        let mut length = vec![0u32; self.len()];
        for id in self.topological_order().into_iter().rev() {
            let own = u32::from(!matches!(self.node(id).kind, NodeKind::Aggregate));
            let tail = self
                .dag
                .neighbors_directed(id.0, Direction::Outgoing)
                .map(|next| length[next.index()])
                .max()
                .unwrap_or(0);
            length[id.index()] = own + tail;
        }
        length
    }
}

/// A problem that needs the whole file to see: names, cycles, globs, files.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// `deps` names a task that does not exist.
    #[error("task `{task}` depends on unknown task `{name}`")]
    #[diagnostic(code(clab::tasks::unknown_dep))]
    UnknownDep {
        /// The task whose `deps` is wrong.
        task: String,
        /// The name written.
        name: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// Where.
        #[label("no task is called this")]
        span: SourceSpan,
        /// "did you mean".
        #[help]
        help: String,
    },

    /// Tasks that depend on each other in a circle.
    #[error("dependency cycle: {path}")]
    #[diagnostic(
        code(clab::tasks::cycle),
        help("a task cannot wait for itself: remove one of these `deps`")
    )]
    Cycle {
        /// `a → b → c → a`.
        path: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// Each `deps` entry on the cycle.
        #[label(collection)]
        spans: Vec<miette::LabeledSpan>,
    },

    /// An `llm` step names a profile tasks.kdl does not define.
    #[error("task `{task}` uses llm profile `{name}`, which is not defined")]
    #[diagnostic(code(clab::tasks::unknown_profile))]
    UnknownProfile {
        /// The task.
        task: String,
        /// The profile named.
        name: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// Where.
        #[label("no `llm \"{name}\" {{ … }}` block")]
        span: SourceSpan,
        /// "did you mean" or how to define one.
        #[help]
        help: String,
    },

    /// A glob that does not compile.
    #[error("invalid glob `{glob}`")]
    #[diagnostic(code(clab::tasks::bad_glob))]
    BadGlob {
        /// The glob.
        glob: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// Where.
        #[label("{reason}")]
        span: SourceSpan,
        /// What globset said.
        reason: String,
    },

    /// A path that would leave the project root.
    #[error("`{path}` is outside the project")]
    #[diagnostic(
        code(clab::tasks::outside_root),
        help("paths in tasks.kdl are relative to the project root and stay inside it")
    )]
    OutsideRoot {
        /// The path.
        path: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// Where.
        #[label("leaves the project root")]
        span: SourceSpan,
    },

    /// The rules directories could not be read.
    #[error("cannot read the rule files")]
    #[diagnostic(code(clab::tasks::rules))]
    Rules {
        /// The cause.
        #[source]
        source: Box<clab_rules::Error>,
    },

    /// A `dotenv` file that cannot be read or parsed.
    #[error("cannot load `{path}`: {message}")]
    #[diagnostic(code(clab::tasks::dotenv))]
    Dotenv {
        /// The file, as written.
        path: String,
        /// What is wrong (dotenvy's words: the line and column of a bad line).
        message: String,
        /// tasks.kdl.
        #[source_code]
        src: clab_syntax::Src,
        /// The `dotenv` entry.
        #[label("loaded here")]
        span: SourceSpan,
    },

    /// A `for-each` pattern matches a file whose name is not UTF-8.
    #[error("task `{task}` runs over `{path}`, whose name is not UTF-8")]
    #[diagnostic(
        code(clab::tasks::unnamable_file),
        help(
            "clab names files as text in commands, patterns and node ids: rename the file, \
             or leave it out with a `!pattern`"
        )
    )]
    UnnamableFile {
        /// The task.
        task: String,
        /// The path, lossily decoded and escaped.
        path: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// The `for-each` pattern.
        #[label("matches it")]
        span: SourceSpan,
    },

    /// A placeholder stands inside `$(( … ))` and its value is not plain.
    #[error("`{{{{{name}}}}}` of task `{task}` is `{value}`, which cannot stand inside `$(( … ))`")]
    #[diagnostic(
        code(clab::tasks::unsafe_placeholder),
        help(
            "the shell evaluates the text of an arithmetic expansion (bash runs `$(…)` in an \
             array index there), so only plain values (letters, digits, `_-./+,:@%`) may go \
             in it: rename the file, or read `$CLAB_{}` and check it yourself",
            name.to_uppercase()
        )
    )]
    UnsafePlaceholder {
        /// The task.
        task: String,
        /// The placeholder.
        name: String,
        /// Its value, escaped.
        value: String,
        /// The file.
        #[source_code]
        src: clab_syntax::Src,
        /// The command.
        #[label("in this command")]
        span: SourceSpan,
    },

    /// The project tree could not be walked to expand `for-each`.
    #[error("cannot list files for `for-each` of task `{task}`")]
    #[diagnostic(code(clab::tasks::walk))]
    Walk {
        /// The task.
        task: String,
        /// The cause.
        #[source]
        source: ignore::Error,
    },
}

/// A name on the command line that is neither a task nor a node.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("no task named `{name}`")]
#[diagnostic(code(clab::tasks::unknown_target))]
pub struct UnknownTarget {
    /// The name given.
    pub name: String,
    /// "did you mean" or where to look.
    #[help]
    pub help: String,
}

/// Arguments after `--` that cannot be passed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ArgsError {
    /// No target runs a command.
    #[error("arguments after `--` go to a task's commands, and {targets} runs none")]
    #[diagnostic(
        code(clab::run::args),
        help("name a task with `run` lines (an aggregate or an LLM step takes no arguments)")
    )]
    NoCommand {
        /// The targets, in backticks, comma-separated.
        targets: String,
    },
    /// An argument that is not plain would stand inside `$(( … ))`.
    #[error("argument `{}` cannot stand inside `$(( … ))`", arg.escape_debug())]
    #[diagnostic(
        code(clab::run::args),
        help(
            "the shell evaluates the text of an arithmetic expansion, so only plain \
             arguments (letters, digits, `_-./+,:@%`) may go in it"
        )
    )]
    Arithmetic {
        /// The argument.
        arg: String,
    },
    /// An argument holds a NUL byte, which no command line can carry.
    #[error("argument `{}` holds a NUL byte", arg.escape_debug())]
    #[diagnostic(code(clab::run::args))]
    Nul {
        /// The argument.
        arg: String,
    },
}

/// Every problem found while building the graph.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} in `{file}`", clab_syntax::plural(errors.len(), "problem"))]
#[diagnostic(code(clab::tasks::invalid))]
pub struct Diagnostics {
    /// The file's display name (in a workspace: the one file all problems are in, else
    /// the root's with `and members` after it).
    pub file: String,
    /// The problems.
    #[related]
    pub errors: Vec<Error>,
}

impl Diagnostics {
    /// The problems found building the graph of `root`'s file: named after the one file
    /// they are all in.
    fn new(root: &TaskFile, errors: Vec<Error>) -> Diagnostics {
        let mut files: Vec<&str> = errors.iter().filter_map(Error::file_name).collect();
        files.sort_unstable();
        files.dedup();
        let file = match files.as_slice() {
            [one] => (*one).to_owned(),
            [] => root.source.name().to_owned(),
            _ => format!("{} and its members' files", root.source.name()),
        };
        Diagnostics { file, errors }
    }
}

impl Error {
    /// The name of the file the problem is in, when it points into one.
    fn file_name(&self) -> Option<&str> {
        match self {
            Error::UnknownDep { src, .. }
            | Error::Cycle { src, .. }
            | Error::UnknownProfile { src, .. }
            | Error::BadGlob { src, .. }
            | Error::OutsideRoot { src, .. }
            | Error::UnnamableFile { src, .. }
            | Error::UnsafePlaceholder { src, .. }
            | Error::Dotenv { src, .. } => Some(src.name()),
            Error::Rules { .. } | Error::Walk { .. } => None,
        }
    }
}

/// The `clab graph --format json` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GraphJson {
    /// The project name, if the file gives one.
    pub project: Option<String>,
    /// The workspace's members (empty for a single project).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberJson>,
    /// Every node, in topological order.
    pub nodes: Vec<NodeJson>,
}

/// One member of [`GraphJson`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MemberJson {
    /// The member's name.
    pub name: String,
    /// Its directory, relative to the root.
    pub dir: String,
    /// The members it depends on.
    pub deps: Vec<String>,
}

/// One node of [`GraphJson`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NodeJson {
    /// Display id.
    pub id: String,
    /// Task name.
    pub task: String,
    /// The workspace member that declares it (absent for the root's tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// `command`, `llm`, `rule` or `aggregate`.
    pub kind: String,
    /// `description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Display ids of the direct dependencies.
    pub deps: Vec<String>,
    /// Input globs.
    pub inputs: Vec<String>,
    /// Output globs.
    pub outputs: Vec<String>,
    /// Whether results are cached.
    pub cached: bool,
}

impl Graph {
    /// The graph as the JSON document `clab graph --format json` prints, limited to `nodes`.
    pub fn to_json(&self, nodes: &[NodeId]) -> GraphJson {
        GraphJson {
            project: self.file.project.as_ref().map(|p| p.value.clone()),
            members: self
                .workspace
                .members
                .iter()
                .map(|m| MemberJson {
                    name: m.name.clone(),
                    dir: m.dir.clone(),
                    deps: m
                        .deps
                        .iter()
                        .map(|d| self.workspace.members[d.member.index()].name.clone())
                        .collect(),
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|&id| {
                    let node = self.node(id);
                    NodeJson {
                        id: node.name.clone(),
                        task: node.task.clone(),
                        member: node.member.map(|m| self.member(m).name.clone()),
                        kind: node.kind.label().to_owned(),
                        description: node.description.clone(),
                        deps: self
                            .dependencies(id)
                            .into_iter()
                            .map(|dep| self.node(dep).name.clone())
                            .collect(),
                        inputs: node.inputs.clone(),
                        outputs: node.outputs.clone(),
                        cached: node.is_cacheable(),
                    }
                })
                .collect(),
        }
    }
}
