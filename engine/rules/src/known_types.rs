//! The filter and action types a `<rule>` block may name: what parsing reads as a filter and
//! what validation accepts. A leaf of the crate, so that the parser (`body`) and the checker
//! (`validate`) share the lists without depending on each other.

/// Filter types clab understands. `event`, `message` and `context` (about the editor event
/// or the chat, not files) are kept for display and select nothing.
pub(crate) const FILTER_TYPES: &[&str] = &[
    "file_extension",
    "file_path",
    "path",
    "file_name",
    "content",
    "event",
    "message",
    "context",
];

/// Action types clab understands.
pub(crate) const ACTION_TYPES: &[&str] = &["reject", "suggest", "warn"];
