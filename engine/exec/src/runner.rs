//! The [`Visitor`] that does the work of each node: look it up in the cache, restore it or
//! run it, store what it produced, report.
//!
//! Per cacheable node: inputs → [`KeyParts`] → key. A hit restores the outputs that are
//! missing or changed and replays the log. A miss says why (from the last recorded run),
//! takes the key's lock so two clab processes never build the same key at once, checks the
//! cache again (the other process may have just finished), runs, and on success stores the
//! outputs, the log, the result and the key parts, in that order. Failures are not cached.
//!
//! Every node leaves the digest of its outputs behind for its dependents' keys (early
//! cutoff), and whether it touched files this run (so dependents walk their inputs again
//! instead of trusting the index built before anything ran).

use std::{
    collections::{BTreeMap, HashMap},
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
};

use super::{
    llm::LimiterRegistry,
    llm_step::run_llm,
    process::{CommandSpec, Exit, run_command},
    report_totals::{ReportTotals, read_reports},
    rule_scan::{self, BatchScan, PrefilterSet, Previous, ScanFindings, SharedText},
    scheduler::{Done, Job, Outcome, Visitor},
};
use crate::event::{Event, Reporter, Status};
use clab_graph::{Graph, NodeId, NodeKind};
use clab_plan::{
    Planner,
    cache_key::{KeyParts, digest_files},
    inputs::expand_outputs,
    inputs::{InputFile, KeptText},
    llm_prompt::{self, LlmLayers, LlmPrompt},
    outputs::digest_entries,
    stat_cache::{self, StatCache},
};
use clab_rules::CompiledRule;
use clab_store::{
    Digest, Store,
    cached_result::{CachedResult, OutputEntry},
    key_lock::KeyLock,
    llm_call::LlmCall,
};

/// How the cache is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMode {
    /// Look results up (`--force` turns this off).
    pub read: bool,
    /// Store results (`--no-cache` turns this and `read` off).
    pub write: bool,
}

/// Settings of the runner that do not come from tasks.kdl.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Time between the polite signal (SIGINT, SIGTERM) and SIGKILL.
    pub grace: Duration,
    /// How the cache is used.
    pub cache: CacheMode,
    /// LLM steps may only come from the cache (`--offline`).
    pub offline: bool,
    /// LLM calls are turned off, and by what (`CLAB_AI=off`,
    /// `CODEGEN_LAB_CONFIG_ENABLE_AI=false`).
    pub ai_off: Option<String>,
    /// LLM settings from flags, variables and the user's config file.
    pub llm: LlmLayers,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            grace: Duration::from_secs(3),
            cache: CacheMode {
                read: true,
                write: true,
            },
            offline: false,
            ai_off: None,
            llm: LlmLayers::default(),
        }
    }
}

/// The store and the run's key computer.
pub struct Cache {
    /// The store.
    pub store: Arc<Store>,
    /// Keys for this run's nodes.
    pub planner: Planner,
}

/// What each finished node left for its dependents.
#[derive(Clone, Copy, Default)]
struct Left {
    /// The digest of its outputs, when it succeeded.
    digest: Option<Digest>,
    /// Whether it (or something before it) wrote files during this run.
    touched: bool,
}

/// Runs nodes for the scheduler.
pub struct Runner {
    graph: Arc<Graph>,
    reporter: Arc<dyn Reporter>,
    /// For the async part of a visit: LLM calls, driven from the job thread.
    runtime: tokio::runtime::Handle,
    options: RunnerOptions,
    cache: Option<Cache>,
    left: Mutex<Vec<Left>>,
    reports: Mutex<Vec<ReportTotals>>,
    tokens: Mutex<(u64, u64)>,
    limiters: LimiterRegistry,
    /// File texts shared by rule scans, and their total size.
    texts: RwLock<(
        HashMap<String, SharedText, foldhash::fast::RandomState>,
        usize,
    )>,
    /// Every rule's prefilters in one set (see `rule_scan::PrefilterSet`).
    prefilters: OnceLock<Option<PrefilterSet>>,
    /// Rule selections by (selection id, file list), see `selection`.
    selections: Mutex<Selections>,
    /// One-pass scans of rule nodes that share their files, see `batch_scan`.
    batches: Mutex<Batches>,
    empty_stats: StatCache,
    /// Every cache hit of the run, for the no-op snapshot.
    hits: Mutex<Vec<Hit>>,
    /// Keys of nodes the scheduler found not cached, for their visit.
    missed: Mutex<HashMap<NodeId, KeyedInputs>>,
}

/// One-pass rule scans by (selection id, file list id); filled by the first node that asks.
type Batches = HashMap<(blake3::Hash, blake3::Hash), Arc<OnceLock<Arc<BatchScan>>>>;

