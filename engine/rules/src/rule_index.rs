//! The named `<rule>` blocks of a set of rule files, and the `extends` chains between them.
//!
//! In: every rule file of a project. Out: for one block, its ancestors (nearest first) and
//! the problem that cut the chain short, if any: an `extends` that names no rule, or one that
//! leads back to the block itself. Invariants: a name stands for its first definition, in
//! file order (a second one is a `duplicate_name` error); a chain never holds a block twice,
//! so resolution ends on any input.

use std::collections::HashMap;

use clab_model::source::Spanned;

use super::{RuleFile, body::RuleBlock};

/// Blocks by name.
pub(crate) struct RuleIndex<'a> {
    files: &'a [RuleFile],
    by_name: HashMap<&'a str, (usize, usize)>,
}

/// What cut an `extends` chain short, reported at the block's own `extends`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExtendsProblem {
    /// The block's `extends` names no rule; the closest name, if one looks like a typo.
    Unknown {
        name: Spanned<String>,
        best: Option<String>,
    },
    /// The chain comes back to the block: the names along the way, first and last the same.
    Cycle {
        extends: Spanned<String>,
        path: Vec<String>,
    },
}

/// A block's ancestors.
pub(crate) struct Chain<'a> {
    /// Nearest first: the block's parent, then its parent, …
    pub(crate) parents: Vec<&'a RuleBlock>,
    /// The problem at the block's own `extends`, if any.
    pub(crate) problem: Option<ExtendsProblem>,
}

fn name_of(block: &RuleBlock) -> Option<&str> {
    block
        .name
        .as_ref()
        .map(|n| n.value.trim())
        .filter(|n| !n.is_empty())
}

impl<'a> RuleIndex<'a> {
    /// Index the named blocks of `files`.
    pub(crate) fn new(files: &'a [RuleFile]) -> Self {
        let mut by_name = HashMap::new();
        for (f, file) in files.iter().enumerate() {
            for (b, block) in file.body.rules.iter().enumerate() {
                if let Some(name) = name_of(block) {
                    by_name.entry(name).or_insert((f, b));
                }
            }
        }
        RuleIndex { files, by_name }
    }

    /// The names of every indexed rule, sorted.
    pub(crate) fn names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }

    fn block(&self, name: &str) -> Option<&'a RuleBlock> {
        let &(f, b) = self.by_name.get(name)?;
        self.files.get(f)?.body.rules.get(b)
    }

    /// Follow `block`'s `extends` as far as it goes.
    pub(crate) fn chain(&self, block: &'a RuleBlock) -> Chain<'a> {
        let mut parents: Vec<&'a RuleBlock> = Vec::new();
        let mut seen: Vec<&str> = name_of(block).into_iter().collect();
        let mut problem = None;
        let mut current = block;
        while let Some(extends) = &current.extends {
            let name = extends.value.trim();
            let Some(parent) = self.block(name) else {
                // Only the block's own `extends` is its problem; an ancestor's is reported
                // at the ancestor.
                if parents.is_empty() {
                    let names = self.names();
                    problem = Some(ExtendsProblem::Unknown {
                        name: extends.clone(),
                        best: super::known_types::closest(name, &names).map(str::to_owned),
                    });
                }
                break;
            };
            if seen.contains(&name) {
                // A cycle through this block is its problem; a cycle further up (this block
                // only leads into it) is reported at the blocks on it.
                if seen.first() == Some(&name) {
                    let mut path: Vec<String> = seen.iter().map(|s| (*s).to_owned()).collect();
                    path.push(name.to_owned());
                    if let Some(own) = &block.extends {
                        problem = Some(ExtendsProblem::Cycle {
                            extends: own.clone(),
                            path,
                        });
                    }
                }
                break;
            }
            parents.push(parent);
            seen.push(name);
            current = parent;
        }
        Chain { parents, problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clab_model::source::SourceFile;

    fn files(texts: &[&str]) -> Vec<RuleFile> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let name = format!("r{i}.mdc");
                RuleFile::parse(format!("r{i}"), SourceFile::new(&name, &name, *text))
            })
            .collect()
    }

    fn rule(name: &str, extends: Option<&str>) -> String {
        let extends = extends.map_or(String::new(), |e| format!("extends: {e}\n"));
        format!("<rule>\nname: {name}\n{extends}actions:\n  - type: warn\n</rule>\n")
    }

    fn names(chain: &Chain<'_>) -> Vec<String> {
        chain
            .parents
            .iter()
            .filter_map(|b| name_of(b).map(str::to_owned))
            .collect()
    }

    #[test]
    fn chains_cross_files_and_stop_at_problems() {
        let texts = [
            rule("base", None),
            format!("{}{}", rule("mid", Some("base")), rule("leaf", Some("mid"))),
            rule("typo", Some("bsae")),
            format!(
                "{}{}{}",
                rule("a", Some("b")),
                rule("b", Some("a")),
                rule("into", Some("a"))
            ),
            rule("me", Some("me")),
        ];
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let files = files(&texts);
        let index = RuleIndex::new(&files);
        let block = |f: usize, b: usize| &files[f].body.rules[b];
        let leaf = index.chain(block(1, 1));
        assert_eq!(names(&leaf), ["mid", "base"]);
        assert_eq!(leaf.problem, None);
        let typo = index.chain(block(2, 0));
        assert!(typo.parents.is_empty());
        assert!(matches!(
            &typo.problem,
            Some(ExtendsProblem::Unknown { name, best: Some(best) })
                if name.value == "bsae" && best == "base"
        ));
        let a = index.chain(block(3, 0));
        assert_eq!(names(&a), ["b"]);
        assert!(matches!(
            &a.problem,
            Some(ExtendsProblem::Cycle { path, .. }) if path == &["a", "b", "a"]
        ));
        // Leading into a cycle is not being on it.
        let into = index.chain(block(3, 2));
        assert_eq!(names(&into), ["a", "b"]);
        assert_eq!(into.problem, None);
        let me = index.chain(block(4, 0));
        assert!(matches!(
            &me.problem,
            Some(ExtendsProblem::Cycle { path, .. }) if path == &["me", "me"]
        ));
    }
}
