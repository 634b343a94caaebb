//! Building the graph: resolve `deps`, refuse cycles, expand `for-each`, render placeholders,
//! and, in a workspace, put every member's tasks into the one graph.
//!
//! A workspace's tasks come from *units*: the root tasks.kdl, then each member's. A unit's
//! tasks get ids qualified by its member (`core:build`; the root's stay bare), its paths are
//! rebased from the member's directory onto the root (`src/**` → `packages/core/src/**`,
//! `../../uv.lock` → `uv.lock`), and its commands run in the member's directory unless
//! `cwd` says otherwise. Nothing else downstream needs to know about members: every path a
//! node holds is relative to the root, as in a single project.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Component, Path},
    sync::Arc,
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use miette::LabeledSpan;
use petgraph::graph::DiGraph;
use rayon::prelude::*;

use super::{
    Coverage, Diagnostics, Error, FastMap, Graph, LlmNode, Node, NodeId, NodeKind, Sandbox, cycle,
    quoting::{self, Fill},
};
use crate::workspace::{MemberId, Workspace, normalize, path_join};
use clab_model::source::Spanned;
use clab_rules::{CompiledRule, DEFAULT_RULES_DIR, RuleFile};
use clab_syntax::{SandboxDecl, TaskDecl, TaskFile, did_you_mean, placeholders};

/// Build the graph of `file`, whose relative paths are resolved against `root`.
pub fn build(file: TaskFile, root: &Path) -> Result<Graph, Diagnostics> {
    build_workspace(file, Workspace::default(), root)
}

/// One tasks file of the graph: the root's, or a member's.
struct Unit<'a> {
    file: &'a TaskFile,
    /// The member; `None` for the root.
    member: Option<MemberId>,
    /// The member's directory relative to the root (`""` for the root).
    prefix: &'a str,
    /// `"core:"`, or `""` for the root.
    qualifier: String,
}

/// From this many tasks on, their nodes are made in parallel: below it, starting the thread
/// pool costs more than it saves. (Making the 10,000 nodes of the bench's large graph is
/// 35 M of `build_workspace`'s 100 M instructions, callgrind.)
const MAKE_IN_PARALLEL: usize = 2048;

/// Which `deps` entry a resolved dependency came from.
type Resolved = Vec<(usize, miette::SourceSpan)>;