/// The id of a list of files (their paths, in order).
fn files_id(inputs: &[InputFile]) -> blake3::Hash {
    // One buffer, hashed at once: blake3 hashes a long input many chunks at a time, while
    // 10,000 small updates go one 64-byte block after another.
    let mut bytes = Vec::with_capacity(inputs.iter().map(|f| f.path.len() + 1).sum());
    for file in inputs {
        bytes.extend_from_slice(file.path.as_bytes());
        bytes.push(0);
    }
    blake3::hash(&bytes)
}

/// Rule selections by (the rules' selection id, the file list's id).
type Selections = HashMap<(blake3::Hash, blake3::Hash), Arc<Vec<bool>>>;

/// A node restored from the cache.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The node.
    pub id: NodeId,
    /// How long its recorded run took.
    pub duration_ms: u64,
    /// Its log blob.
    pub log: Option<Digest>,
    /// Its outputs.
    pub outputs: Vec<OutputEntry>,
    /// Whether any output had to be written back.
    pub restored: bool,
}

/// A node's key and what it was computed from.
struct KeyedInputs {
    key: String,
    parts: KeyParts,
    inputs: Arc<[InputFile]>,
    prompt: Option<LlmPrompt>,
}

/// A node's key, decided before it runs, and what was computed on the way.
struct Keyed {
    key: String,
    parts: KeyParts,
    inputs: Arc<[InputFile]>,
    prompt: Option<LlmPrompt>,
    /// The key and key parts of the node's last run.
    previous: Option<(String, KeyParts)>,
}

impl Runner {
    /// A runner for `graph` that reports to `reporter`, with a cache or without. Made inside
    /// the Tokio runtime its visits use.
    pub fn new(
        graph: Arc<Graph>,
        reporter: Arc<dyn Reporter>,
        options: RunnerOptions,
        cache: Option<Cache>,
    ) -> Self {
        let count = graph.len();
        Runner {
            graph,
            reporter,
            runtime: tokio::runtime::Handle::current(),
            options,
            cache,
            left: Mutex::new(vec![Left::default(); count]),
            reports: Mutex::new(Vec::new()),
            tokens: Mutex::new((0, 0)),
            limiters: LimiterRegistry::new(),
            texts: RwLock::new((HashMap::default(), 0)),
            prefilters: OnceLock::new(),
            selections: Mutex::new(HashMap::new()),
            batches: Mutex::new(HashMap::new()),
            empty_stats: StatCache::new(),
            missed: Mutex::new(HashMap::new()),
            hits: Mutex::new(Vec::new()),
        }
    }

    fn stat_cache(&self) -> &StatCache {
        self.cache
            .as_ref()
            .and_then(|cache| cache.store.stat_cache().ok())
            .unwrap_or(&self.empty_stats)
    }

    fn left(&self, id: NodeId) -> Left {
        self.left
            .lock()
            .map(|left| left[id.index()])
            .unwrap_or_default()
    }

    fn leave(&self, id: NodeId, digest: Option<Digest>, touched: bool) {
        if let Ok(mut left) = self.left.lock() {
            left[id.index()] = Left { digest, touched };
        }
    }

    /// The dependencies whose outputs a node sees: aggregates are looked through, since
    /// they produce nothing of their own.
    fn upstream(&self, id: NodeId) -> Vec<NodeId> {
        let mut found = Vec::new();
        let mut stack = self.graph.dependencies(id);
        while let Some(dep) = stack.pop() {
            if matches!(self.graph.node(dep).kind, NodeKind::Aggregate) {
                stack.extend(self.graph.dependencies(dep));
            } else if !found.contains(&dep) {
                found.push(dep);
            }
        }
        found
    }

    /// Every cache hit so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The run's planner, when it has a cache.
    pub fn planner(&self) -> Option<&Planner> {
        self.cache.as_ref().map(|cache| &cache.planner)
    }

    /// The test and coverage totals of every node that had reports, in finishing order.
    pub fn report_totals(&self) -> Vec<ReportTotals> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Read the node's reports, if it declares any (`restored`: after a cache hit); `Err` is
    /// why it must fail.
    fn read_reports(&self, id: NodeId, restored: bool) -> Result<(), String> {
        let node = self.graph.node(id);
        if node.junit.is_none() && node.coverage.is_none() {
            return Ok(());
        }
        let (totals, result) = read_reports(self.graph.root(), node, &*self.reporter, restored);
        if let Ok(mut reports) = self.reports.lock() {
            reports.push(totals);
        }
        result
    }

    fn warn(&self, message: String) {
        self.reporter.report(&Event::Warning { message });
    }

