//! A workspace: the root tasks.kdl's `members` globs → [`Member`]s with their tasks.kdl and
//! the member dependencies their manifests declare.
//!
//! ```text
//! root tasks.kdl `members "packages/*"` ──glob──▶ member dirs (each with a tasks.kdl)
//! root pyproject/Cargo/package.json/pnpm ──────▶ the ecosystem's packages (no tasks.kdl)
//! each package's manifests + `uses` ───────────▶ member dependencies (acyclic)
//! ```
//!
//! # In
//!
//! The workspace root and its parsed tasks.kdl ([`Workspace::load`]), and a function that
//! parses a member's tasks.kdl (the project's, through the parse cache).
//!
//! # Out
//!
//! A [`Workspace`]: members sorted by directory, each with its name (its `project`, else
//! its directory's name), its tasks file, its direct dependencies and the files it was read
//! from; or [`Diagnostics`] with every problem found.
//!
//! # Invariants
//!
//! Member names are unique, never hold `:` or `/`, and are not `rule` (node ids use
//! `member:task` and `rule:NAME`). Directories are relative to the root, `/`-separated and
//! inside it. The member dependency graph is acyclic. Packages that the ecosystem's own
//! workspace declares (`[tool.uv.workspace]`, `[workspace]` of Cargo, `workspaces`,
//! `pnpm-workspace.yaml`) but that have no tasks.kdl are members without tasks: `^build`
//! passes through them to their own dependencies, and `--since` sees their changes.

mod changed_files;
mod error;
pub(crate) mod manifest;
mod member_filter;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Component, Path},
    sync::Arc,
};

use globset::{Glob, GlobBuilder, GlobSetBuilder};

use self::manifest::{Manifest, RootManifests};
pub use self::{
    changed_files::changed_files,
    error::{Diagnostics, Error, Src},
    member_filter::{MemberFilter, ROOT_NAME},
};
use crate::project::TASKS_FILE;
use clab_model::source::Spanned;
use clab_syntax::{self as syntax, TaskFile};

/// A member's index in its [`Workspace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u32);

