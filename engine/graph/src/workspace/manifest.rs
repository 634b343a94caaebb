//! The ecosystem's manifests → what a workspace's packages are called, which of them depend
//! on which, and which directories the ecosystem itself counts as workspace packages.
//!
//! In: a package directory (`pyproject.toml`, `Cargo.toml`, `package.json`) or the workspace
//! root (those three plus `pnpm-workspace.yaml`). Out: a [`Manifest`] or [`RootManifests`],
//! or an [`Error::Manifest`] pointing at the file and, where the parser says, the place.
//!
//! Parsed with the ecosystems' own well-kept readers: `toml` for pyproject.toml and
//! Cargo.toml, `serde_json` for package.json, `serde-saphyr` for pnpm-workspace.yaml (a pure
//! Rust YAML reader with limits on nesting and aliases, so a hostile file cannot make it
//! allocate without bound; the file is one list of globs). Only the fields below are read;
//! anything else in a manifest is ignored, so a manifest that its own tool accepts is read
//! here too.
//!
//! - uv: `[project] name`; `[project] dependencies`, `[project.optional-dependencies]`,
//!   `[dependency-groups]` and `[tool.uv] dev-dependencies` (PEP 508 strings: the name
//!   before any extra, version or marker) count when `[tool.uv.sources]` of the member or of
//!   the root gives the name `{ workspace = true }`; `[tool.uv.workspace] members`/`exclude`
//!   at the root.
//! - Cargo: `[package] name`; `path` dependencies in `[dependencies]`, `[dev-dependencies]`,
//!   `[build-dependencies]` and their `[target.*]` forms; `{ workspace = true }` ones through
//!   the root's `[workspace.dependencies]`; `[workspace] members`/`exclude` at the root.
//! - npm/pnpm: `name`; `dependencies`, `devDependencies`, `peerDependencies` and
//!   `optionalDependencies` naming another package (any range, `workspace:` included);
//!   `workspaces` (a list, or `{ packages }`) at the root, and `packages` of
//!   `pnpm-workspace.yaml` (`!` excludes).
//!
//! Python names are compared normalized (PEP 503: lowercase, runs of `-_.` as one `-`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use clab_model::source::SourceText;
use miette::{NamedSource, SourceSpan};
use serde::Deserialize;

use super::{Error, path_join};

/// `pyproject.toml`.
pub(crate) const PYPROJECT: &str = "pyproject.toml";
/// `Cargo.toml`.
pub(crate) const CARGO: &str = "Cargo.toml";
/// `package.json`.
pub(crate) const PACKAGE_JSON: &str = "package.json";
/// `pnpm-workspace.yaml`.
pub(crate) const PNPM_WORKSPACE: &str = "pnpm-workspace.yaml";

/// What the manifests in one package directory say.
#[derive(Debug, Default, Clone)]
pub(crate) struct Manifest {
    /// `[project] name` of pyproject.toml, normalized.
    pub python_name: Option<String>,
    /// `name` of package.json.
    pub npm_name: Option<String>,
    /// Normalized Python dependency names that a `{ workspace = true }` source names (the
    /// root's sources are added by the caller).
    pub python_deps: Vec<String>,
    /// Normalized Python dependency names without a source of their own: a root
    /// `[tool.uv.sources]` entry may still make them workspace dependencies.
    pub python_other_deps: Vec<String>,
    /// npm dependency names.
    pub npm_deps: Vec<String>,
    /// Cargo `path` dependencies: directories relative to the workspace root.
    pub cargo_path_deps: Vec<String>,
    /// Cargo `{ workspace = true }` dependencies: their names in `[workspace.dependencies]`.
    pub cargo_workspace_deps: Vec<String>,
    /// The manifests read, relative to the workspace root.
    pub files: Vec<String>,
}

/// A glob of package directories that an ecosystem's workspace declares.
#[derive(Debug, Clone)]
pub(crate) struct PackageGlob {
    /// The glob, relative to the root.
    pub glob: String,
    /// An `exclude` (or `!`) entry.
    pub exclude: bool,
    /// The manifest a directory must hold to count (`pyproject.toml` for uv).
    pub manifest: &'static str,
}