/// Build the graph of a workspace: the root's `file` and the tasks of each of `workspace`'s
/// members (an empty workspace: a single project).
pub fn build_workspace(
    file: TaskFile,
    workspace: Workspace,
    root: &Path,
) -> Result<Graph, Diagnostics> {
    let mut errors = Vec::new();
    let mut units = vec![Unit {
        file: &file,
        member: None,
        prefix: "",
        qualifier: String::new(),
    }];
    let mut member_unit: Vec<Option<usize>> = vec![None; workspace.members.len()];
    for (index, member) in workspace.members.iter().enumerate() {
        if let Some(member_file) = &member.file {
            member_unit[index] = Some(units.len());
            units.push(Unit {
                file: member_file,
                member: Some(MemberId::new(index)),
                prefix: &member.dir,
                qualifier: format!("{}:", member.name),
            });
        }
    }
    // Every task of every unit, with a global index.
    let all: Vec<(usize, &TaskDecl)> = units
        .iter()
        .enumerate()
        .flat_map(|(u, unit)| unit.file.tasks.iter().map(move |task| (u, task)))
        .collect();
    let mut by_unit: Vec<FastMap<&str, usize>> = vec![FastMap::default(); units.len()];
    for (g, (u, task)) in all.iter().enumerate() {
        by_unit[*u].insert(task.name.value.as_str(), g);
    }
    let defined_anywhere: foldhash::HashSet<&str> =
        all.iter().map(|(_, t)| t.name.value.as_str()).collect();
    let member_index: HashMap<&str, usize> = workspace
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();

    // Rules come first: a task may depend on the implicit `rules` aggregate.
    let rule_files = match discover_rules(&file, root) {
        Ok(files) => files,
        Err(err) => {
            errors.push(*err);
            Vec::new()
        }
    };
    let implicit_rules = !rule_files.is_empty() && !by_unit[0].contains_key(RULES_TASK);

    // Resolve names first: cycles and expansion need them.
    let mut deps: Vec<Resolved> = Vec::with_capacity(all.len());
    let mut needs_rules = vec![false; all.len()];
    for (g, &(u, task)) in all.iter().enumerate() {
        let unit = &units[u];
        let mut resolved = Vec::new();
        for dep in &task.deps {
            let unknown = |help: String| Error::UnknownDep {
                task: format!("{}{}", unit.qualifier, task.name.value),
                name: dep.value.clone(),
                src: unit.file.source.source_code(),
                span: dep.span,
                help,
            };
            if let Some(name) = dep.value.strip_prefix('^') {
                if !defined_anywhere.contains(name) {
                    errors.push(unknown(if workspace.members.is_empty() {
                        "`^NAME` names the task of every member this one depends on, and this \
                         project has no `members`"
                            .to_owned()
                    } else {
                        format!("no member defines a task `{name}`")
                    }));
                    continue;
                }
                for target in caret(&workspace, &member_unit, &by_unit, unit.member, name) {
                    resolved.push((target, dep.span));
                }
                continue;
            }
            let (target_unit, name) = match dep.value.split_once(':') {
                Some(("//", name)) => (0, name),
                Some((member, name)) => {
                    match member_index.get(member) {
                        Some(&m) => match member_unit[m] {
                            Some(target) => (target, name),
                            None => {
                                errors.push(unknown(format!(
                                    "member `{member}` has no tasks.kdl, so no tasks"
                                )));
                                continue;
                            }
                        },
                        None => {
                            let names = workspace.members.iter().map(|m| m.name.as_str());
                            errors.push(unknown(
                            did_you_mean(member, names)
                                .map(|close| format!("no member is called `{member}`; did you mean `{close}`?"))
                                .unwrap_or_else(|| format!("no member is called `{member}`")),
                        ));
                            continue;
                        }
                    }
                }
                None => (u, dep.value.as_str()),
            };
            match by_unit[target_unit].get(name) {
                Some(&index) => resolved.push((index, dep.span)),
                // Resolved to the rules aggregate below, after the tasks' nodes exist.
                None if implicit_rules
                    && name == RULES_TASK
                    && (target_unit == 0 || target_unit == u) =>
                {
                    needs_rules[g] = true;
                }
                None => errors.push(unknown(if name == RULES_TASK {
                    "`rules` runs the checks of the rule files, and none were found \
                     (`.cursor/rules/**/*.mdc`, or the `rules \"DIR\"` directories)"
                        .to_owned()
                } else {
                    did_you_mean(name, by_unit[target_unit].keys().copied())
                        .map(|close| {
                            format!(
                                "did you mean `{}{close}`?",
                                dep.value.strip_suffix(name).unwrap_or("")
                            )
                        })
                        .unwrap_or_else(|| "define it with `task \"NAME\" { … }`".to_owned())
                })),
            }
        }
        deps.push(resolved);
    }
    let qualified = |g: usize| {
        let (u, task) = all[g];
        [units[u].qualifier.as_str(), &task.name.value].concat()
    };
    for found in cycle::find_cycles(&deps) {
        let names: Vec<String> = found.tasks.iter().map(|&t| qualified(t)).collect();
        let mut path = names.join(" → ");
        path.push_str(" → ");
        path.push_str(&names[0]);
        // Labels in the file of the cycle's first task (a cycle across members names the
        // others in its path).
        let first_unit = all[found.tasks[0]].0;
        let spans = found
            .spans
            .iter()
            .enumerate()
            .filter(|(step, _)| all[found.tasks[*step]].0 == first_unit)
            .map(|(step, &span)| {
                let from = &names[step];
                let to = &names[(step + 1) % names.len()];
                LabeledSpan::new_with_span(Some(format!("`{from}` depends on `{to}`")), span)
            })
            .collect();
        errors.push(Error::Cycle {
            path,
            src: units[first_unit].file.source.source_code(),
            spans,
        });
    }
    for &(u, task) in &all {
        let unit = &units[u];
        check_paths(task, unit.file, unit.prefix, &mut errors);
        let profile = task.llm.as_ref().and_then(|llm| llm.profile.as_ref());
        if let Some(profile) = profile
            && !unit.file.llm_profiles.contains_key(&profile.value)
            && !file.llm_profiles.contains_key(&profile.value)
        {
            let known = unit
                .file
                .llm_profiles
                .keys()
                .chain(file.llm_profiles.keys());
            errors.push(Error::UnknownProfile {
                task: format!("{}{}", unit.qualifier, task.name.value),
                name: profile.value.clone(),
                src: unit.file.source.source_code(),
                span: profile.span,
                help: did_you_mean(&profile.value, known.map(String::as_str))
                    .map(|close| format!("did you mean `{close}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "define it with `llm \"{}\" {{ model \"…\" }}`",
                            profile.value
                        )
                    }),
            });
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics::new(&file, errors));
    }

    // Expand: one node per task, or per file of a `for-each` task. Each node is made on its
    // own (rendered paths and commands, a few dozen allocations): a large graph makes them on
    // every core, then adds them in order.
    let made_one = |g: usize| -> Vec<Result<Node, Box<Error>>> {
        let (u, task) = all[g];
        let unit = &units[u];
        let items = if task.for_each.is_empty() {
            vec![None]
        } else {
            match for_each_files(&root.join(unit.prefix), task, &qualified(g), unit.file) {
                Ok(files) => files.into_iter().map(Some).collect(),
                Err(err) => return vec![Err(err)],
            }
        };
        let items = items.into_iter();
        items
            .map(|item| make_node(&file, unit, task, item, root))
            .collect()
    };
    let made: Vec<Vec<Result<Node, Box<Error>>>> = if all.len() >= MAKE_IN_PARALLEL {
        (0..all.len()).into_par_iter().map(made_one).collect()
    } else {
        (0..all.len()).map(made_one).collect()
    };
    let mut dag = DiGraph::with_capacity(all.len(), all.len());
    let mut ids = FastMap::default();
    let mut tasks: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    let mut task_nodes: Vec<Vec<NodeId>> = vec![Vec::new(); all.len()];
    for (g, made) in made.into_iter().enumerate() {
        let nodes = tasks.entry(qualified(g)).or_default();
        for node in made {
            let node = match node {
                Ok(node) => node,
                Err(err) => {
                    errors.push(*err);
                    continue;
                }
            };
            let id = NodeId(dag.add_node(node));
            ids.insert(dag[id.0].name.clone(), id);
            nodes.push(id);
        }
        task_nodes[g].clone_from(nodes);
    }
    for (g, resolved) in deps.iter().enumerate() {
        for &(dep, _) in resolved {
            for &from in &task_nodes[dep] {
                for &to in &task_nodes[g] {
                    dag.update_edge(from.0, to.0, ());
                }
            }
        }
    }
    if implicit_rules {
        let checks = add_rule_nodes(&mut dag, &mut ids, &mut tasks, &rule_files);
        let aggregate = add_node(
            &mut dag,
            &mut ids,
            &mut tasks,
            implicit_node(
                RULES_TASK,
                "Every rule check of the project",
                NodeKind::Aggregate,
            ),
        );
        for check in checks {
            dag.update_edge(check.0, aggregate.0, ());
        }
        for (g, _) in needs_rules.iter().enumerate().filter(|(_, on)| **on) {
            for &to in &task_nodes[g] {
                dag.update_edge(aggregate.0, to.0, ());
            }
        }
    }
    let dotenv = load_dotenv(&file, root, &mut errors);
    let mut member_dotenv = vec![BTreeMap::new(); workspace.members.len()];
    for unit in &units[1..] {
        if let Some(member) = unit.member {
            member_dotenv[member.index()] =
                load_dotenv(unit.file, &root.join(unit.prefix), &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics::new(&file, errors));
    }
    Ok(Graph {
        dotenv: Arc::new(dotenv),
        member_dotenv: Arc::new(member_dotenv),
        dag,
        ids,
        tasks,
        root: root.to_path_buf(),
        file: Arc::new(file),
        rules: Arc::new(rule_files),
        workspace: Arc::new(workspace),
        scope: crate::Scope::default(),
    })
}