    /// Visit node `id` on a job thread: prepare it (look it up, restore it, or lock its key),
    /// run it, and leave the storing of what it made, which reports the outcome, to
    /// [`Job::defer`]: the job's next command starts first.
    fn run_node(self: Arc<Self>, id: NodeId, job: &Job, done: Done) {
        let node = self.graph.node(id);
        let upstream_touched = self.upstream_touched(id);

        let mut keyed = None;
        if node.is_cacheable() && self.cache.is_some() {
            let prepared = match self.prepare_at_once(id) {
                Some(miss) => Ok(miss),
                None => {
                    // `prepare` may wait (for another clab's lock): not with work deferred.
                    job.run_deferred();
                    self.prepare(id, upstream_touched)
                }
            };
            match prepared {
                Err(message) => {
                    return done.finish(self.finish_failed(
                        id,
                        message,
                        Vec::new(),
                        Duration::ZERO,
                    ));
                }
                Ok(Prepared::Hit(outcome)) => return done.finish(outcome),
                Ok(Prepared::Miss(miss)) => keyed = Some(*miss),
            }
        }

        let reason = keyed.as_ref().map(|(_, reason, _)| reason.clone());
        if let NodeKind::Llm(_) = node.kind {
            let why = reason
                .as_ref()
                .map_or_else(|| "not cached".to_owned(), ToString::to_string);
            if self.options.offline {
                let message = format!("needs an LLM call ({why}) and --offline is set");
                return done.finish(self.finish_failed(id, message, Vec::new(), Duration::ZERO));
            }
            if let Some(switch) = &self.options.ai_off {
                // Asked for and not made: a failure, with the real reason first.
                let message = format!("AI is off ({switch}) and an LLM call is needed: {why}");
                return done.finish(self.finish_failed(id, message, Vec::new(), Duration::ZERO));
            }
        }
        self.reporter.report(&Event::TaskStarted {
            task: node.name.clone(),
            reason,
        });
        let started = Instant::now();
        let (inputs, prompt, previous, key, input_set) = match &mut keyed {
            Some((keyed, _, _)) => (
                std::mem::take(&mut keyed.inputs),
                keyed.prompt.take(),
                keyed.previous.take(),
                keyed.key.clone(),
                keyed.parts.input_set,
            ),
            None => (Arc::default(), None, None, String::new(), None),
        };
        if !matches!(node.kind, NodeKind::Command { .. }) {
            job.run_deferred();
        }
        let result = match &node.kind {
            NodeKind::Command { run } => self.run_commands(id, run, job),
            NodeKind::Llm(_) => self.runtime.block_on(self.run_llm_node(id, prompt)),
            NodeKind::Rule(rule) => catch_unwind(AssertUnwindSafe(|| {
                self.run_rule(id, rule, inputs, input_set, previous, &key)
            }))
            .unwrap_or_else(|_| Err((failed("the rule scan panicked"), Vec::new()))),
            NodeKind::Aggregate => Ok(Vec::new()),
        };
        let duration = started.elapsed();
        // Reports are read whether the commands passed or not: failing tests are the point.
        let result = match result {
            Err((Status::Interrupted, log)) => Err((Status::Interrupted, log)),
            Err((status, log)) => {
                let _ = self.read_reports(id, false);
                Err((status, log))
            }
            Ok(log) => match self.read_reports(id, false) {
                Ok(()) => Ok(log),
                Err(message) => Err((Status::Failed { message }, log)),
            },
        };
        match result {
            Err((Status::Interrupted, log)) => {
                drop(keyed);
                self.finish(id, Status::Interrupted, duration, Some(log));
                done.finish(Outcome::Interrupted);
            }
            Err((status, log)) => {
                // Remember what this attempt saw, so the next run can say what changed since.
                if let (Some(cache), Some((keyed, _, _))) = (&self.cache, &keyed)
                    && self.options.cache.write
                {
                    let _ =
                        clab_plan::save_parts(&cache.store, &node.name, &keyed.key, &keyed.parts);
                }
                drop(keyed);
                self.finish(id, status, duration, Some(log));
                done.finish(Outcome::Failed);
            }
            Ok(log) => {
                // Storing what the node made does not keep the next one waiting.
                let this = Arc::clone(&self);
                let keyed = keyed.map(|(keyed, _, lock)| (keyed, lock));
                job.defer(move || {
                    let digest = this.after_success(id, keyed, &log, duration);
                    this.leave(id, digest, true);
                    this.finish(id, Status::Succeeded, duration, None);
                    done.finish(Outcome::Succeeded);
                });
            }
        }
    }

    /// Whether a dependency (or something before it) wrote files during this run.
    fn upstream_touched(&self, id: NodeId) -> bool {
        self.upstream(id).iter().any(|&dep| self.left(dep).touched)
    }

    /// A cache hit restored on the scheduler's thread, or `None` (the key of a miss is kept
    /// for [`prepare`](Self::prepare), which then skips the lookup just made).
    fn settle_from_cache(&self, id: NodeId) -> Option<Outcome> {
        if !self.may_settle_from_cache(id) {
            return None;
        }
        // An error is reported when the node is visited.
        let keyed = self.compute_key(id, self.upstream_touched(id)).ok()?;
        if let Some(outcome) = self.try_restore(id, &keyed.key, &keyed.parts.extra) {
            return Some(outcome);
        }
        if let Ok(mut missed) = self.missed.lock() {
            missed.insert(id, keyed);
        }
        None
    }

