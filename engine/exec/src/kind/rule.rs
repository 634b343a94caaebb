//! [`RuleKind`]: a compiled `.mdc` rule's check — scan the files it selects (reusing the
//! findings of every file unchanged since the last scan, see [`crate::rule_scan`]), report
//! each finding, fail on `reject` findings.
//!
//! The kind holds what rule nodes of one run share: file texts (read once per run however
//! many rules look at a file, searched once with the prefilters of every rule), selections
//! of the same files by the same globs, and one-pass scans of rules over the same files.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, RwLock},
};

use clab_graph::{NodeId, NodeKind};
use clab_plan::inputs::InputFile;
use clab_rules::{CompiledRule, PrefilterSet, Severity};
use clab_store::{
    Digest,
    stat_cache::{self, KeptText},
};

use crate::{
    context::{Context, failed},
    kind::{Kind, RunResult, Work},
    rule_scan::{self, BatchScan, Previous, ScanFindings, SharedText},
};

/// One-pass rule scans by (selection id, file list id); filled by the first node that asks.
type Batches = HashMap<(blake3::Hash, blake3::Hash), Arc<OnceLock<Arc<BatchScan>>>>;

/// Rule selections by (the rules' selection id, the file list's id).
type Selections = HashMap<(blake3::Hash, blake3::Hash), Arc<Vec<bool>>>;

/// Runs rule checks.
#[derive(Default)]
pub struct RuleKind {
    /// File texts shared by rule scans, and their total size.
    texts: RwLock<(
        HashMap<String, SharedText, foldhash::fast::RandomState>,
        usize,
    )>,
    /// Every rule's prefilters in one set (see `rule_scan::PrefilterSet`), when the planner
    /// has none.
    prefilters: OnceLock<Option<PrefilterSet>>,
    /// Rule selections by (selection id, file list), see `selection`.
    selections: Mutex<Selections>,
    /// One-pass scans of rule nodes that share their files, see `batch_scan`.
    batches: Mutex<Batches>,
}

impl Kind for RuleKind {
    /// Scan what changed since the last scan, report every finding, fail on `reject`
    /// findings.
    fn run(&self, cx: &Context, work: Work<'_>) -> RunResult {
        let id = work.id;
        let node = cx.node(id);
        let NodeKind::Rule(rule) = &node.kind else {
            return Ok(Default::default());
        };
        let root = cx.graph.root();
        let inputs = if work.inputs.is_empty() {
            // Not keyed (no cache): walk the rule's inputs now.
            clab_plan::inputs::collect(root, &node.inputs, cx.stat_cache())
                .map_err(|err| (failed(&err.to_string()), Default::default()))?
                .into()
        } else {
            work.inputs
        };
        let manifest_name = format!("scan:{}", node.name);
        let findings = cx
            .store()
            .and_then(|s| s.load_manifest(&manifest_name).ok().flatten())
            .and_then(|saved| serde_json::from_str::<ScanFindings>(&saved.json).ok());
        let previous = match (work.previous, findings) {
            (Some((key, parts)), Some(findings)) => Some(Previous {
                inputs: &parts.inputs,
                key,
                findings,
            }),
            _ => None,
        };
        let read = |file: &InputFile| self.read_shared(cx, file);
        // The planner's digest of a large inputs map (see `KeyParts::input_set`) names the
        // list (paths and hashes) as well, and is already computed.
        let input_set = work.keyed.and_then(|(_, parts)| parts.input_set);
        let files = input_set.map_or_else(
            || files_id(&inputs),
            |digest: Digest| blake3::Hash::from(*digest.as_bytes()),
        );
        let selected = self.selection(rule, &inputs, files);
        let batch = || self.batch_scan(cx, id, rule, &inputs, &selected, files);
        let mut result = rule_scan::scan(
            rule,
            &inputs,
            &selected,
            previous,
            &read,
            self.prefilters(cx),
            &batch,
        );
        if let (Some(store), Some((key, _))) = (cx.writable_store(), work.keyed) {
            result.stored.key = key.to_owned();
            let json = serde_json::to_string(&result.stored).unwrap_or_default();
            if let Err(err) = store.save_manifest(&manifest_name, key, &json) {
                cx.warn(format!("cannot save the scan of `{}`: {err}", node.name));
            }
        }
        let mut log = String::new();
        let mut errors = 0;
        for finding in &result.findings {
            let error = finding.severity == Severity::Error;
            errors += usize::from(error);
            let severity = if error { "error" } else { "warning" };
            log.push_str(&format!(
                "{}:{}:{}: {severity}: {} [{}]\n",
                finding.path, finding.line, finding.col, finding.message, finding.rule
            ));
            cx.reporter.report(&crate::event::Event::Finding {
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
        cx.output(id, summary.clone());
        log.push_str(&summary);
        log.push('\n');
        if errors > 0 {
            let message = format!(
                "{errors} finding{} to fix",
                if errors == 1 { "" } else { "s" }
            );
            return Err((failed(&message), log.into_bytes().into()));
        }
        Ok(log.into_bytes().into())
    }
}

impl RuleKind {
    /// A file's text for rule scans, read at most once per run: twenty rules over the same
    /// tree read each file once, and a file the planner read to hash it is not read again.
    /// Files over 256 KiB, or past a 256 MiB total, are not kept. Searched with the
    /// prefilters of every rule in the graph on first read.
    fn read_shared(&self, cx: &Context, file: &InputFile) -> Option<SharedText> {
        // The limits of the texts the planner keeps (see `StatCache::hash_files_keeping`).
        const MAX_FILE: usize = stat_cache::KEEP_FILE_MAX as usize;
        const MAX_TOTAL: usize = stat_cache::KEEP_TOTAL_MAX as usize;
        let path = file.path.as_str();
        if let Some(shared) = self.texts.read().ok()?.0.get(path) {
            return Some(shared.clone());
        }
        let kept = cx
            .planner()
            .and_then(|planner| planner.take_text(path, &file.hash));
        let text = match kept {
            Some(KeptText::Bytes(bytes)) => rule_scan::text_of(bytes),
            // No prefilter matches the file, and they decide alone: no rule needs its text.
            Some(KeptText::Unneeded) => {
                return Some(SharedText {
                    text: Arc::default(),
                    hits: self.prefilters(cx).map(PrefilterSet::no_hits),
                });
            }
            None => rule_scan::read_text(cx.graph.root(), path)?,
        };
        let hits = self.prefilters(cx).map(|set| set.search(&text));
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
        cx: &Context,
        id: NodeId,
        rule: &CompiledRule,
        inputs: &[InputFile],
        selected: &[bool],
        files: blake3::Hash,
    ) -> Option<Arc<BatchScan>> {
        let patterns = &cx.node(id).inputs;
        let group: Vec<&CompiledRule> = cx
            .graph
            .ids()
            .filter_map(|other| {
                let node = cx.node(other);
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
            let read = |file: &InputFile| self.read_shared(cx, file);
            Arc::new(rule_scan::scan_batch(
                &group,
                inputs,
                selected,
                &read,
                self.prefilters(cx),
            ))
        });
        Some(Arc::clone(batch))
    }

    /// The prefilters of every rule node in the graph, as one set: the planner's (which
    /// decided which texts it kept), else made here.
    fn prefilters<'a>(&'a self, cx: &'a Context) -> Option<&'a PrefilterSet> {
        if let Some(set) = cx.planner().and_then(|planner| planner.prefilters()) {
            return Some(set);
        }
        self.prefilters
            .get_or_init(|| cx.graph.prefilter_set())
            .as_ref()
    }
}

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
