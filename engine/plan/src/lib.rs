//! `Graph` + store → keys and decisions: what each node's result depends on, and whether the
//! cache already holds it.
//!
//! ```text
//! Graph ──Planner::new──▶ Planner (inputs walked and hashed once) ──key_parts──▶ KeyParts ──▶ key
//!   └── store (stat cache, last manifests, results) ──predict──▶ Fresh | Run(Reason) per node
//! ```
//!
//! # Purpose
//!
//! The plan stage: the [`Planner`] hashes inputs once for the whole run
//! ([`inputs::InputIndex`], one walk, each file hashed once through the
//! [`clab_store::stat_cache::StatCache`]) and turns a node plus its dependencies' output digests into
//! [`cache_key::KeyParts`]. Keys are computed when a node becomes ready, because early cutoff
//! needs the digests of what its dependencies actually wrote; `--dry-run` and `explain`
//! predict them from the cache instead ([`Planner::predict`]), and [`explain`] words what
//! changed since a task's last run.
//!
//! # In
//!
//! A [`Graph`] (`clab-graph`), the [`Store`] (`clab-store`) for the stat cache, last
//! manifests and results, and the LLM settings layers that do not come from tasks.kdl
//! ([`llm_prompt::LlmLayers`]).
//!
//! # Out
//!
//! Per node: its [`cache_key::KeyParts`] and key, or a prediction ([`PlanStatus`]) with a typed
//! [`Reason`]; the rendered LLM request of an LLM node ([`llm_prompt`]).
//!
//! # Invariants
//!
//! Everything a node's result depends on is in its key parts, and nothing else: no absolute
//! path of the checkout (the root is the marker `{{root}}`), never an API key. Planning reads
//! the store and writes only the stat cache and manifests; it runs nothing. Among clab's
//! crates this one depends on model, syntax, rules, graph, llm and store, never on exec.

pub mod cache_key;
pub mod explain;
pub mod inputs;
pub mod llm_prompt;
pub mod outputs;
pub mod path_pattern;
mod plan;
pub mod reason;

pub use self::plan::{Plan, PlanError};
/// The stat cache lives in the store (`clab-store`); re-exported at its old path.
pub use reason::Reason;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use serde::Serialize;

use self::{
    cache_key::{KEY_VERSION, KeyParts},
    inputs::{InputFile, InputIndex, KeptTexts, WalkedInputs},
    llm_prompt::LlmLayers,
};
use clab_graph::{Graph, NodeId, NodeKind};
use clab_remote::RemoteCache;
use clab_rules::PrefilterSet;
use clab_store::{
    Digest, Store,
    stat_cache::{KeptText, Sieve, StatCache},
};

/// A problem computing a key: an input that cannot be read, a glob the index refuses.
pub type Error = inputs::Error;

/// Computes cache keys for the nodes of one run.
pub struct Planner {
    index: InputIndex,
    /// The hashed `env-inputs` of the root's nodes (`[0]`) and of each member's (`[1 + i]`).
    env_inputs: Vec<BTreeMap<String, Option<String>>>,
    /// Large input sets by content, see `shared_inputs`.
    shared_inputs: Mutex<HashMap<Digest, SharedInputs>>,
    /// Bytes of files rule nodes scan, read while hashing (see [`take_text`](Self::take_text)).
    texts: Mutex<KeptTexts>,
    /// The rules' prefilters that decided which of those texts to keep.
    prefilters: Option<Arc<PrefilterSet>>,
    /// Large selections of the index by input patterns, see [`inputs`](Self::inputs).
    selections: Mutex<HashMap<Vec<String>, Arc<[InputFile]>>>,
    /// The shared inputs of those selections by address (and length).
    shared_by_address: Mutex<HashMap<usize, (usize, SharedInputs)>>,
    /// Relative paths found free of symlinks, see [`must_rescan`](Self::must_rescan).
    plain: Mutex<HashMap<String, bool>>,
}

/// A node's inputs map, with the JSON and digest of a large one.
#[derive(Clone)]
struct SharedInputs {
    map: Arc<BTreeMap<String, Digest>>,
    json: Option<Arc<str>>,
    digest: Option<Digest>,
}

/// Input sets at least this large are serialized once per run and stored once per cache.
pub const SHARED_INPUTS_MIN: usize = 256;

