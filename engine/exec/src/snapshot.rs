//! The no-op fast path: when nothing changed since a run in which every node was already
//! cached, say so after `stat`-ing what that run depended on — without walking the tree,
//! loading the stat cache or computing a key.
//!
//! After a run where every node was a cache hit and nothing had to be restored, the run
//! writes a *snapshot* (`<cache dir>/noop-<id>.txt`, one per target set): a stamp over
//! everything a key is made of apart from files — this build of clab, each node's name,
//! kind, commands, environment, working directory, patterns, dependencies and rule
//! definition, the hashed `env-inputs` — and the `stat` of every file and directory a key
//! depends on: every input, every output (mode included), every directory the input walk
//! entered (a file added or removed changes it), the glob bases that did not exist, and the
//! ignore files (`.gitignore`, `.ignore`, `.git/info/exclude`) in the walked directories and
//! in every parent of a glob base, present or absent; plus every blob the results need.
//!
//! The next run with the same stamp checks those stats in parallel. When every one matches,
//! every key is the one the snapshot's run computed — the same contents (by the stat-cache
//! rule), the same file sets, the same dependency outputs — and its results were hits then,
//! so the run reports each node cached (replaying its log) without doing more. Anything else
//! — a single differing stat, a blob gone, a stamp that does not match, a snapshot older than
//! ten minutes (so `last_used` times stay fresh for pruning) — means the normal run, which
//! writes a new snapshot if it qualifies.
//!
//! The racy-git rule applies: a snapshot is written only when every recorded mtime and
//! ctime lies a margin before the run started, so a file changed while or just before the
//! run is never trusted by its stat. Runs with LLM steps (settings outside the project) or
//! test and coverage reports (re-read on every hit) never use it. `clab cache clean` and
//! `prune` delete the snapshots.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use clab_graph::{Graph, NodeId, NodeKind};
use clab_plan::{Planner, inputs::IGNORE_FILES};
use clab_store::{
    Digest, Store,
    stat_cache::{FileStat, RACY_MARGIN_NS},
};
use rayon::prelude::*;

use super::runner::Hit;

/// Bumped when the file's layout or meaning changes.
const FORMAT: u32 = 1;

/// How long a snapshot may be trusted (so that hits still refresh `last_used` for pruning).
const MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// A node as a snapshot replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The node's display id.
    pub name: String,
    /// How long its recorded run took.
    pub duration_ms: u64,
    /// Its log blob, if it printed anything.
    pub log: Option<Digest>,
}

/// What a valid snapshot says: every node is cached.
#[derive(Debug)]
pub struct Snapshot {
    /// The nodes in run order, aggregates left out.
    pub nodes: Vec<Replay>,
}

/// Whether the run may use (and write) snapshots at all.
pub fn applies(graph: &Graph, nodes: &[NodeId]) -> bool {
    nodes.iter().all(|&id| {
        let node = graph.node(id);
        !matches!(node.kind, NodeKind::Llm(_))
            && node.junit.is_none()
            && node.coverage.is_none()
            && (node.is_cacheable() || matches!(node.kind, NodeKind::Aggregate))
    })
}

/// The stamp of a run of `nodes` of `graph` for `targets`: everything a key holds besides
/// file contents.
pub fn stamp(graph: &Graph, targets: &[String], nodes: &[NodeId], env_inputs: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut put = |part: &str| {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    };
    put(&format!("clab-noop {FORMAT} {}", env!("CARGO_PKG_VERSION")));
    put(&clab_syntax::parse_cache::binary_stamp());
    put(&graph.root().display().to_string());
    put(env_inputs);
    for target in targets {
        put(target);
    }
    for &id in nodes {
        let node = graph.node(id);
        let commands: Vec<&str> = match &node.kind {
            NodeKind::Command { run } => run.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        let rule = match &node.kind {
            NodeKind::Rule(rule) => rule.definition_hash().to_hex().to_string(),
            _ => String::new(),
        };
        let deps: Vec<String> = graph
            .dependencies(id)
            .into_iter()
            .map(|dep| graph.node(dep).name.clone())
            .collect();
        let encoded = serde_json::to_string(&(
            &node.name,
            node.kind.label(),
            commands,
            &node.cwd,
            &node.env,
            &node.inputs,
            &node.outputs,
            node.cache,
            deps,
            rule,
        ))
        .unwrap_or_default();
        put(&encoded);
    }
    hasher.finalize().to_hex().to_string()
}

/// The snapshot file of a run of `targets` in `cache_dir` (`Store::forget_snapshots`
/// deletes them all).
pub fn path(cache_dir: &Path, targets: &[String]) -> PathBuf {
    let id = blake3::hash(targets.join("\0").as_bytes()).to_hex();
    cache_dir.join(format!("{}{}.txt", clab_store::SNAPSHOT_PREFIX, &id[..16]))
}

/// The hashed values of the graph's `env-inputs` (as keys hold them), as one string for the
/// stamp.
pub fn env_inputs(graph: &Graph) -> String {
    serde_json::to_string(&clab_plan::env_input_hashes(graph)).unwrap_or_default()
}

/// One recorded `stat`: `F` follows symlinks (inputs, directories, ignore files), `L` does
/// not (outputs, which must be regular files).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Stat {
        follow: bool,
        path: PathBuf,
        stat: FileStat,
    },
    Absent(PathBuf),
    Exists(PathBuf),
}

