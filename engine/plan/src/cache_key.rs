//! The cache key of a node: one serializable struct, hashed whole, printable by `explain`.
//!
//! # Encoding (version [`KEY_VERSION`])
//!
//! The key is the blake3 hash of the compact JSON serialization of [`KeyParts`]: fields in
//! declaration order, maps as JSON objects with keys in sorted (`BTreeMap`) order, digests as
//! lowercase hex — except `inputs`, which is written as the hex blake3 of its own JSON (the
//! inputs map's digest, computed once per distinct map: twenty rule nodes over one
//! 10,000-file tree hash its 870 KB once, not twenty times). Bump [`KEY_VERSION`] whenever
//! a field is added, removed or changes meaning: every old entry then misses instead of
//! being misread.
//!
//! What goes in: the format version, the platform, the node's display id and kind, its
//! commands, working directory and declared outputs, the environment it sets, the hashed
//! values of `env-inputs` variables (hashed, so a secret passed that way never reaches
//! `cache.db`), each input file's path and content hash, and — the early cutoff — the digest
//! of each dependency's *outputs*, not its key: a dependency that reruns but writes the same
//! bytes leaves its dependents' keys unchanged.
//!
//! # Location independence
//!
//! No part holds the checkout's absolute path, so a project copied or cloned elsewhere (CI
//! runners, a second checkout) with its `.clab` replays its entries. Paths are relative to the
//! root already (`cwd`, `outputs`, `inputs`); what a node renders from `{{root}}` — in its
//! commands, check, `cwd`, `outputs`, `env` and prompts — enters the key with the root written
//! back as [`ROOT_MARKER`] ([`without_root`]). The command that runs still gets the real path.
//! This changed no field's encoding, so [`KEY_VERSION`] stayed 2: a key computed before held
//! the absolute path, which can never equal text holding the marker, so such an entry misses
//! once instead of being misread.

use std::{borrow::Cow, collections::BTreeMap, io, sync::Arc};

use serde::{Deserialize, Serialize};

use clab_store::Digest;

/// The version of the key encoding (2: `inputs` by digest).
pub const KEY_VERSION: u32 = 2;

/// Everything a node's result depends on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyParts {
    /// [`KEY_VERSION`].
    pub version: u32,
    /// `linux-x86_64`: results do not travel between platforms.
    pub platform: String,
    /// The node's display id.
    pub task: String,
    /// `command`, `llm`, `rule`.
    pub kind: String,
    /// The rendered commands (or the LLM step's check), in order.
    pub commands: Vec<String>,
    /// The working directory, relative to the root.
    pub cwd: String,
    /// Declared output globs: a change in what is stored is a change in the result.
    pub outputs: Vec<String>,
    /// Variables the task sets (top-level and task `env`).
    pub env: BTreeMap<String, String>,
    /// `env-inputs` variables: the blake3 hex of each value, `None` when unset.
    pub env_inputs: BTreeMap<String, Option<String>>,
    /// Input path → content hash (shared by nodes that read the same files).
    pub inputs: Arc<BTreeMap<String, Digest>>,
    /// Dependency display id → digest of its outputs.
    pub deps: BTreeMap<String, Digest>,
    /// Extra parts of other node kinds (LLM settings and prompts, rule definitions), by name.
    pub extra: BTreeMap<String, String>,
    /// For a large inputs map: the blake3 of its JSON, under which a saved manifest stores it
    /// once in the `input_sets` table (20 rule nodes over one tree share one copy; `inputs`
    /// is empty in the manifest itself). Equal digests mean equal inputs. When set, it must
    /// be the digest of `inputs` (the key uses it in their place); not itself in the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_set: Option<Digest>,
    /// `inputs` already serialized, shared by nodes with the same inputs. Never serialized.
    #[serde(skip)]
    pub inputs_json: Option<Arc<str>>,
}

/// What stands for the project root in the parts of a key.
pub const ROOT_MARKER: &str = "{{root}}";

/// `text` with each occurrence of the project root `root` (as `{{root}}` renders it) written
/// as [`ROOT_MARKER`], for a key part. A root of `/` (or empty) is left alone: it is in every
/// absolute path.
pub fn without_root<'a>(text: &'a str, root: &str) -> Cow<'a, str> {
    if root.len() > 1 && text.contains(root) {
        Cow::Owned(text.replace(root, ROOT_MARKER))
    } else {
        Cow::Borrowed(text)
    }
}

