//! The sandbox of a node ([`policy_of`]): what its `sandbox` and `sandbox-writable` say, the
//! paths its outputs live under, and the reduced environment with what the task declares
//! (its `env`, `dotenv` and placeholder variables, and the `env-inputs` its key hashes).
//!
//! In: the run's [`Context`] and a node. Out: a [`clab_sandbox::Policy`], or `None` when the
//! node runs unsandboxed. An LLM step's check is sandboxed unless it says `sandbox #false`;
//! a command only with `sandbox #true` or `"required"`. When the kernel offers less than a
//! full sandbox, the run says so once (`warn_once`).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use clab_graph::{Graph, NodeId, Sandbox};
use clab_sandbox::{Mode, Policy, Support, expand_home, reduced_env};

use crate::context::Context;

/// The sandbox node `id` runs in during a run; `default` is its mode when tasks.kdl says
/// nothing. What the kernel lacks is said once per process.
pub fn policy_of(cx: &Context, id: NodeId, default: Mode) -> Option<Policy> {
    let policy = policy(&cx.graph, id, default)?;
    warn_once(cx, policy.mode);
    Some(policy)
}

/// The sandbox node `id` of `graph` runs in (`clab watch`'s services too); `default` is its
/// mode when tasks.kdl says nothing.
pub fn policy(graph: &Graph, id: NodeId, default: Mode) -> Option<Policy> {
    let node = graph.node(id);
    let mode = match node.sandbox {
        Sandbox::Default => default,
        Sandbox::Off => Mode::Off,
        Sandbox::On => Mode::BestEffort,
        Sandbox::Required => Mode::Required,
    };
    if mode == Mode::Off {
        return None;
    }
    let root = graph.root();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut writable: Vec<PathBuf> = node
        .sandbox_writable
        .iter()
        .map(|path| root.join(expand_home(path, home.as_deref())))
        .collect();
    writable.extend(
        node.outputs
            .iter()
            .filter(|pattern| !pattern.starts_with('!'))
            .map(|pattern| output_base(root, pattern)),
    );
    writable.sort();
    writable.dedup();
    // What the key hashes the command may read: the `env-inputs` it names, as clab sees them.
    let env_inputs = graph
        .env_inputs_of(node.member)
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)));
    let declared: Vec<(String, String)> = env_inputs.chain(graph.command_env(id)).collect();
    Some(Policy {
        mode,
        writable,
        env: reduced_env(|name| std::env::var(name).ok(), declared),
    })
}

/// Where an output pattern's files are written: the directory before its first glob
/// character (ending in `/`, so the sandbox creates it when missing); a literal path as it
/// is (the sandbox grants a missing file through its directory).
fn output_base(root: &Path, pattern: &str) -> PathBuf {
    if pattern.ends_with('/') {
        return as_dir(root.join(pattern.trim_end_matches('/')));
    }
    let glob = |c: &str| c.contains(['*', '?', '[', ']', '{', '}']);
    let components: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = components
        .iter()
        .take_while(|c| !glob(c))
        .copied()
        .collect();
    if literal.len() == components.len() {
        return root.join(pattern);
    }
    as_dir(root.join(literal.join("/")))
}

/// `path` with a trailing `/`: a directory to create if missing.
fn as_dir(path: PathBuf) -> PathBuf {
    let mut text = path.into_os_string();
    if !text.as_encoded_bytes().ends_with(b"/") {
        text.push("/");
    }
    PathBuf::from(text)
}

/// Tell once per process what the kernel does not offer (`required` fails instead).
fn warn_once(cx: &Context, mode: Mode) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if mode != Mode::BestEffort {
        return;
    }
    if let Some(warning) = Support::detect().warning()
        && !WARNED.swap(true, Ordering::SeqCst)
    {
        cx.warn(warning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_writable_below_their_literal_base() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("build/junit.xml"), "").unwrap();
        assert_eq!(output_base(root, "out/**/*.txt"), root.join("out/"));
        assert_eq!(
            output_base(root, "build/junit.xml"),
            root.join("build/junit.xml")
        );
        assert_eq!(
            output_base(root, "build/new.xml"),
            root.join("build/new.xml")
        );
        assert_eq!(output_base(root, "dist/"), root.join("dist/"));
        assert_eq!(output_base(root, "*.whl"), root.join(""));
    }
}
