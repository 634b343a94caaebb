//! Names on the command line → nodes: what a bare task name means where clab was started,
//! and which members `--filter` and `--since` leave in play.
//!
//! In: a [`Graph`] with its [`Scope`] (set by the project loader) and the names given. Out:
//! node ids, or an [`UnknownTarget`] with a "did you mean".
//!
//! In a single project a name is a task (all its nodes) or a node id. In a workspace:
//! - `core:build` (or a node id such as `core:gen[a.py]`) is that member's, always;
//!   `//:lint` is the root's;
//! - inside a member's directory, a bare `build` is that member's;
//! - elsewhere a bare `build` is the root's `build` and every member's `build` — those the
//!   [`Selection`] keeps (`--filter`, `--since`); it is unknown only when nothing in the
//!   workspace defines it, so a selection that keeps nothing runs nothing.

use globset::{Glob, GlobSetBuilder};

use crate::{
    Graph, NodeId, UnknownTarget,
    workspace::{self, MemberFilter, MemberId},
};

/// Which members (and whether the root) bare task names expand to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The root's own tasks.
    pub root: bool,
    /// Each member, by [`MemberId`] index.
    pub members: Vec<bool>,
}

impl Selection {
    /// Both selections at once (`--filter` and `--since` together).
    pub fn and(self, other: &Selection) -> Selection {
        Selection {
            root: self.root && other.root,
            members: self
                .members
                .iter()
                .zip(&other.members)
                .map(|(a, b)| *a && *b)
                .collect(),
        }
    }
}

/// Where the command was started and what it selects.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The member whose directory clab was started in: bare names are its tasks.
    pub focus: Option<MemberId>,
    /// What `--filter`/`--since` keep; `None`: everything.
    pub selection: Option<Selection>,
}

impl Graph {
    /// Set where names are resolved from (see the module doc).
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    /// The scope names are resolved in.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Resolve names given on the command line: a task name selects all its nodes, a display
    /// id one node; in a workspace, as the module doc says.
    pub fn resolve_targets(&self, names: &[String]) -> Result<Vec<NodeId>, UnknownTarget> {
        let mut targets = Vec::new();
        for name in names {
            targets.extend(self.resolve_name(name, true)?);
        }
        targets.sort();
        targets.dedup();
        Ok(targets)
    }

    /// Whether `name` names something here, whatever the selection keeps (`default`).
    pub fn defines(&self, name: &str) -> bool {
        self.resolve_name(name, false).is_ok()
    }

    fn lookup(&self, name: &str) -> Option<Vec<NodeId>> {
        if let Some(ids) = self.tasks.get(name) {
            Some(ids.clone())
        } else {
            self.ids.get(name).map(|&id| vec![id])
        }
    }

    fn resolve_name(&self, name: &str, selected: bool) -> Result<Vec<NodeId>, UnknownTarget> {
        let unknown = |help: String| UnknownTarget {
            name: name.to_owned(),
            help,
        };
        if let Some(rest) = name.strip_prefix("//:") {
            return self
                .lookup(rest)
                .filter(|ids| ids.iter().all(|&id| self.node(id).member.is_none()))
                .ok_or_else(|| unknown(self.suggest(rest, None)));
        }
        if let Some(focus) = self.scope.focus
            && !name.contains(':')
        {
            let member = &self.member(focus).name;
            return self.lookup(&format!("{member}:{name}")).ok_or_else(|| {
                let mut help = self.suggest(name, Some(focus));
                if self.lookup(name).is_some() {
                    help = format!("`{member}` has no task `{name}`; the root's is `//:{name}`");
                }
                unknown(help)
            });
        }
        let members = &self.workspace.members;
        if members.is_empty() || name.contains(':') {
            return self
                .lookup(name)
                .ok_or_else(|| unknown(self.suggest(name, None)));
        }
        let keep_root = !selected || self.scope.selection.as_ref().is_none_or(|s| s.root);
        let keep = |m: usize| {
            !selected
                || self
                    .scope
                    .selection
                    .as_ref()
                    .is_none_or(|s| s.members.get(m).copied().unwrap_or(false))
        };
        let mut found = false;
        let mut ids = Vec::new();
        if let Some(own) = self.lookup(name) {
            found = true;
            if keep_root {
                ids.extend(own);
            }
        }
        for (m, member) in members.iter().enumerate() {
            if let Some(theirs) = self.tasks.get(&format!("{}:{name}", member.name)) {
                found = true;
                if keep(m) {
                    ids.extend(theirs);
                }
            }
        }
        if found {
            Ok(ids)
        } else {
            Err(unknown(self.suggest(name, None)))
        }
    }

