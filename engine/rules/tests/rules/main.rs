//! Integration tests of `clab-rules` through its public API, as one test binary: rule
//! composition (`extends`), references attached to `{{rules}}`, bounded scans (issue 18),
//! and a bounded fuzz test of the `.mdc` parser over mutated real rule files.

mod extends;
mod fuzz;
mod references;
mod scan_bounds;

use std::path::{Path, PathBuf};

use clab_model::source::SourceFile;
use clab_rules::RuleFile;

/// A rule file parsed from `text`, named `.cursor/rules/ID.mdc`.
#[track_caller]
pub(crate) fn rule_file(id: &str, text: &str) -> RuleFile {
    let name = format!(".cursor/rules/{id}.mdc");
    RuleFile::parse(id, SourceFile::new(&name, &name, text))
}

/// The copied corpus fixtures, `tests/fixtures/rules/corpus/`.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules/corpus")
}
