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
//! in every parent of a glob base, present or absent; plus the log blobs it replays. (An
//! output's copy in the CAS is not checked: the no-op vouches for the output in the tree,
//! which it stats, and a later restore that finds the copy gone reruns the task. Checking
//! them was a third of a 2,000-task workspace's stats.)
//!
//! The checks are kept per node (format 2, issue 20): each node line lists the checks its
//! key depends on — its inputs, the directories walked below its glob bases and their ignore
//! files, ignore files in the bases' parents, its missing bases, its outputs
//! and its log's blob — and the digest of its outputs. The next run with the same stamp
//! checks all stats in parallel. A node is *known* when every one of its checks holds, its
//! line is younger than ten minutes (so `last_used` times stay fresh for pruning) and every
//! dependency is known: its key is the one the snapshot's run computed — the same contents
//! (by the stat-cache rule), the same file sets, the same dependency outputs — and its result
//! was a hit then. When every node is known the run reports each cached (replaying its log)
//! without doing more ([`Loaded::all_known`]); otherwise only the other nodes are walked,
//! hashed and keyed, and the known ones are settled as hits with the digest recorded for
//! them (`Runner::with_known`). A stamp that does not match means the normal run.
//!
//! The file's name depends only on the targets, so when they are on the command line the
//! cli starts [`Prefetch`] before it loads the graph: the file is read and every check made
//! on a thread of its own, and the run compares the stamp and settles the nodes once the
//! graph is there. The checks are the same; they are made a few milliseconds earlier.
//!
//! After every run the snapshot is written again: known nodes keep their lines, nodes that
//! were pure hits get fresh ones, and every other node (it ran, was restored, failed, or a
//! stat could not be trusted) is written `dirty`. The racy-git rule applies per check: a
//! stat whose mtime or ctime is not a margin older than the run's start is never recorded,
//! and its node is dirty, so a file changed while or just before the run is never trusted by
//! its stat. Runs with LLM steps (settings outside the project) or test and coverage reports
//! (re-read on every hit) never use it. `clab cache clean` and `prune` delete the snapshots.

use std::{
    collections::HashMap,
    fs,
    ops::Range,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use clab_graph::{Graph, NodeId, NodeKind};
use clab_plan::{
    Planner,
    inputs::{IGNORE_FILES, glob_base},
    outputs::digest_entries,
};
use clab_store::{
    Digest, Store,
    stat_cache::{FileStat, RACY_MARGIN_NS},
};
use rayon::prelude::*;

use super::runner::Hit;

/// Bumped when the file's layout or meaning changes.
const FORMAT: u32 = 2;

/// How long a snapshot may be trusted (so that hits still refresh `last_used` for pruning).
const MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// From this many checks on, a snapshot's stats are made on every core; fewer take a
/// couple of milliseconds on the reading thread alone.
const PARALLEL_CHECKS: usize = 4096;

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

/// A node the snapshot vouches for: a cache hit whose key nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// How to report it.
    pub replay: Replay,
    /// The digest of its outputs (what its dependents' keys hold).
    pub digest: Digest,
    /// When its checks were first recorded (ms since the epoch).
    since_ms: i64,
    /// Its checks, as indexes into [`Loaded`]'s lines.
    checks: Vec<usize>,
    /// Where its node line lies in the loaded text (carried over verbatim).
    line: std::ops::Range<usize>,
}

/// A snapshot read and checked against the world.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The known nodes.
    pub known: HashMap<NodeId, Known>,
    /// The cacheable nodes that are not known (they are walked, hashed and keyed).
    pub unknown: Vec<NodeId>,
    /// The file's text: the known nodes' check lines are carried into the next one.
    text: String,
    /// Where each check line lies in `text`.
    lines: Vec<std::ops::Range<usize>>,
    /// Where the check lines lie in `text`, from the first's start to the last's newline.
    checks: std::ops::Range<usize>,
}

impl Loaded {
    /// Check line `i`.
    fn line(&self, i: usize) -> &str {
        &self.text[self.lines[i].clone()]
    }

