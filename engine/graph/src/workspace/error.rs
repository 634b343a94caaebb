//! The problems of loading a workspace: its member globs, member files, manifests, member
//! dependencies, and the selection flags (`--filter`, `--since`).

use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

use clab_model::source::SourceText;
use clab_syntax as syntax;

/// A file's text for a diagnostic, behind one more `Arc` so every variant stays small.
pub type Src = Arc<NamedSource<SourceText>>;

/// A problem with the workspace as a whole or one of its members.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    #[diagnostic(code(clab::workspace::io))]
    Io {
        /// The path, relative to the root.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A manifest that its parser refuses.
    #[error("cannot read `{path}`: {message}")]
    #[diagnostic(code(clab::workspace::manifest))]
    Manifest {
        /// The manifest, relative to the root.
        path: String,
        /// What the parser said.
        message: String,
        /// The manifest.
        #[source_code]
        src: Src,
        /// Where.
        #[label("here")]
        span: SourceSpan,
    },

    /// A member's tasks.kdl does not parse.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(#[from] syntax::Diagnostics),

    /// A `members` glob that does not compile or leaves the root.
    #[error("invalid member glob `{glob}`")]
    #[diagnostic(code(clab::workspace::bad_glob))]
    BadGlob {
        /// The glob.
        glob: String,
        /// The root tasks.kdl.
        #[source_code]
        src: Src,
        /// Where.
        #[label("{reason}")]
        span: SourceSpan,
        /// Why.
        reason: String,
    },

    /// `members` in a member's tasks.kdl.
    #[error("member `{member}` lists members of its own")]
    #[diagnostic(
        code(clab::workspace::nested),
        help("workspaces do not nest: list every member in the root tasks.kdl's `members`")
    )]
    NestedMembers {
        /// The member.
        member: String,
        /// Its tasks.kdl.
        #[source_code]
        src: Src,
        /// The `members` entry.
        #[label("only the root tasks.kdl has `members`")]
        span: SourceSpan,
    },

    /// A root-only setting in a member's tasks.kdl.
    #[error("`{setting}` belongs in the root tasks.kdl, not in member `{member}`")]
    #[diagnostic(code(clab::workspace::root_only), help("{help}"))]
    RootOnly {
        /// The setting.
        setting: &'static str,
        /// The member.
        member: String,
        /// Its tasks.kdl.
        #[source_code]
        src: Src,
        /// The entry.
        #[label("not read in a member")]
        span: SourceSpan,
        /// What to do instead.
        help: &'static str,
    },

    /// A member name clab cannot address.
    #[error("`{name}` cannot name a member")]
    #[diagnostic(code(clab::workspace::bad_name))]
    BadName {
        /// The name.
        name: String,
        /// Where the name comes from: the member's `project`, or the root's `members` glob
        /// that found its directory.
        #[source_code]
        src: Src,
        /// Where.
        #[label("{reason}")]
        span: SourceSpan,
        /// Why.
        reason: String,
        /// What to do.
        #[help]
        help: String,
    },

    /// Two members with one name.
    #[error("two members are named `{name}`: `{first}` and `{second}`")]
    #[diagnostic(
        code(clab::workspace::duplicate_member),
        help("give one of them another name with `project \"NAME\"` in its tasks.kdl")
    )]
    DuplicateMember {
        /// The name.
        name: String,
        /// The first member's directory.
        first: String,
        /// The second member's directory.
        second: String,
    },

    /// `uses` names no member.
    #[error("member `{member}` uses unknown member `{name}`")]
    #[diagnostic(code(clab::workspace::unknown_member))]
    UnknownUses {
        /// The member whose `uses` is wrong.
        member: String,
        /// The name written.
        name: String,
        /// Its tasks.kdl.
        #[source_code]
        src: Src,
        /// Where.
        #[label("no member is called this")]
        span: SourceSpan,
        /// "did you mean" or the members.
        #[help]
        help: String,
    },

    /// Members that depend on each other in a circle.
    #[error("member dependency cycle: {path}")]
    #[diagnostic(code(clab::workspace::cycle))]
    MemberCycle {
        /// `a → b → a`.
        path: String,
        /// Where each step is declared.
        #[help]
        help: String,
    },

    /// `--filter` that selects no member.
    #[error("`--filter {filter}` matches no member")]
    #[diagnostic(code(clab::workspace::unknown_filter))]
    UnknownFilter {
        /// The filter as given.
        filter: String,
        /// "did you mean" or the members.
        #[help]
        help: String,
    },

    /// `--filter` or `--since` in a project without `members`.
    #[error("`{flag}` selects workspace members, and this project has none")]
    #[diagnostic(
        code(clab::workspace::not_a_workspace),
        help(
            "list the members in the root tasks.kdl with `members \"packages/*\"` (docs/workspaces.md)"
        )
    )]
    NotAWorkspace {
        /// The flag given.
        flag: &'static str,
    },

    /// `--filter` with a glob that does not compile.
    #[error("invalid `--filter {filter}`: {reason}")]
    #[diagnostic(code(clab::workspace::bad_filter))]
    BadFilter {
        /// The filter as given.
        filter: String,
        /// What globset said.
        reason: String,
    },

    /// `git` could not be run or refused the revision of `--since`.
    #[error("cannot list the files changed since `{rev}`: {message}")]
    #[diagnostic(
        code(clab::workspace::since),
        help("`--since` needs a git checkout and a revision git knows (`main`, `HEAD~1`, a hash)")
    )]
    Since {
        /// The revision given.
        rev: String,
        /// What went wrong (git's own words when it ran).
        message: String,
    },
}

impl Error {
    /// Whether the environment failed rather than the user's input.
    pub fn is_environment(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}

/// Every problem found while loading a workspace.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} in the workspace", syntax::plural(errors.len(), "problem"))]
#[diagnostic(code(clab::workspace::invalid))]
pub struct Diagnostics {
    /// The problems.
    #[related]
    pub errors: Vec<Error>,
}
