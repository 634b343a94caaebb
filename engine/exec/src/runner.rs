//! The [`Visitor`] that does the work of each node: look it up in the cache, restore it or
//! have its [`Kind`] run it, store what it produced, report.
//!
//! Per cacheable node: inputs → [`KeyParts`] (with the kind's own parts, [`Kind::key_extra`])
//! → key. A hit restores the outputs that are missing or changed and replays the log. A miss
//! says why (from the last recorded run), takes the key's lock so two clab processes never
//! build the same key at once, checks the cache again (the other process may have just
//! finished), runs, and on success stores the outputs, the log, the result and the key
//! parts, in that order. Failures are not cached.
//!
//! The runner knows nothing of what a node does: commands, LLM steps, rule scans and
//! aggregates are [`Kind`]s ([`crate::kind`]). Every node leaves the digest of its outputs
//! behind for its dependents' keys (early cutoff), and what files it wrote this run (so
//! dependents walk their inputs again instead of trusting the index built before anything
//! ran — after a restore, only when a restored file can be one of their inputs:
//! [`Planner::must_rescan`](clab_plan::Planner::must_rescan)).

use std::{
    collections::{BTreeMap, HashMap},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clab_graph::{NodeId, NodeKind};
use clab_plan::{
    Reason,
    cache_key::{KeyParts, digest_files},
    inputs::{InputFile, expand_outputs},
    outputs::digest_entries,
};
use clab_remote::{Fetch, Fetched, MissReason, OnHit};
use clab_store::{
    Digest, KeyLock, VerifiedBlob,
    cached_result::{CachedResult, OutputEntry, RestoreReport},
};
use rayon::prelude::*;

use crate::{
    context::{Context, failed},
    event::{Event, Status},
    kind::{Kind, Kinds, Work},
    report_totals::{ReportTotals, Reports},
    scheduler::{Done, Job, Outcome, PARALLEL_SETTLE, Visitor, settle_each},
    snapshot::Known,
    task_log::TaskLog,
};

/// What each finished node left for its dependents.
#[derive(Clone, Default)]
struct Left {
    /// The digest of its outputs, when it succeeded.
    digest: Option<Digest>,
    /// What it wrote during this run.
    wrote: Wrote,
}

/// What files a node wrote during this run.
#[derive(Clone, Default)]
enum Wrote {
    /// None (a hit whose outputs were all in place, or a node not visited yet).
    #[default]
    Nothing,
    /// Exactly these outputs (relative `/` paths), restored from the cache.
    Restored(Arc<[String]>),
    /// It ran: anything it could write.
    Anything,
}

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
struct Keyed {
    key: String,
    parts: KeyParts,
    inputs: Arc<[InputFile]>,
}

/// The result of looking a node up before running it.
enum Prepared {
    /// Restored from the cache.
    Hit(Outcome),
    /// Must run: the key, the key and key parts of its last run, why, and the key's lock.
    Miss(Box<Miss>),
}

/// A node that must run.
struct Miss {
    keyed: Keyed,
    previous: Option<(String, KeyParts)>,
    reason: Reason,
    /// The key's lock, held until the result is stored (or the node failed).
    _lock: Option<KeyLock>,
}

/// Runs nodes for the scheduler.
pub struct Runner {
    cx: Context,
    kinds: Kinds,
    /// What each node left for its dependents, by index.
    left: Mutex<Vec<Left>>,
    /// Every cache hit of the run, for the no-op snapshot.
    hits: Mutex<Vec<Hit>>,
    /// Keys of nodes the scheduler found not cached, for their visit.
    missed: Mutex<HashMap<NodeId, Keyed>>,
    reports: Reports,
    /// Nodes the no-op snapshot vouches for: settled as hits without a key.
    known: HashMap<NodeId, Known>,
}

impl Runner {
    /// A runner of `cx.graph` whose nodes' work is done by `kinds`.
    pub fn new(cx: Context, kinds: Kinds) -> Self {
        let count = cx.graph.len();
        Runner {
            cx,
            kinds,
            left: Mutex::new(vec![Left::default(); count]),
            hits: Mutex::new(Vec::new()),
            missed: Mutex::new(HashMap::new()),
            reports: Reports::default(),
            known: HashMap::new(),
        }
    }

    /// The same runner, settling the `known` nodes (see [`crate::snapshot`]) as cache hits
    /// with their recorded digests, without walking, hashing or keying them.
    pub fn with_known(mut self, known: HashMap<NodeId, Known>) -> Self {
        self.known = known;
        self
    }

    /// Report a known node cached, and leave its recorded digest for its dependents.
    fn settle_known(&self, id: NodeId, known: &Known) -> Outcome {
        let log = known
            .replay
            .log
            .zip(self.cx.store())
            .and_then(|(digest, store)| crate::task_log::read_tail(store, &digest))
            .filter(|text| !text.is_empty());
        self.leave(id, Some(known.digest), Wrote::Nothing);
        if let Some(store) = self.cx.store() {
            store.count_hits(1);
        }
        self.cx.reporter.report(&Event::TaskFinished {
            task: self.cx.node(id).name.clone(),
            status: Status::Cached { remote: false },
            duration_ms: known.replay.duration_ms,
            log,
        });
        Outcome::Cached {
            saved: Duration::from_millis(known.replay.duration_ms),
            remote: false,
        }
    }

    /// The run's context.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Every cache hit so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The test and coverage totals of every node that had reports, in finishing order.
    pub fn report_totals(&self) -> Vec<ReportTotals> {
        self.reports.totals()
    }

    fn kind(&self, id: NodeId) -> &dyn Kind {
        self.kinds.of(&self.cx.node(id).kind)
    }

    fn left(&self, id: NodeId) -> Left {
        self.left
            .lock()
            .map(|left| left[id.index()].clone())
            .unwrap_or_default()
    }

    fn leave(&self, id: NodeId, digest: Option<Digest>, wrote: Wrote) {
        if let Ok(mut left) = self.left.lock() {
            left[id.index()] = Left { digest, wrote };
        }
    }

    /// The dependencies whose outputs a node sees: aggregates are looked through, since
    /// they produce nothing of their own.
    fn upstream(&self, id: NodeId) -> Vec<NodeId> {
        let graph = &self.cx.graph;
        let mut found = Vec::new();
        let mut stack = graph.dependencies(id);
        while let Some(dep) = stack.pop() {
            if matches!(graph.node(dep).kind, NodeKind::Aggregate) {
                stack.extend(graph.dependencies(dep));
            } else if !found.contains(&dep) {
                found.push(dep);
            }
        }
        found
    }

    /// Whether node `id` must walk its inputs again rather than trust the run's index: a
    /// dependency ran (it may have written anything), or restored files that can be among
    /// the node's inputs ([`Planner::must_rescan`](clab_plan::Planner::must_rescan)).
    fn must_rescan(&self, id: NodeId, planner: &clab_plan::Planner) -> bool {
        let mut restored = Vec::new();
        for dep in self.upstream(id) {
            match self.left(dep).wrote {
                Wrote::Nothing => {}
                Wrote::Anything => return true,
                Wrote::Restored(paths) => restored.push(paths),
            }
        }
        if restored.is_empty() {
            return false;
        }
        let written: Vec<&str> = restored
            .iter()
            .flat_map(|paths| paths.iter().map(String::as_str))
            .collect();
        planner.must_rescan(&self.cx.graph, id, &written)
    }

    /// Visit node `id` on a job thread: prepare it (look it up, restore it, or lock its key),
    /// have its kind run it, and leave the storing of what it made, which reports the
    /// outcome, to [`Job::defer`]: the job's next command starts first.
    fn run_node(self: Arc<Self>, id: NodeId, job: &Job, done: Done) {
        if let Some(known) = self.known.get(&id) {
            return done.finish(self.settle_known(id, known));
        }
        let node = self.cx.node(id);
        let kind = self.kind(id);

        let mut miss = None;
        if node.is_cacheable() && self.cx.cache.is_some() {
            let prepared = match self.prepare_at_once(id) {
                Some(prepared) => Ok(prepared),
                None => {
                    // `prepare` may wait (for another clab's lock): not with work deferred.
                    job.run_deferred();
                    self.prepare(id)
                }
            };
            match prepared {
                Err(message) => return done.finish(self.finish_failed(id, message)),
                Ok(Prepared::Hit(outcome)) => return done.finish(outcome),
                Ok(Prepared::Miss(found)) => miss = Some(*found),
            }
        }

        let reason = miss.as_ref().map(|miss| miss.reason.clone());
        if let Some(message) = kind.refuse(&self.cx, id, reason.as_ref()) {
            return done.finish(self.finish_failed(id, message));
        }
        self.cx.reporter.report(&Event::TaskStarted {
            task: node.name.clone(),
            reason,
        });
        let started = Instant::now();
        if !kind.starts_processes() {
            job.run_deferred();
        }
        let work = Work {
            id,
            job,
            inputs: miss
                .as_ref()
                .map_or_else(Arc::default, |m| Arc::clone(&m.keyed.inputs)),
            keyed: miss
                .as_ref()
                .map(|m| (m.keyed.key.as_str(), &m.keyed.parts)),
            previous: miss.as_ref().and_then(|m| m.previous.as_ref()),
        };
        let timing = clab_model::phase::now();
        let result =
            catch_unwind(AssertUnwindSafe(|| kind.run(&self.cx, work))).unwrap_or_else(|_| {
                let message = format!(
                    "clab panicked running this {} node (a bug)",
                    node.kind.label()
                );
                Err((failed(&message), Default::default()))
            });
        let duration = started.elapsed();
        clab_model::phase::add("command", timing);
        // Reports are read whether the node passed or not: failing tests are the point.
        let result = match result {
            Err((Status::Interrupted, log)) => Err((Status::Interrupted, log)),
            Err((status, log)) => {
                let _ = self.reports.read(&self.cx, id, false);
                Err((status, log))
            }
            Ok(log) => match self.reports.read(&self.cx, id, false) {
                Ok(()) => Ok(log),
                Err(message) => Err((Status::Failed { message }, log)),
            },
        };
        match result {
            Err((Status::Interrupted, log)) => {
                drop(miss);
                self.finish(id, Status::Interrupted, duration, Some(log));
                done.finish(Outcome::Interrupted);
            }
            Err((status, log)) => {
                // Remember what this attempt saw, so the next run can say what changed since.
                if let (Some(store), Some(miss)) = (self.cx.writable_store(), &miss) {
                    let _ = clab_plan::save_parts(
                        store,
                        &node.name,
                        &miss.keyed.key,
                        &miss.keyed.parts,
                    );
                }
                drop(miss);
                self.finish(id, status, duration, Some(log));
                done.finish(Outcome::Failed);
            }
            Ok(mut log) => {
                // Storing what the node made does not keep the next one waiting.
                let this = Arc::clone(&self);
                job.defer(move || {
                    let timing = clab_model::phase::now();
                    let digest = this.after_success(id, miss, &mut log, duration);
                    clab_model::phase::add("store", timing);
                    this.leave(id, digest, Wrote::Anything);
                    this.finish(id, Status::Succeeded, duration, None);
                    done.finish(Outcome::Succeeded);
                });
            }
        }
    }

    /// A cache hit restored on the scheduler's thread, or `None` (the key of a miss is kept
    /// for [`prepare`](Self::prepare), which then skips the lookup just made).
    fn settle_from_cache(&self, id: NodeId) -> Option<Outcome> {
        if let Some(known) = self.known.get(&id) {
            return Some(self.settle_known(id, known));
        }
        if !self.may_settle_from_cache(id) {
            return None;
        }
        // An error is reported when the node is visited.
        let keyed = self.compute_key(id).ok()?;
        if let Some(outcome) = self.try_restore(id, &keyed) {
            return Some(outcome);
        }
        if let Ok(mut missed) = self.missed.lock() {
            missed.insert(id, keyed);
        }
        None
    }

    /// Whether node `id` is looked up in the cache at all.
    fn may_settle_from_cache(&self, id: NodeId) -> bool {
        self.known.contains_key(&id)
            || self.cx.node(id).is_cacheable() && self.cx.cache.is_some() && self.cx.mode.read
    }

    /// The node's inputs and key.
    fn compute_key(&self, id: NodeId) -> Result<Keyed, String> {
        let timing = clab_model::phase::now();
        let keyed = self.compute_key_timed(id);
        clab_model::phase::add("key", timing);
        keyed
    }

    /// [`compute_key`](Self::compute_key) without the phase timing.
    fn compute_key_timed(&self, id: NodeId) -> Result<Keyed, String> {
        let planner = self.cx.planner().ok_or("no cache")?;
        let graph = &self.cx.graph;
        let rescan = self.must_rescan(id, planner);
        let inputs = planner
            .inputs(graph, id, rescan, self.cx.stat_cache())
            .map_err(|err| format!("{err}"))?;
        let deps = self
            .upstream(id)
            .into_iter()
            .filter_map(|dep| {
                let digest = self.left(dep).digest?;
                Some((graph.node(dep).name.clone(), digest))
            })
            .collect::<BTreeMap<_, _>>();
        let extra = self.kind(id).key_extra(&self.cx, id)?;
        let parts = planner.key_parts(graph, id, &inputs, deps, extra);
        let key = parts.key().to_string();
        Ok(Keyed { key, parts, inputs })
    }

    /// [`prepare`](Self::prepare) for a node whose miss the scheduler's settle already found,
    /// when nothing on the way can block — no manifest of a last run to read, its key's lock
    /// free — so the job's deferred storing may wait until the node's command has started.
    /// `None` (having changed nothing) when the path that may block is needed.
    fn prepare_at_once(&self, id: NodeId) -> Option<Prepared> {
        let store = self.cx.store()?;
        if store.may_have_manifest(&self.cx.node(id).name) {
            return None;
        }
        let mut missed = self.missed.lock().ok()?;
        let key = &missed.get(&id)?.key;
        let lock = if self.cx.mode.write {
            Some(store.try_lock_key(key).ok()??)
        } else {
            None
        };
        // A free lock does not say nobody built the key since the scheduler looked: another
        // clab may have stored it and let go (issue 18: four runs at once). Then the slow
        // path restores it.
        if lock.is_some() && self.cx.mode.read && store.peek_result(key).ok().flatten().is_some() {
            return None;
        }
        let keyed = missed.remove(&id)?;
        drop(missed);
        Some(self.miss(keyed, None, lock))
    }

    /// A node that must run: its key, why it runs (from its last run's key parts,
    /// `previous`), and its key's lock.
    fn miss(
        &self,
        keyed: Keyed,
        previous: Option<(String, KeyParts)>,
        lock: Option<KeyLock>,
    ) -> Prepared {
        let reason = if self.cx.mode.read {
            clab_plan::why_from(previous.as_ref().map(|(_, parts)| parts), &keyed.parts)
        } else {
            Reason::Forced
        };
        Prepared::Miss(Box::new(Miss {
            keyed,
            previous,
            reason,
            _lock: lock,
        }))
    }

    /// Compute the key (or take the one the scheduler's settle left) and look it up unless
    /// settle just did; on a hit restore and report; on a miss take the lock.
    fn prepare(&self, id: NodeId) -> Result<Prepared, String> {
        let store = self.cx.store().ok_or("no cache")?;
        let node = self.cx.node(id);
        let settled = self.missed.lock().ok().and_then(|mut m| m.remove(&id));
        let looked_earlier = settled.is_some();
        let keyed = match settled {
            Some(keyed) => keyed,
            None => {
                let keyed = self.compute_key(id)?;
                if self.cx.mode.read
                    && let Some(outcome) = self.try_restore(id, &keyed)
                {
                    return Ok(Prepared::Hit(outcome));
                }
                keyed
            }
        };
        let previous = clab_plan::previous_parts(store, &node.name);
        let mut waited = false;
        let lock = if self.cx.mode.write {
            let name = node.name.clone();
            let reporter = Arc::clone(&self.cx.reporter);
            match store.lock_key_with(&keyed.key, || {
                waited = true;
                reporter.report(&Event::Warning {
                    message: format!("`{name}` is being built by another clab; waiting for it"),
                });
            }) {
                Ok(lock) => Some(lock),
                Err(err) => {
                    self.cx
                        .warn(format!("cannot lock `{}` in the cache: {err}", node.name));
                    None
                }
            }
        } else {
            None
        };
        // Another process may have stored the result while we waited for the lock, or since
        // the scheduler looked (it stored it and let go before we asked): look again, with a
        // peek that counts nothing when there is nothing (issue 18: a task of four runs at
        // once ran twice).
        let stored_meanwhile =
            || waited || (looked_earlier && store.peek_result(&keyed.key).ok().flatten().is_some());
        if self.cx.mode.read
            && lock.is_some()
            && stored_meanwhile()
            && let Some(outcome) = self.try_restore(id, &keyed)
        {
            return Ok(Prepared::Hit(outcome));
        }
        Ok(self.miss(keyed, previous, lock))
    }

    /// Restore a cached result for the node's key — from the local store, else from the
    /// remote cache — if there is one and it restores cleanly.
    fn try_restore(&self, id: NodeId, keyed: &Keyed) -> Option<Outcome> {
        let timing = clab_model::phase::now();
        let found = self.cx.load_result(id, &keyed.key);
        clab_model::phase::add("lookup", timing);
        let (result, remote) = found?;
        self.restore_found(id, keyed, result, remote)
    }

    /// [`Visitor::settle_batch`] with a remote cache: the nodes' keys and local lookups (and
    /// restores of local hits) first, then one [`RemoteCache::fetch_many`] for the local
    /// misses, so their fetches overlap instead of waiting on the remote one by one (two at a
    /// time on two cores), then the restores of what it found. Each node ends as
    /// [`settle_from_cache`](Self::settle_from_cache) would have left it.
    ///
    /// [`RemoteCache::fetch_many`]: clab_remote::RemoteCache::fetch_many
    fn settle_with_remote(&self, ids: &[NodeId]) -> Vec<Option<Outcome>> {
        enum First {
            Settled(Option<Outcome>),
            Remote(Box<Keyed>),
        }
        let (Some(remote), Some(store)) = (self.cx.remote.as_ref(), self.cx.store()) else {
            return settle_each(self, ids);
        };
        let first = |id: NodeId| {
            if self.known.contains_key(&id) || !self.may_settle_from_cache(id) {
                return First::Settled(self.settle_from_cache(id));
            }
            let Ok(keyed) = self.compute_key(id) else {
                return First::Settled(None);
            };
            let timing = clab_model::phase::now();
            let local = self.cx.load_local(id, &keyed.key);
            clab_model::phase::add("lookup", timing);
            match local {
                Some(None) => First::Remote(Box::new(keyed)),
                Some(Some(result)) => {
                    let outcome = self.restore_found(id, &keyed, result, false);
                    if outcome.is_none() {
                        self.keep_missed(id, keyed);
                    }
                    First::Settled(outcome)
                }
                None => {
                    self.keep_missed(id, keyed);
                    First::Settled(None)
                }
            }
        };
        let settled = |first: First| match first {
            First::Settled(outcome) => outcome,
            First::Remote(_) => None,
        };
        let parallel = ids.len() >= PARALLEL_SETTLE;
        let mut firsts: Vec<First> = if parallel {
            ids.par_iter().map(|&id| first(id)).collect()
        } else {
            ids.iter().map(|&id| first(id)).collect()
        };
        let keys: Vec<String> = firsts
            .iter()
            .filter_map(|first| match first {
                First::Remote(keyed) => Some(keyed.key.clone()),
                First::Settled(_) => None,
            })
            .collect();
        if keys.is_empty() {
            return firsts.into_iter().map(settled).collect();
        }
        // Each hit's outputs are written as soon as its entry is verified, from the bytes
        // just downloaded, while the rest of the batch downloads; the bytes are dropped then.
        let early: Arc<Vec<Mutex<Option<RestoreResult>>>> =
            Arc::new(keys.iter().map(|_| Mutex::new(None)).collect());
        let timing = clab_model::phase::now();
        let fetched = match self.cx.cache.as_ref() {
            Some(cache) => {
                let on_hit = restore_on_hit(
                    Arc::clone(&cache.store),
                    self.cx.graph.root().to_owned(),
                    Arc::clone(&early),
                );
                remote.fetch_many_restoring(&keys, store, on_hit)
            }
            None => remote.fetch_many(&keys, store),
        };
        clab_model::phase::add("lookup", timing);
        let mut fetched = fetched.into_iter().enumerate();
        let mut restores = Vec::with_capacity(keys.len());
        for (index, first) in firsts.iter_mut().enumerate() {
            if let First::Remote(_) = first {
                let (key_index, fetched) = fetched.next().unwrap_or_else(|| {
                    let missed = Fetched {
                        fetch: Fetch::Miss(MissReason::Unavailable),
                        downloaded: HashMap::new(),
                    };
                    (usize::MAX, missed)
                });
                let taken = std::mem::replace(first, First::Settled(None));
                if let First::Remote(keyed) = taken {
                    let restored = early
                        .get(key_index)
                        .and_then(|slot| slot.lock().ok()?.take());
                    restores.push((index, ids[index], keyed, fetched, restored));
                }
            }
        }
        let then = |(index, id, keyed, fetched, restored): Restore| {
            let outcome = match fetched.fetch {
                // Written when it arrived (`restored`); else from the blobs it downloaded,
                // from memory, not read back.
                Fetch::Hit(result) => match restored {
                    Some(report) => self.finish_restore(id, &keyed, result, true, report),
                    None => self.restore_found_from(id, &keyed, result, true, &fetched.downloaded),
                },
                Fetch::Miss(_) => None,
            };
            if outcome.is_none() {
                self.keep_missed(id, *keyed);
            }
            (index, outcome)
        };
        let outcomes: Vec<(usize, Option<Outcome>)> = if restores.len() >= PARALLEL_SETTLE {
            restores.into_par_iter().map(then).collect()
        } else {
            restores.into_iter().map(then).collect()
        };
        let mut answers: Vec<Option<Outcome>> = firsts.into_iter().map(settled).collect();
        for (index, outcome) in outcomes {
            answers[index] = outcome;
        }
        answers
    }

    /// Keep the key of a node that missed for [`prepare`](Self::prepare), which then skips
    /// the lookup just made.
    fn keep_missed(&self, id: NodeId, keyed: Keyed) {
        if let Ok(mut missed) = self.missed.lock() {
            missed.insert(id, keyed);
        }
    }

    /// Restore `result`, found for the node's key (on the remote cache: `remote`), and
    /// report the node cached; `None` when its outputs cannot be restored (warned; it runs).
    fn restore_found(
        &self,
        id: NodeId,
        keyed: &Keyed,
        result: CachedResult,
        remote: bool,
    ) -> Option<Outcome> {
        self.restore_found_from(id, keyed, result, remote, &HashMap::new())
    }

    /// [`restore_found`](Self::restore_found) with the blobs just downloaded for it
    /// (verified; see [`Store::restore_outputs_from`]).
    ///
    /// [`Store::restore_outputs_from`]: clab_store::Store::restore_outputs_from
    fn restore_found_from(
        &self,
        id: NodeId,
        keyed: &Keyed,
        result: CachedResult,
        remote: bool,
        downloaded: &HashMap<Digest, VerifiedBlob>,
    ) -> Option<Outcome> {
        let store = self.cx.store()?;
        let report = store.restore_outputs_from(self.cx.graph.root(), &result, downloaded);
        self.finish_restore(id, keyed, result, remote, report)
    }

    /// [`restore_found_from`](Self::restore_found_from) once the outputs were restored (or
    /// not: `report`): the node reported cached, or `None` (warned; it runs).
    fn finish_restore(
        &self,
        id: NodeId,
        keyed: &Keyed,
        result: CachedResult,
        remote: bool,
        report: RestoreResult,
    ) -> Option<Outcome> {
        let store = self.cx.store()?;
        let node = self.cx.node(id);
        let report = match report {
            Ok(report) => report,
            Err(err) => {
                self.cx.warn(format!(
                    "cannot restore `{}` from the cache, running it: {err}",
                    node.name
                ));
                return None;
            }
        };
        // Most logs are empty: no blob to read. A long one is read as its end.
        let log = result
            .log
            .filter(|digest| *digest != Digest::empty())
            .and_then(|digest| crate::task_log::read_tail(store, &digest))
            .filter(|text| !text.is_empty());
        let restored = !report.restored.is_empty();
        let wrote = if restored {
            Wrote::Restored(report.restored.into())
        } else {
            Wrote::Nothing
        };
        self.leave(id, Some(digest_entries(&result.outputs)), wrote);
        if let Ok(mut hits) = self.hits.lock() {
            hits.push(Hit {
                id,
                duration_ms: result.duration_ms,
                log: result.log,
                outputs: result.outputs.clone(),
                restored,
            });
        }
        self.cx.reporter.report(&Event::TaskFinished {
            task: node.name.clone(),
            status: Status::Cached { remote },
            duration_ms: result.duration_ms,
            log,
        });
        self.kind(id).restored(&self.cx, id, &keyed.parts.extra);
        // Only passing results are cached, so the reports passed too; show them again.
        if let Err(message) = self.reports.read(&self.cx, id, true) {
            self.cx.warn(format!(
                "the restored reports of `{}`: {message}",
                node.name
            ));
        }
        if remote {
            store.count_remote_hit();
        }
        Some(Outcome::Cached {
            saved: Duration::from_millis(result.duration_ms),
            remote,
        })
    }

    /// Store what a successful node produced; return the digest of its outputs.
    fn after_success(
        &self,
        id: NodeId,
        miss: Option<Miss>,
        log: &mut TaskLog,
        duration: Duration,
    ) -> Option<Digest> {
        let node = self.cx.node(id);
        let root = self.cx.graph.root();
        let files = match expand_outputs(root, &node.outputs) {
            Ok(files) => files,
            Err(err) => {
                self.cx
                    .warn(format!("cannot list the outputs of `{}`: {err}", node.name));
                return None;
            }
        };
        for pattern in &node.outputs {
            let literal = !pattern.starts_with('!') && !pattern.contains(['*', '?', '[', '{']);
            // A missing JUnit report was warned about when the reports were read.
            let report = node.junit.as_ref() == Some(pattern);
            if literal && !report && !root.join(pattern.trim_end_matches('/')).exists() {
                self.cx.warn(format!(
                    "`{}` did not write its declared output `{pattern}`",
                    node.name
                ));
            }
        }
        if let (Some(miss), NodeKind::Command { .. }) = (&miss, &node.kind) {
            self.warn_changed_inputs(id, &miss.keyed.inputs);
        }
        let (Some(store), Some(miss)) = (self.cx.writable_store(), miss) else {
            return self.digest_uncached(&files);
        };
        let stored = files
            .iter()
            .map(|file| store.store_output(root, file))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|entries| {
                let log = log.store(store)?;
                let result = CachedResult::new(
                    node.name.clone(),
                    "ok",
                    duration.as_millis() as u64,
                    entries.clone(),
                    Some(log),
                );
                let manifest = clab_plan::manifest_json(store, &miss.keyed.parts)?;
                store.save_result_and_manifest(&miss.keyed.key, &result, &manifest)?;
                if let Some(remote) = &self.cx.remote {
                    remote.upload(&miss.keyed.key, &result, store.cas());
                }
                Ok(entries)
            });
        match stored {
            Ok(entries) => Some(digest_entries(&entries)),
            Err(err) => {
                self.cx
                    .warn(format!("cannot store `{}` in the cache: {err}", node.name));
                self.digest_uncached(&files)
            }
        }
    }

    /// Warn, once, when inputs of node `id` (as hashed for its key) changed while it ran: a
    /// task that writes its own inputs runs again on every run, and said nothing of it
    /// (issue 18).
    fn warn_changed_inputs(&self, id: NodeId, inputs: &[InputFile]) {
        let changed =
            clab_plan::inputs::changed_since(self.cx.graph.root(), inputs, self.cx.stat_cache());
        if changed.is_empty() {
            return;
        }
        let mut named: Vec<String> = changed.iter().take(5).map(|p| format!("`{p}`")).collect();
        if changed.len() > 5 {
            named.push(format!("and {} more", changed.len() - 5));
        }
        self.cx.warn(format!(
            "inputs of `{}` changed while it ran: {}; its result is stored for the inputs it \
             started with, so the next run runs it again (if it writes them itself, make them \
             outputs only, or leave them out of `inputs`)",
            self.cx.node(id).name,
            named.join(", ")
        ));
    }

    /// The digest of outputs that are not stored: hashed in place.
    fn digest_uncached(&self, files: &[String]) -> Option<Digest> {
        use std::os::unix::fs::PermissionsExt;
        let root = self.cx.graph.root();
        let stat_cache = self.cx.stat_cache();
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
    fn finish_failed(&self, id: NodeId, message: String) -> Outcome {
        self.finish(
            id,
            Status::Failed { message },
            Duration::ZERO,
            Some(TaskLog::default()),
        );
        Outcome::FailedBeforeStart
    }

    fn finish(&self, id: NodeId, status: Status, duration: Duration, log: Option<TaskLog>) {
        let log = log.map(|log| log.tail_text());
        self.cx.reporter.report(&Event::TaskFinished {
            task: self.cx.node(id).name.clone(),
            status,
            duration_ms: duration.as_millis() as u64,
            log,
        });
    }
}

impl Visitor for Runner {
    fn visit(self: Arc<Self>, id: NodeId, job: &Job, done: Done) {
        self.run_node(id, job, done);
    }

    fn settle(&self, id: NodeId) -> Option<Outcome> {
        self.settle_from_cache(id)
    }

    fn settle_batch(&self, ids: &[NodeId]) -> Vec<Option<Outcome>> {
        // One node, or no remote cache to wait on: nothing to overlap.
        if ids.len() < 2 || self.cx.remote.is_none() || !self.cx.mode.read {
            return settle_each(self, ids);
        }
        self.settle_with_remote(ids)
    }

    fn may_visit_on_scheduler(&self, id: NodeId) -> bool {
        // An LLM call blocks on the run's runtime, which that thread drives.
        !matches!(self.cx.graph.node(id).kind, NodeKind::Llm(_))
    }

    fn may_settle(&self, id: NodeId) -> bool {
        self.may_settle_from_cache(id)
    }
}

/// How restoring a result's outputs went.
type RestoreResult = Result<RestoreReport, clab_store::Error>;

/// A remote hit on its way to [`Runner::finish_restore`]: its place in the batch, the node,
/// its key, the answer, and its outputs' restore if it was done when the entry arrived.
type Restore = (usize, NodeId, Box<Keyed>, Fetched, Option<RestoreResult>);

/// The [`OnHit`] of a batch fetched from the remote cache: writes the hit's outputs under
/// `root` at once ([`Store::restore_outputs_from`], from the downloaded bytes) and leaves how
/// it went in `early`, at the index of the hit's key, for [`Runner::finish_restore`].
///
/// [`Store::restore_outputs_from`]: clab_store::Store::restore_outputs_from
fn restore_on_hit(
    store: Arc<clab_store::Store>,
    root: std::path::PathBuf,
    early: Arc<Vec<Mutex<Option<RestoreResult>>>>,
) -> Arc<OnHit> {
    Arc::new(
        move |index: usize, result: &CachedResult, downloaded: &HashMap<Digest, VerifiedBlob>| {
            let report = store.restore_outputs_from(&root, result, downloaded);
            if let Some(Ok(mut slot)) = early.get(index).map(|slot| slot.lock()) {
                *slot = Some(report);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Mutex};

    use clab_model::source::SourceFile;
    use clab_store::Store;
    use tokio::sync::watch;

    use super::*;
    use crate::{
        context::{Cache, CacheMode},
        event::{Silent, Summary},
        kind::RunResult,
        scheduler::{Options, schedule},
    };

    /// A node kind that writes `out/<task>.txt` (the input's text, upper-cased), counts its
    /// runs, and fails the tasks named in `fail`.
    #[derive(Default)]
    struct Fake {
        ran: Mutex<Vec<String>>,
        restored: Mutex<Vec<String>>,
        fail: Vec<&'static str>,
    }

    impl Kind for Fake {
        fn key_extra(&self, cx: &Context, id: NodeId) -> Result<BTreeMap<String, String>, String> {
            Ok(BTreeMap::from([(
                "fake".to_owned(),
                cx.node(id).name.clone(),
            )]))
        }

        fn run(&self, cx: &Context, work: Work<'_>) -> RunResult {
            let name = cx.node(work.id).name.clone();
            self.ran.lock().unwrap().push(name.clone());
            if self.fail.contains(&name.as_str()) {
                return Err((failed("told to fail"), b"no\n".to_vec().into()));
            }
            let root = cx.graph.root();
            let text = std::fs::read_to_string(root.join("in.txt")).unwrap_or_default();
            std::fs::create_dir_all(root.join("out")).unwrap();
            std::fs::write(root.join(format!("out/{name}.txt")), text.to_uppercase()).unwrap();
            Ok(format!("{name} ran\n").into_bytes().into())
        }

        fn restored(&self, cx: &Context, id: NodeId, extra: &BTreeMap<String, String>) {
            assert_eq!(extra.get("fake"), Some(&cx.node(id).name));
            self.restored.lock().unwrap().push(cx.node(id).name.clone());
        }
    }

    const TASKS: &str = r#"
task "gen" { run "gen"; inputs "in.txt"; outputs "out/gen.txt"; }
task "use" { run "use"; deps "gen"; inputs "in.txt"; outputs "out/use.txt"; }
task "all" { deps "use"; }
"#;

    /// One run of `all` in `root` with a fresh runner over `fake`, as `clab run` makes it:
    /// the store opened, the inputs walked and hashed, then scheduled.
    async fn run(root: &Path, fake: &Arc<Fake>, mode: CacheMode) -> Summary {
        let text = TASKS.to_owned();
        let file = clab_syntax::parse_task_file(SourceFile::new(
            root.join("tasks.kdl"),
            "tasks.kdl",
            text,
        ))
        .unwrap();
        let graph = Arc::new(clab_graph::build(file, root).unwrap());
        let names = vec!["all".to_owned()];
        let nodes = graph.closure(&graph.resolve_targets(&names).unwrap());
        let store = Arc::new(Store::open(root.join(".clab")).unwrap().store);
        let planner = clab_plan::Planner::walk(&graph, &nodes)
            .unwrap()
            .hash(&graph, store.stat_cache().unwrap())
            .unwrap();
        let cx = Context::new(
            Arc::clone(&graph),
            Arc::new(Silent),
            Some(Cache {
                store: Arc::clone(&store),
                planner,
            }),
            mode,
            Duration::from_secs(1),
        );
        let runner = Arc::new(Runner::new(cx, Kinds::all(Arc::clone(fake) as _)));
        let (_tx, interrupt) = watch::channel(false);
        let options = Options {
            jobs: 2,
            keep_going: false,
            visit_lone_here: false,
        };
        let summary = schedule(
            &graph, &nodes, names, &options, runner, &Silent, interrupt, None,
        )
        .await;
        store.flush_stat_cache().unwrap();
        summary
    }

    fn taken(list: &Mutex<Vec<String>>) -> Vec<String> {
        let mut names = std::mem::take(&mut *list.lock().unwrap());
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miss_runs_and_stores_and_the_next_run_restores_without_running() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("in.txt"), "hello").unwrap();
        let fake = Arc::new(Fake::default());

        let first = run(root, &fake, CacheMode::default()).await;
        assert_eq!(
            (first.succeeded, first.cached),
            (2, 0),
            "the scheduler settles `all`"
        );
        assert_eq!(taken(&fake.ran), ["gen", "use"]);

        // Outputs deleted: the next run restores them from the store and runs nothing.
        std::fs::remove_dir_all(root.join("out")).unwrap();
        let second = run(root, &fake, CacheMode::default()).await;
        assert_eq!((second.succeeded, second.cached), (0, 2), "{second:?}");
        assert!(taken(&fake.ran).is_empty());
        assert_eq!(taken(&fake.restored), ["gen", "use"]);
        assert_eq!(
            std::fs::read_to_string(root.join("out/use.txt")).unwrap(),
            "HELLO"
        );

        // An input changes: both keyed nodes run again.
        std::fs::write(root.join("in.txt"), "world, longer").unwrap();
        let third = run(root, &fake, CacheMode::default()).await;
        assert_eq!(third.cached, 0);
        assert_eq!(taken(&fake.ran), ["gen", "use"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_is_not_stored_and_stops_its_dependents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("in.txt"), "hello").unwrap();
        let failing = Arc::new(Fake {
            fail: vec!["gen"],
            ..Fake::default()
        });
        let first = run(root, &failing, CacheMode::default()).await;
        assert_eq!(first.failed, 1);
        assert_eq!(taken(&failing.ran), ["gen"]);

        let fixed = Arc::new(Fake::default());
        let second = run(root, &fixed, CacheMode::default()).await;
        assert_eq!(second.cached, 0, "a failure must not be cached");
        assert_eq!(taken(&fixed.ran), ["gen", "use"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_read_nothing_is_restored_and_without_write_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("in.txt"), "hello").unwrap();
        let fake = Arc::new(Fake::default());
        let no_write = CacheMode {
            read: true,
            write: false,
        };
        run(root, &fake, no_write).await;
        let again = run(root, &fake, no_write).await;
        assert_eq!(again.cached, 0, "nothing was stored");
        taken(&fake.ran);

        run(root, &fake, CacheMode::default()).await;
        taken(&fake.ran);
        let forced = CacheMode {
            read: false,
            write: true,
        };
        let summary = run(root, &fake, forced).await;
        assert_eq!(summary.cached, 0);
        assert_eq!(taken(&fake.ran), ["gen", "use"]);
        assert!(taken(&fake.restored).is_empty());
    }
}