/// What the manifests at the workspace root say about the workspace as a whole.
#[derive(Debug, Default)]
pub(crate) struct RootManifests {
    /// Package directories the ecosystems declare, in file order.
    pub globs: Vec<PackageGlob>,
    /// Normalized names that the root's `[tool.uv.sources]` makes workspace sources.
    pub uv_sources: BTreeSet<String>,
    /// The root's `[workspace.dependencies]` with a `path`: name → directory (relative).
    pub cargo_workspace_paths: BTreeMap<String, String>,
    /// The manifests read, relative to the root.
    pub files: Vec<String>,
}

/// PEP 503 normalization: lowercase, each run of `-`, `_` and `.` as one `-`.
pub(crate) fn normalize_python(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The distribution name a PEP 508 requirement starts with, normalized.
fn requirement_name(requirement: &str) -> Option<String> {
    let name: String = requirement
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| normalize_python(&name))
}

/// A manifest's text, with the name diagnostics show.
struct Text {
    name: String,
    text: Arc<str>,
}

impl Text {
    /// Read `dir/file` if it exists; `name` is the path relative to the root.
    fn read(root: &Path, dir: &str, file: &str) -> Result<Option<Text>, Error> {
        let name = path_join(dir, file);
        let path = root.join(&name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Text {
                text: String::from_utf8_lossy(&bytes).into(),
                name,
            })),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(Error::Io { path: name, source }),
        }
    }

    fn error(&self, message: String, span: Option<SourceSpan>) -> Error {
        Error::Manifest {
            path: self.name.clone(),
            message,
            src: Arc::new(NamedSource::new(
                self.name.clone(),
                SourceText::new(Arc::clone(&self.text)),
            )),
            span: span.unwrap_or_else(|| (0, 0).into()),
        }
    }

    fn toml<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Error> {
        toml::from_str(&self.text).map_err(|err| {
            let message = err.message().trim().to_owned();
            self.error(message, err.span().map(Into::into))
        })
    }

    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.text).map_err(|err| {
            let span = offset_of(&self.text, err.line(), err.column());
            // serde_json appends " at line L column C"; the span says where.
            let message = err.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            self.error(message, Some((span, 0).into()))
        })
    }

    fn yaml<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Error> {
        serde_saphyr::from_str(&self.text).map_err(|err| {
            let span = err.location().map(|location| {
                let line = usize::try_from(location.line()).unwrap_or(0);
                let column = usize::try_from(location.column()).unwrap_or(0);
                SourceSpan::from((offset_of(&self.text, line, column), 0))
            });
            let message = err.to_string();
            let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
            self.error(message, span)
        })
    }
}

/// The byte offset of 1-based `line` and `column` (characters) in `text`, clamped.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, this) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            let within: usize = this
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + within;
        }
        offset += this.len();
    }
    text.len()
}

/// A list of strings, or anything else (ignored): the fields read here are lists of names
/// whose entries may also be tables (`{ include-group = "x" }`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Loose(toml::Value);