/// The tasks `^name` stands for in `member`'s file: `name` of each member it depends on,
/// and, through a dependency that does not define `name`, of that one's dependencies
/// (turbo's semantics). In the root's file: `name` of every member.
fn caret(
    workspace: &Workspace,
    member_unit: &[Option<usize>],
    by_unit: &[FastMap<&str, usize>],
    member: Option<MemberId>,
    name: &str,
) -> Vec<usize> {
    let defined = |m: usize| member_unit[m].and_then(|u| by_unit[u].get(name).copied());
    let Some(member) = member else {
        return (0..workspace.members.len()).filter_map(defined).collect();
    };
    let mut found = Vec::new();
    let mut seen: HashSet<usize> = HashSet::from([member.index()]);
    let mut stack: Vec<usize> = workspace.members[member.index()]
        .deps
        .iter()
        .rev()
        .map(|d| d.member.index())
        .collect();
    while let Some(m) = stack.pop() {
        if !seen.insert(m) {
            continue;
        }
        match defined(m) {
            Some(task) => found.push(task),
            None => stack.extend(
                workspace.members[m]
                    .deps
                    .iter()
                    .rev()
                    .map(|d| d.member.index()),
            ),
        }
    }
    found
}

/// The variables of the file's `dotenv` files, in order (a later file wins), less those the
/// process environment sets. A file that does not exist adds nothing (a CI runner has no
/// `.env`); one that cannot be read or parsed is an error at its `dotenv` entry.
fn load_dotenv(file: &TaskFile, root: &Path, errors: &mut Vec<Error>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for entry in &file.dotenv {
        let path = root.join(&entry.value);
        let error = |message: String| Error::Dotenv {
            path: entry.value.clone(),
            message,
            src: file.source.source_code(),
            span: entry.span,
        };
        let items = match dotenvy::from_path_iter(&path) {
            Ok(items) => items,
            Err(dotenvy::Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                errors.push(error(err.to_string()));
                continue;
            }
        };
        for item in items {
            match item {
                Ok((key, value)) => {
                    vars.insert(key, value);
                }
                Err(err) => {
                    errors.push(error(err.to_string()));
                    break;
                }
            }
        }
    }
    vars.retain(|key, _| std::env::var_os(key).is_none());
    vars
}

/// The name of the implicit aggregate of all rule checks.
pub(crate) const RULES_TASK: &str = "rules";

/// The rule files under the `rules` directories of the file (default `.cursor/rules`).
fn discover_rules(file: &TaskFile, root: &Path) -> Result<Vec<RuleFile>, Box<Error>> {
    let dirs: Vec<&Path> = if file.rules_dirs.is_empty() {
        vec![Path::new(DEFAULT_RULES_DIR)]
    } else {
        file.rules_dirs
            .iter()
            .map(|d| Path::new(d.value.as_str()))
            .collect()
    };
    clab_rules::discover(root, &dirs).map_err(|source| {
        Box::new(Error::Rules {
            source: Box::new(source),
        })
    })
}