impl MemberId {
    /// The dense index, `0..members.len()`.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the member at `index`.
    pub fn new(index: usize) -> MemberId {
        MemberId(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// One dependency of a member on another.
#[derive(Clone, Debug)]
pub struct MemberDep {
    /// The member depended on.
    pub member: MemberId,
    /// The file that declares it (a manifest, or the member's tasks.kdl for `uses`).
    pub origin: String,
}

/// One member of a workspace.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its name: the tasks.kdl's `project`, else the directory's name.
    pub name: String,
    /// Its directory, relative to the root, `/`-separated.
    pub dir: String,
    /// Its tasks file; `None` for a package of the ecosystem's workspace without one.
    pub file: Option<Arc<TaskFile>>,
    /// What it depends on, sorted by member.
    pub deps: Vec<MemberDep>,
    /// The files it was read from (tasks.kdl and manifests), relative to the root.
    pub files: Vec<String>,
}

/// The members of a workspace and how they depend on each other.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    /// The members, sorted by directory.
    pub members: Vec<Member>,
    /// The root's manifests that declare packages, relative to the root.
    pub files: Vec<String>,
}

/// Parses one member's tasks.kdl: `(path, display name) → TaskFile`.
pub type ParseFn<'a> = &'a (dyn Fn(&Path, String) -> Result<TaskFile, syntax::Diagnostics> + Sync);

/// A package directory found by a glob, before it is read.
struct Found {
    /// Found by the root tasks.kdl's `members` (which glob): it has a tasks.kdl.
    by_members: Option<Spanned<String>>,
}

impl Workspace {
    /// Find and read the members of the workspace rooted at `root` whose tasks file is
    /// `root_file` (which has `members`).
    pub fn load(
        root: &Path,
        root_file: &TaskFile,
        parse: ParseFn<'_>,
    ) -> Result<Workspace, Diagnostics> {
        let mut errors = Vec::new();
        let mut dirs: BTreeMap<String, Found> = BTreeMap::new();

        // The root tasks.kdl's members: directories with a tasks.kdl.
        let (include, exclude): (Vec<_>, Vec<_>) = root_file
            .members
            .iter()
            .partition(|g| !g.value.starts_with('!'));
        let mut excluded = GlobSetBuilder::new();
        for glob in &exclude {
            match member_glob(glob.value.trim_start_matches('!')) {
                Ok(glob) => {
                    excluded.add(glob);
                }
                Err(reason) => errors.push(bad_glob(root_file, glob, reason)),
            }
        }
        let excluded = excluded
            .build()
            .unwrap_or_else(|_| globset::GlobSet::empty());
        for glob in include {
            if let Err(reason) = member_glob(&glob.value) {
                errors.push(bad_glob(root_file, glob, reason));
                continue;
            }
            for dir in expand(root, &glob.value) {
                // `is_file` of a path under a plain file fails too: no `is_dir` needed.
                if !excluded.is_match(&dir) && root.join(&dir).join(TASKS_FILE).is_file() {
                    dirs.entry(dir).or_insert(Found {
                        by_members: Some(glob.clone()),
                    });
                }
            }
        }

        // The ecosystem's packages.
        let roots = match RootManifests::read(root) {
            Ok(roots) => roots,
            Err(found) => {
                errors.extend(found);
                RootManifests::default()
            }
        };
        for manifest in [manifest::PYPROJECT, manifest::CARGO, manifest::PACKAGE_JSON] {
            let globs: Vec<_> = roots
                .globs
                .iter()
                .filter(|g| g.manifest == manifest)
                .collect();
            let mut excluded = GlobSetBuilder::new();
            for glob in globs.iter().filter(|g| g.exclude) {
                if let Ok(glob) = member_glob(&glob.glob) {
                    excluded.add(glob);
                }
            }
            let excluded = excluded
                .build()
                .unwrap_or_else(|_| globset::GlobSet::empty());
            for glob in globs.iter().filter(|g| !g.exclude) {
                if member_glob(&glob.glob).is_err() {
                    continue;
                }
                for dir in expand(root, &glob.glob) {
                    // A member already found needs no second look.
                    if !dirs.contains_key(&dir)
                        && !excluded.is_match(&dir)
                        && root.join(&dir).join(manifest).is_file()
                    {
                        dirs.entry(dir).or_insert(Found { by_members: None });
                    }
                }
            }
        }

        // Read every package: manifests, and the tasks file of a member.
        let mut members = Vec::with_capacity(dirs.len());
        let mut manifests = Vec::with_capacity(dirs.len());
        let loaded = read_all(root, &dirs, parse);
        for ((dir, found), (manifest, file)) in dirs.iter().zip(loaded) {
            let manifest = manifest.unwrap_or_else(|found| {
                errors.extend(found);
                Manifest::default()
            });
            let file = match file {
                Some(Ok(file)) => Some(Arc::new(file)),
                Some(Err(err)) => {
                    errors.push(Error::Syntax(err));
                    continue;
                }
                None => None,
            };
            let base = dir.rsplit('/').next().unwrap_or(dir).to_owned();
            let name = file
                .as_ref()
                .and_then(|f| f.project.as_ref())
                .map_or_else(|| base.clone(), |p| p.value.clone());
            if let Some(file) = &file {
                check_member_file(&name, file, &mut errors);
                if let Err((reason, help)) = check_name(&name) {
                    let (src, span) = match (&file.project, &found.by_members) {
                        (Some(project), _) => (file.source.source_code().into(), project.span),
                        (None, Some(glob)) => (root_file.source.source_code().into(), glob.span),
                        (None, None) => (file.source.source_code().into(), (0, 0).into()),
                    };
                    errors.push(Error::BadName {
                        name: name.clone(),
                        src,
                        span,
                        reason,
                        help,
                    });
                }
            }
            let mut files = Vec::new();
            if file.is_some() {
                files.push(path_join(dir, TASKS_FILE));
            }
            files.extend(manifest.files.iter().cloned());
            members.push(Member {
                name,
                dir: dir.clone(),
                file,
                deps: Vec::new(),
                files,
            });
            manifests.push(manifest);
        }
        name_members(&mut members, &mut errors);

        // Member dependencies.
        let index = |key: fn(&Manifest) -> Option<&String>| -> HashMap<String, usize> {
            manifests
                .iter()
                .enumerate()
                .filter_map(|(i, m)| key(m).map(|name| (name.clone(), i)))
                .collect()
        };
        let by_python = index(|m| m.python_name.as_ref());
        let by_npm = index(|m| m.npm_name.as_ref());
        let by_dir: HashMap<&str, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.dir.as_str(), i))
            .collect();
        let by_name: HashMap<&str, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let mut all_deps: Vec<Vec<MemberDep>> = Vec::with_capacity(members.len());
        for (i, (member, manifest)) in members.iter().zip(&manifests).enumerate() {
            let mut deps: BTreeMap<usize, String> = BTreeMap::new();
            let origin = |file: &str| path_join(&member.dir, file);
            let mut add = |target: Option<usize>, origin: String| {
                if let Some(target) = target.filter(|&t| t != i) {
                    deps.entry(target).or_insert(origin);
                }
            };
            let python = manifest.python_deps.iter().chain(
                manifest
                    .python_other_deps
                    .iter()
                    .filter(|name| roots.uv_sources.contains(*name)),
            );
            for name in python {
                add(by_python.get(name).copied(), origin(manifest::PYPROJECT));
            }
            for dir in &manifest.cargo_path_deps {
                add(by_dir.get(dir.as_str()).copied(), origin(manifest::CARGO));
            }
            for name in &manifest.cargo_workspace_deps {
                let dir = roots.cargo_workspace_paths.get(name);
                add(
                    dir.and_then(|dir| by_dir.get(dir.as_str()).copied()),
                    origin(manifest::CARGO),
                );
            }
            for name in &manifest.npm_deps {
                add(by_npm.get(name).copied(), origin(manifest::PACKAGE_JSON));
            }
            if let Some(file) = &member.file {
                for used in &file.uses {
                    match by_name.get(used.value.as_str()) {
                        Some(&target) => add(Some(target), origin(TASKS_FILE)),
                        None => errors.push(Error::UnknownUses {
                            member: member.name.clone(),
                            name: used.value.clone(),
                            src: file.source.source_code().into(),
                            span: used.span,
                            help: syntax::did_you_mean(
                                &used.value,
                                members.iter().map(|m| m.name.as_str()),
                            )
                            .map(|close| format!("did you mean `{close}`?"))
                            .unwrap_or_else(|| {
                                format!("the members are {}", list(members.iter().map(|m| &m.name)))
                            }),
                        }),
                    }
                }
            }
            all_deps.push(
                deps.into_iter()
                    .map(|(member, origin)| MemberDep {
                        member: MemberId::new(member),
                        origin,
                    })
                    .collect(),
            );
        }
        for (member, deps) in members.iter_mut().zip(all_deps) {
            member.deps = deps;
        }
        errors.extend(member_cycles(&members));
        if errors.is_empty() {
            Ok(Workspace {
                members,
                files: roots.files,
            })
        } else {
            Err(Diagnostics { errors })
        }
    }

    /// The member with this name.
    pub fn find(&self, name: &str) -> Option<MemberId> {
        self.members
            .iter()
            .position(|m| m.name == name)
            .map(MemberId::new)
    }

    /// The member whose directory holds `path` (relative to the root, `/`-separated): the
    /// deepest one, as members may nest in directories.
    pub fn member_of(&self, path: &str) -> Option<MemberId> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                path.strip_prefix(m.dir.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|(_, m)| m.dir.len())
            .map(|(i, _)| MemberId::new(i))
    }

    /// Each member's dependents (the reverse of [`Member::deps`]).
    pub fn dependents(&self) -> Vec<Vec<MemberId>> {
        let mut dependents = vec![Vec::new(); self.members.len()];
        for (i, member) in self.members.iter().enumerate() {
            for dep in &member.deps {
                dependents[dep.member.index()].push(MemberId::new(i));
            }
        }
        dependents
    }

    /// `start` and everything reachable from it by `next` (dependencies or dependents).
    pub fn reach(&self, start: &[MemberId], next: &[Vec<MemberId>]) -> Vec<bool> {
        let mut seen = vec![false; self.members.len()];
        let mut stack = start.to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut seen[id.index()], true) {
                stack.extend(next[id.index()].iter().copied());
            }
        }
        seen
    }

    /// Each member's direct dependencies as ids.
    pub fn dependencies(&self) -> Vec<Vec<MemberId>> {
        self.members
            .iter()
            .map(|m| m.deps.iter().map(|d| d.member).collect())
            .collect()
    }
}