/// A [`Planner`] whose inputs are found but not yet hashed ([`Planner::walk`]).
pub struct WalkedPlanner {
    walked: WalkedInputs,
    /// The input patterns of rule nodes: their files' texts are kept when hashed.
    scanned: Vec<String>,
}

impl WalkedPlanner {
    /// The absolute paths of the input files found (see [`Store::stat_cache_of`]).
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &std::path::Path> {
        self.walked.paths()
    }

    /// Hash the found inputs through `stat_cache`, keeping the texts that rule nodes scan —
    /// those their prefilters match, when the prefilters alone decide (see
    /// [`PrefilterSet::decides_alone`]): 20 of 10,000 on the rules benchmark.
    pub fn hash(self, graph: &Graph, stat_cache: &StatCache) -> Result<Planner, Error> {
        let prefilters = if self.scanned.is_empty() {
            None
        } else {
            graph.prefilter_set().map(Arc::new)
        };
        let (index, texts) = {
            let sieve = |bytes: &[u8]| {
                // Invalid UTF-8 is kept: the scan reads it with replacement characters.
                prefilters.as_ref().is_none_or(|set| {
                    std::str::from_utf8(bytes).map_or(true, |text| set.is_match(text))
                })
            };
            let sifting = prefilters.as_ref().is_some_and(|set| set.decides_alone());
            self.walked.hash_keeping(
                stat_cache,
                &self.scanned,
                sifting.then_some(&sieve as &Sieve),
            )?
        };
        let mut planner = Planner::finish(graph, index)?;
        planner.texts = Mutex::new(texts);
        planner.prefilters = prefilters;
        Ok(planner)
    }
}

impl Planner {
    /// Walk and hash the inputs of `nodes` once.
    pub fn new(graph: &Graph, nodes: &[NodeId], stat_cache: &StatCache) -> Result<Planner, Error> {
        Planner::walk(graph, nodes)?.hash(graph, stat_cache)
    }

    /// The first half of [`new`](Self::new): find the inputs of `nodes`, hash nothing yet
    /// (the stat cache can load meanwhile).
    pub fn walk(graph: &Graph, nodes: &[NodeId]) -> Result<WalkedPlanner, Error> {
        Planner::walk_with(graph, nodes, true)
    }

    /// [`walk`](Self::walk), on one thread unless `parallel` (see
    /// [`InputIndex::walk_sequential`]).
    pub fn walk_with(
        graph: &Graph,
        nodes: &[NodeId],
        parallel: bool,
    ) -> Result<WalkedPlanner, Error> {
        let cacheable = || {
            nodes
                .iter()
                .map(|&id| graph.node(id))
                .filter(|node| node.is_cacheable())
        };
        let patterns = cacheable().flat_map(|node| node.inputs.iter().map(String::as_str));
        let scanned = cacheable()
            .filter(|node| matches!(node.kind, NodeKind::Rule(_)))
            .flat_map(|node| node.inputs.iter().cloned())
            .collect();
        let walked = if parallel {
            InputIndex::walk(graph.root(), patterns)?
        } else {
            InputIndex::walk_sequential(graph.root(), patterns)?
        };
        Ok(WalkedPlanner { walked, scanned })
    }

