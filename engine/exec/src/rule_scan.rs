//! A rule node's run: scan the files the rule selects, reusing the findings of every file
//! whose content — and whose rule — is unchanged since the last scan.
//!
//! What "unchanged" means comes from two records of the node's last run: its key parts
//! (which hold every input's content hash) and its [`ScanFindings`] (the rule's hash, the key
//! of that run, and the findings of the files that had any). The findings are trusted only
//! when both records come from the same run (same key) and the rule's definition is the
//! same; then a file whose hash matches is not read again. Scanning runs in parallel (rayon),
//! and file texts come through a reader the caller shares between rule nodes, so a file is
//! read once per run however many rules look at it — and searched once for the whole-text
//! prefilters of every rule ([`PrefilterSet`]), the way ripgrep searches for many patterns in
//! one pass, so that each rule reads line by line only the few files that may match it.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use clab_plan::inputs::InputFile;
use clab_rules::{CompiledRule, Finding, Severity};
use clab_store::Digest;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use clab_rules::PrefilterSet;

/// One finding as kept between runs: line, column, message, whether it is an error.
pub type StoredFinding = (usize, usize, String, bool);

/// The findings of a rule node's last scan.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScanFindings {
    /// The rule's definition hash (hex).
    pub rule: String,
    /// The cache key of the run that scanned.
    pub key: String,
    /// Files with findings → their findings. A scanned file that is absent had none.
    pub files: BTreeMap<String, Vec<StoredFinding>>,
}

/// What the last run knew: its input hashes (from its key parts) and its findings.
pub struct Previous<'a> {
    /// Input path → content hash, from the last run's key parts.
    pub inputs: &'a BTreeMap<String, Digest>,
    /// The key of that run.
    pub key: &'a str,
    /// Its findings.
    pub findings: ScanFindings,
}

/// What a scan found and how much work it did.
#[derive(Debug)]
pub struct ScanResult {
    /// Every finding, by file then line.
    pub findings: Vec<Finding>,
    /// Files read and scanned this time.
    pub scanned: usize,
    /// Files whose findings were reused.
    pub reused: usize,
    /// The findings to keep for the next scan (`key` left for the caller to set).
    pub stored: ScanFindings,
}

/// A file's text as rule scans share it: read once, searched once for every prefilter.
#[derive(Clone, Debug)]
pub struct SharedText {
    /// The text (invalid UTF-8 replaced); a `String` so that bytes just read become text
    /// without a copy.
    pub text: Arc<String>,
    /// Which of the [`PrefilterSet`]'s patterns match it, when there is a set.
    pub hits: Option<Arc<[bool]>>,
}

/// Which of `inputs` `rule` selects.
pub fn selection(rule: &CompiledRule, inputs: &[InputFile]) -> Vec<bool> {
    inputs.par_iter().map(|f| rule.selects(&f.path)).collect()
}

/// Findings of one file by one rule, as [`scan`] computes and stores them; `slots` are the
/// rule's places in the prefilter set, `answers` scratch space.
fn scan_file(
    rule: &CompiledRule,
    file: &InputFile,
    shared: Option<&SharedText>,
    slots: Option<&[Option<usize>]>,
    answers: &mut Vec<bool>,
) -> Vec<StoredFinding> {
    let prefiltered = match (slots, shared.and_then(|shared| shared.hits.as_deref())) {
        (Some(slots), Some(hits)) => {
            PrefilterSet::answers_into(slots, hits, answers);
            Some(answers.as_slice())
        }
        _ => None,
    };
    let text = shared.map_or("", |shared| &shared.text);
    rule.scan_selected(&file.path, text, prefiltered)
        .into_iter()
        .map(|f| (f.line, f.col, f.message, f.severity == Severity::Error))
        .collect()
}

/// The findings of several rules over one file list, found in one pass: each selected file is
/// read once and, per rule, searched only where that rule's prefilter matched. For a cold run
/// of many rules over one tree this replaces a per-file loop per rule.
#[derive(Debug, Default)]
pub struct BatchScan {
    /// Rule definition hash → input index → findings (files without findings are absent).
    by_rule: HashMap<blake3::Hash, BTreeMap<usize, Vec<StoredFinding>>>,
}