    /// Whether node `id` is looked up in the cache at all.
    fn may_settle_from_cache(&self, id: NodeId) -> bool {
        self.graph.node(id).is_cacheable() && self.cache.is_some() && self.options.cache.read
    }

    /// The node's inputs, prompt and key.
    fn compute_key(&self, id: NodeId, rescan: bool) -> Result<KeyedInputs, String> {
        let Some(cache) = &self.cache else {
            return Err("no cache".into());
        };
        let node = self.graph.node(id);
        let stat_cache = self.stat_cache();
        let inputs = cache
            .planner
            .inputs(&self.graph, id, rescan, stat_cache)
            .map_err(|err| format!("{err}"))?;
        let deps = self
            .upstream(id)
            .into_iter()
            .filter_map(|dep| {
                let digest = self.left(dep).digest?;
                Some((self.graph.node(dep).name.clone(), digest))
            })
            .collect::<BTreeMap<_, _>>();
        let prompt = match node.kind {
            NodeKind::Llm(_) => Some(llm_prompt::render(
                &self.graph,
                id,
                &self.options.llm,
                stat_cache,
            )?),
            _ => None,
        };
        let extra = prompt.as_ref().map(|p| p.extra.clone()).unwrap_or_default();
        let parts = cache
            .planner
            .key_parts(&self.graph, id, &inputs, deps, extra);
        let key = parts.key().to_string();
        Ok(KeyedInputs {
            key,
            parts,
            inputs,
            prompt,
        })
    }

    /// [`prepare`](Self::prepare) for a node whose miss the scheduler's settle already found,
    /// when nothing on the way can block — no manifest of a last run to read, its key's lock
    /// free — so the job's deferred storing may wait until the node's command has started.
    /// `None` (having changed nothing) when the path that may block is needed.
    fn prepare_at_once(&self, id: NodeId) -> Option<Prepared> {
        let cache = self.cache.as_ref()?;
        let node = self.graph.node(id);
        if cache.store.may_have_manifest(&node.name) {
            return None;
        }
        let mut missed = self.missed.lock().ok()?;
        let key = &missed.get(&id)?.key;
        let lock = if self.options.cache.write {
            Some(cache.store.try_lock_key(key).ok()??)
        } else {
            None
        };
        let keyed = missed.remove(&id)?;
        drop(missed);
        Some(self.miss(keyed, None, lock))
    }

    /// A node that must run: its key, why it runs (from its last run's key parts,
    /// `previous`), and its key's lock.
    fn miss(
        &self,
        keyed: KeyedInputs,
        previous: Option<(String, KeyParts)>,
        lock: Option<KeyLock>,
    ) -> Prepared {
        let reason = if self.options.cache.read {
            clab_plan::why_from(previous.as_ref().map(|(_, parts)| parts), &keyed.parts)
        } else {
            clab_plan::Reason::Forced
        };
        let KeyedInputs {
            key,
            parts,
            inputs,
            prompt,
        } = keyed;
        let keyed = Keyed {
            key,
            parts,
            inputs,
            prompt,
            previous,
        };
        Prepared::Miss(Box::new((keyed, reason, lock)))
    }

    /// Compute the key (or take the one the scheduler's settle left) and look it up unless
    /// settle just did; on a hit restore and report; on a miss take the lock.
    fn prepare(&self, id: NodeId, rescan: bool) -> Result<Prepared, String> {
        let Some(cache) = &self.cache else {
            return Err("no cache".into());
        };
        let node = self.graph.node(id);
        let settled = self.missed.lock().ok().and_then(|mut m| m.remove(&id));
        let keyed = match settled {
            Some(keyed) => keyed,
            None => {
                let keyed = self.compute_key(id, rescan)?;
                if self.options.cache.read
                    && let Some(outcome) = self.try_restore(id, &keyed.key, &keyed.parts.extra)
                {
                    return Ok(Prepared::Hit(outcome));
                }
                keyed
            }
        };
        let previous = clab_plan::previous_parts(&cache.store, &node.name);
        let mut waited = false;
        let lock = if self.options.cache.write {
            let name = node.name.clone();
            let reporter = Arc::clone(&self.reporter);
            match cache.store.lock_key_with(&keyed.key, || {
                waited = true;
                reporter.report(&Event::Warning {
                    message: format!("`{name}` is being built by another clab; waiting for it"),
                });
            }) {
                Ok(lock) => Some(lock),
                Err(err) => {
                    self.warn(format!("cannot lock `{}` in the cache: {err}", node.name));
                    None
                }
            }
        } else {
            None
        };
        // The other process may have stored the result while we waited for the lock. (One
        // that stored it and let go before we asked is not waited for, and not looked for:
        // the task then runs again — never twice at once — instead of every miss of every
        // run asking the cache twice.)
        if self.options.cache.read
            && waited
            && lock.is_some()
            && let Some(outcome) = self.try_restore(id, &keyed.key, &keyed.parts.extra)
        {
            return Ok(Prepared::Hit(outcome));
        }
        Ok(self.miss(keyed, previous, lock))
    }