    fn finish(graph: &Graph, index: InputIndex) -> Result<Planner, Error> {
        Ok(Planner {
            index,
            env_inputs: std::iter::once(None)
                .chain(
                    (0..graph.workspace().members.len())
                        .map(|m| Some(clab_graph::workspace::MemberId::new(m))),
                )
                .map(|member| member_env_input_hashes(graph, member))
                .collect(),
            shared_inputs: Mutex::new(HashMap::new()),
            texts: Mutex::new(KeptTexts::default()),
            prefilters: None,
            selections: Mutex::new(HashMap::new()),
            shared_by_address: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashMap::new()),
        })
    }

    /// What hashing kept of `path`, if the file still has `hash` (a node that ran since may
    /// have changed it): its bytes, handed out once, or that nothing needs them (the verdict
    /// of [`prefilters`](Self::prefilters), which stays).
    pub fn take_text(&self, path: &str, hash: &Digest) -> Option<KeptText> {
        let mut texts = self.texts.lock().ok()?;
        if let Some((kept, KeptText::Unneeded)) = texts.get(path)
            && kept == hash
        {
            return Some(KeptText::Unneeded);
        }
        match texts.remove(path) {
            Some((kept, text)) if kept == *hash => Some(text),
            _ => None,
        }
    }

    /// The prefilters of the graph's rules that decided which texts hashing kept.
    pub fn prefilters(&self) -> Option<&PrefilterSet> {
        self.prefilters.as_deref()
    }

    /// The run's input index.
    pub fn index(&self) -> &InputIndex {
        &self.index
    }

    /// Whether node `id` must rescan its inputs ([`inputs`](Self::inputs) with `rescan`)
    /// after its dependencies restored the outputs at `written` during this run: whether
    /// those files can change what the run's walk found for it
    /// ([`InputIndex::may_see`]). A pattern that does not parse answers `true` (the rescan
    /// reports it).
    pub fn must_rescan<W: AsRef<str>>(&self, graph: &Graph, id: NodeId, written: &[W]) -> bool {
        self.index
            .may_see(&graph.node(id).inputs, written, &self.plain)
            .unwrap_or(true)
    }

    /// The input files of a node. With `rescan`, walk its patterns again instead of using
    /// the run's index: a dependency that ran may have written files the index has not seen.
    pub fn inputs(
        &self,
        graph: &Graph,
        id: NodeId,
        rescan: bool,
        stat_cache: &StatCache,
    ) -> Result<Arc<[InputFile]>, Error> {
        let node = graph.node(id);
        if rescan {
            // Most rescans find what the planner's walk found: told by a few `stat`s.
            if let Some(files) = self.index.reselect(&node.inputs, stat_cache)? {
                return Ok(files.into());
            }
            return Ok(inputs::collect(graph.root(), &node.inputs, stat_cache)?.into());
        }
        let selections = || self.selections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = selections().get(&node.inputs) {
            return Ok(Arc::clone(files));
        }
        let files: Arc<[InputFile]> = self
            .index
            .select(&node.inputs)?
            .into_iter()
            .cloned()
            .collect();
        // Twenty rule nodes over one tree share one copy of its 10,000 entries.
        if files.len() >= SHARED_INPUTS_MIN {
            selections().insert(node.inputs.clone(), Arc::clone(&files));
        }
        Ok(files)
    }

    /// The key parts of a node, given its inputs, its dependencies' output digests and the
    /// parts only its kind knows (an LLM request's, see [`llm_prompt::render`]).
    pub fn key_parts(
        &self,
        graph: &Graph,
        id: NodeId,
        inputs: &[InputFile],
        deps: BTreeMap<String, Digest>,
        mut extra: BTreeMap<String, String>,
    ) -> KeyParts {
        let node = graph.node(id);
        // What `{{root}}` rendered enters the key as the marker: a moved checkout still hits.
        let root = graph.root().display().to_string();
        let relative = |text: &String| cache_key::without_root(text, &root).into_owned();
        let commands = match &node.kind {
            NodeKind::Command { run } => run.iter().map(relative).collect(),
            NodeKind::Llm(llm) => llm.check.iter().map(relative).collect(),
            NodeKind::Rule(rule) => {
                extra.insert(
                    "rule".to_owned(),
                    rule.definition_hash().to_hex().to_string(),
                );
                Vec::new()
            }
            NodeKind::Aggregate => Vec::new(),
        };
        // A sandbox can fail what runs without one: it is part of the result. Only what the
        // file says enters the key, so keys of tasks that say nothing are unchanged.
        if let Some(mode) = node.sandbox.key_text() {
            extra.insert("sandbox".to_owned(), mode.to_owned());
        }
        if !node.sandbox_writable.is_empty() {
            let writable: Vec<String> = node.sandbox_writable.iter().map(relative).collect();
            extra.insert("sandbox.writable".to_owned(), writable.join("\n"));
        }
        let shared = self.shared_inputs(inputs);
        KeyParts {
            version: KEY_VERSION,
            platform: KeyParts::platform(),
            task: node.name.clone(),
            kind: node.kind.label().to_owned(),
            commands,
            cwd: relative(&node.cwd),
            outputs: node.outputs.iter().map(relative).collect(),
            env: node
                .env
                .iter()
                .map(|(name, value)| (name.clone(), relative(value)))
                .collect(),
            env_inputs: self
                .env_inputs
                .get(node.member.map_or(0, |m| m.index() + 1))
                .cloned()
                .unwrap_or_default(),
            inputs: shared.map,
            deps,
            extra,
            input_set: shared.digest,
            inputs_json: shared.json,
        }
    }

    /// The inputs map of a node; a large one is made once per distinct set, with its JSON and
    /// digest: 20 rule nodes over one 10,000-file tree then share one map and serialize (and
    /// key-hash) one copy, not 20.
    fn shared_inputs(&self, inputs: &[InputFile]) -> SharedInputs {
        let map = || -> Arc<BTreeMap<String, Digest>> {
            Arc::new(
                inputs
                    .iter()
                    .map(|file| (file.path.clone(), file.hash))
                    .collect(),
            )
        };
        if inputs.len() < SHARED_INPUTS_MIN {
            return SharedInputs {
                map: map(),
                json: None,
                digest: None,
            };
        }
        // A selection `inputs` handed out is known by its address: it stays alive, unchanged,
        // in `selections` for as long as the planner does.
        let address = inputs.as_ptr() as usize;
        if let Some(shared) = self
            .shared_by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .filter(|(len, _)| *len == inputs.len())
        {
            return shared.1.clone();
        }
        let shared = self.shared_by_content(inputs, map);
        let memoized = self
            .selections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|files| files.as_ptr() as usize == address && files.len() == inputs.len());
        if memoized {
            self.shared_by_address
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(address, (inputs.len(), shared.clone()));
        }
        shared
    }

    /// [`shared_inputs`](Self::shared_inputs) of a list not known by its address.
    fn shared_by_content(
        &self,
        inputs: &[InputFile],
        map: impl FnOnce() -> Arc<BTreeMap<String, Digest>>,
    ) -> SharedInputs {
        // One buffer, hashed at once: blake3 hashes a long input many chunks at a time.
        let mut bytes = Vec::with_capacity(inputs.iter().map(|f| f.path.len() + 33).sum());
        for file in inputs {
            bytes.extend_from_slice(file.path.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(file.hash.as_bytes());
        }
        let id = Digest::of_bytes(&bytes);
        let mut shared = self.shared_inputs.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .entry(id)
            .or_insert_with(|| {
                let map = map();
                let json = cache_key::inputs_json(&map);
                SharedInputs {
                    digest: Some(Digest::of_bytes(json.as_bytes())),
                    json: Some(json),
                    map,
                }
            })
            .clone()
    }

    /// Predict what a run would do without running anything (`--dry-run`): in dependency
    /// order, a node is fresh when its key — computed from the recorded outputs of fresh
    /// dependencies — has a cached result; a node behind a dependency that must run is stale.
    pub fn predict(
        &self,
        graph: &Graph,
        nodes: &[NodeId],
        store: Option<&Store>,
        remote: Option<&RemoteCache>,
        stat_cache: &StatCache,
        llm: &LlmLayers,
    ) -> Vec<Decision> {
        let mut digests: BTreeMap<NodeId, Option<Digest>> = BTreeMap::new();
        let mut decisions = Vec::with_capacity(nodes.len());
        for &id in nodes {
            let node = graph.node(id);
            let mut deps = BTreeMap::new();
            let mut blocked = None;
            for dep in graph.dependencies(id) {
                match digests.get(&dep).copied().flatten() {
                    Some(digest) => {
                        deps.insert(graph.node(dep).name.clone(), digest);
                    }
                    None => blocked = blocked.or(Some(graph.node(dep).name.clone())),
                }
            }
            let mut key_parts = None;
            let mut remote_answer = None;
            let (status, digest) = if matches!(node.kind, NodeKind::Aggregate) {
                let digest = blocked.is_none().then(|| aggregate_digest(&deps));
                (PlanStatus::Aggregate, digest)
            } else if !node.is_cacheable() {
                let reason = if node.cache {
                    Reason::NoInputs
                } else {
                    Reason::CacheOff
                };
                (PlanStatus::Run { reason, key: None }, None)
            } else if let Some(dep) = blocked {
                // The key cannot be known yet, but the parts we do know help `explain`.
                key_parts = self
                    .inputs(graph, id, false, stat_cache)
                    .ok()
                    .map(|inputs| {
                        let extra = self
                            .extra_parts(graph, id, llm, stat_cache)
                            .unwrap_or_default();
                        self.key_parts(graph, id, &inputs, deps, extra)
                    });
                let reason = Reason::DepWillRun(dep);
                (PlanStatus::Run { reason, key: None }, None)
            } else {
                let prepared = self
                    .inputs(graph, id, false, stat_cache)
                    .map_err(|e| e.to_string())
                    .and_then(|inputs| Ok((inputs, self.extra_parts(graph, id, llm, stat_cache)?)));
                match prepared {
                    Err(err) => (
                        PlanStatus::Run {
                            reason: Reason::KeyUnknown(err.to_string()),
                            key: None,
                        },
                        None,
                    ),
                    Ok((inputs, extra)) => {
                        let parts = self.key_parts(graph, id, &inputs, deps, extra);
                        let key = parts.key();
                        let mut hit =
                            store.and_then(|s| s.peek_result(&key.to_string()).ok().flatten());
                        if let (None, Some(remote)) = (&hit, remote) {
                            let probed = remote.probe(&key.to_string());
                            remote_answer = Some(RemoteAnswer {
                                url: remote.info().url.clone(),
                                rejected: probed.as_ref().err().map(ToString::to_string),
                            });
                            hit = probed.ok();
                        }
                        key_parts = Some(parts.clone());
                        match hit {
                            Some(result) => {
                                let digest = outputs::digest_entries(&result.outputs);
                                (
                                    PlanStatus::Cached {
                                        key: key.to_string(),
                                    },
                                    Some(digest),
                                )
                            }
                            None => {
                                let reason = why(store, &node.name, &parts);
                                (
                                    PlanStatus::Run {
                                        reason,
                                        key: Some(key.to_string()),
                                    },
                                    None,
                                )
                            }
                        }
                    }
                }
            };
            digests.insert(id, digest);
            decisions.push(Decision {
                task: node.name.clone(),
                status,
                parts: key_parts,
                remote: remote_answer,
            });
        }
        decisions
    }
}