    /// The replay of the whole run, when every node is known.
    pub fn all_known(&self, graph: &Graph, nodes: &[NodeId]) -> Option<Snapshot> {
        if !self.unknown.is_empty() {
            return None;
        }
        let replays = nodes
            .iter()
            .filter(|&&id| !matches!(graph.node(id).kind, NodeKind::Aggregate))
            .map(|id| self.known.get(id).map(|known| known.replay.clone()))
            .collect::<Option<Vec<_>>>()?;
        Some(Snapshot { nodes: replays })
    }
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
    // Gathered, then hashed in one call: blake3 costs ~100 instructions per `update`.
    let mut bytes: Vec<u8> = Vec::with_capacity(256 * nodes.len());
    let mut put = |part: &str| {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part.as_bytes());
    };
    put(&format!("clab-noop {FORMAT} {}", env!("CARGO_PKG_VERSION")));
    put(&clab_syntax::parse_cache::binary_stamp());
    put(&graph.root().display().to_string());
    put(env_inputs);
    put_list(&mut put, targets.iter().map(String::as_str));
    // Every part is length-prefixed and every list counted, so no two nodes hash alike.
    for &id in nodes {
        let node = graph.node(id);
        put(&node.name);
        put(node.kind.label());
        let commands: &[String] = match &node.kind {
            NodeKind::Command { run } => run,
            _ => &[],
        };
        put_list(&mut put, commands.iter().map(String::as_str));
        put(&node.cwd);
        put_list(
            &mut put,
            node.env.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        );
        put_list(&mut put, node.inputs.iter().map(String::as_str));
        put_list(&mut put, node.outputs.iter().map(String::as_str));
        put(if node.cache { "cached" } else { "uncached" });
        let deps = graph.dependencies(id);
        put_list(
            &mut put,
            deps.iter().map(|&dep| graph.node(dep).name.as_str()),
        );
        match &node.kind {
            NodeKind::Rule(rule) => put(rule.definition_hash().to_hex().as_str()),
            _ => put(""),
        }
    }
    blake3::hash(&bytes).to_hex().to_string()
}

