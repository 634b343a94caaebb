//! The names a `<rule>` block may use: filter and action types, and the keys of the block,
//! its filters, actions, conditions and filter options. What parsing reads and what
//! validation accepts. A leaf of the crate, so that the parser (`body`) and the checker
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

/// The keys of a `<rule>` block.
pub(crate) const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "extends",
    "version",
    "filters",
    "actions",
    "examples",
    "metadata",
];

/// The keys of a filter.
pub(crate) const FILTER_KEYS: &[&str] = &["type", "pattern", "options"];

/// The keys of an action.
pub(crate) const ACTION_KEYS: &[&str] = &["type", "message", "conditions"];

/// The keys of an action's condition.
pub(crate) const CONDITION_KEYS: &[&str] = &["pattern", "message"];

/// The filter options.
pub(crate) const OPTION_KEYS: &[&str] = &["case_insensitive", "multiline", "whole_word"];

/// The entry of `known` that `word` most likely misspells: at most two edits away (one for
/// words of up to four letters), ignoring case; the closest wins, the first on a tie.
pub(crate) fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    let most = if word.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (*k, strsim::damerau_levenshtein(&word, &k.to_lowercase())))
        .filter(|(_, d)| *d <= most)
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// `` `a`, `b`, `c` `` for a help line.
pub(crate) fn listed(known: &[&str]) -> String {
    known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("patern", FILTER_KEYS), Some("pattern"));
        assert_eq!(closest("Pattern", FILTER_KEYS), Some("pattern"));
        assert_eq!(closest("condition", ACTION_KEYS), Some("conditions"));
        assert_eq!(
            closest("file_extention", FILTER_TYPES),
            Some("file_extension")
        );
        assert_eq!(closest("tpye", FILTER_KEYS), Some("type"));
        assert_eq!(closest("max", FILTER_KEYS), None);
        assert_eq!(closest("file_size", FILTER_TYPES), None);
    }
}