    /// Restore a cached result for `key`, if there is one and it restores cleanly.
    fn try_restore(
        &self,
        id: NodeId,
        key: &str,
        extra: &BTreeMap<String, String>,
    ) -> Option<Outcome> {
        let cache = self.cache.as_ref()?;
        let node = self.graph.node(id);
        let result = match cache.store.load_result(key) {
            Ok(result) => result?,
            Err(err) => {
                self.warn(format!("cache lookup for `{}` failed: {err}", node.name));
                return None;
            }
        };
        let report = match cache.store.restore_outputs(self.graph.root(), &result) {
            Ok(report) => report,
            Err(err) => {
                self.warn(format!(
                    "cannot restore `{}` from the cache, running it: {err}",
                    node.name
                ));
                return None;
            }
        };
        // Most logs are empty: no blob to read.
        let log = result
            .log
            .filter(|digest| *digest != Digest::empty())
            .and_then(|digest| cache.store.read_log(&digest).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .filter(|text| !text.is_empty());
        self.leave(
            id,
            Some(digest_entries(&result.outputs)),
            !report.restored.is_empty(),
        );
        if let Ok(mut hits) = self.hits.lock() {
            hits.push(Hit {
                id,
                duration_ms: result.duration_ms,
                log: result.log,
                outputs: result.outputs.clone(),
                restored: !report.restored.is_empty(),
            });
        }
        self.reporter.report(&Event::TaskFinished {
            task: node.name.clone(),
            status: Status::Cached,
            duration_ms: result.duration_ms,
            log,
        });
        if let NodeKind::Llm(_) = node.kind {
            self.record_llm_hit(id, extra);
        }
        // Only passing results are cached, so the reports passed too; show them again.
        if let Err(message) = self.read_reports(id, true) {
            self.warn(format!(
                "the restored reports of `{}`: {message}",
                node.name
            ));
        }
        Some(Outcome::Cached {
            saved: Duration::from_millis(result.duration_ms),
        })
    }

    /// Store what a successful node produced; return the digest of its outputs.
    fn after_success(
        &self,
        id: NodeId,
        keyed: Option<(Keyed, Option<KeyLock>)>,
        log: &[u8],
        duration: Duration,
    ) -> Option<Digest> {
        let node = self.graph.node(id);
        let root = self.graph.root();
        let files = match expand_outputs(root, &node.outputs) {
            Ok(files) => files,
            Err(err) => {
                self.warn(format!("cannot list the outputs of `{}`: {err}", node.name));
                return None;
            }
        };
        for pattern in &node.outputs {
            let literal = !pattern.starts_with('!') && !pattern.contains(['*', '?', '[', '{']);
            // A missing JUnit report was warned about when the reports were read.
            let report = node.junit.as_ref() == Some(pattern);
            if literal && !report && !root.join(pattern.trim_end_matches('/')).exists() {
                self.warn(format!(
                    "`{}` did not write its declared output `{pattern}`",
                    node.name
                ));
            }
        }
        let (Some(cache), Some((keyed, _lock))) = (&self.cache, keyed) else {
            return self.digest_uncached(&files);
        };
        if !self.options.cache.write {
            return self.digest_uncached(&files);
        }
        let store = &cache.store;
        let stored = files
            .iter()
            .map(|file| store.store_output(root, file))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|entries| {
                let log = store.put_log(log)?;
                let result = CachedResult::new(
                    node.name.clone(),
                    "ok",
                    duration.as_millis() as u64,
                    entries.clone(),
                    Some(log),
                );
                let manifest = clab_plan::manifest_json(store, &keyed.parts)?;
                store.save_result_and_manifest(&keyed.key, &result, &manifest)?;
                Ok(entries)
            });
        match stored {
            Ok(entries) => Some(digest_entries(&entries)),
            Err(err) => {
                self.warn(format!("cannot store `{}` in the cache: {err}", node.name));
                self.digest_uncached(&files)
            }
        }
    }

    /// The digest of outputs that are not stored: hashed in place.
    fn digest_uncached(&self, files: &[String]) -> Option<Digest> {
        use std::os::unix::fs::PermissionsExt;
        let root = self.graph.root();
        let stat_cache = self.stat_cache();
        let mut hashed = Vec::with_capacity(files.len());
        for file in files {
            let path = root.join(file);
            let (digest, _) = stat_cache.hash_file(&path).ok()?;
            let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
            hashed.push((file.as_str(), digest, mode));
        }
        Some(digest_files(hashed.iter().map(|(p, d, m)| (*p, d, *m))))
    }

