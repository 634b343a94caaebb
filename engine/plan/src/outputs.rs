//! The digest of a node's outputs: what its dependents' keys hold (early cutoff). It covers
//! paths, contents and modes, and nothing else. Listing the output files is
//! [`super::inputs::expand_outputs`].

use super::cache_key::digest_files;
use clab_store::{Digest, cached_result::OutputEntry};

/// The digest of stored outputs, as dependents see it.
pub fn digest_entries(entries: &[OutputEntry]) -> Digest {
    digest_files(entries.iter().map(|e| (e.path.as_str(), &e.hash, e.mode)))
}
