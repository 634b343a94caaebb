//! One module per subcommand; [`run()`] dispatches.

mod at_setting;
mod cache;
mod check;
mod explain;
mod graph;
mod init;
mod list;
mod rules;
mod run;
mod stats;
mod watch;

use clab_graph::project::Project;
use clab_remote::{CacheSettings, RemoteCache, RemoteConfig};
use std::{path::PathBuf, sync::Arc};

use crate::{
    args::{Args, CacheCommand, Command},
    exit::{Done, Failure},
};

/// Run the command the arguments ask for.
pub(crate) fn run(args: Args) -> Result<Done, Failure> {
    let Some(command) = &args.command else {
        return bare(&args);
    };
    match command {
        Command::Run(run_args) => run::run(&args, run_args),
        Command::Watch(watch_args) => watch::watch(&args, watch_args),
        Command::List => list::list(&project(&args)?),
        Command::Check => check::check(&project(&args)?),
        Command::Graph(graph_args) => graph::graph(&project(&args)?, graph_args),
        Command::Explain { task } => explain::explain(&project(&args)?, task),
        Command::Rules(command) => rules::rules(&args, command),
        Command::Cache(CacheCommand::PublicKey) => cache::public_key(),
        Command::Cache(command) => cache::cache(&project(&args)?, command),
        Command::Stats => stats::stats(&project(&args)?),
        Command::History { limit } => cache::history(&project(&args)?, *limit),
        Command::Init {
            template,
            name,
            force,
        } => {
            let dir = args.directory.clone().unwrap_or_else(|| PathBuf::from("."));
            init::init(&dir, *template, name.as_deref(), *force)
        }
        Command::Completions { shell } => completions(*shell),
    }
}

/// `clab` alone, as `just` alone: run `default` when the project has one, else list the
/// tasks (exit 0 either way, unless the run fails).
fn bare(args: &Args) -> Result<Done, Failure> {
    let project = project(args)?;
    let file = project.parse()?;
    let has_default = if file.members.is_empty() {
        file.tasks.iter().any(|task| task.name.value == "default")
    } else {
        // In a workspace a member may define it, or clab runs inside a member.
        project.load()?.defines("default")
    };
    if has_default {
        run::run(args, &crate::args::RunArgs::default())
    } else {
        list::list(&project)
    }
}

/// The registration script of clap's dynamic completion for `shell`: the shell calls
/// `COMPLETE=SHELL clab` at each Tab, so task names come from the project at hand.
fn completions(shell: clap_complete::Shell) -> Result<Done, Failure> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(Failure::Usage(format!(
            "no dynamic completion for `{name}`"
        )));
    };
    let mut out = std::io::stdout().lock();
    completer.write_registration("COMPLETE", "clab", "clab", "clab", &mut out)?;
    Ok(Done::Success)
}

/// Keep `value` until the process exits instead of freeing it piece by piece: the command
/// is done with it and the process ends right after. Freeing the 10,000-node graph took a
/// tenth of `clab list` (39 M of 373 M instructions, callgrind); exit returns the memory at
/// once. Only for values whose drop does nothing but free memory.
fn keep_until_exit<T>(value: T) {
    std::mem::forget(value);
}

/// The project's cache directory: `CLAB_CACHE_DIR` (relative to the root) or `.clab/`. The one
/// place it is worked out; every command and the engine get it from here.
fn cache_dir(project: &Project) -> PathBuf {
    let dir = std::env::var_os(clab_store::CACHE_DIR_ENV).map(PathBuf::from);
    clab_store::cache_dir(&project.root, dir.as_deref())
}

/// The shared remote cache that tasks.kdl's `cache { }` block and the environment
/// (`CLAB_REMOTE_CACHE`, …) configure, if any. A bad configuration is a usage error.
fn remote_cache(graph: &clab_graph::Graph) -> Result<Option<Arc<RemoteCache>>, Failure> {
    let settings = graph
        .file()
        .cache
        .as_ref()
        .map(|decl| CacheSettings {
            remote: decl.remote.as_ref().map(|url| url.value.clone()),
            read_only: decl.read_only.as_ref().is_some_and(|flag| flag.value),
            trusted_keys: decl.trusted_keys.iter().map(|k| k.value.clone()).collect(),
        })
        .unwrap_or_default();
    let config = RemoteConfig::from_env_and(&settings)
        .map_err(|err| Failure::Config(at_setting::report(err, graph.file())))?;
    let remote = RemoteCache::from_config(config)
        .map_err(|err| Failure::Config(at_setting::report(err, graph.file())))?;
    Ok(remote.map(Arc::new))
}

/// The tasks a command should run: those given, else `default`. Without either, the task
/// list goes to stderr and the answer is `None` (a usage error).
fn target_names(
    graph: &clab_graph::Graph,
    given: &[String],
) -> Result<Option<Vec<String>>, Failure> {
    if !given.is_empty() {
        return Ok(Some(given.to_vec()));
    }
    if graph.defines("default") {
        return Ok(Some(vec!["default".to_owned()]));
    }
    eprintln!("error: no task given and no `default` task defined\n");
    list::write_list(graph, &mut std::io::stderr())?;
    Ok(None)
}

/// The project the global `-C` and `-f` flags point at.
fn project(args: &Args) -> Result<Project, Failure> {
    let dir = args.directory.clone().unwrap_or_else(|| PathBuf::from("."));
    let project = Project::discover(&dir, args.file.as_deref())?;
    let project = project.with_text_hook(crate::heap::for_tasks_text);
    let cache_dir = cache_dir(&project);
    Ok(project.with_parse_cache(cache_dir))
}

/// The task names of the project in the working directory, with their descriptions, for
/// shell completion; none when there is no project or it does not load (a completion must
/// never print an error into the shell's line).
pub(crate) fn task_names() -> Vec<clap_complete::engine::CompletionCandidate> {
    let Ok(project) = Project::discover(std::path::Path::new("."), None) else {
        return Vec::new();
    };
    let Ok(file) = project.parse() else {
        return Vec::new();
    };
    if !file.members.is_empty() {
        // A workspace: every member's tasks, as `member:task`.
        let Ok(graph) = project.load() else {
            return Vec::new();
        };
        return graph
            .tasks()
            .iter()
            .map(|(name, ids)| {
                let help = ids
                    .first()
                    .and_then(|&id| graph.node(id).description.clone())
                    .map(Into::into);
                clap_complete::engine::CompletionCandidate::new(name.clone()).help(help)
            })
            .collect();
    }
    file.tasks
        .iter()
        .map(|task| {
            let help = task.description.as_ref().map(|d| d.value.clone().into());
            clap_complete::engine::CompletionCandidate::new(task.name.value.clone()).help(help)
        })
        .collect()
}
