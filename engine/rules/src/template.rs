//! `clab rules new NAME --type … --globs …`: a new rule file that validates clean.
//!
//! In: a [`NewRule`] (name, type, globs, description). Out: the file's text, or the file
//! written under a rules directory (temp file + rename, never overwriting). Invariant: the
//! text parses with no issues and [`super::validate`] reports nothing for it (tested).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use super::{Error, RuleType, front_matter::split_commas};

/// What `clab rules new` was asked for.
#[derive(Clone, Debug)]
pub struct NewRule<'a> {
    /// The rule id, folders allowed (`python/uv`); the `<rule>` name is its last segment.
    pub name: &'a str,
    /// How the rule is attached.
    pub rule_type: RuleType,
    /// Globs for an auto-attached rule (`--globs '*.py, src/**/*.ts'` may be one string).
    pub globs: &'a [&'a str],
    /// A one-line description; a placeholder is written when an agent-requested rule has none.
    pub description: Option<&'a str>,
}

impl NewRule<'_> {
    /// The rule file's text.
    pub fn render(&self) -> Result<String, Error> {
        let valid_segment = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !self.name.split('/').all(valid_segment) {
            return Err(Error::BadName {
                name: self.name.to_owned(),
            });
        }
        let rule_name = self.name.rsplit('/').next().unwrap_or(self.name);
        let globs: Vec<&str> = self
            .globs
            .iter()
            .flat_map(|g| split_commas(g).into_iter().map(|(_, p)| p.trim()))
            .filter(|g| !g.is_empty())
            .collect();
        let description = self
            .description
            .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|d| !d.is_empty());
        let (description, globs, always) = match self.rule_type {
            RuleType::Always => (description.unwrap_or_default(), Vec::new(), true),
            RuleType::AutoAttached => {
                if globs.is_empty() {
                    return Err(Error::MissingGlobs);
                }
                (description.unwrap_or_default(), globs, false)
            }
            RuleType::AgentRequested => (
                description.unwrap_or_else(|| format!("Use when working on {rule_name}")),
                Vec::new(),
                false,
            ),
            RuleType::Manual => (String::new(), Vec::new(), false),
        };
        let title = rule_name.replace(['-', '_'], " ");
        Ok(format!(
            "---\n\
             description: {description}\n\
             globs: {globs}\n\
             alwaysApply: {always}\n\
             ---\n\
             # {title}\n\
             \n\
             Write the guidance for the model here: what to do, what to avoid, and why.\n\
             \n\
             <rule>\n\
             name: {rule_name}\n\
             description: What this check enforces\n\
             filters:\n  \
               - type: content\n    \
                 pattern: \"REPLACE-ME\"\n\
             actions:\n  \
               - type: suggest\n    \
                 conditions:\n      \
                   - pattern: \"REPLACE-ME\"\n        \
                     message: \"Explain what to change here\"\n\
             </rule>\n",
            globs = globs.join(", "),
        ))
    }
}

/// Write `rule` to `rules_dir/NAME.mdc` (creating folders) through a temp file renamed into
/// place; fails if the file exists. Returns the path written.
pub fn write_new_rule(rules_dir: &Path, rule: &NewRule<'_>) -> Result<PathBuf, Error> {
    let text = rule.render()?;
    let path = rules_dir.join(format!("{}.mdc", rule.name));
    if path.exists() {
        return Err(Error::Exists { path });
    }
    let dir = path.parent().unwrap_or(rules_dir).to_owned();
    let write_err = |source| Error::WriteFile {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(write_err)?;
    tmp.write_all(text.as_bytes()).map_err(write_err)?;
    tmp.persist_noclobber(&path)
        .map_err(|e| write_err(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleFile, validate};
    use clab_model::source::SourceFile;

    #[test]
    fn every_type_renders_a_file_that_validates_clean() {
        for (rule_type, globs) in [
            (RuleType::Always, vec![]),
            (
                RuleType::AutoAttached,
                vec!["*.py, src/**/*.{ts,tsx}", "Makefile"],
            ),
            (RuleType::AgentRequested, vec![]),
            (RuleType::Manual, vec![]),
        ] {
            let rule = NewRule {
                name: "python/no-print",
                rule_type,
                globs: &globs,
                description: None,
            };
            let text = rule.render().unwrap();
            let file = RuleFile::parse(
                "python/no-print",
                SourceFile::new("x.mdc", "x.mdc", text.as_str()),
            );
            assert_eq!(file.rule_type(), rule_type, "{text}");
            let diagnostics = validate(&[file], None);
            assert!(
                diagnostics.is_empty(),
                "{rule_type:?}: {diagnostics:?}\n{text}"
            );
        }
    }

    #[test]
    fn auto_needs_globs_and_names_are_checked() {
        let rule = NewRule {
            name: "a",
            rule_type: RuleType::AutoAttached,
            globs: &[],
            description: None,
        };
        assert!(matches!(rule.render(), Err(Error::MissingGlobs)));
        let bad = NewRule {
            name: "../Up",
            rule_type: RuleType::Manual,
            globs: &[],
            description: None,
        };
        assert!(matches!(bad.render(), Err(Error::BadName { .. })));
    }

    #[test]
    fn writes_once_into_folders() {
        let dir = tempfile::tempdir().unwrap();
        let rule = NewRule {
            name: "tools/x",
            rule_type: RuleType::Manual,
            globs: &[],
            description: None,
        };
        let path = write_new_rule(dir.path(), &rule).unwrap();
        assert_eq!(path, dir.path().join("tools/x.mdc"));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("name: x\n")
        );
        assert!(matches!(
            write_new_rule(dir.path(), &rule),
            Err(Error::Exists { .. })
        ));
    }
}
