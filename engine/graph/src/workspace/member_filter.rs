//! `--filter`: which members bare task names stand for.
//!
//! In: the flag's text: a glob over member names (`core`, `@acme/*`, `//` for the root),
//! with `...` after it to add the matches' dependents, before it to add their
//! dependencies (`...app`), or both. Out: the members selected. Several filters add up.

use globset::{Glob, GlobMatcher};

use super::{Error, MemberId, Workspace};

/// The name `--filter` uses for the workspace root's own tasks.
pub const ROOT_NAME: &str = "//";

/// One parsed `--filter`.
#[derive(Clone, Debug)]
pub struct MemberFilter {
    /// As given.
    pub text: String,
    glob: GlobMatcher,
    dependents: bool,
    dependencies: bool,
}

impl MemberFilter {
    /// Parse `--filter TEXT`.
    pub fn parse(text: &str) -> Result<MemberFilter, Error> {
        let (dependencies, rest) = match text.strip_prefix("...") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (dependents, name) = match rest.strip_suffix("...") {
            Some(name) => (true, name),
            None => (false, rest),
        };
        let glob = Glob::new(name).map_err(|err| Error::BadFilter {
            filter: text.to_owned(),
            reason: err.kind().to_string(),
        })?;
        Ok(MemberFilter {
            text: text.to_owned(),
            glob: glob.compile_matcher(),
            dependents,
            dependencies,
        })
    }

    /// What `filters` select: whether the root is selected, and each member.
    pub fn select(
        filters: &[MemberFilter],
        workspace: &Workspace,
    ) -> Result<(bool, Vec<bool>), Error> {
        let mut root = false;
        let mut selected = vec![false; workspace.members.len()];
        let dependents = workspace.dependents();
        let dependencies = workspace.dependencies();
        for filter in filters {
            let matched: Vec<MemberId> = workspace
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| filter.glob.is_match(&m.name))
                .map(|(i, _)| MemberId::new(i))
                .collect();
            let root_matched = filter.glob.is_match(ROOT_NAME);
            if matched.is_empty() && !root_matched {
                let names = workspace.members.iter().map(|m| m.name.as_str());
                let glob = filter.glob.glob().glob();
                return Err(Error::UnknownFilter {
                    filter: filter.text.clone(),
                    help: clab_syntax::did_you_mean(glob, names)
                        .map(|close| format!("did you mean `{close}`?"))
                        .unwrap_or_else(|| "`clab list` shows the members".to_owned()),
                });
            }
            root |= root_matched;
            let mut reached: Vec<Vec<bool>> = Vec::new();
            for &id in &matched {
                selected[id.index()] = true;
            }
            if filter.dependents {
                reached.push(workspace.reach(&matched, &dependents));
            }
            if filter.dependencies {
                reached.push(workspace.reach(&matched, &dependencies));
            }
            for reach in reached {
                for (slot, on) in selected.iter_mut().zip(reach) {
                    *slot |= on;
                }
            }
        }
        Ok((root, selected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::{Member, MemberDep};

    fn workspace() -> Workspace {
        // app → lib → core; tool alone.
        let member = |name: &str, deps: &[usize]| Member {
            name: name.to_owned(),
            dir: format!("p/{name}"),
            file: None,
            deps: deps
                .iter()
                .map(|&d| MemberDep {
                    member: MemberId::new(d),
                    origin: String::new(),
                })
                .collect(),
            files: Vec::new(),
        };
        Workspace {
            members: vec![
                member("app", &[1]),
                member("lib", &[2]),
                member("core", &[]),
                member("tool", &[]),
            ],
            files: Vec::new(),
        }
    }

    fn select(filters: &[&str]) -> Result<(bool, Vec<&'static str>), String> {
        let ws = workspace();
        let filters: Vec<MemberFilter> = filters
            .iter()
            .map(|f| MemberFilter::parse(f))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let (root, selected) = MemberFilter::select(&filters, &ws).map_err(|e| e.to_string())?;
        let names = ["app", "lib", "core", "tool"];
        Ok((
            root,
            names
                .into_iter()
                .zip(selected)
                .filter(|(_, on)| *on)
                .map(|(n, _)| n)
                .collect(),
        ))
    }

    #[test]
    fn globs_dependents_and_dependencies() {
        assert_eq!(select(&["lib"]), Ok((false, vec!["lib"])));
        assert_eq!(select(&["lib..."]), Ok((false, vec!["app", "lib"])));
        assert_eq!(select(&["...lib"]), Ok((false, vec!["lib", "core"])));
        assert_eq!(
            select(&["...lib..."]),
            Ok((false, vec!["app", "lib", "core"]))
        );
        assert_eq!(select(&["t*", "core"]), Ok((false, vec!["core", "tool"])));
        assert_eq!(select(&["//"]), Ok((true, vec![])));
        assert_eq!(
            select(&["lbi"]),
            Err("`--filter lbi` matches no member".to_owned())
        );
        assert!(select(&["a["]).is_err());
    }
}