impl Planner {
    /// The key parts only a node's kind knows: for an LLM step, its rendered request.
    pub fn extra_parts(
        &self,
        graph: &Graph,
        id: NodeId,
        llm: &LlmLayers,
        stat_cache: &StatCache,
    ) -> Result<BTreeMap<String, String>, String> {
        match graph.node(id).kind {
            NodeKind::Llm(_) => Ok(llm_prompt::render(graph, id, llm, stat_cache)?.extra),
            _ => Ok(BTreeMap::new()),
        }
    }
}

/// Why a node with these key parts must run, from its last recorded run.
pub fn why(store: Option<&Store>, task: &str, parts: &KeyParts) -> Reason {
    let previous = store.and_then(|s| previous_parts(s, task));
    why_from(previous.as_ref().map(|(_, parts)| parts), parts)
}

/// The key and key parts recorded for a node's last run.
pub fn previous_parts(store: &Store, task: &str) -> Option<(String, KeyParts)> {
    let saved = store.load_manifest(task).ok().flatten()?;
    let mut parts = serde_json::from_str::<KeyParts>(&saved.json).ok()?;
    if let Some(digest) = parts.input_set {
        parts.inputs = store.input_set(&digest).ok().flatten()?;
    }
    Some((saved.key, parts))
}

/// Record `parts` as the manifest of `task`'s latest run (for `explain` and the reason on
/// the next run's line).
pub fn save_parts(
    store: &Store,
    task: &str,
    key: &str,
    parts: &KeyParts,
) -> Result<(), clab_store::Error> {
    store.save_manifest(task, key, &manifest_json(store, parts)?)
}