/// Scan the files of `inputs` that `selected` marks with every rule of `rules` (which must
/// all select exactly those files).
pub fn scan_batch(
    rules: &[&CompiledRule],
    inputs: &[InputFile],
    selected: &[bool],
    read: &(dyn Fn(&InputFile) -> Option<SharedText> + Sync),
    prefilters: Option<&PrefilterSet>,
) -> BatchScan {
    let slots: Vec<Option<&[Option<usize>]>> = rules
        .iter()
        .map(|rule| prefilters.and_then(|set| set.slots_of(rule)))
        .collect();
    // (input, rule) → findings, for the pairs that found something.
    let found: Vec<(usize, usize, Vec<StoredFinding>)> = (0..inputs.len())
        .into_par_iter()
        .filter(|&i| selected.get(i).copied().unwrap_or(false))
        .map_init(Vec::new, |answers, i| {
            let file = &inputs[i];
            let shared = read(file);
            rules
                .iter()
                .zip(&slots)
                .enumerate()
                .filter_map(|(r, (rule, slots))| {
                    let found = scan_file(rule, file, shared.as_ref(), *slots, answers);
                    (!found.is_empty()).then_some((i, r, found))
                })
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect();
    let mut by_rule: HashMap<blake3::Hash, BTreeMap<usize, Vec<StoredFinding>>> = rules
        .iter()
        .map(|rule| (rule.definition_hash(), BTreeMap::new()))
        .collect();
    for (i, r, found) in found {
        if let Some(files) = by_rule.get_mut(&rules[r].definition_hash()) {
            files.insert(i, found);
        }
    }
    BatchScan { by_rule }
}

/// Scan the `inputs` the rule selects (`selected`, from [`selection`], shared by rules with
/// one selection); reuse `previous` where nothing changed. `read` gives a file's text,
/// or `None` when it cannot be read; its `hits` are answers of `prefilters`.
/// Without a usable `previous`, `batch` may offer this rule's findings from a [`BatchScan`]
/// of the same files instead of a scan of its own.
pub fn scan(
    rule: &CompiledRule,
    inputs: &[InputFile],
    selected: &[bool],
    previous: Option<Previous<'_>>,
    read: &(dyn Fn(&InputFile) -> Option<SharedText> + Sync),
    prefilters: Option<&PrefilterSet>,
    batch: &dyn Fn() -> Option<Arc<BatchScan>>,
) -> ScanResult {
    let rule_hash = rule.definition_hash().to_hex().to_string();
    let previous = previous.filter(|p| p.findings.rule == rule_hash && p.findings.key == p.key);
    let batch = if previous.is_none() { batch() } else { None };
    let batched = batch
        .as_ref()
        .and_then(|batch| batch.by_rule.get(&rule.definition_hash()));
    let slots = prefilters.and_then(|set| set.slots_of(rule));
    // (input, findings) of the selected files, how many were selected, how many scanned now.
    let (results, selected, scanned): (Vec<(usize, Vec<StoredFinding>)>, usize, usize) =
        match batched {
            // Scanned already, every file: only those with findings matter.
            Some(found) => {
                let selected = selected.iter().filter(|&&s| s).count();
                let results = found.iter().map(|(&i, found)| (i, found.clone())).collect();
                (results, selected, selected)
            }
            None => {
                let selected: Vec<usize> = (0..inputs.len())
                    .filter(|&i| selected.get(i).copied().unwrap_or(false))
                    .collect();
                let each = scan_each(rule, inputs, &selected, previous.as_ref(), read, slots);
                let scanned = each.iter().filter(|(_, _, fresh)| *fresh).count();
                let results = each.into_iter().map(|(i, found, _)| (i, found)).collect();
                (results, selected.len(), scanned)
            }
        };
    let mut stored = ScanFindings {
        rule: rule_hash,
        key: String::new(),
        files: BTreeMap::new(),
    };
    let mut findings = Vec::new();
    for (i, found) in results {
        if found.is_empty() {
            continue;
        }
        let path = &inputs[i].path;
        for (line, col, message, error) in &found {
            findings.push(Finding {
                rule: rule.name.clone(),
                path: path.clone(),
                line: *line,
                col: *col,
                message: message.clone(),
                severity: if *error {
                    Severity::Error
                } else {
                    Severity::Warning
                },
            });
        }
        stored.files.insert(path.clone(), found);
    }
    ScanResult {
        reused: selected - scanned,
        scanned,
        findings,
        stored,
    }
}

/// The findings of `rule` in each of the `selected` inputs (with whether the file was
/// scanned now): reused from `previous` where the file's hash is the one it had then.
fn scan_each(
    rule: &CompiledRule,
    inputs: &[InputFile],
    selected: &[usize],
    previous: Option<&Previous<'_>>,
    read: &(dyn Fn(&InputFile) -> Option<SharedText> + Sync),
    slots: Option<&[Option<usize>]>,
) -> Vec<(usize, Vec<StoredFinding>, bool)> {
    selected
        .par_iter()
        .map_init(Vec::new, |answers, &i| {
            let file = &inputs[i];
            if let Some(previous) = &previous
                && previous.inputs.get(&file.path) == Some(&file.hash)
            {
                let old = previous
                    .findings
                    .files
                    .get(&file.path)
                    .cloned()
                    .unwrap_or_default();
                return (i, old, false);
            }
            let shared = read(file);
            (
                i,
                scan_file(rule, file, shared.as_ref(), slots, answers),
                true,
            )
        })
        .collect()
}

/// Read a file under `root` as text (invalid UTF-8 replaced).
pub fn read_text(root: &Path, path: &str) -> Option<Arc<String>> {
    std::fs::read(root.join(path)).ok().map(text_of)
}

/// A file's bytes as text (invalid UTF-8 replaced).
pub fn text_of(bytes: Vec<u8>) -> Arc<String> {
    Arc::new(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clab_model::source::SourceFile;
    use clab_rules::RuleFile;

    /// A rule with one reject condition `pattern` over every `.py` file.
    fn condition_rule(pattern: &str) -> CompiledRule {
        let pattern = pattern.replace('\\', "\\\\").replace('"', "\\\"");
        let text = format!(
            "---\nglobs: *.py\n---\n<rule>\nname: r\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"{pattern}\"\n        message: m\n</rule>\n"
        );
        let file = RuleFile::parse("r", SourceFile::new("r.mdc", "r.mdc", text));
        assert!(file.issues.is_empty(), "{:?}", file.issues);
        CompiledRule::compile(&file, &file.body.rules[0]).unwrap()
    }

    #[test]
    fn one_batch_scan_finds_what_each_rule_finds_alone() {
        let texts = [
            ("a.py", "import os\nfoo;\n"),
            ("b.py", "x = 1\r\nimport os\r\nfoo\r\n"),
            ("c.py", "nothing here\n"),
            ("d.txt", "import os\n"),
        ];
        let rules: Vec<CompiledRule> = [r"^import", r"foo$", r"[^;]+;", r"\Aimport"]
            .iter()
            .map(|pattern| condition_rule(pattern))
            .collect();
        let refs: Vec<&CompiledRule> = rules.iter().collect();
        let set = PrefilterSet::new(refs.iter().copied()).unwrap();
        let inputs: Vec<InputFile> = texts
            .iter()
            .map(|(path, text)| InputFile {
                path: (*path).to_owned(),
                hash: Digest::of_bytes(text.as_bytes()),
                size: text.len() as u64,
                executable: false,
            })
            .collect();
        let read = |file: &InputFile| {
            let text = texts.iter().find(|(p, _)| *p == file.path)?.1;
            Some(SharedText {
                text: Arc::new(text.to_owned()),
                hits: Some(set.search(text)),
            })
        };
        let selected = selection(&rules[0], &inputs);
        assert_eq!(selected, [true, true, true, false]);
        let batch = Arc::new(scan_batch(&refs, &inputs, &selected, &read, Some(&set)));
        let mut total = 0;
        for rule in &rules {
            let alone = scan(rule, &inputs, &selected, None, &read, Some(&set), &|| None);
            let batched = scan(rule, &inputs, &selected, None, &read, Some(&set), &|| {
                Some(Arc::clone(&batch))
            });
            assert_eq!(batched.findings, alone.findings);
            assert_eq!(batched.stored.files, alone.stored.files);
            assert_eq!((batched.scanned, batched.reused), (3, 0));
            total += alone.findings.len();
        }
        assert_eq!(total, 6, "the test texts must produce findings");
    }
}