/// Read every package's manifests and, for members, tasks file; in parallel when there are
/// many (each is a few small files, and a workspace may have hundreds).
#[allow(clippy::type_complexity)]
fn read_all(
    root: &Path,
    dirs: &BTreeMap<String, Found>,
    parse: ParseFn<'_>,
) -> Vec<(
    Result<Manifest, Vec<Error>>,
    Option<Result<TaskFile, syntax::Diagnostics>>,
)> {
    let read = |(dir, found): (&String, &Found)| {
        let manifest = Manifest::read(root, dir);
        let file = found.by_members.as_ref().map(|_| {
            let name = path_join(dir, TASKS_FILE);
            parse(&root.join(&name), name)
        });
        (manifest, file)
    };
    let entries: Vec<(&String, &Found)> = dirs.iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if entries.len() < 16 || threads < 2 {
        return entries.into_iter().map(read).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().copied().map(read).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    })
}

/// Settings a member's tasks.kdl may not hold.
fn check_member_file(name: &str, file: &TaskFile, errors: &mut Vec<Error>) {
    if let Some(first) = file.members.first() {
        errors.push(Error::NestedMembers {
            member: name.to_owned(),
            src: file.source.source_code().into(),
            span: first.span,
        });
    }
    if let Some(first) = file.rules_dirs.first() {
        errors.push(Error::RootOnly {
            setting: "rules",
            member: name.to_owned(),
            src: file.source.source_code().into(),
            span: first.span,
            help: "rule files are read from the root's rules directories and apply to the whole workspace",
        });
    }
}