/// `parts` as a manifest's JSON. A large inputs map goes to the store's input sets, once per
/// distinct set, and the manifest names it by digest.
pub fn manifest_json(store: &Store, parts: &KeyParts) -> Result<String, clab_store::Error> {
    let json = if parts.inputs.len() >= SHARED_INPUTS_MIN {
        let inputs = parts.inputs_json();
        let digest = parts
            .input_set
            .unwrap_or_else(|| Digest::of_bytes(inputs.as_bytes()));
        store.save_input_set(&digest, &inputs)?;
        // Every part but the (large) inputs.
        let manifest = KeyParts {
            version: parts.version,
            platform: parts.platform.clone(),
            task: parts.task.clone(),
            kind: parts.kind.clone(),
            commands: parts.commands.clone(),
            cwd: parts.cwd.clone(),
            outputs: parts.outputs.clone(),
            env: parts.env.clone(),
            env_inputs: parts.env_inputs.clone(),
            inputs: Arc::default(),
            deps: parts.deps.clone(),
            extra: parts.extra.clone(),
            input_set: Some(digest),
            inputs_json: None,
        };
        serde_json::to_string(&manifest)
    } else {
        serde_json::to_string(parts)
    };
    Ok(json.unwrap_or_default())
}

/// Each `env-inputs` variable and each `dotenv` variable with the blake3 hex of its value
/// (`None` when unset), as keys hold them: either may well be a secret, so its value is
/// never kept. A `dotenv` variable that the process environment sets is hashed with that
/// value, the one the commands see. In a workspace: those of the root and of every member
/// (what a no-op snapshot stamps); a node's key holds only its own
/// ([`member_env_input_hashes`]).
pub fn env_input_hashes(graph: &Graph) -> BTreeMap<String, Option<String>> {
    let mut hashes = member_env_input_hashes(graph, None);
    for m in 0..graph.workspace().members.len() {
        let member = Some(clab_graph::workspace::MemberId::new(m));
        hashes.extend(member_env_input_hashes(graph, member));
    }
    hashes
}