/// A node's cache key: the blake3 of its [`KeyParts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(pub Digest);

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl KeyParts {
    /// The platform string of this build of clab.
    pub fn platform() -> String {
        format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Hash the parts into the key.
    pub fn key(&self) -> CacheKey {
        let mut hasher = blake3::Hasher::new();
        {
            // serde writes token by token; blake3 is fast on long inputs and slow on many
            // tiny ones, so small writes are gathered (a shared inputs JSON passes straight
            // through). Writing plain data with string keys into a hasher cannot fail.
            let mut buffered = io::BufWriter::with_capacity(16 * 1024, &mut hasher);
            let _ = self.write_encoding(&mut buffered);
            let _ = io::Write::flush(&mut buffered);
        }
        CacheKey(hasher.finalize().into())
    }

    /// The blake3 of `inputs`' JSON: `input_set` when the planner computed it, else hashed
    /// now.
    pub fn inputs_digest(&self) -> Digest {
        if let Some(digest) = self.input_set {
            return digest;
        }
        if let Some(json) = &self.inputs_json {
            return Digest::of_bytes(json.as_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        {
            let mut buffered = io::BufWriter::with_capacity(16 * 1024, &mut hasher);
            let _ = serde_json::to_writer(&mut buffered, &*self.inputs);
            let _ = io::Write::flush(&mut buffered);
        }
        hasher.finalize().into()
    }

    /// `inputs` as JSON: the shared serialization when there is one.
    pub fn inputs_json(&self) -> Arc<str> {
        match &self.inputs_json {
            Some(json) => Arc::clone(json),
            None => inputs_json(&self.inputs),
        }
    }

    /// The encoding the key hashes: the compact JSON serde writes for `KeyParts`, with the
    /// inputs map's digest in place of the map (a test holds the two equal).
    fn write_encoding(&self, out: &mut impl io::Write) -> io::Result<()> {
        fn field<T: Serialize + ?Sized>(
            out: &mut impl io::Write,
            name: &str,
            value: &T,
        ) -> io::Result<()> {
            write!(out, "\"{name}\":")?;
            serde_json::to_writer(&mut *out, value).map_err(io::Error::from)
        }
        out.write_all(b"{")?;
        field(out, "version", &self.version)?;
        out.write_all(b",")?;
        field(out, "platform", &self.platform)?;
        out.write_all(b",")?;
        field(out, "task", &self.task)?;
        out.write_all(b",")?;
        field(out, "kind", &self.kind)?;
        out.write_all(b",")?;
        field(out, "commands", &self.commands)?;
        out.write_all(b",")?;
        field(out, "cwd", &self.cwd)?;
        out.write_all(b",")?;
        field(out, "outputs", &self.outputs)?;
        out.write_all(b",")?;
        field(out, "env", &self.env)?;
        out.write_all(b",")?;
        field(out, "env_inputs", &self.env_inputs)?;
        write!(out, ",\"inputs\":\"{}\",", self.inputs_digest())?;
        field(out, "deps", &self.deps)?;
        out.write_all(b",")?;
        field(out, "extra", &self.extra)?;
        out.write_all(b"}")
    }
}

/// The JSON of an inputs map, as serde writes it inside `KeyParts`.
pub fn inputs_json(inputs: &BTreeMap<String, Digest>) -> Arc<str> {
    serde_json::to_string(inputs).unwrap_or_default().into()
}

/// The digest of a set of files (a node's outputs): paths, modes and contents, in path order.
pub fn digest_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a Digest, u32)>) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for (path, hash, mode) in files {
        hasher.update(path.as_bytes());
        hasher.update(&[0]);
        hasher.update(hash.as_bytes());
        hasher.update(&mode.to_le_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        KeyParts {
            version: KEY_VERSION,
            platform: "linux-x86_64".into(),
            task: "build".into(),
            kind: "command".into(),
            commands: vec!["make".into()],
            inputs: Arc::new(BTreeMap::from([(
                "src/a.c".into(),
                Digest::of_bytes(b"int a;"),
            )])),
            ..KeyParts::default()
        }
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let base = parts();
        assert_eq!(base.key(), parts().key());
        let mut changed = parts();
        changed.commands[0] = "make all".into();
        assert_ne!(base.key(), changed.key());
        let mut changed = parts();
        Arc::make_mut(&mut changed.inputs).insert("src/a.c".into(), Digest::of_bytes(b"int b;"));
        assert_ne!(base.key(), changed.key());
    }

    #[test]
    fn the_key_hashes_the_serde_encoding_with_inputs_by_digest() {
        let mut full = parts();
        full.env
            .insert("A\"b".into(), "line\nbreak \u{1F600}".into());
        full.env_inputs.insert("CC".into(), None);
        full.deps.insert("gen".into(), Digest::of_bytes(b"out"));
        full.extra.insert("rule".into(), "r".into());
        full.outputs = vec!["out/**".into()];
        full.cwd = "sub".into();
        for parts in [KeyParts::default(), parts(), full] {
            let map = serde_json::to_string(&*parts.inputs).unwrap();
            let digest = Digest::of_bytes(map.as_bytes());
            let expected = serde_json::to_string(&parts).unwrap().replacen(
                &format!("\"inputs\":{map}"),
                &format!("\"inputs\":\"{digest}\""),
                1,
            );
            let mut written = Vec::new();
            parts.write_encoding(&mut written).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), expected);
            assert_eq!(parts.key(), CacheKey(Digest::of_bytes(expected.as_bytes())));
            // The planner's shared serialization and digest give the same key.
            let shared = KeyParts {
                inputs_json: Some(inputs_json(&parts.inputs)),
                ..parts.clone()
            };
            assert_eq!(shared.key(), parts.key());
            let shared = KeyParts {
                input_set: Some(digest),
                ..parts.clone()
            };
            assert_eq!(shared.key(), parts.key());
        }
    }

    #[test]
    fn the_root_is_written_as_a_marker() {
        assert_eq!(
            without_root("cd /tmp/p/sub && /tmp/p/bin/x", "/tmp/p"),
            "cd {{root}}/sub && {{root}}/bin/x"
        );
        assert!(matches!(
            without_root("make all", "/tmp/p"),
            Cow::Borrowed("make all")
        ));
        assert_eq!(without_root("ls /", "/"), "ls /");
        assert_eq!(without_root("ls /x", ""), "ls /x");
    }

    #[test]
    fn file_digest_covers_path_content_and_mode() {
        let hash = Digest::of_bytes(b"x");
        let one = digest_files([("a", &hash, 0o644)]);
        assert_eq!(one, digest_files([("a", &hash, 0o644)]));
        assert_ne!(one, digest_files([("b", &hash, 0o644)]));
        assert_ne!(one, digest_files([("a", &hash, 0o755)]));
        assert_ne!(one, digest_files(std::iter::empty()));
    }
}
