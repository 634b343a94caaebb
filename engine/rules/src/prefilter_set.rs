//! Every rule's whole-text prefilters as one [`PrefilterSet`]: a file is searched once for
//! the prefilters of all rules, the way ripgrep searches for many patterns in one pass, so
//! that each rule reads line by line only the few files that may match it.

use std::{collections::HashMap, sync::Arc};

use crate::CompiledRule;

/// The whole-text prefilters of many rules as one `RegexSet`.
#[derive(Debug)]
pub struct PrefilterSet {
    set: regex::RegexSet,
    /// Every rule is [prefiltered](CompiledRule::is_prefiltered).
    decides_alone: bool,
    /// What `search` answers for a text no pattern matches.
    no_hits: Arc<[bool]>,
    /// Rule definition hash → for each action, its pattern's index in `set`.
    slots: HashMap<blake3::Hash, Vec<Option<usize>>>,
}

impl PrefilterSet {
    /// The set of every prefilter of `rules`, or `None` when there are none (or the combined
    /// set would not compile, e.g. past the regex size limit: each rule then runs its own).
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a CompiledRule>) -> Option<PrefilterSet> {
        let mut patterns: Vec<&str> = Vec::new();
        let mut slots = HashMap::new();
        let mut decides_alone = true;
        for rule in rules {
            decides_alone &= rule.is_prefiltered();
            let actions = rule
                .prefilters()
                .into_iter()
                .map(|source| {
                    source.map(|source| {
                        patterns.push(source);
                        patterns.len() - 1
                    })
                })
                .collect();
            slots.insert(rule.definition_hash(), actions);
        }
        if patterns.is_empty() {
            return None;
        }
        let set = regex::RegexSet::new(&patterns).ok()?;
        Some(PrefilterSet {
            no_hits: vec![false; set.len()].into(),
            set,
            decides_alone,
            slots,
        })
    }

    /// Whether a text no pattern of the set matches is one no rule of the set finds anything
    /// in: so when every rule is [prefiltered](CompiledRule::is_prefiltered).
    pub fn decides_alone(&self) -> bool {
        self.decides_alone
    }

    /// Whether any pattern matches `text` (stops at the first match).
    pub fn is_match(&self, text: &str) -> bool {
        self.set.is_match(text)
    }

    /// The answers of [`search`](Self::search) for a text no pattern matches.
    pub fn no_hits(&self) -> Arc<[bool]> {
        Arc::clone(&self.no_hits)
    }

    /// Which patterns match `text`.
    pub fn search(&self, text: &str) -> Arc<[bool]> {
        let matches = self.set.matches(text);
        (0..self.set.len()).map(|i| matches.matched(i)).collect()
    }

    /// Where the prefilters of `rule`'s actions are in the set; `None` if the rule is not in
    /// it. Looked up once per rule, not per file.
    pub fn slots_of(&self, rule: &CompiledRule) -> Option<&[Option<usize>]> {
        self.slots.get(&rule.definition_hash()).map(Vec::as_slice)
    }

    /// For each action of `rule`, whether its prefilter matched (`hits` from
    /// [`search`](Self::search)); `None` if the rule is not in the set.
    #[cfg(test)]
    pub(crate) fn answers(&self, rule: &CompiledRule, hits: &[bool]) -> Option<Vec<bool>> {
        let mut answers = Vec::new();
        Self::answers_into(self.slots_of(rule)?, hits, &mut answers);
        Some(answers)
    }

    /// For each action, whether its prefilter matched: `slots` from [`slots_of`](Self::slots_of),
    /// `hits` from [`search`](Self::search); written into `out` (reused from file to file).
    pub fn answers_into(slots: &[Option<usize>], hits: &[bool], out: &mut Vec<bool>) {
        out.clear();
        out.extend(
            slots
                .iter()
                .map(|slot| slot.is_none_or(|i| hits.get(i).copied().unwrap_or(true))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled_rule::tests::{
        PREFILTER_PATTERNS, PREFILTER_TEXTS, UV, compile, condition_rule,
    };

    #[test]
    fn prefilters_decide_alone_only_for_rules_whose_findings_all_pass_one() {
        let plain = condition_rule(r"foo\(");
        assert!(plain.is_prefiltered());
        // No prefilter for a whole-text anchor; a content filter and a message-only action
        // find things no prefilter sees.
        let anchored = condition_rule(r"\Aimport");
        let uv = compile(UV);
        assert!(!anchored.is_prefiltered());
        assert!(!uv.is_prefiltered());
        let alone = |rules: &[&CompiledRule]| {
            PrefilterSet::new(rules.iter().copied())
                .unwrap()
                .decides_alone()
        };
        assert!(alone(&[&plain, &condition_rule("bar")]));
        assert!(!alone(&[&plain, &anchored]));
        assert!(!alone(&[&plain, &uv]));
        let set = PrefilterSet::new([&plain]).unwrap();
        assert!(set.is_match("x = foo(1)") && !set.is_match("x = foo"));
        assert_eq!(&*set.no_hits(), &*set.search("nothing"));
    }

    #[test]
    fn one_set_of_prefilters_answers_what_each_rule_finds() {
        let (texts, patterns) = (PREFILTER_TEXTS, PREFILTER_PATTERNS);
        // All the prefilters as one set, searched once per text, answer the same as each
        // rule scanning alone (including a rule without a prefilter, `\Aimport`).
        let rules: Vec<CompiledRule> = patterns
            .iter()
            .chain(&[r"\Aimport"])
            .map(|pattern| condition_rule(pattern))
            .collect();
        let set = PrefilterSet::new(&rules).unwrap();
        for text in texts {
            let hits = set.search(text);
            for rule in &rules {
                let answers = set.answers(rule, &hits).unwrap();
                assert_eq!(
                    rule.scan_selected("a.py", text, Some(&answers)),
                    rule.scan("a.py", text),
                    "{text:?}"
                );
            }
        }
    }
}