/// [`env_input_hashes`] for the nodes of one member (`None`: the root's): the root's
/// variables, then the member's own.
pub fn member_env_input_hashes(
    graph: &Graph,
    member: Option<clab_graph::workspace::MemberId>,
) -> BTreeMap<String, Option<String>> {
    let hash = |v: &str| Digest::of_bytes(v.as_bytes()).to_hex().to_string();
    let mut hashes: BTreeMap<String, Option<String>> = graph
        .env_inputs_of(member)
        .into_iter()
        .map(|name| {
            let value = std::env::var(name).ok();
            (name.to_owned(), value.as_deref().map(hash))
        })
        .collect();
    for (name, value) in graph.member_dotenv(member) {
        hashes.insert(name.clone(), Some(hash(&value)));
    }
    hashes
}

/// Why a node must run, given the key parts of its last run (if any) and its current ones.
pub fn why_from(previous: Option<&KeyParts>, parts: &KeyParts) -> Reason {
    Reason::from_changes(previous.map(|old| explain::diff(old, parts)))
}

/// An aggregate passes its dependencies through: its digest is that of theirs.
pub fn aggregate_digest(deps: &BTreeMap<String, Digest>) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for (name, digest) in deps {
        hasher.update(name.as_bytes());
        hasher.update(digest.as_bytes());
    }
    hasher.finalize().into()
}

/// What `--dry-run` says about one node.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// Display id.
    pub task: String,
    /// What would happen.
    #[serde(flatten)]
    pub status: PlanStatus,
    /// The key parts, when they could be computed (for `clab explain`).
    #[serde(skip)]
    pub parts: Option<KeyParts>,
    /// What the shared remote cache said, when it was asked (the local cache missed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteAnswer>,
}