impl Loose {
    fn strings(&self) -> impl Iterator<Item = &str> {
        self.0
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PyProject {
    project: Option<PyProjectProject>,
    #[serde(rename = "dependency-groups")]
    dependency_groups: BTreeMap<String, Loose>,
    tool: Option<PyTool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PyProjectProject {
    name: Option<String>,
    dependencies: Vec<String>,
    #[serde(rename = "optional-dependencies")]
    optional_dependencies: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PyTool {
    uv: Option<UvTool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UvTool {
    sources: BTreeMap<String, Loose>,
    workspace: Option<UvWorkspace>,
    #[serde(rename = "dev-dependencies")]
    dev_dependencies: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UvWorkspace {
    members: Vec<String>,
    exclude: Vec<String>,
}

impl PyProject {
    /// The normalized names `[tool.uv.sources]` marks `{ workspace = true }`.
    fn workspace_sources(&self) -> BTreeSet<String> {
        let Some(uv) = self.tool.as_ref().and_then(|t| t.uv.as_ref()) else {
            return BTreeSet::new();
        };
        uv.sources
            .iter()
            .filter(|(_, source)| {
                source.0.get("workspace").and_then(toml::Value::as_bool) == Some(true)
            })
            .map(|(name, _)| normalize_python(name))
            .collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CargoToml {
    package: Option<CargoPackage>,
    dependencies: BTreeMap<String, toml::Value>,
    #[serde(rename = "dev-dependencies")]
    dev_dependencies: BTreeMap<String, toml::Value>,
    #[serde(rename = "build-dependencies")]
    build_dependencies: BTreeMap<String, toml::Value>,
    target: BTreeMap<String, CargoTarget>,
    workspace: Option<CargoWorkspace>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CargoPackage {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CargoTarget {
    dependencies: BTreeMap<String, toml::Value>,
    #[serde(rename = "dev-dependencies")]
    dev_dependencies: BTreeMap<String, toml::Value>,
    #[serde(rename = "build-dependencies")]
    build_dependencies: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CargoWorkspace {
    members: Vec<String>,
    exclude: Vec<String>,
    dependencies: BTreeMap<String, toml::Value>,
}

impl CargoToml {
    fn all_dependencies(&self) -> impl Iterator<Item = (&String, &toml::Value)> {
        let own = [
            &self.dependencies,
            &self.dev_dependencies,
            &self.build_dependencies,
        ];
        let targets = self
            .target
            .values()
            .flat_map(|t| [&t.dependencies, &t.dev_dependencies, &t.build_dependencies]);
        own.into_iter().chain(targets).flatten()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PackageJson {
    name: Option<String>,
    dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "devDependencies")]
    dev_dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "peerDependencies")]
    peer_dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "optionalDependencies")]
    optional_dependencies: BTreeMap<String, serde_json::Value>,
    workspaces: Option<NpmWorkspaces>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NpmWorkspaces {
    List(Vec<String>),
    Object {
        #[serde(default)]
        packages: Vec<String>,
    },
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PnpmWorkspace {
    packages: Vec<String>,
}

impl Manifest {
    /// Read the manifests of the package in `dir` (relative to `root`; absent ones add
    /// nothing).
    pub(crate) fn read(root: &Path, dir: &str) -> Result<Manifest, Vec<Error>> {
        let mut manifest = Manifest::default();
        let mut errors = Vec::new();
        let mut read = |file: &str| match Text::read(root, dir, file) {
            Ok(text) => text,
            Err(err) => {
                errors.push(err);
                None
            }
        };
        let (python, cargo, npm) = (read(PYPROJECT), read(CARGO), read(PACKAGE_JSON));
        if let Some(text) = python {
            manifest.files.push(text.name.clone());
            match text.toml::<PyProject>() {
                Ok(py) => manifest.add_python(&py),
                Err(err) => errors.push(err),
            }
        }
        if let Some(text) = cargo {
            manifest.files.push(text.name.clone());
            match text.toml::<CargoToml>() {
                Ok(cargo) => manifest.add_cargo(dir, &cargo),
                Err(err) => errors.push(err),
            }
        }
        if let Some(text) = npm {
            manifest.files.push(text.name.clone());
            match text.json::<PackageJson>() {
                Ok(npm) => manifest.add_npm(&npm),
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(manifest)
        } else {
            Err(errors)
        }
    }

    fn add_python(&mut self, py: &PyProject) {
        let sources = py.workspace_sources();
        let Some(project) = &py.project else {
            return;
        };
        self.python_name = project.name.as_deref().map(normalize_python);
        let uv_dev = py
            .tool
            .as_ref()
            .and_then(|t| t.uv.as_ref())
            .map(|uv| uv.dev_dependencies.as_slice())
            .unwrap_or_default();
        let requirements = project
            .dependencies
            .iter()
            .chain(project.optional_dependencies.values().flatten())
            .map(String::as_str)
            .chain(py.dependency_groups.values().flat_map(Loose::strings))
            .chain(uv_dev.iter().map(String::as_str));
        for name in requirements.filter_map(requirement_name) {
            let list = if sources.contains(&name) {
                &mut self.python_deps
            } else {
                &mut self.python_other_deps
            };
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }

    fn add_cargo(&mut self, dir: &str, cargo: &CargoToml) {
        for (name, spec) in cargo.all_dependencies() {
            if let Some(path) = spec.get("path").and_then(toml::Value::as_str) {
                if let Some(target) = super::normalize(&path_join(dir, path)) {
                    self.cargo_path_deps.push(target);
                }
            } else if spec.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
                // A renamed dependency (`x = { workspace = true, package = "y" }`) still uses
                // its key in `[workspace.dependencies]`.
                self.cargo_workspace_deps.push(name.clone());
            }
        }
    }

    fn add_npm(&mut self, npm: &PackageJson) {
        self.npm_name = npm.name.clone();
        let all = [
            &npm.dependencies,
            &npm.dev_dependencies,
            &npm.peer_dependencies,
            &npm.optional_dependencies,
        ];
        for name in all.into_iter().flat_map(BTreeMap::keys) {
            if !self.npm_deps.contains(name) {
                self.npm_deps.push(name.clone());
            }
        }
    }
}

impl RootManifests {
    /// Read the workspace declarations at the root.
    pub(crate) fn read(root: &Path) -> Result<RootManifests, Vec<Error>> {
        let mut found = RootManifests::default();
        let mut errors = Vec::new();
        let mut read = |file: &str| match Text::read(root, "", file) {
            Ok(text) => text,
            Err(err) => {
                errors.push(err);
                None
            }
        };
        let texts = (
            read(PYPROJECT),
            read(CARGO),
            read(PACKAGE_JSON),
            read(PNPM_WORKSPACE),
        );
        let mut add = |globs: &[String], exclude: bool, manifest: &'static str| {
            for glob in globs {
                let (exclude, glob) = match glob.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (exclude, glob.as_str()),
                };
                let glob = glob.trim_start_matches("./").trim_end_matches('/');
                found.globs.push(PackageGlob {
                    glob: glob.to_owned(),
                    exclude,
                    manifest,
                });
            }
        };
        let (python, cargo, npm, pnpm) = texts;
        let mut files = Vec::new();
        let mut uv_sources = BTreeSet::new();
        let mut cargo_paths = BTreeMap::new();
        if let Some(text) = python {
            match text.toml::<PyProject>() {
                Ok(py) => {
                    uv_sources = py.workspace_sources();
                    if let Some(ws) = py
                        .tool
                        .as_ref()
                        .and_then(|t| t.uv.as_ref()?.workspace.as_ref())
                    {
                        files.push(text.name.clone());
                        add(&ws.members, false, PYPROJECT);
                        add(&ws.exclude, true, PYPROJECT);
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        if let Some(text) = cargo {
            match text.toml::<CargoToml>() {
                Ok(cargo) => {
                    if let Some(ws) = &cargo.workspace {
                        files.push(text.name.clone());
                        add(&ws.members, false, CARGO);
                        add(&ws.exclude, true, CARGO);
                        for (name, spec) in &ws.dependencies {
                            let path = spec.get("path").and_then(toml::Value::as_str);
                            if let Some(dir) = path.and_then(super::normalize) {
                                cargo_paths.insert(name.clone(), dir);
                            }
                        }
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        if let Some(text) = npm {
            match text.json::<PackageJson>() {
                Ok(npm) => {
                    if let Some(workspaces) = &npm.workspaces {
                        files.push(text.name.clone());
                        let globs = match workspaces {
                            NpmWorkspaces::List(list) => list,
                            NpmWorkspaces::Object { packages } => packages,
                        };
                        add(globs, false, PACKAGE_JSON);
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        if let Some(text) = pnpm {
            files.push(text.name.clone());
            match text.yaml::<Option<PnpmWorkspace>>() {
                Ok(pnpm) => add(&pnpm.unwrap_or_default().packages, false, PACKAGE_JSON),
                Err(err) => errors.push(err),
            }
        }
        found.files = files;
        found.uv_sources = uv_sources;
        found.cargo_workspace_paths = cargo_paths;
        if errors.is_empty() {
            Ok(found)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn python_names_are_normalized_and_requirements_cut_at_the_name() {
        assert_eq!(normalize_python("My_Package.Core"), "my-package-core");
        assert_eq!(normalize_python("a--b"), "a-b");
        assert_eq!(
            requirement_name("Core[extra]>=1; python_version>'3'"),
            Some("core".into())
        );
        assert_eq!(requirement_name("lib @ file:///x"), Some("lib".into()));
        assert_eq!(requirement_name(">=1"), None);
    }

    #[test]
    fn reads_uv_workspace_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "apps/cli/pyproject.toml",
            r#"
[project]
name = "demo-cli"
dependencies = ["demo_lib>=0.1", "requests"]
[dependency-groups]
dev = ["pytest", { include-group = "lint" }, "demo-core"]
[tool.uv.sources]
demo-lib = { workspace = true }
"#,
        );
        let manifest = Manifest::read(dir.path(), "apps/cli").unwrap();
        assert_eq!(manifest.python_name.as_deref(), Some("demo-cli"));
        assert_eq!(manifest.python_deps, ["demo-lib"]);
        assert_eq!(
            manifest.python_other_deps,
            ["requests", "pytest", "demo-core"]
        );
        assert_eq!(manifest.files, ["apps/cli/pyproject.toml"]);
    }

    #[test]
    fn reads_cargo_path_and_workspace_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "crates/app/Cargo.toml",
            r#"
[package]
name = "app"
[dependencies]
core = { path = "../core" }
serde = "1"
shared = { workspace = true }
[target.'cfg(unix)'.dev-dependencies]
testkit = { path = "../../tools/testkit" }
"#,
        );
        write(
            dir.path(),
            "Cargo.toml",
            r#"
[workspace]
members = ["crates/*", "tools/testkit"]
exclude = ["crates/old"]
[workspace.dependencies]
shared = { path = "crates/shared" }
"#,
        );
        let manifest = Manifest::read(dir.path(), "crates/app").unwrap();
        assert_eq!(manifest.cargo_path_deps, ["crates/core", "tools/testkit"]);
        assert_eq!(manifest.cargo_workspace_deps, ["shared"]);
        let root = RootManifests::read(dir.path()).unwrap();
        let globs: Vec<(&str, bool)> = root
            .globs
            .iter()
            .map(|g| (g.glob.as_str(), g.exclude))
            .collect();
        assert_eq!(
            globs,
            [
                ("crates/*", false),
                ("tools/testkit", false),
                ("crates/old", true)
            ]
        );
        assert_eq!(root.cargo_workspace_paths["shared"], "crates/shared");
    }

    #[test]
    fn reads_npm_and_pnpm_workspaces() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "package.json",
            r#"{ "name": "root", "private": true, "workspaces": { "packages": ["packages/*"] } }"#,
        );
        write(
            dir.path(),
            "pnpm-workspace.yaml",
            "packages:\n  - 'apps/*'\n  - '!apps/legacy'\n",
        );
        write(
            dir.path(),
            "apps/web/package.json",
            r#"{ "name": "@acme/web", "dependencies": { "@acme/ui": "workspace:*" },
                 "devDependencies": { "vitest": "^1" } }"#,
        );
        let root = RootManifests::read(dir.path()).unwrap();
        let globs: Vec<(&str, bool)> = root
            .globs
            .iter()
            .map(|g| (g.glob.as_str(), g.exclude))
            .collect();
        assert_eq!(
            globs,
            [
                ("packages/*", false),
                ("apps/*", false),
                ("apps/legacy", true)
            ]
        );
        let web = Manifest::read(dir.path(), "apps/web").unwrap();
        assert_eq!(web.npm_name.as_deref(), Some("@acme/web"));
        assert_eq!(web.npm_deps, ["@acme/ui", "vitest"]);
    }

    #[test]
    fn broken_manifests_point_at_the_place() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a/package.json",
            "{\n  \"name\": \"a\",\n  oops\n}\n",
        );
        write(dir.path(), "a/Cargo.toml", "[package]\nname = 1\n");
        let errors = Manifest::read(dir.path(), "a").unwrap_err();
        let found: Vec<(String, usize)> = errors
            .iter()
            .map(|err| match err {
                Error::Manifest { path, span, .. } => (path.clone(), span.offset()),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(found[0].0, "a/Cargo.toml");
        assert_eq!(found[0].1, "[package]\nname = ".len());
        assert_eq!(found[1].0, "a/package.json");
        assert_eq!(found[1].1, "{\n  \"name\": \"a\",\n  ".len());
    }
}