    /// Report a node that failed before anything was started for it.
    fn finish_failed(
        &self,
        id: NodeId,
        message: String,
        log: Vec<u8>,
        duration: Duration,
    ) -> Outcome {
        self.finish(id, Status::Failed { message }, duration, Some(log));
        Outcome::FailedBeforeStart
    }

    fn finish(&self, id: NodeId, status: Status, duration: Duration, log: Option<Vec<u8>>) {
        let log = log.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        self.reporter.report(&Event::TaskFinished {
            task: self.graph.node(id).name.clone(),
            status,
            duration_ms: duration.as_millis() as u64,
            log,
        });
    }

    /// Run an LLM node: render its request (unless the key computation already did), call,
    /// check, and log every attempt.
    async fn run_llm_node(
        &self,
        id: NodeId,
        prompt: Option<LlmPrompt>,
    ) -> Result<Vec<u8>, (Status, Vec<u8>)> {
        let node = self.graph.node(id);
        let prompt = match prompt {
            Some(prompt) => prompt,
            None => llm_prompt::render(&self.graph, id, &self.options.llm, self.stat_cache())
                .map_err(|message| (failed(&message), Vec::new()))?,
        };
        let (result, calls) = run_llm(&node.name, self.graph.root(), &prompt, &self.limiters).await;
        let now_ms = now_ms();
        if let Ok(mut tokens) = self.tokens.lock() {
            for call in &calls {
                tokens.0 += call.tokens_in.unwrap_or(0);
                tokens.1 += call.tokens_out.unwrap_or(0);
            }
        }
        if let Some(cache) = &self.cache {
            for call in &calls {
                let record = LlmCall {
                    task: call.task.clone(),
                    provider: call.provider.clone(),
                    model: call.model.clone(),
                    attempt: call.attempt,
                    tokens_in: call.tokens_in,
                    tokens_out: call.tokens_out,
                    latency_ms: call.latency_ms,
                    status: call.outcome.as_str().to_owned(),
                    cache_hit: false,
                    at_ms: now_ms,
                };
                if let Err(err) = cache.store.record_llm_call(&record) {
                    self.warn(format!("cannot log the LLM call of `{}`: {err}", node.name));
                }
            }
        }
        match result {
            Ok(line) => {
                self.reporter.report(&Event::TaskOutput {
                    task: node.name.clone(),
                    line: line.clone(),
                });
                Ok(format!("{line}\n").into_bytes())
            }
            Err(message) => Err((failed(&message), message.into_bytes())),
        }
    }

    /// Log a cache hit of an LLM node, for the hit rate of `clab stats`. The provider and
    /// model are the resolved ones, from the key parts.
    fn record_llm_hit(&self, id: NodeId, parts: &BTreeMap<String, String>) {
        let Some(cache) = &self.cache else {
            return;
        };
        let part = |name: &str| parts.get(name).cloned().unwrap_or_default();
        let record = LlmCall {
            task: self.graph.node(id).name.clone(),
            provider: part("llm.provider"),
            model: part("llm.model"),
            attempt: 0,
            tokens_in: None,
            tokens_out: None,
            latency_ms: 0,
            status: "cached".to_owned(),
            cache_hit: true,
            at_ms: now_ms(),
        };
        let _ = cache.store.record_llm_call(&record);
    }

    /// Tokens sent and received by this run's LLM calls.
    pub fn tokens(&self) -> (u64, u64) {
        self.tokens.lock().map(|t| *t).unwrap_or_default()
    }

    /// A file's text for rule scans, read at most once per run: twenty rules over the same
    /// tree read each file once, and a file the planner read to hash it is not read again.
    /// Files over 256 KiB, or past a 256 MiB total, are not kept. Searched with the
    /// prefilters of every rule in the graph on first read.
    fn read_shared(&self, file: &InputFile) -> Option<SharedText> {
        // The limits of the texts the planner keeps (see `StatCache::hash_files_keeping`).
        const MAX_FILE: usize = stat_cache::KEEP_FILE_MAX as usize;
        const MAX_TOTAL: usize = stat_cache::KEEP_TOTAL_MAX as usize;
        let path = file.path.as_str();
        if let Some(shared) = self.texts.read().ok()?.0.get(path) {
            return Some(shared.clone());
        }
        let kept = self
            .cache
            .as_ref()
            .and_then(|cache| cache.planner.take_text(path, &file.hash));
        let text = match kept {
            Some(KeptText::Bytes(bytes)) => rule_scan::text_of(bytes),
            // No prefilter matches the file, and they decide alone: no rule needs its text.
            Some(KeptText::Unneeded) => {
                return Some(SharedText {
                    text: Arc::default(),
                    hits: self.prefilters().map(PrefilterSet::no_hits),
                });
            }
            None => rule_scan::read_text(self.graph.root(), path)?,
        };
        let hits = self.prefilters().map(|set| set.search(&text));
        let shared = SharedText { text, hits };
        if shared.text.len() <= MAX_FILE
            && let Ok(mut texts) = self.texts.write()
            && texts.1 + shared.text.len() <= MAX_TOTAL
        {
            texts.1 += shared.text.len();
            texts.0.insert(path.to_owned(), shared.clone());
        }
        Some(shared)
    }