impl Check {
    fn holds(&self) -> bool {
        match self {
            Check::Stat { follow, path, stat } => {
                let meta = if *follow {
                    fs::metadata(path)
                } else {
                    fs::symlink_metadata(path)
                };
                meta.is_ok_and(|meta| FileStat::from_metadata(&meta) == *stat)
            }
            Check::Absent(path) => fs::symlink_metadata(path).is_err(),
            Check::Exists(path) => fs::symlink_metadata(path).is_ok(),
        }
    }
}

/// Read the snapshot at `file` and check it against the world. `Some` only when everything
/// still holds; `nodes` are the run's nodes.
pub fn load(file: &Path, stamp: &str, graph: &Graph, nodes: &[NodeId]) -> Option<Snapshot> {
    let text = fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    if lines.next()? != stamp {
        return None;
    }
    let written_ms: i64 = lines.next()?.strip_prefix("written ")?.parse().ok()?;
    if now_ms() - written_ms > MAX_AGE_MS || written_ms > now_ms() {
        return None;
    }
    let mut replays = Vec::new();
    let mut checks = Vec::new();
    for line in lines {
        let (kind, rest) = line.split_once(' ')?;
        match kind {
            "node" => {
                let mut fields = rest.split('\t');
                let name = fields.next()?.to_owned();
                let duration_ms = fields.next()?.parse().ok()?;
                let log = match fields.next()? {
                    "-" => None,
                    hex => Some(Digest::from_hex(hex)?),
                };
                replays.push(Replay {
                    name,
                    duration_ms,
                    log,
                });
            }
            "F" | "L" => {
                let mut fields = rest.split('\t');
                let path = PathBuf::from(fields.next()?);
                let mut number = || fields.next()?.parse::<i64>().ok();
                let stat = FileStat {
                    size: number()? as u64,
                    mtime_ns: number()?,
                    ctime_ns: number()?,
                    inode: number()? as u64,
                    mode: number()? as u32,
                };
                checks.push(Check::Stat {
                    follow: kind == "F",
                    path,
                    stat,
                });
            }
            "absent" => checks.push(Check::Absent(PathBuf::from(rest))),
            "exists" => checks.push(Check::Exists(PathBuf::from(rest))),
            _ => return None,
        }
    }
    let expected: Vec<&str> = nodes
        .iter()
        .map(|&id| graph.node(id))
        .filter(|node| !matches!(node.kind, NodeKind::Aggregate))
        .map(|node| node.name.as_str())
        .collect();
    let recorded: Vec<&str> = replays.iter().map(|r| r.name.as_str()).collect();
    if expected != recorded || !checks.par_iter().all(Check::holds) {
        return None;
    }
    Some(Snapshot { nodes: replays })
}

/// Write a snapshot of a run that started at `started_ns` and was all hits, or remove a stale
/// one when the run does not qualify (something was restored, or is too recent to trust).
pub fn save(file: &Path, stamp: &str, run: &Finished<'_>) {
    match snapshot_text(stamp, run) {
        Some(text) => {
            let _ = clab_model::atomic_write::write_atomic_unsynced(file, text.as_bytes());
        }
        None => {
            let _ = fs::remove_file(file);
        }
    }
}