/// Whether `name` can name a member: `Err((label, help))` if not.
fn check_name(name: &str) -> Result<(), (String, String)> {
    let help = "name the member with `project \"NAME\"` in its tasks.kdl".to_owned();
    if name.is_empty() {
        Err(("empty".to_owned(), help))
    } else if name.contains([':', '/', '[', ']']) || name.starts_with('^') || name.starts_with('!')
    {
        Err((
            "`:`, `/`, `[`, `]` and a leading `^` or `!` have a meaning in task names".to_owned(),
            help,
        ))
    } else if name == "rule" {
        Err(("`rule:NAME` names rule checks".to_owned(), help))
    } else {
        Ok(())
    }
}

/// Make names unique: two members are an error; a package without tasks.kdl whose name is
/// taken is called by its directory instead.
fn name_members(members: &mut [Member], errors: &mut Vec<Error>) {
    let mut taken: HashMap<String, usize> = HashMap::new();
    for i in 0..members.len() {
        if members[i].file.is_none() {
            continue;
        }
        match taken.get(&members[i].name) {
            Some(&first) => errors.push(Error::DuplicateMember {
                name: members[i].name.clone(),
                first: members[first].dir.clone(),
                second: members[i].dir.clone(),
            }),
            None => {
                taken.insert(members[i].name.clone(), i);
            }
        }
    }
    for (i, member) in members.iter_mut().enumerate() {
        if member.file.is_some() {
            continue;
        }
        if taken.contains_key(&member.name) || check_name(&member.name).is_err() {
            member.name = member.dir.clone();
        }
        taken.insert(member.name.clone(), i);
    }
}

/// A cycle among members, reported once per strongly connected set.
fn member_cycles(members: &[Member]) -> Vec<Error> {
    let deps: Vec<Vec<(usize, miette::SourceSpan)>> = members
        .iter()
        .map(|m| {
            m.deps
                .iter()
                .map(|d| (d.member.index(), (0, 0).into()))
                .collect()
        })
        .collect();
    crate::cycle::find_cycles(&deps)
        .into_iter()
        .map(|cycle| {
            let names: Vec<&str> = cycle
                .tasks
                .iter()
                .map(|&m| members[m].name.as_str())
                .collect();
            let mut path = names.join(" → ");
            path.push_str(" → ");
            path.push_str(names[0]);
            let steps: Vec<String> = cycle
                .tasks
                .iter()
                .enumerate()
                .map(|(step, &from)| {
                    let to = cycle.tasks[(step + 1) % cycle.tasks.len()];
                    let origin = members[from]
                        .deps
                        .iter()
                        .find(|d| d.member.index() == to)
                        .map_or("", |d| d.origin.as_str());
                    format!(
                        "`{}` depends on `{}` in `{origin}`",
                        members[from].name, members[to].name
                    )
                })
                .collect();
            Error::MemberCycle {
                path,
                help: format!(
                    "members cannot depend on each other in a circle; remove one of these:\n{}",
                    steps.join("\n")
                ),
            }
        })
        .collect()
}