/// One `rule:NAME` node per compiled check; their ids.
fn add_rule_nodes(
    dag: &mut DiGraph<Node, ()>,
    ids: &mut FastMap<String, NodeId>,
    tasks: &mut BTreeMap<String, Vec<NodeId>>,
    rule_files: &[RuleFile],
) -> Vec<NodeId> {
    let mut added = Vec::new();
    for rule in CompiledRule::compile_all(rule_files) {
        if !rule.is_check() {
            continue;
        }
        // Duplicate names are a validation error; the graph still needs distinct ids.
        let mut name = format!("rule:{}", rule.name);
        let mut n = 2;
        while ids.contains_key(&name) {
            name = format!("rule:{}#{n}", rule.name);
            n += 1;
        }
        let description = format!("rule `{}` from `{}`", rule.name, rule.file_id);
        let mut node = implicit_node(&name, &description, NodeKind::Aggregate);
        node.inputs = rule_input_patterns(rule_files, &rule.file_id);
        node.kind = NodeKind::Rule(Box::new(rule));
        added.push(add_node(dag, ids, tasks, node));
    }
    added
}

/// The input globs of a rule node: its file's front-matter globs as project globs (a glob
/// without `/` matches at any depth, as in Cursor), or every file. The node's scan narrows
/// them with the rule's own filters; the glob only bounds what is hashed.
fn rule_input_patterns(rule_files: &[RuleFile], file_id: &str) -> Vec<String> {
    let globs = rule_files
        .iter()
        .find(|f| f.id == file_id)
        .map(|f| {
            f.front_matter
                .globs
                .iter()
                .map(|g| g.value.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut patterns: Vec<String> = globs
        .iter()
        .filter_map(|glob| {
            let (negated, body) = match glob.strip_prefix('!') {
                Some(body) => (true, body),
                None => (false, glob.as_str()),
            };
            let body = body.trim_start_matches('/');
            if body.is_empty() || Glob::new(body).is_err() {
                return None;
            }
            let body = if body.contains('/') {
                body.to_owned()
            } else {
                format!("**/{body}")
            };
            Some(if negated { format!("!{body}") } else { body })
        })
        .collect();
    if !patterns.iter().any(|p| !p.starts_with('!')) {
        patterns.insert(0, "**/*".to_owned());
    }
    patterns
}

/// A node that tasks.kdl does not declare: the rules aggregate and the rule checks.
fn implicit_node(name: &str, description: &str, kind: NodeKind) -> Node {
    Node {
        name: name.to_owned(),
        task: name.to_owned(),
        member: None,
        item: None,
        kind,
        description: Some(description.to_owned()),
        inputs: Vec::new(),
        outputs: Vec::new(),
        env: BTreeMap::new(),
        cwd: String::new(),
        cache: true,
        timeout: None,
        retry: 0,
        persistent: false,
        sandbox: Sandbox::Default,
        sandbox_writable: Vec::new(),
        junit: None,
        coverage: None,
        args_template: None,
        span: (0, 0).into(),
    }
}

/// No variables: what a root unit adds on top of the root's `env`.
static EMPTY_ENV: BTreeMap<String, Spanned<String>> = BTreeMap::new();

fn add_node(
    dag: &mut DiGraph<Node, ()>,
    ids: &mut FastMap<String, NodeId>,
    tasks: &mut BTreeMap<String, Vec<NodeId>>,
    node: Node,
) -> NodeId {
    let name = node.name.clone();
    let id = NodeId(dag.add_node(node));
    ids.insert(name.clone(), id);
    tasks.entry(name).or_default().push(id);
    id
}

/// Globs must compile and paths must stay inside the root (a member's may climb out of its
/// directory, not out of the root). Placeholders are rendered with a stand-in first, so
/// `out/{{stem}}.txt` is checked as the glob it will become.
fn check_paths(task: &TaskDecl, file: &TaskFile, prefix: &str, errors: &mut Vec<Error>) {
    let stand_in = |text: &str| {
        placeholders::render(text, |name| (name != "root").then(|| "x".to_owned()))
            .unwrap_or_else(|_| text.to_owned())
    };
    let escapes = |path: &str| {
        if prefix.is_empty() {
            escapes_root(path)
        } else {
            !is_folded(path) && normalize(&path_join(prefix, path)).is_none()
        }
    };
    let globs = task
        .inputs
        .iter()
        .chain(&task.outputs)
        .chain(&task.for_each)
        .chain(task.llm.iter().flat_map(|llm| &llm.context));
    for glob in globs {
        let pattern = stand_in(&glob.value);
        let pattern = pattern.strip_prefix('!').unwrap_or(&pattern);
        // Only classes, alternates, escapes and a misplaced `**` can fail to compile: skip
        // parsing the rest (a 10,000-task file spent a fifth of its load on `Glob::new`).
        if let Some(err) = (!always_compiles(pattern))
            .then(|| Glob::new(pattern).err())
            .flatten()
        {
            errors.push(Error::BadGlob {
                glob: glob.value.clone(),
                src: file.source.source_code(),
                span: glob.span,
                reason: err.kind().to_string(),
            });
        } else if escapes(pattern) {
            errors.push(outside_root(glob, file));
        }
    }
    let paths = task
        .cwd
        .iter()
        .chain(&task.junit)
        .chain(task.coverage.iter().map(|c| &c.path))
        .chain(task.llm.iter().flat_map(|llm| &llm.output))
        .chain(task.llm.iter().flat_map(|llm| &llm.prompt_file))
        .chain(task.llm.iter().flat_map(|llm| &llm.system_file));
    for path in paths {
        if escapes(&stand_in(&path.value)) {
            errors.push(outside_root(path, file));
        }
    }
}

/// A path or glob of a member's file (relative to its directory `prefix`) as a path
/// relative to the root: `!` kept, `.` and `..` folded. The root's own (`prefix` empty)
/// stay as written.
pub(crate) fn rebase(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        return path.to_owned();
    }
    let (negated, body) = match path.strip_prefix('!') {
        Some(body) => ("!", body),
        None => ("", path),
    };
    if body.is_empty() && is_folded(prefix) {
        return prefix.to_owned();
    }
    // Most paths have nothing to fold: join them without taking them apart (a 2,000-task
    // workspace rebases 12,000 paths on every run).
    if is_folded(prefix) && is_folded(body.strip_suffix('/').unwrap_or(body)) {
        return [negated, prefix, "/", body].concat();
    }
    let joined = path_join(prefix, body);
    // `check_paths` refused paths that leave the root, so `normalize` cannot fail here.
    let mut rebased = normalize(&joined).unwrap_or(joined);
    if body.ends_with('/') && !rebased.is_empty() {
        rebased.push('/');
    }
    format!("{negated}{rebased}")
}

fn outside_root(path: &Spanned<String>, file: &TaskFile) -> Error {
    Error::OutsideRoot {
        path: path.value.clone(),
        src: file.source.source_code(),
        span: path.span,
    }
}

/// Whether `pattern` is a glob that [`Glob::new`] accepts without looking: no classes,
/// alternates or escapes, and every `**` a whole path component.
fn always_compiles(pattern: &str) -> bool {
    !pattern.contains(['[', ']', '{', '}', '\\'])
        && pattern
            .split('/')
            .all(|part| !part.contains("**") || part == "**")
}

/// A relative, `/`-separated path with no `.`, `..` or empty components: what
/// [`normalize`] would return unchanged.
fn is_folded(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

/// Absolute, or climbing above the root with `..`.
fn escapes_root(path: &str) -> bool {
    let mut depth = 0i32;
    for component in Path::new(path).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// The files a `for-each` task runs over, sorted, as `/`-separated paths relative to `root`
/// (the member's directory in a workspace). clab's own temp files are never among them. A
/// name that is not UTF-8 is refused: no placeholder, input pattern or node id could name it
/// (issue 18). `name` is the task's qualified name, for errors.
fn for_each_files(
    root: &Path,
    task: &TaskDecl,
    name: &str,
    file: &TaskFile,
) -> Result<Vec<String>, Box<Error>> {
    let mut include = GlobSetBuilder::new();
    let mut exclude = GlobSetBuilder::new();
    for pattern in &task.for_each {
        // Patterns were checked by `check_paths`; a failure here cannot happen, skip it.
        match pattern.value.strip_prefix('!') {
            Some(negated) => Glob::new(negated).map(|g| exclude.add(g)),
            None => Glob::new(&pattern.value).map(|g| include.add(g)),
        }
        .ok();
    }
    let include = include.build().unwrap_or_else(|_| GlobSet::empty());
    let exclude = exclude.build().unwrap_or_else(|_| GlobSet::empty());
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .filter_entry(|entry| !matches!(entry.file_name().to_str(), Some(".git" | ".clab")))
        .build();
    for entry in walker {
        let entry = entry.map_err(|source| {
            Box::new(Error::Walk {
                task: name.to_owned(),
                source,
            })
        })?;
        if !entry.file_type().is_some_and(|t| t.is_file())
            || super::is_temp_file_name(entry.file_name())
        {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(text) = relative.to_str() else {
            // Matched as the walker's lossy text: only a match is refused.
            let lossy = relative.to_string_lossy();
            if include.is_match(&*lossy) && !exclude.is_match(&*lossy) {
                let pattern = task.for_each.iter().find(|p| !p.value.starts_with('!'));
                return Err(Box::new(Error::UnnamableFile {
                    task: name.to_owned(),
                    path: lossy.escape_debug().to_string(),
                    src: file.source.source_code(),
                    span: pattern.map_or(task.name.span, |p| p.span),
                }));
            }
            continue;
        };
        if include.is_match(text) && !exclude.is_match(text) {
            files.push(text.to_owned());
        }
    }
    files.sort();
    Ok(files)
}

/// A path as an output pattern: escaped when it holds glob characters, so it names itself.
fn as_pattern(path: &str) -> String {
    if path.contains(['*', '?', '[', ']', '{', '}']) {
        quoting::escape_glob(path)
    } else {
        path.to_owned()
    }
}

/// The values of the placeholders for one node.
pub(super) fn placeholder_values(root: &Path, item: Option<&str>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert("root".to_owned(), root.to_string_lossy().into_owned());
    if let Some(file) = item {
        let path = Path::new(file);
        let text = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
        vars.insert("file".to_owned(), file.to_owned());
        vars.insert(
            "stem".to_owned(),
            text(path.file_stem()).unwrap_or_default(),
        );
        vars.insert(
            "name".to_owned(),
            text(path.file_name()).unwrap_or_default(),
        );
        let dir = path
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".to_owned());
        vars.insert("dir".to_owned(), dir);
    }
    vars
}

/// The environment variable that holds placeholder `name`'s value in a command's
/// environment (see [`quoting`]).
pub(super) fn placeholder_var(name: &str) -> Option<&'static str> {
    Some(match name {
        "root" => "CLAB_ROOT",
        "file" => "CLAB_FILE",
        "stem" => "CLAB_STEM",
        "dir" => "CLAB_DIR",
        "name" => "CLAB_NAME",
        "output" => "CLAB_OUTPUT",
        _ => return None,
    })
}

fn make_node(
    root_file: &TaskFile,
    unit: &Unit<'_>,
    task: &TaskDecl,
    item: Option<String>,
    root: &Path,
) -> Result<Node, Box<Error>> {
    let file = unit.file;
    let prefix = unit.prefix;
    let vars = placeholder_values(root, item.as_deref());
    // Placeholders were checked at parse time; `{{output}}` stays for the LLM check to fill.
    let render = |text: &str| {
        placeholders::render(text, |name| {
            vars.get(name)
                .cloned()
                .or_else(|| (name == "output").then(|| "{{output}}".to_owned()))
        })
        .unwrap_or_else(|_| text.to_owned())
    };
    let located = |text: &str| rebase(prefix, &render(text));
    // A path pattern: a value in a glob is escaped, so it matches the file it names
    // (`pages/[id].tsx`); a literal path keeps it as it is.
    let render_pattern = |text: &str| {
        let raw = render(text);
        if !raw.contains(['*', '?', '[', ']', '{', '}']) {
            return raw;
        }
        placeholders::render(text, |name| {
            vars.get(name)
                .map(|value| quoting::escape_glob(value))
                .or_else(|| (name == "output").then(|| "{{output}}".to_owned()))
        })
        .unwrap_or(raw)
    };
    let located_pattern = |text: &str| rebase(prefix, &render_pattern(text));
    // A shell line: values are data, never code (see `quoting`).
    let render_shell = |line: &Spanned<String>, output: Option<&str>| {
        quoting::render_command(&line.value, |name| match name {
            "args" => Some(Fill::Args),
            "output" => output.map(|output| {
                if quoting::is_plain(output) {
                    // The check fills it (shell-quoted) when it runs.
                    Fill::Verbatim("{{output}}".to_owned())
                } else {
                    Fill::Value {
                        value: output.to_owned(),
                        var: "CLAB_OUTPUT",
                    }
                }
            }),
            _ => Some(Fill::Value {
                value: vars.get(name)?.clone(),
                var: placeholder_var(name)?,
            }),
        })
        .map_err(|refused| {
            Box::new(Error::UnsafePlaceholder {
                task: format!("{}{}", unit.qualifier, task.name.value),
                name: refused.name,
                value: refused.value.escape_debug().to_string(),
                src: file.source.source_code(),
                span: line.span,
            })
        })
    };
    let render_all = |items: &[Spanned<String>]| {
        items
            .iter()
            .map(|s| located_pattern(&s.value))
            .collect::<Vec<String>>()
    };
    let mut args_template = None;
    let name = match &item {
        Some(file) => format!("{}{}[{file}]", unit.qualifier, task.name.value),
        None => [unit.qualifier.as_str(), &task.name.value].concat(),
    };
    let kind = if let Some(llm) = &task.llm {
        let output = llm
            .output
            .as_ref()
            .map(|o| located(&o.value))
            .unwrap_or_default();
        let check = match &llm.check {
            Some(check) => Some(render_shell(check, Some(&output))?),
            None => None,
        };
        NodeKind::Llm(Box::new(LlmNode {
            decl: (**llm).clone(),
            output,
            context: render_all(&llm.context),
            prompt_file: llm.prompt_file.as_ref().map(|f| located_pattern(&f.value)),
            system_file: llm.system_file.as_ref().map(|f| located_pattern(&f.value)),
            check,
            vars: vars.clone(),
        }))
    } else if task.run.is_empty() {
        NodeKind::Aggregate
    } else {
        // `{{args}}` is filled by `clab run TASK -- ARGS` (`Graph::pass_args`); until then
        // it renders as a mark that says how it is quoted, and runs as nothing.
        let lines = task
            .run
            .iter()
            .map(|line| render_shell(line, None))
            .collect::<Result<Vec<String>, _>>()?;
        if lines.iter().any(|line| quoting::has_args_mark(line)) {
            args_template = Some(lines.clone());
        }
        NodeKind::Command {
            run: lines
                .iter()
                .map(|line| quoting::fill_args(line, None).unwrap_or_else(|_| line.clone()))
                .collect(),
        }
    };
    // The root's `env` applies to every member's tasks; a member's own `env` wins.
    let mut env: BTreeMap<String, String> = root_file
        .env
        .iter()
        .chain(if unit.member.is_some() {
            &file.env
        } else {
            &EMPTY_ENV
        })
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), render(&v.value))));
    // Reports are outputs too: a cache hit restores them and shows them again.
    let mut outputs: Vec<String> = render_all(&task.outputs);
    let mut inputs: Vec<String> = render_all(&task.inputs);
    if let NodeKind::Llm(llm) = &kind {
        // An LLM step's inputs are its context and prompt files; its output is an output.
        outputs.push(as_pattern(&llm.output));
        inputs.extend(llm.context.iter().cloned());
        inputs.extend(llm.prompt_file.iter().chain(&llm.system_file).cloned());
    }
    let reports = task
        .junit
        .iter()
        .chain(task.coverage.iter().map(|c| &c.path));
    for report in reports {
        let path = as_pattern(&located(&report.value));
        if !outputs.contains(&path) {
            outputs.push(path);
        }
    }
    Ok(Node {
        task: match &item {
            Some(_) => [unit.qualifier.as_str(), &task.name.value].concat(),
            None => name.clone(),
        },
        name,
        member: unit.member,
        item,
        kind,
        description: task.description.as_ref().map(|d| d.value.clone()),
        inputs,
        outputs,
        env,
        // A member's commands run in its directory unless `cwd` says otherwise.
        cwd: rebase(
            prefix,
            &task
                .cwd
                .as_ref()
                .map(|c| render(&c.value))
                .unwrap_or_default(),
        ),
        cache: task.cache.as_ref().is_none_or(|c| c.value),
        timeout: task.timeout.as_ref().map(|t| t.value),
        retry: task.retry.as_ref().map_or(0, |r| r.value),
        persistent: task.persistent.as_ref().is_some_and(|p| p.value),
        sandbox: match task.sandbox.as_ref().map(|s| s.value) {
            None => Sandbox::Default,
            Some(SandboxDecl::Off) => Sandbox::Off,
            Some(SandboxDecl::On) => Sandbox::On,
            Some(SandboxDecl::Required) => Sandbox::Required,
        },
        // `~/…` and absolute paths as written; others, like every path, from the member's
        // directory.
        sandbox_writable: task
            .sandbox_writable
            .iter()
            .map(|path| match path.value.starts_with(['~', '/']) {
                true => render(&path.value),
                false => located(&path.value),
            })
            .collect(),
        junit: task.junit.as_ref().map(|j| located(&j.value)),
        coverage: task.coverage.as_ref().map(|c| Coverage {
            path: located(&c.path.value),
            fail_under: c.fail_under.as_ref().map(|f| f.value),
            show_missing: c.show_missing,
            skip_covered: c.skip_covered,
        }),
        args_template,
        span: task.name.span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_said_to_always_compile_does() {
        // Every pattern of up to six characters over glob syntax that can go wrong with `*`.
        let alphabet = ['a', '*', '?', '/', '.', '!'];
        let mut patterns = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            patterns = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for pattern in &patterns {
                if always_compiles(pattern) {
                    assert!(Glob::new(pattern).is_ok(), "{pattern:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
        assert!(!always_compiles("src/[ab].txt"));
        assert!(!always_compiles("src/a**"));
        assert!(always_compiles("src/**/*.py"));
    }

    #[test]
    fn rebasing_joins_plain_paths_and_folds_the_rest() {
        assert_eq!(rebase("pkgs/a", "src/x.txt"), "pkgs/a/src/x.txt");
        assert_eq!(rebase("pkgs/a", "!src/x.txt"), "!pkgs/a/src/x.txt");
        assert_eq!(rebase("pkgs/a", "out/"), "pkgs/a/out/");
        assert_eq!(rebase("pkgs/a", ""), "pkgs/a");
        assert_eq!(rebase("pkgs/a", "../b/x"), "pkgs/b/x");
        assert_eq!(rebase("pkgs/a", "./x//y"), "pkgs/a/x/y");
        assert_eq!(rebase("", "./x"), "./x");
    }
    use clab_model::source::SourceFile;
    use clab_syntax::parse_task_file;

    fn graph(text: &str, root: &Path) -> Result<Graph, Diagnostics> {
        let file = parse_task_file(SourceFile::new("tasks.kdl", "tasks.kdl", text)).unwrap();
        build(file, root)
    }

    fn messages(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        graph(text, dir.path())
            .err()
            .map(|d| d.errors.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn diamond_orders_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(
            r#"
task "d" { deps "b" "c"; run "d" }
task "b" { deps "a"; run "b" }
task "c" { deps "a"; run "c" }
task "a" { run "a" }
"#,
            dir.path(),
        )
        .unwrap();
        let d = g.resolve_targets(&["d".into()]).unwrap();
        let order: Vec<&str> = g
            .closure(&d)
            .iter()
            .map(|&id| g.node(id).name.as_str())
            .collect();
        assert_eq!(order.first(), Some(&"a"));
        assert_eq!(order.last(), Some(&"d"));
        assert_eq!(order.len(), 4);
        let lengths = g.critical_path_lengths();
        assert_eq!(lengths[g.find("a").unwrap().index()], 3);
        assert_eq!(lengths[g.find("d").unwrap().index()], 1);
    }

    #[test]
    fn reports_unknown_deps_and_cycles() {
        assert_eq!(
            messages(r#"task "a" { deps "bulid" }; task "build" { run "x" }"#),
            ["task `a` depends on unknown task `bulid`"]
        );
        assert_eq!(
            messages(r#"task "a" { deps "b" }; task "b" { deps "c" }; task "c" { deps "a" }"#),
            ["dependency cycle: a → b → c → a"]
        );
    }

    #[test]
    fn unknown_llm_profiles_are_named() {
        assert_eq!(
            messages(
                r#"
                llm "fast" { model "m" }
                task "g" { llm { profile "fats"; prompt "p"; output "o.txt"; } }
                "#
            ),
            ["task `g` uses llm profile `fats`, which is not defined"]
        );
    }

    #[test]
    fn refuses_paths_outside_the_root_and_bad_globs() {
        assert_eq!(
            messages(r#"task "a" { run "x"; outputs "../x" "/etc/passwd" "a[" }"#),
            [
                "`../x` is outside the project",
                "`/etc/passwd` is outside the project",
                "invalid glob `a[`"
            ]
        );
    }

    #[test]
    fn for_each_expands_one_node_per_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/pkg")).unwrap();
        for name in ["a.py", "b.py", "c.txt"] {
            std::fs::write(dir.path().join("src/pkg").join(name), "").unwrap();
        }
        let g = graph(
            r#"
task "setup" { run "true" }
task "gen" { deps "setup"; for-each "src/pkg/*.py"; run "cat {{file}} > out/{{stem}}.txt" }
"#,
            dir.path(),
        )
        .unwrap();
        let names: Vec<&str> = g.tasks()["gen"]
            .iter()
            .map(|&id| g.node(id).name.as_str())
            .collect();
        assert_eq!(names, ["gen[src/pkg/a.py]", "gen[src/pkg/b.py]"]);
        let node = g.node(g.find("gen[src/pkg/b.py]").unwrap());
        let NodeKind::Command { run } = &node.kind else {
            panic!("expected a command");
        };
        assert_eq!(run, &["cat src/pkg/b.py > out/b.txt"]);
        assert_eq!(
            g.dependencies(g.find("gen[src/pkg/a.py]").unwrap()).len(),
            1
        );
    }

    #[test]
    fn hostile_names_are_referred_to_and_escaped_in_patterns_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        for name in ["$(touch PWNED).txt", "[id].txt", "back\\slash.txt", "a.txt"] {
            std::fs::write(dir.path().join("src").join(name), "").unwrap();
        }
        let g = graph(
            r#"task "wc" { for-each "src/*.txt"; inputs "{{file}}"; outputs "out/{{stem}}/**"; run "wc -c \"{{file}}\" > 'out/{{name}}'" }"#,
            dir.path(),
        )
        .unwrap();
        let node = |file: &str| g.node(g.find(&format!("wc[src/{file}]")).unwrap());
        let run = |file: &str| match &node(file).kind {
            NodeKind::Command { run } => run[0].clone(),
            _ => panic!("a command"),
        };
        assert_eq!(run("a.txt"), "wc -c \"src/a.txt\" > 'out/a.txt'");
        assert_eq!(
            run("$(touch PWNED).txt"),
            "wc -c \"${CLAB_FILE}\" > 'out/'\"${CLAB_NAME}\"''"
        );
        let env = g.command_env(g.find("wc[src/$(touch PWNED).txt]").unwrap());
        assert_eq!(env["CLAB_FILE"], "src/$(touch PWNED).txt");
        assert_eq!(env["CLAB_NAME"], "$(touch PWNED).txt");
        // Literal patterns keep the name; globs escape it.
        assert_eq!(node("[id].txt").inputs, ["src/\\[id\\].txt"]);
        assert_eq!(node("[id].txt").outputs, ["out/\\[id\\]/**"]);
        assert_eq!(node("back\\slash.txt").inputs, ["src/back\\slash.txt"]);
        assert_eq!(node("back\\slash.txt").outputs, ["out/back\\\\slash/**"]);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused_with_its_for_each_issue_18() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
        std::fs::write(dir.path().join("src").join(name), "").unwrap();
        std::fs::write(dir.path().join("src/.clab-tmp-x.txt"), "").unwrap();
        let text = r#"task "wc" { for-each "src/*.txt"; run "wc -c {{file}}" }"#;
        let err = graph(text, dir.path()).unwrap_err();
        assert_eq!(
            err.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["task `wc` runs over `src/bad\u{fffd}.txt`, whose name is not UTF-8"]
        );
        // Left out by a pattern, it is no problem; clab's temp files are never items.
        let text = r#"task "wc" { for-each "src/*.txt" "!src/bad*"; run "wc -c {{file}}" }"#;
        let g = graph(text, dir.path()).unwrap();
        assert!(g.tasks()["wc"].is_empty());
    }

    #[test]
    fn a_placeholder_in_arithmetic_must_be_plain_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["12", "a[$(id)]"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let text = r#"task "n" { for-each "*"; run "echo $(( {{file}} + 1 ))" }"#;
        let err = graph(text, dir.path()).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert!(
            err.errors[0]
                .to_string()
                .starts_with("`{{file}}` of task `n` is `a[$(id)]`"),
            "{}",
            err.errors[0]
        );
    }
}