/// What the shared remote cache said about a key the local cache does not hold.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RemoteAnswer {
    /// The remote cache's URL, redacted.
    pub url: String,
    /// Why its entry cannot be used (`no entry`, `signed by an untrusted key`, …); `None`:
    /// found, and it would be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// What would happen to a node.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PlanStatus {
    /// Restored from the cache.
    Cached {
        /// The cache key.
        key: String,
    },
    /// Executed.
    Run {
        /// Why (its words in `--json`).
        reason: Reason,
        /// The cache key, when it can be known before the run.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Nothing to do of its own.
    Aggregate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(task: &str, files: usize) -> KeyParts {
        KeyParts {
            version: KEY_VERSION,
            task: task.into(),
            inputs: Arc::new(
                (0..files)
                    .map(|i| {
                        (
                            format!("src/f{i:05}.py"),
                            Digest::of_bytes(&i.to_le_bytes()),
                        )
                    })
                    .collect(),
            ),
            ..KeyParts::default()
        }
    }

    #[test]
    fn kept_texts_are_handed_out_once_and_only_with_their_hash() {
        let text = |s: &str| {
            (
                Digest::of_bytes(s.as_bytes()),
                KeptText::Bytes(s.as_bytes().to_vec()),
            )
        };
        let graph = clab_graph::build(
            clab_syntax::parse_task_file(clab_model::source::SourceFile::new(
                "/p/tasks.kdl",
                "tasks.kdl",
                "task \"t\" { run \"true\"; }",
            ))
            .unwrap(),
            std::path::Path::new("/p"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let index = InputIndex::build(dir.path(), Vec::<&str>::new(), &StatCache::new()).unwrap();
        let planner = Planner::finish(&graph, index).unwrap();
        let unneeded = (Digest::of_bytes(b"c"), KeptText::Unneeded);
        *planner.texts.lock().unwrap() = [
            ("a.py".into(), text("old")),
            ("b.py".into(), text("b")),
            ("c.py".into(), unneeded),
        ]
        .into_iter()
        .collect();
        // `a.py` changed since it was read: its kept bytes are not the file's.
        assert_eq!(planner.take_text("a.py", &text("new").0), None);
        assert_eq!(planner.take_text("b.py", &text("b").0), Some(text("b").1));
        assert_eq!(planner.take_text("b.py", &text("b").0), None);
        // A verdict is not used up, and is only given for the hash it was made for.
        let c = Digest::of_bytes(b"c");
        assert_eq!(planner.take_text("c.py", &c), Some(KeptText::Unneeded));
        assert_eq!(planner.take_text("c.py", &c), Some(KeptText::Unneeded));
        assert_eq!(planner.take_text("c.py", &text("new").0), None);
        assert_eq!(planner.take_text("c.py", &c), None);
    }

    #[test]
    fn keys_hold_the_root_as_a_marker_not_the_checkout_path() {
        let tasks = r#"
            task "t" {
                cwd "{{root}}/sub"
                run "cd {{root}}/src && make OUT={{root}}/out"
                env WHERE="{{root}}/bin"
                outputs "{{root}}/out/a"
            }
        "#;
        let parts_at = |root: &str| {
            let root = std::path::Path::new(root);
            let file = clab_syntax::parse_task_file(clab_model::source::SourceFile::new(
                root.join("tasks.kdl").display().to_string(),
                "tasks.kdl",
                tasks,
            ))
            .unwrap();
            let graph = clab_graph::build(file, root).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let index =
                InputIndex::build(dir.path(), Vec::<&str>::new(), &StatCache::new()).unwrap();
            let planner = Planner::finish(&graph, index).unwrap();
            let id = graph.tasks()["t"][0];
            // The command that runs has the real path.
            let NodeKind::Command { run } = &graph.node(id).kind else {
                panic!("not a command");
            };
            assert!(run[0].contains(&format!("{}/src", root.display())));
            planner.key_parts(&graph, id, &[], BTreeMap::new(), BTreeMap::new())
        };
        let (here, there) = (parts_at("/work/a"), parts_at("/ci/runner/b"));
        assert_eq!(here.commands, ["cd {{root}}/src && make OUT={{root}}/out"]);
        assert_eq!(here.cwd, "{{root}}/sub");
        assert_eq!(here.outputs, ["{{root}}/out/a"]);
        assert_eq!(here.env["WHERE"], "{{root}}/bin");
        assert_eq!(here.key(), there.key());
    }

    fn input_sets(store: &Store) -> usize {
        store
            .with_connection(|conn| {
                conn.query_row("SELECT count(*) FROM input_sets", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .unwrap() as usize
    }

    #[test]
    fn large_input_sets_are_stored_once_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().store;
        let (a, b) = (parts("rule:a", 300), parts("rule:b", 300));
        save_parts(&store, "rule:a", "ka", &a).unwrap();
        save_parts(&store, "rule:b", "kb", &b).unwrap();
        assert_eq!(input_sets(&store), 1, "two tasks, one stored input set");
        let manifest = store.load_manifest("rule:a").unwrap().unwrap();
        assert!(manifest.json.len() < 1000, "{}", manifest.json);
        let (key, loaded) = previous_parts(&store, "rule:b").unwrap();
        assert_eq!(key, "kb");
        assert_eq!(loaded.inputs, b.inputs);
        assert_eq!(loaded.key(), b.key());

        // Small sets stay inline.
        let small = parts("small", 3);
        save_parts(&store, "small", "ks", &small).unwrap();
        assert_eq!(input_sets(&store), 1);
        assert_eq!(
            previous_parts(&store, "small").unwrap().1.inputs,
            small.inputs
        );

        // A set no manifest names any more is pruned; one still named is kept.
        save_parts(&store, "rule:a", "ka2", &parts("rule:a", 3)).unwrap();
        save_parts(&store, "rule:b", "kb2", &parts("rule:b", 400)).unwrap();
        assert_eq!(input_sets(&store), 2);
        store.prune(u64::MAX).unwrap();
        assert_eq!(input_sets(&store), 1);
        assert_eq!(
            previous_parts(&store, "rule:b").unwrap().1.inputs.len(),
            400
        );
        store.clean().unwrap();
        assert_eq!(input_sets(&store), 0);
    }
}