    /// Which of `inputs` the rule selects, decided once per run for all rules with the same
    /// globs and path filters over the same files.
    fn selection(
        &self,
        rule: &CompiledRule,
        inputs: &[InputFile],
        files: blake3::Hash,
    ) -> Arc<Vec<bool>> {
        let id = (rule.selection_id(), files);
        if let Some(known) = self
            .selections
            .lock()
            .ok()
            .and_then(|s| s.get(&id).cloned())
        {
            return known;
        }
        let selected = Arc::new(rule_scan::selection(rule, inputs));
        if let Ok(mut selections) = self.selections.lock() {
            selections.insert(id, Arc::clone(&selected));
        }
        selected
    }

    /// The findings of every rule node like `id` — same inputs patterns, same selection — over
    /// `inputs`, scanned once for all of them (see `rule_scan::BatchScan`); `None` when the
    /// rule has no such siblings. The first node to ask scans; the others wait for it.
    fn batch_scan(
        &self,
        id: NodeId,
        rule: &CompiledRule,
        inputs: &[InputFile],
        selected: &[bool],
        files: blake3::Hash,
    ) -> Option<Arc<BatchScan>> {
        let patterns = &self.graph.node(id).inputs;
        let group: Vec<&CompiledRule> = self
            .graph
            .ids()
            .filter_map(|other| {
                let node = self.graph.node(other);
                match &node.kind {
                    NodeKind::Rule(other)
                        if other.selection_id() == rule.selection_id()
                            && &node.inputs == patterns =>
                    {
                        Some(&**other)
                    }
                    _ => None,
                }
            })
            .collect();
        if group.len() < 2 {
            return None;
        }
        let cell = Arc::clone(
            self.batches
                .lock()
                .ok()?
                .entry((rule.selection_id(), files))
                .or_default(),
        );
        let batch = cell.get_or_init(|| {
            let read = |file: &InputFile| self.read_shared(file);
            Arc::new(rule_scan::scan_batch(
                &group,
                inputs,
                selected,
                &read,
                self.prefilters(),
            ))
        });
        Some(Arc::clone(batch))
    }

    /// The prefilters of every rule node in the graph, as one set: the planner's (which
    /// decided which texts it kept), else made here.
    fn prefilters(&self) -> Option<&PrefilterSet> {
        if let Some(set) = self.cache.as_ref().and_then(|c| c.planner.prefilters()) {
            return Some(set);
        }
        self.prefilters
            .get_or_init(|| self.graph.prefilter_set())
            .as_ref()
    }