/// `a`, `b` and `c` in backticks, comma-separated.
fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bad_glob(file: &TaskFile, glob: &Spanned<String>, reason: String) -> Error {
    Error::BadGlob {
        glob: glob.value.clone(),
        src: file.source.source_code().into(),
        span: glob.span,
        reason,
    }
}

/// A member glob, compiled as a path glob (`*` stays within one directory), or why not.
fn member_glob(glob: &str) -> Result<Glob, String> {
    let trimmed = glob.trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() || normalize(trimmed).is_none() {
        return Err("member directories are inside the workspace root".to_owned());
    }
    GlobBuilder::new(trimmed)
        .literal_separator(true)
        .build()
        .map_err(|err| err.kind().to_string())
}

/// The paths under `root` that `glob` matches (directories, and any files the glob also
/// matches), relative and `/`-separated, sorted.
fn expand(root: &Path, glob: &str) -> Vec<String> {
    let glob = glob.trim_start_matches("./").trim_end_matches('/');
    let pattern = format!("{}/{glob}", glob::Pattern::escape(&root.to_string_lossy()));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let Ok(paths) = glob::glob_with(&pattern, options) else {
        return Vec::new();
    };
    // Not filtered to directories here: the caller looks for a file inside each (one
    // `stat` instead of two on a workspace of hundreds of members).
    let mut dirs: Vec<String> = paths
        .flatten()
        .filter_map(|path| {
            let relative = path.strip_prefix(root).ok()?;
            let text = relative.to_str()?.replace('\\', "/");
            let text = normalize(&text)?;
            // Never the root itself, nor anything under `.git`, `node_modules` or `.venv`.
            let hidden = text
                .split('/')
                .any(|c| matches!(c, "node_modules" | ".git" | ".venv" | ".clab"));
            (!text.is_empty() && !hidden).then_some(text)
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// `dir/file`, or `file` when `dir` is empty.
pub(crate) fn path_join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        [dir, "/", file].concat()
    }
}

/// `path` with `.` and `a/..` folded away, `/`-separated; `None` when it is absolute or
/// climbs above its start. Empty for the start itself.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clab_model::source::SourceFile;

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn parse(path: &Path, name: String) -> Result<TaskFile, syntax::Diagnostics> {
        let text = std::fs::read_to_string(path).unwrap();
        syntax::parse_task_file(SourceFile::new(path, name, text))
    }

    fn load(dir: &Path) -> Result<Workspace, Diagnostics> {
        let root = parse(&dir.join("tasks.kdl"), "tasks.kdl".into()).unwrap();
        Workspace::load(dir, &root, &parse)
    }

    fn deps(ws: &Workspace, name: &str) -> Vec<String> {
        let member = &ws.members[ws.find(name).unwrap().index()];
        member
            .deps
            .iter()
            .map(|d| ws.members[d.member.index()].name.clone())
            .collect()
    }

    fn messages(dir: &Path) -> Vec<String> {
        load(dir)
            .err()
            .map(|d| d.errors.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn normalizes_paths_lexically() {
        assert_eq!(normalize("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(
            normalize("packages/core/../../uv.lock").as_deref(),
            Some("uv.lock")
        );
        assert_eq!(normalize("a/../.."), None);
        assert_eq!(normalize("/etc"), None);
        assert_eq!(normalize(".").as_deref(), Some(""));
    }

    #[test]
    fn members_come_from_globs_with_names_and_uv_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "tasks.kdl",
            "members \"packages/*\" \"apps/*\" \"!apps/old\"\n",
        );
        write(
            d,
            "pyproject.toml",
            "[tool.uv.workspace]\nmembers = [\"packages/*\", \"apps/*\"]\n",
        );
        write(
            d,
            "packages/core/tasks.kdl",
            "task \"build\" { run \"true\" }\n",
        );
        write(
            d,
            "packages/core/pyproject.toml",
            "[project]\nname = \"demo-core\"\n",
        );
        write(d, "packages/lib/tasks.kdl", "project \"library\"\n");
        write(
            d,
            "packages/lib/pyproject.toml",
            "[project]\nname = \"demo_lib\"\ndependencies = [\"demo-core\"]\n\
             [tool.uv.sources]\ndemo-core = { workspace = true }\n",
        );
        write(d, "apps/cli/tasks.kdl", "uses \"core\"\n");
        write(
            d,
            "apps/cli/pyproject.toml",
            "[project]\nname = \"demo-cli\"\ndependencies = [\"demo-lib\", \"demo-tool\"]\n\
             [tool.uv.sources]\ndemo-lib = { workspace = true }\ndemo-tool = { workspace = true }\n",
        );
        // A uv package without tasks.kdl, and an excluded member.
        write(
            d,
            "apps/tool/pyproject.toml",
            "[project]\nname = \"demo-tool\"\n",
        );
        write(d, "apps/old/tasks.kdl", "");
        let ws = load(d).unwrap();
        let names: Vec<(&str, &str, bool)> = ws
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.dir.as_str(), m.file.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("cli", "apps/cli", true),
                ("tool", "apps/tool", false),
                ("core", "packages/core", true),
                ("library", "packages/lib", true),
            ]
        );
        assert_eq!(deps(&ws, "library"), ["core"]);
        assert_eq!(deps(&ws, "cli"), ["tool", "core", "library"]);
        assert_eq!(ws.member_of("packages/lib/src/x.py"), ws.find("library"));
        assert_eq!(ws.member_of("packages/library"), None);
        assert_eq!(ws.files, ["pyproject.toml"]);
    }

    #[test]
    fn cargo_and_npm_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "tasks.kdl", "members \"crates/*\" \"web/*\"\n");
        write(d, "crates/a/tasks.kdl", "");
        write(d, "crates/a/Cargo.toml", "[package]\nname = \"a\"\n");
        write(d, "crates/b/tasks.kdl", "");
        write(
            d,
            "crates/b/Cargo.toml",
            "[package]\nname = \"b\"\n[dev-dependencies]\na = { path = \"../a\" }\n",
        );
        write(d, "web/ui/tasks.kdl", "");
        write(d, "web/ui/package.json", r#"{"name": "@x/ui"}"#);
        write(d, "web/app/tasks.kdl", "");
        write(
            d,
            "web/app/package.json",
            r#"{"name": "@x/app", "dependencies": {"@x/ui": "workspace:^", "react": "18"}}"#,
        );
        let ws = load(d).unwrap();
        assert_eq!(deps(&ws, "b"), ["a"]);
        assert_eq!(deps(&ws, "app"), ["ui"]);
        assert!(deps(&ws, "a").is_empty());
        let origin = &ws.members[ws.find("app").unwrap().index()].deps[0].origin;
        assert_eq!(origin, "web/app/package.json");
    }

    #[test]
    fn reports_cycles_unknown_uses_and_root_only_settings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "tasks.kdl", "members \"p/*\"\n");
        write(d, "p/a/tasks.kdl", "uses \"b\"\n");
        write(d, "p/b/tasks.kdl", "uses \"a\" \"aa\"\nrules \"r\"\n");
        write(d, "p/c/tasks.kdl", "members \"x\"\n");
        assert_eq!(
            messages(d),
            [
                "`rules` belongs in the root tasks.kdl, not in member `b`",
                "member `c` lists members of its own",
                "member `b` uses unknown member `aa`",
                "member dependency cycle: a → b → a",
            ]
        );
    }

    #[test]
    fn reports_duplicate_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "tasks.kdl", "members \"p/*\" \"q/*\" \"../x\"\n");
        write(d, "p/a/tasks.kdl", "");
        write(d, "q/a/tasks.kdl", "");
        write(d, "q/rule/tasks.kdl", "");
        write(d, "q/b/tasks.kdl", "project \"b:c\"\n");
        assert_eq!(
            messages(d),
            [
                "invalid member glob `../x`",
                "`b:c` cannot name a member",
                "`rule` cannot name a member",
                "two members are named `a`: `p/a` and `q/a`",
            ]
        );
    }
}