/// What a finished run leaves for its snapshot.
pub struct Finished<'a> {
    /// The run's graph.
    pub graph: &'a Graph,
    /// The nodes it ran (the closure of its targets).
    pub nodes: &'a [NodeId],
    /// Every cache hit of the run.
    pub hits: &'a [Hit],
    /// The planner that found and hashed its inputs.
    pub planner: &'a Planner,
    /// The store the hits came from.
    pub store: &'a Store,
    /// When the run started (ns since the epoch), for the racy-stat rule.
    pub started_ns: i64,
}

fn snapshot_text(stamp: &str, run: &Finished<'_>) -> Option<String> {
    let &Finished {
        graph,
        nodes,
        hits,
        planner,
        store,
        started_ns,
    } = run;
    let mut out = String::new();
    out.push_str(stamp);
    out.push('\n');
    out.push_str(&format!("written {}\n", now_ms()));
    let trusted_before = started_ns - RACY_MARGIN_NS;
    let root = std::path::absolute(graph.root()).ok()?;
    let mut checks: Vec<(char, PathBuf)> = Vec::new();
    for &id in nodes {
        let node = graph.node(id);
        if matches!(node.kind, NodeKind::Aggregate) {
            continue;
        }
        let hit = hits.iter().find(|hit| hit.id == id)?;
        if hit.restored {
            return None;
        }
        // An empty log is never replayed (nor its blob needed).
        let log = hit.log.filter(|log| *log != Digest::empty());
        let log_field = log.map_or_else(|| "-".to_owned(), |log| log.to_hex().to_string());
        out.push_str(&format!(
            "node {}\t{}\t{log_field}\n",
            clean(&node.name)?,
            hit.duration_ms
        ));
        for output in &hit.outputs {
            checks.push(('L', root.join(&output.path)));
            checks.push(('e', store.cas().path_of(&output.hash)));
        }
        if let Some(log) = log {
            checks.push(('e', store.cas().path_of(&log)));
        }
    }
    let index = planner.index();
    checks.extend(index.paths().iter().map(|path| ('F', path.clone())));
    let area = index.area();
    for dir in &area.dirs {
        checks.push(('F', dir.clone()));
        for name in IGNORE_FILES {
            let file = dir.join(name);
            if file.exists() {
                checks.push(('F', file));
            }
        }
        if dir.join(".git").exists() {
            checks.push(('?', dir.join(".git/info")));
            checks.push(('?', dir.join(".git/info/exclude")));
        }
    }
    for missing in &area.missing {
        checks.push(('?', missing.clone()));
    }
    for base in &area.bases {
        for parent in base.ancestors().skip(1) {
            for name in IGNORE_FILES.into_iter().chain([".git/info/exclude"]) {
                checks.push(('?', parent.join(name)));
            }
        }
    }
    checks.sort();
    checks.dedup();
    let lines: Vec<Option<String>> = checks
        .par_iter()
        .map(|(kind, path)| check_line(*kind, path, trusted_before))
        .collect();
    for line in lines {
        out.push_str(&line?);
        out.push('\n');
    }
    Some(out)
}

/// The line recording `path` now; `None` when it cannot be trusted or written.
fn check_line(kind: char, path: &Path, trusted_before: i64) -> Option<String> {
    let text = clean(path.to_str()?)?;
    let meta = match kind {
        'L' => fs::symlink_metadata(path).ok()?,
        'e' => {
            return fs::symlink_metadata(path)
                .is_ok()
                .then(|| format!("exists {text}"));
        }
        'F' => fs::metadata(path).ok()?,
        _ => match fs::metadata(path) {
            Ok(meta) => meta,
            Err(_) => return Some(format!("absent {text}")),
        },
    };
    let stat = FileStat::from_metadata(&meta);
    if stat.mtime_ns >= trusted_before || stat.ctime_ns >= trusted_before {
        return None;
    }
    let tag = if kind == 'L' { 'L' } else { 'F' };
    Some(format!(
        "{tag} {text}\t{}\t{}\t{}\t{}\t{}",
        stat.size,
        stat.mtime_ns,
        stat.ctime_ns,
        meta.ino(),
        stat.mode
    ))
}

/// `text` if it can stand in one field of a line.
fn clean(text: &str) -> Option<&str> {
    (!text.contains(['\t', '\n', '\r'])).then_some(text)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