    /// Run a rule check: scan what changed since the last scan, report every finding, fail
    /// on `reject` findings. `input_set` is the digest of a large inputs map (see
    /// `KeyParts::input_set`).
    fn run_rule(
        &self,
        id: NodeId,
        rule: &CompiledRule,
        inputs: Arc<[InputFile]>,
        input_set: Option<Digest>,
        previous: Option<(String, KeyParts)>,
        key: &str,
    ) -> Result<Vec<u8>, (Status, Vec<u8>)> {
        let node = self.graph.node(id);
        let root = self.graph.root();
        let inputs = if inputs.is_empty() {
            // Not keyed (no cache): walk the rule's inputs now.
            clab_plan::inputs::collect(root, &node.inputs, self.stat_cache())
                .map_err(|err| (failed(&err.to_string()), Vec::new()))?
                .into()
        } else {
            inputs
        };
        let manifest_name = format!("scan:{}", node.name);
        let store = self.cache.as_ref().map(|c| &c.store);
        let findings = store
            .and_then(|s| s.load_manifest(&manifest_name).ok().flatten())
            .and_then(|saved| serde_json::from_str::<ScanFindings>(&saved.json).ok());
        let previous = match (&previous, findings) {
            (Some((key, parts)), Some(findings)) => Some(Previous {
                inputs: &parts.inputs,
                key,
                findings,
            }),
            _ => None,
        };
        let read = |file: &InputFile| self.read_shared(file);
        // The planner's digest of a large inputs map names the list (paths and hashes) as
        // well, and is already computed.
        let files = input_set.map_or_else(
            || files_id(&inputs),
            |digest| blake3::Hash::from(*digest.as_bytes()),
        );
        let selected = self.selection(rule, &inputs, files);
        let batch = || self.batch_scan(id, rule, &inputs, &selected, files);
        let mut result = rule_scan::scan(
            rule,
            &inputs,
            &selected,
            previous,
            &read,
            self.prefilters(),
            &batch,
        );
        if let Some(store) = store
            && self.options.cache.write
        {
            result.stored.key = key.to_owned();
            let json = serde_json::to_string(&result.stored).unwrap_or_default();
            if let Err(err) = store.save_manifest(&manifest_name, key, &json) {
                self.warn(format!("cannot save the scan of `{}`: {err}", node.name));
            }
        }
        let mut log = String::new();
        let mut errors = 0;
        for finding in &result.findings {
            let error = finding.severity == clab_rules::Severity::Error;
            errors += usize::from(error);
            let severity = if error { "error" } else { "warning" };
            log.push_str(&format!(
                "{}:{}:{}: {severity}: {} [{}]\n",
                finding.path, finding.line, finding.col, finding.message, finding.rule
            ));
            self.reporter.report(&Event::Finding {
                task: node.name.clone(),
                rule: finding.rule.clone(),
                path: finding.path.clone(),
                line: finding.line,
                col: finding.col,
                message: finding.message.clone(),
                severity: severity.to_owned(),
            });
        }
        let summary = format!(
            "scanned {} file{}, {} unchanged; {} finding{}",
            result.scanned,
            if result.scanned == 1 { "" } else { "s" },
            result.reused,
            result.findings.len(),
            if result.findings.len() == 1 { "" } else { "s" },
        );
        self.reporter.report(&Event::TaskOutput {
            task: node.name.clone(),
            line: summary.clone(),
        });
        log.push_str(&summary);
        log.push('\n');
        if errors > 0 {
            let message = format!(
                "{errors} finding{} to fix",
                if errors == 1 { "" } else { "s" }
            );
            return Err((failed(&message), log.into_bytes()));
        }
        Ok(log.into_bytes())
    }

    /// Run the command lines in order, the whole sequence again on failure up to `retry`
    /// times. Returns the captured log, or the failure status with it.
    fn run_commands(
        &self,
        id: NodeId,
        lines: &[String],
        job: &Job,
    ) -> Result<Vec<u8>, (Status, Vec<u8>)> {
        let node = self.graph.node(id);
        let cwd: PathBuf = self.graph.root().join(&node.cwd);
        let attempts = node.retry + 1;
        let env = self.graph.command_env(id);
        let mut log = Vec::new();
        for attempt in 1..=attempts {
            log.clear();
            let mut failure = None;
            for (index, line) in lines.iter().enumerate() {
                let spec = CommandSpec {
                    line: line.clone(),
                    cwd: cwd.clone(),
                    env: env.clone(),
                    timeout: node.timeout,
                    grace: self.options.grace,
                };
                let on_line = |text: &str| {
                    self.reporter.report(&Event::TaskOutput {
                        task: node.name.clone(),
                        line: text.to_owned(),
                    });
                };
                match run_command(&spec, on_line, job.stop(), || job.run_deferred()) {
                    Ok((exit, output)) => {
                        log.extend_from_slice(&output);
                        if !exit.success() {
                            failure = Some((exit, index));
                            break;
                        }
                    }
                    Err(err) => {
                        let message = format!("{err}: {}\n", err.source);
                        log.extend_from_slice(message.as_bytes());
                        failure = Some((Exit::Code(127), index));
                        break;
                    }
                }
            }
            match failure {
                None => return Ok(log),
                Some((Exit::Interrupted, _)) => return Err((Status::Interrupted, log)),
                Some((exit, index)) if attempt == attempts => {
                    let mut message = exit.describe_command(index + 1, lines.len(), &lines[index]);
                    if attempts > 1 {
                        message.push_str(&format!(" (after {attempts} attempts)"));
                    }
                    return Err((Status::Failed { message }, log));
                }
                Some((exit, index)) => self.warn(format!(
                    "`{}` failed ({}), retrying ({attempt}/{})",
                    node.name,
                    exit.describe_command(index + 1, lines.len(), &lines[index]),
                    attempts - 1
                )),
            }
        }
        Ok(log)
    }
}

fn failed(message: &str) -> Status {
    Status::Failed {
        message: message.to_owned(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The result of looking a node up before running it.
enum Prepared {
    /// Restored from the cache.
    Hit(Outcome),
    /// Must run: the key, why, and the key's lock.
    Miss(Box<(Keyed, clab_plan::Reason, Option<KeyLock>)>),
}

impl Visitor for Runner {
    fn visit(self: Arc<Self>, id: NodeId, job: &Job, done: Done) {
        self.run_node(id, job, done);
    }

    fn settle(&self, id: NodeId) -> Option<Outcome> {
        self.settle_from_cache(id)
    }

    fn may_settle(&self, id: NodeId) -> bool {
        self.may_settle_from_cache(id)
    }
}
