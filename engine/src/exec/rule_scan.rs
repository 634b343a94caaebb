//! A rule node's run: scan the files the rule selects, reusing the findings of every file
//! whose content — and whose rule — is unchanged since the last scan.
//!
//! The previous scan is kept as a [`ScanManifest`] (rule hash, and per file its content hash
//! and findings) in the store's manifest table under `scan:` + the node id. A file is read
//! and scanned again only when its hash differs or the rule's definition changed; the rest
//! reuse their findings. Scanning runs in parallel (rayon).

use std::{collections::BTreeMap, path::Path};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    plan::inputs::InputFile,
    rules::{CompiledRule, Finding, Severity},
    store::Digest,
};

/// The findings of one file, as kept between runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScannedFile {
    /// The content hash the findings belong to.
    pub hash: Digest,
    /// `(line, column, message, is_error)` of each finding.
    pub findings: Vec<(usize, usize, String, bool)>,
}

/// The last scan of a rule node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScanManifest {
    /// The rule's definition hash (hex).
    pub rule: String,
    /// Scanned file → its findings.
    pub files: BTreeMap<String, ScannedFile>,
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
    /// The manifest to keep for the next scan.
    pub manifest: ScanManifest,
}

/// Scan the `inputs` the rule selects; reuse `previous` where nothing changed.
pub fn scan(
    rule: &CompiledRule,
    root: &Path,
    inputs: &[InputFile],
    previous: Option<ScanManifest>,
) -> ScanResult {
    let rule_hash = rule.definition_hash().to_hex().to_string();
    let previous = previous.filter(|p| p.rule == rule_hash).unwrap_or_default();
    let selected: Vec<&InputFile> = inputs.iter().filter(|f| rule.selects(&f.path)).collect();
    let results: Vec<(String, ScannedFile, bool)> = selected
        .par_iter()
        .map(|file| match previous.files.get(&file.path) {
            Some(old) if old.hash == file.hash => (file.path.clone(), old.clone(), false),
            _ => {
                let bytes = std::fs::read(root.join(&file.path)).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                let findings = rule
                    .scan(&file.path, &text)
                    .into_iter()
                    .map(|f| (f.line, f.col, f.message, f.severity == Severity::Error))
                    .collect();
                let scanned = ScannedFile {
                    hash: file.hash,
                    findings,
                };
                (file.path.clone(), scanned, true)
            }
        })
        .collect();
    let scanned = results.iter().filter(|(_, _, fresh)| *fresh).count();
    let mut manifest = ScanManifest {
        rule: rule_hash,
        files: BTreeMap::new(),
    };
    let mut findings = Vec::new();
    for (path, file, _) in results {
        for (line, col, message, error) in &file.findings {
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
        manifest.files.insert(path, file);
    }
    ScanResult {
        reused: selected.len() - scanned,
        scanned,
        findings,
        manifest,
    }
}