    /// "did you mean": among the focused member's tasks, or all task names.
    fn suggest(&self, name: &str, focus: Option<MemberId>) -> String {
        let close = match focus {
            Some(member) => {
                let prefix = format!("{}:", self.member(member).name);
                clab_syntax::did_you_mean(
                    name,
                    self.tasks
                        .keys()
                        .filter_map(|t| t.strip_prefix(prefix.as_str())),
                )
            }
            None => {
                // Bare member task names count too: `tset` is close to `core:test`'s `test`.
                let bare = self
                    .tasks
                    .keys()
                    .map(|t| t.rsplit_once(':').map_or(t.as_str(), |(_, task)| task));
                clab_syntax::did_you_mean(name, self.tasks.keys().map(String::as_str))
                    .or_else(|| clab_syntax::did_you_mean(name, bare))
            }
        };
        close
            .map(|close| format!("did you mean `{close}`?"))
            .unwrap_or_else(|| "`clab list` shows the tasks".to_owned())
    }

    /// What `--filter` selects.
    pub fn select_filters(&self, filters: &[String]) -> Result<Selection, workspace::Error> {
        let parsed: Vec<MemberFilter> = filters
            .iter()
            .map(|f| MemberFilter::parse(f))
            .collect::<Result<_, _>>()?;
        let (root, members) = MemberFilter::select(&parsed, &self.workspace)?;
        Ok(Selection { root, members })
    }

    /// What `--since` selects, given the files changed (relative to the root): the members
    /// holding a changed file, the members with a node whose inputs match a changed file
    /// outside every member (a shared lock file), and their dependents; the root when a
    /// changed file is outside every member. clab's own writes do not count: the cache
    /// directory `.clab/` and files a node declares as outputs.
    pub fn select_changed(&self, changed: &[String]) -> Selection {
        let members = &self.workspace.members;
        let mut outputs = GlobSetBuilder::new();
        for id in self.ids() {
            for output in &self.node(id).outputs {
                if let Ok(glob) = Glob::new(output.trim_end_matches('/')) {
                    outputs.add(glob);
                }
            }
        }
        let outputs = outputs
            .build()
            .unwrap_or_else(|_| globset::GlobSet::empty());
        let mut root = false;
        let mut touched: Vec<MemberId> = Vec::new();
        let mut outside: Vec<&str> = Vec::new();
        let changed = changed
            .iter()
            .filter(|path| !path.starts_with(".clab/") && !outputs.is_match(path.as_str()));
        for path in changed {
            match self.workspace.member_of(path) {
                Some(member) => touched.push(member),
                None => {
                    root = true;
                    outside.push(path);
                }
            }
        }
        if !outside.is_empty() {
            for m in 0..members.len() {
                let mut globs = GlobSetBuilder::new();
                for id in self
                    .ids()
                    .filter(|&id| self.node(id).member == Some(MemberId::new(m)))
                {
                    for input in &self.node(id).inputs {
                        if let Some(glob) = (!input.starts_with('!'))
                            .then(|| Glob::new(input).ok())
                            .flatten()
                        {
                            globs.add(glob);
                        }
                    }
                }
                let Ok(globs) = globs.build() else {
                    continue;
                };
                if outside.iter().any(|path| globs.is_match(path)) {
                    touched.push(MemberId::new(m));
                }
            }
        }
        let dependents = self.workspace.dependents();
        Selection {
            root,
            members: self.workspace.reach(&touched, &dependents),
        }
    }
}
