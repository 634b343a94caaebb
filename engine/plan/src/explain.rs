//! Why a node runs: the difference between the key parts of its last recorded run and now.
//!
//! `clab explain` prints every [`Change`]; a running task's line shows the first one in a
//! few words ([`super::Reason`]'s words), because an unexplained cache miss is the complaint users of
//! build caches make most.

use std::collections::BTreeSet;

use serde::Serialize;

use super::cache_key::KeyParts;

/// One difference between two sets of key parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// An input file appeared.
    InputAdded {
        /// Its path.
        path: String,
    },
    /// An input file is gone.
    InputRemoved {
        /// Its path.
        path: String,
    },
    /// An input file's content changed.
    InputChanged {
        /// Its path.
        path: String,
        /// The old content hash, short.
        old: String,
        /// The new content hash, short.
        new: String,
    },
    /// A variable the task sets, or an `env-inputs` variable, changed.
    Env {
        /// The variable.
        name: String,
    },
    /// The commands changed.
    Command,
    /// The working directory changed.
    Cwd,
    /// The declared outputs changed.
    Outputs,
    /// A dependency's outputs changed (or it was added or removed).
    Dep {
        /// The dependency's display id.
        name: String,
    },
    /// Another part (LLM prompt, model, rule text …) changed.
    Other {
        /// Its name.
        name: String,
    },
    /// The platform or the key format changed.
    Platform,
}

impl Change {
    /// A few words: `src/a.py changed`, `env CC changed`, `dep gen's outputs changed`.
    pub fn describe(&self) -> String {
        match self {
            Change::InputAdded { path } => format!("{path} added"),
            Change::InputRemoved { path } => format!("{path} removed"),
            Change::InputChanged { path, .. } => format!("{path} changed"),
            Change::Env { name } => format!("env {name} changed"),
            Change::Command => "command changed".to_owned(),
            Change::Cwd => "cwd changed".to_owned(),
            Change::Outputs => "outputs changed".to_owned(),
            Change::Dep { name } => format!("dep {name}'s outputs changed"),
            Change::Other { name } => format!("{name} changed"),
            Change::Platform => "platform or clab version changed".to_owned(),
        }
    }
}

/// Every change from `old` to `new`, inputs first, in path order.
pub fn diff(old: &KeyParts, new: &KeyParts) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.version != new.version || old.platform != new.platform {
        changes.push(Change::Platform);
    }
    let short = |d: &clab_store::Digest| d.to_hex()[..10].to_owned();
    let same_inputs = std::sync::Arc::ptr_eq(&old.inputs, &new.inputs)
        || (old.input_set.is_some() && old.input_set == new.input_set);
    if !same_inputs {
        // Both maps are sorted: walk them side by side.
        let (mut a, mut b) = (old.inputs.iter().peekable(), new.inputs.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((path, _)), None) => {
                    changes.push(Change::InputRemoved {
                        path: (*path).clone(),
                    });
                    a.next();
                }
                (None, Some((path, _))) => {
                    changes.push(Change::InputAdded {
                        path: (*path).clone(),
                    });
                    b.next();
                }
                (Some((old_path, old_hash)), Some((new_path, new_hash))) => {
                    match old_path.cmp(new_path) {
                        std::cmp::Ordering::Less => {
                            changes.push(Change::InputRemoved {
                                path: (*old_path).clone(),
                            });
                            a.next();
                        }
                        std::cmp::Ordering::Greater => {
                            changes.push(Change::InputAdded {
                                path: (*new_path).clone(),
                            });
                            b.next();
                        }
                        std::cmp::Ordering::Equal => {
                            if old_hash != new_hash {
                                changes.push(Change::InputChanged {
                                    path: (*old_path).clone(),
                                    old: short(old_hash),
                                    new: short(new_hash),
                                });
                            }
                            a.next();
                            b.next();
                        }
                    }
                }
            }
        }
    }
    let env_names: BTreeSet<&String> = old
        .env
        .keys()
        .chain(new.env.keys())
        .chain(old.env_inputs.keys())
        .chain(new.env_inputs.keys())
        .collect();
    for name in env_names {
        if old.env.get(name) != new.env.get(name)
            || old.env_inputs.get(name) != new.env_inputs.get(name)
        {
            changes.push(Change::Env { name: name.clone() });
        }
    }
    if old.commands != new.commands {
        changes.push(Change::Command);
    }
    if old.cwd != new.cwd {
        changes.push(Change::Cwd);
    }
    if old.outputs != new.outputs {
        changes.push(Change::Outputs);
    }
    let deps: BTreeSet<&String> = old.deps.keys().chain(new.deps.keys()).collect();
    for name in deps {
        if old.deps.get(name) != new.deps.get(name) {
            changes.push(Change::Dep { name: name.clone() });
        }
    }
    let extra: BTreeSet<&String> = old.extra.keys().chain(new.extra.keys()).collect();
    for name in extra {
        if old.extra.get(name) != new.extra.get(name) {
            changes.push(Change::Other { name: name.clone() });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use clab_store::Digest;

    #[test]
    fn names_each_kind_of_change() {
        let old = KeyParts {
            inputs: Arc::new(BTreeMap::from([
                ("a.py".into(), Digest::of_bytes(b"1")),
                ("gone.py".into(), Digest::of_bytes(b"2")),
                ("z.py".into(), Digest::of_bytes(b"z")),
            ])),
            env: BTreeMap::from([("CC".into(), "gcc".into())]),
            commands: vec!["x".into()],
            deps: BTreeMap::from([("gen".into(), Digest::of_bytes(b"out"))]),
            ..KeyParts::default()
        };
        let new = KeyParts {
            inputs: Arc::new(BTreeMap::from([
                ("a.py".into(), Digest::of_bytes(b"changed")),
                ("new.py".into(), Digest::of_bytes(b"3")),
                ("z.py".into(), Digest::of_bytes(b"z")),
            ])),
            env: BTreeMap::from([("CC".into(), "clang".into())]),
            commands: vec!["y".into()],
            deps: BTreeMap::from([("gen".into(), Digest::of_bytes(b"other"))]),
            ..KeyParts::default()
        };
        let described: Vec<String> = diff(&old, &new).iter().map(Change::describe).collect();
        assert_eq!(
            described,
            [
                "a.py changed",
                "gone.py removed",
                "new.py added",
                "env CC changed",
                "command changed",
                "dep gen's outputs changed"
            ]
        );
        assert_eq!(
            super::super::Reason::from_changes(Some(diff(&old, &new))).to_string(),
            "a.py changed, +5 more"
        );
        assert!(diff(&new, &new).is_empty());
    }
}
