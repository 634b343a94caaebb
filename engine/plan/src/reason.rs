//! Why a node runs: a typed [`Reason`], made by the planner (`predict`, for dry-run and
//! explain) and by the runner, matched on by the cli, and worded in one place (its
//! `Display`), which the `--json` output, task lines and engine error messages (`--offline`,
//! AI off) all share.

use std::fmt;

use serde::{Serialize, Serializer};

use super::explain::Change;

/// Why a node must run rather than come from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No run of this node was ever recorded here.
    NoPreviousRun,
    /// What differs from the node's last recorded run (never empty).
    Changed(Vec<Change>),
    /// Nothing differs from the last run, but no result is cached under the key: the last
    /// run failed, or its entry was pruned.
    NoCachedResult,
    /// The node declares no inputs, so it is never cached.
    NoInputs,
    /// The node says `cache #false`.
    CacheOff,
    /// A dependency must run first, so the key cannot be known yet.
    DepWillRun(String),
    /// `--force`, or the cache is not read.
    Forced,
    /// The key could not be computed (an input could not be read, say); the message says why.
    KeyUnknown(String),
}

impl Reason {
    /// The reason for a node whose key parts are `changes` away from its last run's, or
    /// that never ran (`None`).
    pub fn from_changes(changes: Option<Vec<Change>>) -> Reason {
        match changes {
            None => Reason::NoPreviousRun,
            Some(changes) if changes.is_empty() => Reason::NoCachedResult,
            Some(changes) => Reason::Changed(changes),
        }
    }
}

impl fmt::Display for Reason {
    /// A few words: `src/a.py changed, +2 more`, `dep gen will run`, `no previous run`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoPreviousRun => f.write_str("no previous run"),
            Reason::Changed(changes) => match changes.split_first() {
                None => f.write_str("changed"),
                Some((first, [])) => f.write_str(&first.describe()),
                Some((first, rest)) => write!(f, "{}, +{} more", first.describe(), rest.len()),
            },
            Reason::NoCachedResult => {
                f.write_str("no cached result (last run failed or was pruned)")
            }
            Reason::NoInputs => f.write_str("not cached: no inputs"),
            Reason::CacheOff => f.write_str("not cached: cache #false"),
            Reason::DepWillRun(dep) => write!(f, "dep {dep} will run"),
            Reason::Forced => f.write_str("forced"),
            Reason::KeyUnknown(message) => f.write_str(message),
        }
    }
}

/// In `--json` a reason is its words, as it always was (schemas/events.schema.json).
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Reason {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_words() {
        let changed = |n: usize| {
            Reason::Changed(
                (0..n)
                    .map(|i| Change::InputChanged {
                        path: format!("src/{i}.py"),
                        old: "a".into(),
                        new: "b".into(),
                    })
                    .collect(),
            )
        };
        let words: Vec<String> = [
            Reason::from_changes(None),
            Reason::from_changes(Some(Vec::new())),
            changed(1),
            changed(3),
            Reason::NoInputs,
            Reason::CacheOff,
            Reason::DepWillRun("gen".into()),
            Reason::Forced,
            Reason::KeyUnknown("cannot read src/a.py".into()),
        ]
        .iter()
        .map(Reason::to_string)
        .collect();
        assert_eq!(
            words,
            [
                "no previous run",
                "no cached result (last run failed or was pruned)",
                "src/0.py changed",
                "src/0.py changed, +2 more",
                "not cached: no inputs",
                "not cached: cache #false",
                "dep gen will run",
                "forced",
                "cannot read src/a.py",
            ]
        );
    }

    #[test]
    fn json_holds_the_words() {
        let json = serde_json::to_string(&Reason::DepWillRun("gen".into())).ok();
        assert_eq!(json.as_deref(), Some("\"dep gen will run\""));
    }
}