/// A list as its length, then each item.
fn put_list<'a>(put: &mut impl FnMut(&str), items: impl Iterator<Item = &'a str>) {
    let items: Vec<&str> = items.collect();
    put(&items.len().to_string());
    for item in items {
        put(item);
    }
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
enum Check<'a> {
    Stat {
        follow: bool,
        path: &'a Path,
        stat: FileStat,
    },
    Absent(&'a Path),
    Exists(&'a Path),
}

impl<'a> Check<'a> {
    /// The check a line records; `None` for a line that is not one.
    fn parse(line: &'a str) -> Option<Check<'a>> {
        let (kind, rest) = line.split_once(' ')?;
        match kind {
            "F" | "L" => {
                let mut fields = rest.split('\t');
                let path = Path::new(fields.next()?);
                let mut number = || fields.next()?.parse::<i64>().ok();
                let stat = FileStat {
                    size: number()? as u64,
                    mtime_ns: number()?,
                    ctime_ns: number()?,
                    inode: number()? as u64,
                    mode: number()? as u32,
                };
                Some(Check::Stat {
                    follow: kind == "F",
                    path,
                    stat,
                })
            }
            "absent" => Some(Check::Absent(Path::new(rest))),
            "exists" => Some(Check::Exists(Path::new(rest))),
            _ => None,
        }
    }

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

/// A node line as read: known then, or dirty.
struct NodeLine {
    known: Option<Known>,
}

/// Parse a `node` line's fields (after `node `).
fn parse_node(rest: &str, lines: usize) -> Option<(String, Known)> {
    let mut fields = rest.split('\t');
    let name = fields.next()?.to_owned();
    let duration_ms = fields.next()?.parse().ok()?;
    let log = match fields.next()? {
        "-" => None,
        hex => Some(Digest::from_hex(hex)?),
    };
    let digest = Digest::from_hex(fields.next()?)?;
    let since_ms = fields.next()?.parse().ok()?;
    let checks = match fields.next()? {
        "" => Vec::new(),
        list => list
            .split(',')
            .map(|n| n.parse::<usize>().ok().filter(|&n| n < lines))
            .collect::<Option<Vec<_>>>()?,
    };
    let replay = Replay {
        name: name.clone(),
        duration_ms,
        log,
    };
    Some((
        name,
        Known {
            replay,
            digest,
            since_ms,
            checks,
            line: 0..0,
        },
    ))
}

/// Read the snapshot at `file` and check it against the world: which of `nodes` (the run's,
/// in dependency order) are known. `None` when there is no usable snapshot.
pub fn load(file: &Path, stamp: &str, graph: &Graph, nodes: &[NodeId]) -> Option<Loaded> {
    settle(read(file, Some(stamp))?, stamp, graph, nodes)
}

/// A snapshot whose file was read and whose checks were made before the graph was there:
/// all of [`load`] but the stamp and the nodes, started by [`Prefetch::start`] while the
/// command loads the graph (the two took turns; on two cores they overlap).
#[derive(Debug)]
pub struct Prefetch {
    file: PathBuf,
    reading: std::sync::Mutex<Option<std::thread::JoinHandle<Option<Read>>>>,
}

impl Prefetch {
    /// Start reading and checking the snapshot at `file` on a thread of its own.
    pub fn start(file: PathBuf) -> Prefetch {
        let path = file.clone();
        let reading = std::thread::Builder::new()
            .name("clab-snapshot".into())
            .spawn(move || read(&path, None))
            .ok();
        Prefetch {
            file,
            reading: std::sync::Mutex::new(reading),
        }
    }

    /// [`load`] through the prefetched read when it was of `file` (and not taken before).
    pub fn load(
        &self,
        file: &Path,
        stamp: &str,
        graph: &Graph,
        nodes: &[NodeId],
    ) -> Option<Loaded> {
        let reading = match self.reading.lock() {
            Ok(mut reading) if self.file == file => reading.take(),
            _ => None,
        };
        match reading {
            Some(reading) => settle(reading.join().ok()??, stamp, graph, nodes),
            None => load(file, stamp, graph, nodes),
        }
    }
}

/// A snapshot file read, its checks made: what [`settle`] needs besides the graph.
struct Read {
    text: String,
    /// Where the stamp (the first line) lies in `text`.
    stamp: std::ops::Range<usize>,
    written_ms: i64,
    check_lines: Vec<std::ops::Range<usize>>,
    holds: Vec<bool>,
    entries: foldhash::HashMap<String, NodeLine>,
}

/// Read the snapshot at `file`, parse it and make its checks: the check lines are parsed
/// and checked in parallel, beside the node lines' parse (a serial parse first held the
/// stats back by ~3 ms on the 2,000-task workspace). With `stamp`, a file written for
/// another stamp is left at its first line.
fn read(file: &Path, stamp: Option<&str>) -> Option<Read> {
    let text = fs::read_to_string(file).ok()?;
    clab_model::phase::mark("snapshot:read");
    let mut ranges = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        ranges.push(at..at + body.len());
        at += line.len();
    }
    let mut ranges = ranges.into_iter();
    let stamp_at = ranges.next()?;
    if stamp.is_some_and(|stamp| text[stamp_at.clone()] != *stamp) {
        return None;
    }
    let written_ms: i64 = text[ranges.next()?]
        .strip_prefix("written ")?
        .parse()
        .ok()?;
    let ranges: Vec<_> = ranges.collect();
    // Checks come first, then the node lines.
    let first_node = ranges
        .iter()
        .position(|r| text[r.clone()].starts_with("node ") || text[r.clone()].starts_with("dirty "))
        .unwrap_or(ranges.len());
    let (check_lines, node_lines) = ranges.split_at(first_node);
    let parse_nodes = || {
        let mut entries = foldhash::HashMap::<String, NodeLine>::default();
        for range in node_lines {
            let line = &text[range.clone()];
            if let Some(rest) = line.strip_prefix("node ") {
                let (name, mut known) = parse_node(rest, check_lines.len())?;
                known.line = range.clone();
                entries.insert(name, NodeLine { known: Some(known) });
            } else if let Some(name) = line.strip_prefix("dirty ") {
                entries.insert(name.to_owned(), NodeLine { known: None });
            } else {
                // A check after the nodes: a file written otherwise is not one of ours.
                return None;
            }
        }
        Some(entries)
    };
    let holds_at = |r: &Range<usize>| Check::parse(&text[r.clone()]).map(|check| check.holds());
    let (holds, entries) = if check_lines.len() < PARALLEL_CHECKS {
        // One thread: rayon's pool would start two more, whose spinning while idle took the
        // cores from the thread loading the graph meanwhile (a 100-task no-op: the checks
        // done 4.4 ms after the file was read, the graph loaded in 2.6 ms).
        (check_lines.iter().map(holds_at).collect(), parse_nodes())
    } else {
        let check = || {
            check_lines
                .par_iter()
                .map(holds_at)
                .collect::<Option<Vec<bool>>>()
        };
        rayon::join(check, parse_nodes)
    };
    let (holds, entries) = (holds?, entries?);
    clab_model::phase::mark("snapshot:checked");
    Some(Read {
        check_lines: check_lines.to_vec(),
        text,
        stamp: stamp_at,
        written_ms,
        holds,
        entries,
    })
}

/// Which of `nodes` a read snapshot vouches for, if it was written for `stamp`.
fn settle(read: Read, stamp: &str, graph: &Graph, nodes: &[NodeId]) -> Option<Loaded> {
    let Read {
        text,
        stamp: stamp_at,
        written_ms,
        check_lines,
        holds,
        mut entries,
    } = read;
    let now = now_ms();
    if text[stamp_at] != *stamp || written_ms > now {
        return None;
    }
    let check_section = match (check_lines.first(), check_lines.last()) {
        (Some(first), Some(last)) => first.start..(last.end + 1).min(text.len()),
        _ => 0..0,
    };
    let mut loaded = Loaded {
        lines: check_lines,
        checks: check_section,
        text,
        ..Loaded::default()
    };
    // Known so far, by node index: nodes come in dependency order.
    let mut clean = vec![false; graph.len()];
    for &id in nodes {
        let node = graph.node(id);
        let deps_clean = graph.dependencies(id).iter().all(|dep| clean[dep.index()]);
        if matches!(node.kind, NodeKind::Aggregate) {
            clean[id.index()] = deps_clean;
            continue;
        }
        let known = entries
            .get_mut(&node.name)
            .and_then(|line| line.known.take())
            .filter(|known| {
                deps_clean
                    && now - known.since_ms <= MAX_AGE_MS
                    && known.since_ms <= now
                    && known.checks.iter().all(|&c| holds[c])
            });
        match known {
            Some(known) => {
                clean[id.index()] = true;
                loaded.known.insert(id, known);
            }
            None => loaded.unknown.push(id),
        }
    }
    Some(loaded)
}

/// Write the snapshot of a run that started at `started_ns`; remove the file when nothing
/// can be written.
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
    /// Every cache hit of the run (known nodes are not among them).
    pub hits: &'a [Hit],
    /// The nodes the loaded snapshot vouched for, and its lines.
    pub loaded: Option<&'a Loaded>,
    /// The planner that found and hashed the inputs of the other nodes.
    pub planner: &'a Planner,
    /// The store the hits came from.
    pub store: &'a Store,
    /// When the run started (ns since the epoch), for the racy-stat rule.
    pub started_ns: i64,
}

/// A path to check, with its kind: `F` (stat, following symlinks), `L` (stat, not
/// following), `e` (exists), `?` (stat or absent).
type PathCheck = (char, PathBuf);

/// The checks a snapshot holds, deduplicated: each line once, numbered in order.
#[derive(Default)]
struct Lines<'a> {
    lines: Vec<&'a str>,
    numbers: HashMap<&'a str, usize, foldhash::fast::RandomState>,
    /// The number given to each line of the loaded snapshot carried over.
    carried: Vec<Option<usize>>,
}

impl<'a> Lines<'a> {
    /// The number of `line`, added if new.
    fn number(&mut self, line: &'a str) -> usize {
        if let Some(&n) = self.numbers.get(line) {
            return n;
        }
        let n = self.lines.len();
        self.lines.push(line);
        self.numbers.insert(line, n);
        n
    }

    /// The number of line `i` of the loaded snapshot (each looked up once).
    fn carry(&mut self, loaded: &'a Loaded, i: usize) -> usize {
        if self.carried.len() < loaded.lines.len() {
            self.carried.resize(loaded.lines.len(), None);
        }
        if let Some(n) = self.carried[i] {
            return n;
        }
        let n = self.number(loaded.line(i));
        self.carried[i] = Some(n);
        n
    }
}

/// The paths (with their kind) whose stats the key of a hit `node` depends on.
fn node_checks(
    graph: &Graph,
    id: NodeId,
    hit: &Hit,
    planner: &Planner,
    store: &Store,
    root: &Path,
) -> Option<Vec<(char, PathBuf)>> {
    let node = graph.node(id);
    let mut checks: Vec<(char, PathBuf)> = Vec::new();
    // The outputs in the tree are what a no-op vouches for; their copies in the CAS matter
    // only to a restore, which checks them itself (`Store::lookup`). The log's copy is
    // replayed, so it must be there.
    for output in &hit.outputs {
        checks.push(('L', root.join(&output.path)));
    }
    if let Some(log) = hit.log.filter(|log| *log != Digest::empty()) {
        checks.push(('e', store.cas().path_of(&log)));
    }
    if node.inputs.is_empty() {
        return Some(checks);
    }
    let index = planner.index();
    let selected = index.select(&node.inputs).ok()?;
    checks.extend(selected.iter().map(|file| ('F', root.join(&file.path))));
    let area = index.area();
    let bases: Vec<PathBuf> = node
        .inputs
        .iter()
        .filter(|pattern| !pattern.starts_with('!'))
        .map(|pattern| {
            // As the walk joins them (`WalkArea::bases`).
            let base = glob_base(pattern);
            if base.is_empty() {
                graph.root().to_path_buf()
            } else {
                graph.root().join(base)
            }
        })
        .collect();
    for base in &bases {
        // The walked directories below the base: `dirs` is sorted.
        let first = area.dirs.partition_point(|dir| dir < base);
        for dir in area.dirs[first..]
            .iter()
            .take_while(|dir| dir.starts_with(base))
        {
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
        if area.missing.contains(base) {
            checks.push(('?', base.clone()));
        }
        for parent in base.ancestors().skip(1) {
            for name in IGNORE_FILES.into_iter().chain([".git/info/exclude"]) {
                checks.push(('?', parent.join(name)));
            }
        }
    }
    checks.sort();
    checks.dedup();
    Some(checks)
}

fn snapshot_text(stamp: &str, run: &Finished<'_>) -> Option<String> {
    let &Finished {
        graph,
        nodes,
        hits,
        loaded,
        planner,
        store,
        started_ns,
    } = run;
    let trusted_before = started_ns - RACY_MARGIN_NS;
    let root = std::path::absolute(graph.root()).ok()?;
    let now = now_ms();
    clab_model::phase::mark("save:start");
    let hits: HashMap<NodeId, &Hit> = hits.iter().map(|hit| (hit.id, hit)).collect();
    // The fresh checks of every pure hit, stat'ed in parallel.
    let fresh: Vec<(NodeId, Option<Vec<PathCheck>>)> = nodes
        .iter()
        .filter_map(|&id| {
            let hit = hits.get(&id).filter(|hit| !hit.restored)?;
            Some((id, node_checks(graph, id, hit, planner, store, &root)))
        })
        .collect();
    let mut paths: Vec<(char, PathBuf)> = fresh
        .iter()
        .flat_map(|(_, checks)| checks.iter().flatten().cloned())
        .collect();
    paths.sort();
    paths.dedup();
    let stated: HashMap<(char, PathBuf), Option<String>> = paths
        .into_par_iter()
        .map(|(kind, path)| {
            let line = check_line(kind, &path, trusted_before);
            ((kind, path), line)
        })
        .collect();
    let fresh: HashMap<NodeId, Option<Vec<String>>> = fresh
        .into_iter()
        .map(|(id, checks)| {
            let lines = checks.and_then(|checks| {
                checks
                    .into_iter()
                    .map(|check| stated.get(&check).cloned().flatten())
                    .collect::<Option<Vec<_>>>()
            });
            (id, lines)
        })
        .collect();

    clab_model::phase::mark("save:fresh");
    if let Some(loaded) = loaded.filter(|loaded| !mostly_unused(loaded)) {
        return Some(appended(stamp, now, graph, nodes, loaded, &hits, &fresh));
    }
    let mut lines = Lines::default();
    let mut node_lines = Vec::new();
    for &id in nodes {
        let node = graph.node(id);
        if matches!(node.kind, NodeKind::Aggregate) {
            continue;
        }
        let name = clean(&node.name)?;
        let dirty = || format!("dirty {name}");
        let known = loaded.and_then(|loaded| Some((loaded, loaded.known.get(&id)?)));
        let line = if let Some((loaded, known)) = known {
            let numbers: Vec<usize> = known
                .checks
                .iter()
                .map(|&c| lines.carry(loaded, c))
                .collect();
            node_line(name, &known.replay, &known.digest, known.since_ms, &numbers)
        } else if let (Some(hit), Some(Some(checks))) = (hits.get(&id), fresh.get(&id)) {
            let numbers: Vec<usize> = checks.iter().map(|line| lines.number(line)).collect();
            let replay = Replay {
                name: name.to_owned(),
                duration_ms: hit.duration_ms,
                log: hit.log.filter(|log| *log != Digest::empty()),
            };
            node_line(name, &replay, &digest_entries(&hit.outputs), now, &numbers)
        } else {
            dirty()
        };
        node_lines.push(line);
    }
    clab_model::phase::mark("save:numbered");
    let mut out = String::new();
    out.push_str(stamp);
    out.push('\n');
    out.push_str(&format!("written {now}\n"));
    for line in lines
        .lines
        .iter()
        .copied()
        .chain(node_lines.iter().map(String::as_str))
    {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// Whether fewer than half the check lines of `loaded` belong to a known node: then the
/// next snapshot is written anew, else the lines are carried over as they are.
fn mostly_unused(loaded: &Loaded) -> bool {
    let mut used = vec![false; loaded.lines.len()];
    for known in loaded.known.values() {
        for &c in &known.checks {
            used[c] = true;
        }
    }
    used.iter().filter(|&&u| u).count() * 2 < loaded.lines.len()
}

/// The next snapshot written by appending to `loaded`: its check lines and the known nodes'
/// lines copied as they are (their numbers stay), the fresh hits' checks added after them.
fn appended(
    stamp: &str,
    now: i64,
    graph: &Graph,
    nodes: &[NodeId],
    loaded: &Loaded,
    hits: &HashMap<NodeId, &Hit>,
    fresh: &HashMap<NodeId, Option<Vec<String>>>,
) -> String {
    let mut out = String::with_capacity(loaded.text.len() + 4096);
    out.push_str(stamp);
    out.push('\n');
    out.push_str(&format!("written {now}\n"));
    out.push_str(&loaded.text[loaded.checks.clone()]);
    // Every check line by its number: a fresh node's check that the loaded snapshot already
    // has (the ignore files above the glob bases, which most nodes share) is not written
    // again — appended runs after one-file edits used to repeat them, run after run.
    let mut numbered: Option<HashMap<&str, usize, foldhash::fast::RandomState>> = None;
    let mut next = loaded.lines.len();
    let mut node_lines = String::new();
    for &id in nodes {
        let node = graph.node(id);
        if matches!(node.kind, NodeKind::Aggregate) {
            continue;
        }
        // Node names were checked clean when the loaded snapshot's stamp was made.
        let name = clean(&node.name).unwrap_or_default();
        if let Some(known) = loaded.known.get(&id) {
            node_lines.push_str(&loaded.text[known.line.clone()]);
        } else if let (Some(hit), Some(Some(checks))) = (hits.get(&id), fresh.get(&id)) {
            let numbered = numbered.get_or_insert_with(|| {
                let text = &loaded.text;
                (loaded.lines.iter().enumerate())
                    .map(|(i, range)| (&text[range.clone()], i))
                    .collect()
            });
            let numbers: Vec<usize> = checks
                .iter()
                .map(|line| {
                    *numbered.entry(line.as_str()).or_insert_with(|| {
                        out.push_str(line);
                        out.push('\n');
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            let replay = Replay {
                name: name.to_owned(),
                duration_ms: hit.duration_ms,
                log: hit.log.filter(|log| *log != Digest::empty()),
            };
            let digest = digest_entries(&hit.outputs);
            node_lines.push_str(&node_line(name, &replay, &digest, now, &numbers));
        } else {
            node_lines.push_str("dirty ");
            node_lines.push_str(name);
        }
        node_lines.push('\n');
    }
    out.push_str(&node_lines);
    out
}

/// A known node's line.
fn node_line(
    name: &str,
    replay: &Replay,
    digest: &Digest,
    since_ms: i64,
    checks: &[usize],
) -> String {
    use std::fmt::Write;
    let log = replay
        .log
        .map_or_else(|| "-".to_owned(), |log| log.to_hex().to_string());
    let mut line = format!(
        "node {name}\t{}\t{log}\t{}\t{since_ms}\t",
        replay.duration_ms,
        digest.to_hex(),
    );
    for (i, n) in checks.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(line, "{comma}{n}");
    }
    line
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clab_model::source::SourceFile;

    use super::*;

    const TASKS: &str = r#"
        task "a" {
            inputs "a/*.txt"
            outputs "out/a.txt"
            run "true"
        }
        task "b" {
            deps "a"
            inputs "b/*.txt"
            run "true"
        }
        task "c" {
            inputs "c/*.txt"
            run "true"
        }
        task "all" {
            deps "b" "c"
        }
    "#;

    /// A project with the tasks above (files with mtimes an hour ago), its graph, the closure
    /// of `all` and its store.
    struct Project {
        dir: tempfile::TempDir,
        graph: Arc<Graph>,
        nodes: Vec<NodeId>,
        store: Store,
    }

    fn old(path: &Path) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    fn project() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["a/one.txt", "b/one.txt", "c/one.txt", "out/a.txt"] {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, name).unwrap();
            old(&path);
        }
        let file = clab_syntax::parse_task_file(SourceFile::new(
            root.join("tasks.kdl"),
            "tasks.kdl",
            TASKS.to_owned(),
        ))
        .unwrap();
        let graph = Arc::new(clab_graph::build(file, root).unwrap());
        let nodes = graph.closure(&graph.resolve_targets(&["all".to_owned()]).unwrap());
        let store = Store::open(root.join(".clab")).unwrap().store;
        Project {
            dir,
            graph,
            nodes,
            store,
        }
    }

    impl Project {
        fn id(&self, name: &str) -> NodeId {
            self.graph.resolve_targets(&[name.to_owned()]).unwrap()[0]
        }

        /// A hit of `name` with no outputs (`a` has its output, `out/a.txt`, stored).
        fn hit(&self, name: &str) -> Hit {
            let outputs = if name == "a" {
                vec![
                    self.store
                        .store_output(self.dir.path(), "out/a.txt")
                        .unwrap(),
                ]
            } else {
                Vec::new()
            };
            Hit {
                id: self.id(name),
                duration_ms: 7,
                log: None,
                outputs,
                restored: false,
            }
        }

        fn planner(&self, nodes: &[NodeId]) -> Planner {
            Planner::walk(&self.graph, nodes)
                .unwrap()
                .hash(&self.graph, self.store.stat_cache().unwrap())
                .unwrap()
        }

        /// Save a snapshot of a run with `hits`, planned over `planned`, after `loaded`; a run
        /// that started now, or (`later`) long enough after the files were written to trust
        /// their stats.
        fn save(
            &self,
            hits: &[Hit],
            planned: &[NodeId],
            loaded: Option<&Loaded>,
            later: bool,
        ) -> PathBuf {
            let file = self.dir.path().join("snapshot.txt");
            let planner = self.planner(planned);
            save(
                &file,
                "stamp",
                &Finished {
                    graph: &self.graph,
                    nodes: &self.nodes,
                    hits,
                    loaded,
                    planner: &planner,
                    store: &self.store,
                    started_ns: clab_store::stat_cache::now_ns()
                        + if later { 2 * RACY_MARGIN_NS } else { 0 },
                },
            );
            file
        }

        fn load(&self, file: &Path) -> Loaded {
            load(file, "stamp", &self.graph, &self.nodes).expect("a snapshot")
        }

        fn known(&self, loaded: &Loaded) -> Vec<String> {
            let mut names: Vec<String> = loaded
                .known
                .values()
                .map(|k| k.replay.name.clone())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn a_check_line_reads_back_as_the_check_and_holds_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        fs::write(&file, "x").unwrap();
        old(&file);
        let trusted_before = clab_store::stat_cache::now_ns();
        let line = check_line('F', &file, trusted_before).unwrap();
        let check = Check::parse(&line).unwrap();
        assert!(matches!(check, Check::Stat { follow: true, .. }));
        assert!(check.holds());
        // File times come from the kernel's coarse clock, up to a tick (≤ 10 ms) behind
        // `now_ns`: written at once, the file could still read as older than `trusted_before`.
        std::thread::sleep(std::time::Duration::from_millis(30));
        fs::write(&file, "y").unwrap();
        assert!(!check.holds(), "same size, new mtime");
        // Too fresh to trust: not recorded at all.
        assert_eq!(check_line('F', &file, trusted_before), None);
        let absent = check_line('?', &dir.path().join("none"), trusted_before).unwrap();
        assert!(Check::parse(&absent).unwrap().holds());
        fs::write(dir.path().join("none"), "").unwrap();
        assert!(!Check::parse(&absent).unwrap().holds());
    }

    #[test]
    fn a_node_line_reads_back() {
        let replay = Replay {
            name: "t".into(),
            duration_ms: 12,
            log: Some(Digest::empty()),
        };
        let digest = Digest::empty();
        let line = node_line("t", &replay, &digest, 99, &[3, 0, 7]);
        let (name, known) = parse_node(line.strip_prefix("node ").unwrap(), 8).unwrap();
        assert_eq!(name, "t");
        assert_eq!(known.replay, replay);
        assert_eq!((known.since_ms, known.checks), (99, vec![3, 0, 7]));
        // A check number past the file's checks is not a line of ours.
        assert!(parse_node(line.strip_prefix("node ").unwrap(), 7).is_none());
    }

    #[test]
    fn lines_are_numbered_once_each() {
        let mut lines = Lines::default();
        assert_eq!(lines.number("x"), 0);
        assert_eq!(lines.number("y"), 1);
        assert_eq!(lines.number("x"), 0);
        assert_eq!(lines.lines, ["x", "y"]);
    }

    #[test]
    fn a_change_makes_its_node_and_dependents_unknown_and_the_rest_stay_known() {
        let p = project();
        let hits = [p.hit("a"), p.hit("b"), p.hit("c")];
        let file = p.save(&hits, &p.nodes, None, true);
        let loaded = p.load(&file);
        assert_eq!(p.known(&loaded), ["a", "b", "c"]);
        assert!(loaded.all_known(&p.graph, &p.nodes).is_some());

        // A new input of `a`: `a` and `b` (which depends on it) are unknown, `c` is known.
        fs::write(p.dir.path().join("a/two.txt"), "2").unwrap();
        let loaded = p.load(&file);
        assert_eq!(p.known(&loaded), ["c"]);
        let mut unknown: Vec<&str> = loaded
            .unknown
            .iter()
            .map(|&id| p.graph.node(id).name.as_str())
            .collect();
        unknown.sort();
        assert_eq!(unknown, ["a", "b"]);
        assert!(loaded.all_known(&p.graph, &p.nodes).is_none());

        // The next run keyed `a` and `b` (hits, but `a/two.txt` is too new to trust): they
        // are written dirty, `c`'s line is carried over.
        let file = p.save(
            &[p.hit("a"), p.hit("b")],
            &loaded.unknown,
            Some(&loaded),
            false,
        );
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("\ndirty a\n") && text.contains("\ndirty b\n"),
            "{text}"
        );
        let again = p.load(&file);
        assert_eq!(p.known(&again), ["c"]);

        // Once old enough, a run of `a` and `b` records them again beside the carried `c`.
        let file = p.save(
            &[p.hit("a"), p.hit("b")],
            &again.unknown,
            Some(&again),
            true,
        );
        let last = p.load(&file);
        assert_eq!(p.known(&last), ["a", "b", "c"]);
    }

    #[test]
    fn a_prefetched_read_settles_as_a_load_does_and_only_for_its_file() {
        let p = project();
        let hits = [p.hit("a"), p.hit("b"), p.hit("c")];
        let file = p.save(&hits, &p.nodes, None, true);
        let stamp = fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let prefetch = Prefetch::start(file.clone());
        let loaded = prefetch.load(&file, &stamp, &p.graph, &p.nodes).unwrap();
        assert_eq!(p.known(&loaded), ["a", "b", "c"]);
        // Taken once: a second load reads the file again, and sees the world as it is now.
        fs::write(p.dir.path().join("a/two.txt"), "2").unwrap();
        let again = prefetch.load(&file, &stamp, &p.graph, &p.nodes).unwrap();
        assert_eq!(p.known(&again), ["c"]);
        // Another stamp: nothing is vouched for.
        let other = Prefetch::start(file.clone());
        assert!(other.load(&file, "0", &p.graph, &p.nodes).is_none());
        // Another file than the one prefetched: read as it is asked.
        let elsewhere = Prefetch::start(file.with_extension("other"));
        let loaded = elsewhere.load(&file, &stamp, &p.graph, &p.nodes).unwrap();
        assert_eq!(p.known(&loaded), ["c"]);
    }

    #[test]
    fn a_deleted_or_replaced_output_makes_the_node_unknown() {
        let p = project();
        let hits = [p.hit("a"), p.hit("b"), p.hit("c")];
        let file = p.save(&hits, &p.nodes, None, true);
        fs::remove_file(p.dir.path().join("out/a.txt")).unwrap();
        assert_eq!(p.known(&p.load(&file)), ["c"]);
        fs::write(p.dir.path().join("out/a.txt"), "out/a.txt").unwrap();
        old(&p.dir.path().join("out/a.txt"));
        // The same bytes and an old mtime, but a new ctime: not trusted by its stat.
        assert_eq!(p.known(&p.load(&file)), ["c"]);
    }

    #[test]
    fn a_mostly_unused_snapshot_is_written_anew() {
        let p = project();
        let hits = [p.hit("a"), p.hit("b"), p.hit("c")];
        let file = p.save(&hits, &p.nodes, None, true);
        let mut loaded = p.load(&file);
        assert!(!mostly_unused(&loaded));
        let (a, c) = (p.id("a"), p.id("c"));
        // `c` alone shares the ignore-file checks of the root's parents with `a` and `b`, but
        // not their inputs, outputs and directories.
        loaded.known.retain(|&id, _| id == a || id == c);
        assert!(!mostly_unused(&loaded));
        loaded.known.clear();
        assert!(
            mostly_unused(&loaded),
            "no known node: every line is unused"
        );
    }
}
