//! Input collection: which files a task reads, and their content hashes.
//!
//! In: the project root and input patterns (relative to the root; `!pattern` excludes).
//! Out: per task a sorted `Vec<InputFile>` (path with `/` separators, blake3 digest, size,
//! executable bit). A task with no include pattern has no inputs.
//!
//! One walk serves every task: `InputIndex::walk` takes the patterns of all tasks, walks the
//! tree once, in parallel (only below the literal prefixes of the globs: `src/**/*.py` walks
//! `src/`), and matches every walked file against the globs whose literal prefix is one of its
//! directories (sets per prefix, so 2,000 tasks with `src/<task>/*.txt` cost one match per
//! file, not 2,000; `*.txt` directly below a prefix is matched by file name). Then
//! `WalkedInputs::hash` hashes each distinct matched file once, in parallel (rayon), through
//! the `StatCache` — which `clab run` loads meanwhile. `InputIndex::build` does both for a
//! single task's rescan, walking sequentially. `InputIndex::select` then answers one task
//! from precomputed per-pattern lists, applying that task's excludes.
//! `expand_outputs` lists the files output patterns name after a run, without ignore rules.
//!
//! Pattern semantics:
//! - Globs use `globset` with `literal_separator`: `*` stays within one directory, `**` spans
//!   any number. A trailing `/` means everything below (`build/` = `build/**`).
//! - A pattern without glob characters (`*?[]{}`) is a literal path: resolved by `stat`, not by
//!   walking, so it is found even when gitignored. A missing one is hashed as absent: it
//!   selects nothing, so creating it later adds it to the task's inputs (and changes the key),
//!   as Bazel and turbo do with optional files; only a directory or a path out of the root is
//!   an error.
//! - `!pattern` removes matches; an exclude also removes everything below a matching directory
//!   (`!**/__pycache__` = `!**/__pycache__/**` too).
//! - The walk respects `.gitignore`, `.git/info/exclude` and `.ignore` files, also outside a git
//!   repository, but not the user's global gitignore (keys must not depend on the machine). It
//!   includes hidden files, never enters `.git/` or `.clab/` directories, and does not follow
//!   symlinks: a symlinked file is an input (hashed through its target) only if its target lies
//!   inside the root; symlinks out of the root are skipped, and a literal one is an error.
//! - Paths that are not UTF-8 are skipped, and so are clab's own temp files
//!   ([`clab_graph::is_temp_file_name`]: a restore or an atomic write in progress, or one a
//!   killed clab left): they are never inputs or outputs (issue 18: a partial
//!   `out/.clab-restore-*` was stored as an output of `out/**`). [`sweep_temp_files`] removes
//!   stale ones.
//! - A glob whose base directory resolves out of the root (`srcl/**` with `srcl` a symlink to
//!   `/elsewhere`) is refused like a literal path out of it (issue 18).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use globset::{GlobSet, GlobSetBuilder};

use clab_store::Digest;
use clab_store::stat_cache::{FileStat, RACY_MARGIN_NS, Sieve, StatCache, now_ns};

use crate::path_pattern::{PathPattern, Pattern, compile_glob};

/// One input file of a task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    /// Path relative to the project root, `/`-separated.
    pub path: String,
    /// blake3 of its contents.
    pub hash: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Whether any execute bit is set.
    pub executable: bool,
}

/// Errors of input collection.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A literal input names a directory.
    #[error("input `{path}` is a directory")]
    #[diagnostic(
        code(clab::inputs::directory),
        help("write `{path}/**` to take every file below it")
    )]
    Directory {
        /// The path as written.
        path: String,
    },

    /// A pattern points outside the project root (absolute, `..`, or a symlink leaving it).
    #[error("input `{pattern}` is outside the project root")]
    #[diagnostic(
        code(clab::inputs::outside_root),
        help(
            "inputs are paths relative to the project root, and a symbolic link on the way \
             must not lead out of it"
        )
    )]
    OutsideRoot {
        /// The pattern as written.
        pattern: String,
    },

    /// A glob does not compile.
    #[error("invalid input glob `{pattern}`")]
    #[diagnostic(code(clab::inputs::bad_glob))]
    BadGlob {
        /// The pattern as written.
        pattern: String,
        /// What globset says.
        #[source]
        source: globset::Error,
    },

    /// A pattern was selected that `InputIndex::build` was not given (an engine bug).
    #[error("input pattern `{pattern}` was not indexed")]
    #[diagnostic(
        code(clab::inputs::not_indexed),
        help("pass every task's patterns to `InputIndex::build` (this is a bug in clab)")
    )]
    NotIndexed {
        /// The pattern.
        pattern: String,
    },

    /// The walk failed (an unreadable directory, a broken ignore file).
    #[error("cannot list input files under `{}`", root.display())]
    #[diagnostic(code(clab::inputs::walk))]
    Walk {
        /// The project root.
        root: PathBuf,
        /// The walker's error, with its path.
        #[source]
        source: ignore::Error,
    },

    /// A file could not be read or stat'ed.
    #[error("cannot read input `{path}`")]
    #[diagnostic(code(clab::inputs::io))]
    Io {
        /// The path relative to the root.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// For each exclude body, which of `files` it removes (the body itself, or anything below it).
fn exclusion_masks(
    files: &[InputFile],
    excludes: BTreeSet<String>,
) -> Result<HashMap<String, Vec<bool>>, Error> {
    let excludes: Vec<String> = excludes.into_iter().collect();
    let mut set = GlobSetBuilder::new();
    for body in &excludes {
        set.add(compile_glob(body, body)?);
        set.add(compile_glob(&format!("{body}/**"), body)?);
    }
    let set = set.build().map_err(|source| Error::BadGlob {
        pattern: excludes.join(", "),
        source,
    })?;
    let mut masks = vec![vec![false; files.len()]; excludes.len()];
    let mut buffer = Vec::new();
    for (i, file) in files.iter().enumerate() {
        set.matches_into(&file.path, &mut buffer);
        for &m in &buffer {
            masks[m / 2][i] = true;
        }
    }
    Ok(excludes.into_iter().zip(masks).collect())
}

/// The directory a glob's matches must live under: its leading components without glob
/// characters, minus the last component.
pub fn glob_base(glob: &str) -> String {
    let components: Vec<&str> = glob.split('/').collect();
    let literal: Vec<&str> = components[..components.len() - 1]
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[', ']', '{', '}', '\\']))
        .copied()
        .collect();
    literal.join("/")
}

/// What a literal pattern resolved to.
#[derive(Debug, Clone)]
enum Literal {
    Found(usize),
    Missing,
    Directory,
    OutsideRoot,
}

/// Work counters of one `InputIndex::build`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Files seen by the walk.
    pub walked: usize,
    /// Distinct files selected by at least one pattern (each hashed or looked up once).
    pub files: usize,
    /// Time spent walking and matching.
    pub walk_time: Duration,
    /// Time spent stat'ing and hashing (in parallel).
    pub hash_time: Duration,
}

/// Every input file of every task, hashed once; answers each task's selection.
#[derive(Debug)]
pub struct InputIndex {
    files: Vec<InputFile>,
    globs: HashMap<String, Vec<usize>>,
    /// Per exclude pattern (normalized body): which of `files` it removes.
    excluded: HashMap<String, Vec<bool>>,
    literals: HashMap<String, Literal>,
    stats: IndexStats,
    area: WalkArea,
    /// Absolute path of each of `files`.
    paths: Vec<PathBuf>,
    /// The stat each of `files` was hashed with.
    file_stats: Vec<FileStat>,
}

/// What [`WalkedInputs::hash_keeping`] kept: relative path → (hash, what was kept).
pub type KeptTexts = HashMap<String, (Digest, KeptText), foldhash::fast::RandomState>;

use clab_store::stat_cache::KeptText;

/// The files an [`InputIndex`] will hold, found but not yet hashed
/// ([`InputIndex::walk`]): the stat cache can load meanwhile.
#[derive(Debug)]
pub struct WalkedInputs {
    area: WalkArea,
    /// (relative, absolute) path of each selected file, sorted by path.
    candidates: Vec<(String, PathBuf)>,
    /// Each glob and the indexes of the candidates it matched.
    globs: Vec<(String, Vec<usize>)>,
    exclude_list: BTreeSet<String>,
    literals: HashMap<String, Literal>,
    walked: usize,
    walk_time: Duration,
}

impl InputIndex {
    /// Walks `root` once for all `patterns` (of all tasks; excludes may be included or not),
    /// hashing every selected file once through `stat_cache`.
    pub fn build<I, S>(
        root: &Path,
        patterns: I,
        stat_cache: &StatCache,
    ) -> Result<InputIndex, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        InputIndex::find(root, patterns, false)?.hash(stat_cache)
    }

    /// The first half of [`build`](Self::build): find the files, hash nothing. The walk is
    /// parallel (this is the walk of a whole run; `build` serves single tasks, where starting
    /// walker threads would cost more than it saves).
    pub fn walk<I, S>(root: &Path, patterns: I) -> Result<WalkedInputs, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        InputIndex::find(root, patterns, true)
    }

    /// [`walk`](Self::walk) on one thread: for the inputs of a few nodes, where starting the
    /// walker's threads costs more than the walk (~3 ms against a directory of ten files).
    pub fn walk_sequential<I, S>(root: &Path, patterns: I) -> Result<WalkedInputs, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        InputIndex::find(root, patterns, false)
    }

    fn find<I, S>(root: &Path, patterns: I, parallel: bool) -> Result<WalkedInputs, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut globs = BTreeSet::new();
        let mut literals = BTreeSet::new();
        let mut exclude_list = BTreeSet::new();
        for text in patterns {
            let text = text.as_ref();
            let parsed = PathPattern::parse(text)?;
            let body = parsed.pattern.body();
            let seen = if parsed.exclude {
                &mut exclude_list
            } else if matches!(parsed.pattern, Pattern::Glob(_)) {
                &mut globs
            } else {
                literals.insert(body.to_owned());
                continue;
            };
            if !seen.contains(body) {
                compile_glob(body, text)?;
                seen.insert(body.to_owned());
            }
        }
        // Walk from the canonical root so that stat-cache keys are absolute and stable however
        // the caller spelled the root (`.`, a symlinked checkout).
        let canonical_root = fs::canonicalize(root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        let root = canonical_root.as_path();

        let walk_start = Instant::now();
        // 1. Walk below the glob bases, matching every file against the globs that can match
        // it: those whose base directory is one of the file's ancestors.
        let glob_list: Vec<String> = globs.into_iter().collect();
        let sets = BaseSets::build(&glob_list)?;
        // Sorted by path (the walk's order); `matched[g]` holds indexes into it.
        let mut candidates: Vec<(String, PathBuf)> = Vec::new();
        let mut matched: Vec<Vec<usize>> = vec![Vec::new(); glob_list.len()];
        let mut walked = 0;
        let mut area = WalkArea {
            root: canonical_root.clone(),
            started_ns: now_ns(),
            ..WalkArea::default()
        };
        if !glob_list.is_empty() {
            let bases = walk_bases(&glob_list);
            let (mut buffer, mut scratch) = (Vec::new(), Vec::new());
            let (found, walked_area) = walk(root, &canonical_root, &bases, true, parallel)?;
            area = walked_area;
            for (rel, abs) in found {
                walked += 1;
                sets.matches_into(&rel, &mut buffer, &mut scratch);
                if buffer.is_empty() {
                    continue;
                }
                for &i in &buffer {
                    matched[i].push(candidates.len());
                }
                candidates.push((rel, abs));
            }
        }

        // 2. Resolve literals by stat (canonicalizing each parent directory once).
        let mut literal_state: HashMap<String, Literal> = HashMap::new();
        let mut dirs_inside: HashMap<PathBuf, bool> = HashMap::new();
        let mut unwalked = Vec::new();
        for lit in &literals {
            let abs = root.join(lit);
            let state =
                resolve_literal(&abs, &canonical_root, &mut dirs_inside).map_err(|source| {
                    Error::Io {
                        path: lit.clone(),
                        source,
                    }
                })?;
            if let Literal::Found(_) = state
                && candidates
                    .binary_search_by(|(rel, _)| rel.as_str().cmp(lit))
                    .is_err()
            {
                unwalked.push((lit.clone(), abs));
            }
            literal_state.insert(lit.clone(), state);
        }
        merge_sorted(&mut candidates, unwalked, &mut matched);
        Ok(WalkedInputs {
            area,
            candidates,
            globs: glob_list.into_iter().zip(matched).collect(),
            exclude_list,
            literals: literal_state,
            walked,
            walk_time: walk_start.elapsed(),
        })
    }
}

impl WalkedInputs {
    /// The absolute paths of the files found (to be hashed).
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &Path> {
        self.candidates.iter().map(|(_, path)| path.as_path())
    }

    /// The second half of [`InputIndex::build`]: hash every file once, in parallel.
    pub fn hash(self, stat_cache: &StatCache) -> Result<InputIndex, Error> {
        Ok(self.hash_keeping::<&str>(stat_cache, &[], None)?.0)
    }

    /// [`hash`](Self::hash), also keeping the bytes of the files selected by the include
    /// patterns in `keep` that had to be read (see [`StatCache::hash_files_keeping`]), by
    /// path, with the hash they had.
    pub fn hash_keeping<S: AsRef<str>>(
        self,
        stat_cache: &StatCache,
        keep: &[S],
        sieve: Option<&Sieve<'_>>,
    ) -> Result<(InputIndex, KeptTexts), Error> {
        let keep = self.mask(keep);
        let WalkedInputs {
            area,
            candidates,
            globs,
            exclude_list,
            literals: mut literal_state,
            walked,
            walk_time,
        } = self;
        let hash_start = Instant::now();
        let abs_paths: Vec<&Path> = candidates.iter().map(|(_, abs)| abs.as_path()).collect();
        let mut kept = KeptTexts::default();
        let mut file_stats = Vec::with_capacity(candidates.len());
        let files = candidates
            .iter()
            .zip(stat_cache.hash_files_keeping(&abs_paths, &keep, sieve))
            .map(|((rel, _), result)| {
                let hashed = result.map_err(|source| Error::Io {
                    path: rel.clone(),
                    source,
                })?;
                if let Some(text) = hashed.kept {
                    kept.insert(rel.clone(), (hashed.hash, text));
                }
                file_stats.push(hashed.stat);
                Ok(InputFile {
                    path: rel.clone(),
                    hash: hashed.hash,
                    size: hashed.stat.size,
                    executable: hashed.stat.executable(),
                })
            })
            .collect::<Result<Vec<InputFile>, Error>>()?;
        let hash_time = hash_start.elapsed();
        let globs = globs.into_iter().collect();
        let excluded = exclusion_masks(&files, exclude_list)?;
        for (lit, state) in literal_state.iter_mut() {
            if let Literal::Found(i) = state {
                *i = files
                    .binary_search_by(|file| file.path.as_str().cmp(lit))
                    .unwrap_or(usize::MAX);
            }
        }
        let stats = IndexStats {
            walked,
            files: files.len(),
            walk_time,
            hash_time,
        };
        let index = InputIndex {
            files,
            globs,
            excluded,
            literals: literal_state,
            stats,
            area,
            paths: candidates.into_iter().map(|(_, abs)| abs).collect(),
            file_stats,
        };
        Ok((index, kept))
    }

    /// Which candidates the include patterns among `patterns` select (excludes ignored:
    /// keeping a few texts too many costs only memory).
    fn mask<S: AsRef<str>>(&self, patterns: &[S]) -> Vec<bool> {
        let mut mask = vec![
            false;
            if patterns.is_empty() {
                0
            } else {
                self.candidates.len()
            }
        ];
        for text in patterns {
            let Ok(parsed) = PathPattern::parse(text.as_ref()) else {
                continue;
            };
            if parsed.exclude {
                continue;
            }
            match &parsed.pattern {
                Pattern::Glob(glob) => {
                    for (_, ids) in self.globs.iter().filter(|(g, _)| g == glob) {
                        for &i in ids {
                            mask[i] = true;
                        }
                    }
                }
                Pattern::Literal(literal) => {
                    if let Ok(i) = self
                        .candidates
                        .binary_search_by(|(rel, _)| rel.as_str().cmp(literal))
                    {
                        mask[i] = true;
                    }
                }
            }
        }
        mask
    }
}

impl InputIndex {
    /// The inputs of one task: files matching any include pattern and no exclude, sorted by
    /// path. Every include pattern must have been given to `build`.
    pub fn select<S: AsRef<str>>(&self, patterns: &[S]) -> Result<Vec<&InputFile>, Error> {
        Ok(self
            .select_indices(patterns)?
            .into_iter()
            .map(|i| &self.files[i])
            .collect())
    }

    /// [`select`](Self::select) again, later in the run, with every file rehashed through
    /// `stat_cache` — when the walk's view of the task still holds: every directory the walk
    /// entered below the task's glob bases, and every ignore file that can apply there, is
    /// older than the walk (by the racy margin: an entry added, removed or renamed, an
    /// ignore file written, gives its directory or itself a new ctime), the bases that were
    /// missing still are, and each literal resolves as it did. `Ok(None)` when that does not
    /// hold or cannot be told: the task's inputs must be walked again.
    pub fn reselect<S: AsRef<str>>(
        &self,
        patterns: &[S],
        stat_cache: &StatCache,
    ) -> Result<Option<Vec<InputFile>>, Error> {
        if !self.area_holds(patterns)? {
            return Ok(None);
        }
        let chosen = self.select_indices(patterns)?;
        // The walk's hash holds for a file whose stat is the one it was hashed with, and
        // lies the racy margin before the walk (the stat cache's rule, without its lookup).
        let trusted_before = self.area.started_ns - RACY_MARGIN_NS;
        let mut files = Vec::with_capacity(chosen.len());
        for i in chosen {
            let started_ns = now_ns();
            // Gone or unreadable since the check: a walk tells what is there now.
            let Ok(meta) = fs::metadata(&self.paths[i]) else {
                return Ok(None);
            };
            let stat = FileStat::from_metadata(&meta);
            if stat == self.file_stats[i] && stat.mtime_ns < trusted_before {
                files.push(self.files[i].clone());
                continue;
            }
            let Ok((hash, stat)) = stat_cache.hash_stated(&self.paths[i], stat, started_ns) else {
                return Ok(None);
            };
            files.push(InputFile {
                path: self.files[i].path.clone(),
                hash,
                size: stat.size,
                executable: stat.executable(),
            });
        }
        Ok(Some(files))
    }

    /// Whether files written during the run at `written` (relative `/` paths: the outputs
    /// restored by a task's dependencies) can change what [`select`](Self::select) answers for
    /// `patterns`, so that the task must [`reselect`](Self::reselect) rather than trust the
    /// walk. `false` only when it surely cannot: no written path matches an include pattern
    /// (a glob, or a literal path equal to it), none is an ignore file (`.gitignore`,
    /// `.ignore`, under `.git/`), none was written through a symlinked directory, no include
    /// pattern's literal part goes through a symlink, and the walk met no symlink below a
    /// glob's base (a symlink there may name a written file). Excludes are not consulted
    /// (they could only make the answer `false` more often). `plain` caches which relative
    /// paths have no symlink among their existing components.
    pub fn may_see<S: AsRef<str>, W: AsRef<str>>(
        &self,
        patterns: &[S],
        written: &[W],
        plain: &Mutex<HashMap<String, bool>>,
    ) -> Result<bool, Error> {
        if written.is_empty() {
            return Ok(false);
        }
        let is_plain = |rel: &str| -> bool {
            let mut cache = plain.lock().unwrap_or_else(|e| e.into_inner());
            self.area.is_plain(rel, &mut cache)
        };
        for path in written {
            let path = path.as_ref();
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            if name == ".gitignore"
                || name == ".ignore"
                || path.starts_with(".git/")
                || path.contains("/.git/")
                || !is_plain(parent)
            {
                return Ok(true);
            }
        }
        for text in patterns {
            let parsed = PathPattern::parse(text.as_ref())?;
            if parsed.exclude {
                continue;
            }
            match &parsed.pattern {
                Pattern::Literal(literal) => {
                    if written.iter().any(|p| p.as_ref() == literal) || !is_plain(literal) {
                        return Ok(true);
                    }
                }
                Pattern::Glob(glob) => {
                    let base = glob_base(glob);
                    let dir = self.area.root.join(&base);
                    let start = self.area.with_symlinks.partition_point(|d| d < &dir);
                    if self
                        .area
                        .with_symlinks
                        .get(start)
                        .is_some_and(|d| d.starts_with(&dir))
                        || !is_plain(&base)
                    {
                        return Ok(true);
                    }
                    // A glob only matches below its literal base: compile it only when a
                    // written path lies there.
                    let below = |p: &str| {
                        base.is_empty()
                            || p.strip_prefix(base.as_str())
                                .is_some_and(|rest| rest.starts_with('/'))
                    };
                    if written.iter().any(|p| below(p.as_ref())) {
                        let matcher = compile_glob(glob, text.as_ref())?.compile_matcher();
                        if written.iter().any(|p| matcher.is_match(p.as_ref())) {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// Whether what the walk saw of `patterns`' files still holds (see
    /// [`reselect`](Self::reselect)).
    fn area_holds<S: AsRef<str>>(&self, patterns: &[S]) -> Result<bool, Error> {
        let area = &self.area;
        let trusted_before = area.started_ns - RACY_MARGIN_NS;
        let mut globs = Vec::new();
        let mut dirs_inside = HashMap::new();
        for text in patterns {
            let parsed = PathPattern::parse(text.as_ref())?;
            match parsed.pattern {
                _ if parsed.exclude => {}
                Pattern::Glob(glob) => globs.push(glob),
                Pattern::Literal(literal) => {
                    let now =
                        resolve_literal(&area.root.join(&literal), &area.root, &mut dirs_inside);
                    let same = match (now, self.literals.get(&literal)) {
                        (Ok(Literal::Found(_)), Some(Literal::Found(_))) => true,
                        (Ok(now), Some(then)) => {
                            std::mem::discriminant(&now) == std::mem::discriminant(then)
                        }
                        _ => false,
                    };
                    if !same {
                        return Ok(false);
                    }
                }
            }
        }
        let mut ancestors = BTreeSet::new();
        for base in walk_bases(&globs) {
            let dir = area.root.join(&base);
            if area.missing.contains(&dir) {
                if fs::metadata(&dir).is_ok_and(|meta| meta.is_dir()) {
                    return Ok(false);
                }
            } else {
                let start = area.dirs.partition_point(|walked| walked < &dir);
                let below = &area.dirs[start..];
                let count = below
                    .iter()
                    .take_while(|walked| walked.starts_with(&dir))
                    .count();
                if count == 0
                    || !below[..count].iter().all(|walked| {
                        area.with_symlinks.binary_search(walked).is_err()
                            && dir_holds(walked, trusted_before)
                    })
                {
                    return Ok(false);
                }
            }
            ancestors.extend(dir.ancestors().skip(1).map(Path::to_path_buf));
        }
        Ok(ancestors
            .iter()
            .all(|ancestor| ignore_files_hold(ancestor, trusted_before)))
    }

    /// The indexes into `files` of [`select`](Self::select)'s answer.
    fn select_indices<S: AsRef<str>>(&self, patterns: &[S]) -> Result<Vec<usize>, Error> {
        let mut chosen: Vec<usize> = Vec::new();
        let mut masks: Vec<&Vec<bool>> = Vec::new();
        let mut excludes = GlobSetBuilder::new();
        let mut any_exclude = false;
        for text in patterns {
            let text = text.as_ref();
            let parsed = PathPattern::parse(text)?;
            if parsed.exclude {
                let body = parsed.pattern.body();
                if let Some(mask) = self.excluded.get(body) {
                    masks.push(mask);
                    continue;
                }
                excludes.add(compile_glob(body, text)?);
                excludes.add(compile_glob(&format!("{body}/**"), text)?);
                any_exclude = true;
                continue;
            }
            match &parsed.pattern {
                Pattern::Glob(g) => {
                    if self.area.base_is_outside(g) {
                        return Err(Error::OutsideRoot {
                            pattern: text.to_owned(),
                        });
                    }
                    let ids = self.globs.get(g).ok_or_else(|| Error::NotIndexed {
                        pattern: text.to_owned(),
                    })?;
                    chosen.extend(ids.iter().copied());
                }
                Pattern::Literal(l) => match self.literals.get(l) {
                    Some(Literal::Found(i)) if *i < self.files.len() => {
                        chosen.push(*i);
                    }
                    // Absent: nothing to hash. The key then lacks the path, so the file's
                    // appearance later is an added input (and `area_holds` walks again).
                    Some(Literal::Found(_)) | Some(Literal::Missing) => {}
                    Some(Literal::Directory) => return Err(Error::Directory { path: l.clone() }),
                    Some(Literal::OutsideRoot) => {
                        return Err(Error::OutsideRoot {
                            pattern: text.to_owned(),
                        });
                    }
                    None => {
                        return Err(Error::NotIndexed {
                            pattern: text.to_owned(),
                        });
                    }
                },
            }
        }
        let excludes = if any_exclude {
            Some(excludes.build().map_err(|source| {
                Error::BadGlob {
                    pattern: patterns
                        .iter()
                        .map(|p| p.as_ref())
                        .collect::<Vec<_>>()
                        .join(", "),
                    source,
                }
            })?)
        } else {
            None
        };
        // `files` is sorted by path, so index order is path order.
        chosen.sort_unstable();
        chosen.dedup();
        Ok(chosen
            .into_iter()
            .filter(|&i| !masks.iter().any(|mask| mask[i]))
            .filter(|&i| {
                excludes
                    .as_ref()
                    .is_none_or(|set: &GlobSet| !set.is_match(&self.files[i].path))
            })
            .collect())
    }

    /// Where the walk looked.
    pub fn area(&self) -> &WalkArea {
        &self.area
    }

    /// The absolute path of each of [`files`](Self::files), in the same order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Every file selected by some pattern, sorted by path.
    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// How much work the build did.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }
}

/// Collects one task's inputs with its own walk (tests and one-off use; prefer `InputIndex`).
pub fn collect<S: AsRef<str>>(
    root: &Path,
    patterns: &[S],
    stat_cache: &StatCache,
) -> Result<Vec<InputFile>, Error> {
    let index = InputIndex::build(root, patterns.iter().map(|p| p.as_ref()), stat_cache)?;
    Ok(index.select(patterns)?.into_iter().cloned().collect())
}

/// Resolves a literal input by `stat`. A regular file is inside the root when its parent
/// directory is (memoized in `dirs_inside`); a symlink is resolved all the way.
fn resolve_literal(
    abs: &Path,
    canonical_root: &Path,
    dirs_inside: &mut HashMap<PathBuf, bool>,
) -> io::Result<Literal> {
    let meta = match fs::symlink_metadata(abs) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Literal::Missing),
        Err(e) => return Err(e),
    };
    let (inside, is_dir) = if meta.file_type().is_symlink() {
        match fs::canonicalize(abs) {
            Ok(real) => (real.starts_with(canonical_root), real.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Literal::Missing),
            Err(e) => return Err(e),
        }
    } else {
        let parent = abs.parent().unwrap_or(abs).to_owned();
        let inside = match dirs_inside.get(&parent) {
            Some(inside) => *inside,
            None => {
                let inside = fs::canonicalize(&parent)?.starts_with(canonical_root);
                dirs_inside.insert(parent, inside);
                inside
            }
        };
        (inside, meta.is_dir())
    };
    Ok(if !inside {
        Literal::OutsideRoot
    } else if is_dir {
        Literal::Directory
    } else {
        Literal::Found(usize::MAX)
    })
}

/// The files that output patterns name, after a task ran: sorted relative `/` paths.
///
/// Unlike inputs, ignore files are not consulted (outputs usually live in ignored directories
/// such as `build/`), a literal that does not exist is simply absent (the caller decides whether
/// a missing output is an error), and nothing is hashed (`Store::store_output` does that).
/// `.git/` and `.clab/` are still skipped and symlinks still not followed out of the root.
pub fn expand_outputs<S: AsRef<str>>(root: &Path, patterns: &[S]) -> Result<Vec<String>, Error> {
    if patterns.is_empty() {
        // A task without outputs (most commands): not even the root is resolved.
        return Ok(Vec::new());
    }
    let root = fs::canonicalize(root).map_err(|source| Error::Io {
        path: root.display().to_string(),
        source,
    })?;
    let mut includes = GlobSetBuilder::new();
    let mut excludes = GlobSetBuilder::new();
    let mut globs = Vec::new();
    let mut found = BTreeSet::new();
    for text in patterns {
        let text = text.as_ref();
        let parsed = PathPattern::parse(text)?;
        let body = parsed.pattern.body();
        if parsed.exclude {
            excludes.add(compile_glob(body, text)?);
            excludes.add(compile_glob(&format!("{body}/**"), text)?);
            continue;
        }
        match &parsed.pattern {
            Pattern::Glob(g) => {
                includes.add(compile_glob(g, text)?);
                globs.push(g.clone());
            }
            Pattern::Literal(l) => {
                let mut dirs = HashMap::new();
                match resolve_literal(&root.join(l), &root, &mut dirs) {
                    Ok(Literal::Found(_)) => {
                        found.insert(l.clone());
                    }
                    Ok(Literal::OutsideRoot) => {
                        return Err(Error::OutsideRoot {
                            pattern: text.to_owned(),
                        });
                    }
                    Ok(_) => {}
                    Err(source) => {
                        return Err(Error::Io {
                            path: l.clone(),
                            source,
                        });
                    }
                }
            }
        }
    }
    let build = |set: GlobSetBuilder| {
        set.build().map_err(|source| Error::BadGlob {
            pattern: patterns
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
            source,
        })
    };
    let (includes, excludes) = (build(includes)?, build(excludes)?);
    if !globs.is_empty() {
        let (walked, area) = walk(&root, &root, &walk_bases(&globs), false, false)?;
        if let Some(glob) = globs.iter().find(|g| area.base_is_outside(g)) {
            return Err(Error::OutsideRoot {
                pattern: glob.clone(),
            });
        }
        for (rel, _) in walked {
            if includes.is_match(&rel) {
                found.insert(rel);
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|p| !excludes.is_match(p))
        .collect())
}

/// Which of `files` (hashed earlier, relative to `root`) no longer hold what they held: gone,
/// or hashing to another digest now (through `stat_cache`, so an unchanged file costs a
/// `stat`). Sorted as `files` are.
pub fn changed_since(root: &Path, files: &[InputFile], stat_cache: &StatCache) -> Vec<String> {
    // The stat cache's keys are canonical paths.
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    files
        .iter()
        .filter(|file| {
            stat_cache
                .hash_file(&root.join(&file.path))
                .map_or(true, |(hash, _)| hash != file.hash)
        })
        .map(|file| file.path.clone())
        .collect()
}

/// How long a temp file must have gone unmodified before [`sweep_temp_files`] takes it for a
/// leftover: a live writer (a restore, an atomic write, another clab) streams into its file.
pub const TEMP_FILE_GRACE: Duration = Duration::from_secs(60);

/// Remove clab's temp files ([`clab_graph::is_temp_file_name`]) left below the directories
/// that output `patterns` expand in (a glob's base, recursively; a literal's directory) and
/// directly in `dirs` (absolute: the cache directory, where long logs are spilled), that have
/// not been modified for `grace`. Symlinks are not followed, `.git/` and `.clab/` not
/// entered, nothing outside the root is touched. Returns the paths removed. Best effort: an
/// unreadable directory is skipped.
pub fn sweep_temp_files<S: AsRef<str>>(
    root: &Path,
    patterns: &[S],
    dirs: &[&Path],
    grace: Duration,
) -> Vec<PathBuf> {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(std::time::UNIX_EPOCH);
    let stale = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified < cutoff)
    };
    let mut removed = Vec::new();
    let mut remove = |path: &Path| {
        if stale(path) && fs::remove_file(path).is_ok() {
            removed.push(path.to_owned());
        }
    };
    for dir in dirs {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let file_type = entry.file_type();
            if clab_graph::is_temp_file_name(&entry.file_name())
                && file_type.is_ok_and(|t| t.is_file())
            {
                remove(&entry.path());
            }
        }
    }
    if patterns.is_empty() {
        return removed;
    }
    let Ok(canonical_root) = fs::canonicalize(root) else {
        return removed;
    };
    let mut recursive = Vec::new();
    let mut flat = BTreeSet::new();
    for text in patterns {
        let Ok(parsed) = PathPattern::parse(text.as_ref()) else {
            continue;
        };
        match parsed.pattern {
            _ if parsed.exclude => {}
            Pattern::Glob(glob) => recursive.push(glob),
            Pattern::Literal(literal) => {
                let parent = Path::new(&literal).parent().map(Path::to_path_buf);
                flat.insert(parent.unwrap_or_default());
            }
        }
    }
    let inside =
        |dir: &Path| fs::canonicalize(dir).is_ok_and(|real| real.starts_with(&canonical_root));
    for dir in flat {
        let dir = canonical_root.join(dir);
        if !inside(&dir) {
            continue;
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if clab_graph::is_temp_file_name(&entry.file_name())
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                remove(&entry.path());
            }
        }
    }
    for base in walk_bases(&recursive) {
        let dir = canonical_root.join(&base);
        if !inside(&dir) {
            continue;
        }
        let walker = ignore::WalkBuilder::new(&dir)
            .standard_filters(false)
            .follow_links(false)
            .filter_entry(|entry| {
                !(entry.file_type().is_some_and(|t| t.is_dir())
                    && matches!(entry.file_name().to_str(), Some(".git" | ".clab")))
            })
            .build();
        for entry in walker.flatten() {
            if clab_graph::is_temp_file_name(entry.file_name())
                && entry.file_type().is_some_and(|t| t.is_file())
            {
                remove(entry.path());
            }
        }
    }
    removed.sort();
    removed
}

/// The globs of one run grouped by base directory (`glob_base`).
///
/// A glob can only match paths below its base, so a file is tested against the sets of its
/// ancestor directories only. One `GlobSet` of every glob would test each file against every
/// glob that shares its extension (globset's regex fallback): with 2,000 tasks each reading
/// `src/<task>/*.txt`, 40,000 files × 2,000 regexes.
///
/// The common shape — one component below a literal directory, `src/pkg/*.py` — is matched by
/// file name (`*.py`) against the files directly in that directory: globset answers a bare
/// `*.py` with a hash lookup of the extension, where the whole path needs a regex.
struct BaseSets {
    /// Base → globs of one component (no `**`), matched against the names of its files.
    names: HashMap<String, (Arc<GlobSet>, Vec<usize>), foldhash::fast::RandomState>,
    /// Base → every other glob, matched against whole relative paths below the base.
    paths: HashMap<String, (Arc<GlobSet>, Vec<usize>), foldhash::fast::RandomState>,
}

/// Base → (its patterns, their indexes in the glob list).
type Grouped = HashMap<String, (Vec<String>, Vec<usize>)>;

impl BaseSets {
    fn build(globs: &[String]) -> Result<BaseSets, Error> {
        let (mut names, mut paths): (Grouped, Grouped) = Default::default();
        for (i, g) in globs.iter().enumerate() {
            let base = glob_base(g);
            let rest = if base.is_empty() {
                g.as_str()
            } else {
                &g[base.len() + 1..]
            };
            let (grouped, pattern) = if rest.contains('/') || rest.contains("**") {
                (&mut paths, g.as_str())
            } else {
                (&mut names, rest)
            };
            let (patterns, ids) = grouped.entry(base).or_default();
            patterns.push(pattern.to_owned());
            ids.push(i);
        }
        // 2,000 directories of `*.txt` share one compiled set.
        let mut compiled: HashMap<Vec<String>, Arc<GlobSet>> = HashMap::new();
        let mut build = |grouped: Grouped| {
            let mut sets = HashMap::with_capacity_and_hasher(grouped.len(), Default::default());
            for (base, (patterns, ids)) in grouped {
                let set = match compiled.get(&patterns) {
                    Some(set) => Arc::clone(set),
                    None => {
                        let mut builder = GlobSetBuilder::new();
                        for (pattern, &i) in patterns.iter().zip(&ids) {
                            builder.add(compile_glob(pattern, &globs[i])?);
                        }
                        let set = Arc::new(builder.build().map_err(|source| {
                            Error::BadGlob {
                                pattern: ids
                                    .iter()
                                    .map(|&i| globs[i].as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                source,
                            }
                        })?);
                        compiled.insert(patterns, Arc::clone(&set));
                        set
                    }
                };
                sets.insert(base, (set, ids));
            }
            Ok::<_, Error>(sets)
        };
        Ok(BaseSets {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// The indexes (into the glob list) of every glob matching `rel`, in `out`, ascending;
    /// `local` is scratch space.
    fn matches_into(&self, rel: &str, out: &mut Vec<usize>, local: &mut Vec<usize>) {
        out.clear();
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if let Some((set, ids)) = self.names.get(parent) {
            set.matches_candidate_into(&globset::Candidate::new(name), local);
            out.extend(local.iter().map(|&j| ids[j]));
        }
        if !self.paths.is_empty() {
            let candidate = globset::Candidate::new(rel);
            let ancestors =
                std::iter::once("").chain(rel.match_indices('/').map(|(end, _)| &rel[..end]));
            for dir in ancestors {
                if let Some((set, ids)) = self.paths.get(dir) {
                    set.matches_candidate_into(&candidate, local);
                    out.extend(local.iter().map(|&j| ids[j]));
                }
            }
        }
        out.sort_unstable();
    }
}

/// Add `extra` (paths not in `sorted`) to `sorted`, keeping it sorted, and renumber the
/// indexes in `matched` to match.
fn merge_sorted(
    sorted: &mut Vec<(String, PathBuf)>,
    extra: Vec<(String, PathBuf)>,
    matched: &mut [Vec<usize>],
) {
    if extra.is_empty() {
        return;
    }
    let mut all: Vec<(usize, (String, PathBuf))> =
        std::mem::take(sorted).into_iter().enumerate().collect();
    let first_extra = all.len();
    all.extend(
        extra
            .into_iter()
            .enumerate()
            .map(|(i, c)| (first_extra + i, c)),
    );
    all.sort_by(|a, b| a.1.0.cmp(&b.1.0));
    let mut renumbered = vec![0; all.len()];
    for (new, (old, _)) in all.iter().enumerate() {
        renumbered[*old] = new;
    }
    for ids in matched {
        for id in ids.iter_mut() {
            *id = renumbered[*id];
        }
    }
    *sorted = all.into_iter().map(|(_, c)| c).collect();
}

/// The minimal set of directories to walk: glob bases, without any that lie below another.
fn walk_bases(globs: &[String]) -> Vec<String> {
    minimal_dirs(globs.iter().map(|g| glob_base(g)).collect())
}

/// `bases` (relative `/` paths, `""` for the root) without duplicates and without any that
/// lie below another, sorted.
pub(super) fn minimal_dirs(mut bases: Vec<String>) -> Vec<String> {
    // Shorter paths first, so a base's ancestors are decided before it.
    bases.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    bases.dedup();
    let mut kept: Vec<String> = Vec::new();
    let mut kept_set: HashSet<&str> = HashSet::new();
    for (i, base) in bases.iter().enumerate() {
        // Covered when the root or one of its ancestor directories is already walked.
        let covered = kept_set.contains("")
            || base
                .match_indices('/')
                .any(|(end, _)| kept_set.contains(&base[..end]));
        if !covered {
            kept_set.insert(&bases[i]);
            kept.push(base.clone());
        }
    }
    kept.sort();
    kept
}

/// Where the base directories of a walk really are (`fs::canonicalize`), resolving only what
/// can be a symlink: a base's parent is resolved once for all its children, and a child that
/// is a plain directory is its parent's real path and its name — one `lstat`. Canonicalizing
/// each of 2,000 bases (`src/t0` … `src/t1999`) cost ~12 `readlink`s apiece, 24,000 system
/// calls on the walk's critical path.
struct RealDirs<'a> {
    root: &'a Path,
    canonical_root: &'a Path,
    /// By relative path: the real directory, or `None` when there is no directory there.
    known: HashMap<String, Option<PathBuf>>,
}

impl<'a> RealDirs<'a> {
    fn new(root: &'a Path, canonical_root: &'a Path) -> RealDirs<'a> {
        RealDirs {
            root,
            canonical_root,
            known: HashMap::new(),
        }
    }

    /// The real path of the directory `rel` (a relative `/` path) below the root, following
    /// symlinks; `None` when it is missing or not a directory.
    fn of(&mut self, rel: &str) -> Option<PathBuf> {
        if rel.is_empty() {
            return Some(self.canonical_root.to_owned());
        }
        if let Some(known) = self.known.get(rel) {
            return known.clone();
        }
        let path = self.root.join(rel);
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let real = if matches!(name, "" | "." | "..") {
            // Not a plain name: resolved whole, as the path says.
            fs::canonicalize(&path).ok().filter(|real| real.is_dir())
        } else {
            self.of(parent)
                .and_then(|parent| match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => Some(parent.join(name)),
                    Ok(meta) if meta.file_type().is_symlink() => {
                        fs::canonicalize(&path).ok().filter(|real| real.is_dir())
                    }
                    _ => None,
                })
        };
        self.known.insert(rel.to_owned(), real.clone());
        real
    }
}

/// Walks `bases` below `root`, yielding (relative `/` path, absolute path) of each file.
fn walk(
    root: &Path,
    canonical_root: &Path,
    bases: &[String],
    ignore_files: bool,
    parallel: bool,
) -> Result<(Vec<(String, PathBuf)>, WalkArea), Error> {
    let mut area = WalkArea {
        root: canonical_root.to_owned(),
        started_ns: now_ns(),
        ..WalkArea::default()
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut real_dirs = RealDirs::new(root, canonical_root);
    for base in bases {
        let dir = if base.is_empty() {
            root.to_owned()
        } else {
            root.join(base)
        };
        if base.is_empty() {
            if dir.is_dir() {
                dirs.push(dir.clone());
            } else {
                area.missing.push(dir.clone());
            }
        } else {
            match real_dirs.of(base) {
                None => area.missing.push(dir.clone()),
                // A symlink on the way leads out of the root: not walked, refused by the
                // patterns that need it.
                Some(real) if !real.starts_with(canonical_root) => area.outside.push(dir.clone()),
                Some(_) => dirs.push(dir.clone()),
            }
        }
        area.bases.push(dir);
    }
    let Some((first, rest)) = dirs.split_first() else {
        return Ok((Vec::new(), area));
    };
    let mut builder = ignore::WalkBuilder::new(first);
    for dir in rest {
        builder.add(dir);
    }
    builder
        .hidden(false)
        .parents(ignore_files)
        .ignore(ignore_files)
        .git_ignore(ignore_files)
        .git_exclude(ignore_files)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| {
            let skip = entry.file_type().is_some_and(|t| t.is_dir())
                && matches!(entry.file_name().to_str(), Some(".git") | Some(".clab"));
            !skip
        });
    if !parallel {
        let mut out = Vec::new();
        for entry in builder.build() {
            let entry = entry.map_err(|source| Error::Walk {
                root: root.to_owned(),
                source,
            })?;
            if entry.file_type().is_some_and(|t| t.is_dir()) {
                area.dirs.push(entry.path().to_owned());
            } else if entry.path_is_symlink() {
                area.with_symlinks
                    .extend(entry.path().parent().map(Path::to_owned));
            }
            out.extend(walked_file(&entry, root, canonical_root));
        }
        out.sort_unstable();
        area.sort();
        return Ok((out, area));
    }
    // In parallel: with the stat cache loading beside it, this halves the walk of 2,000
    // directories even on 2 cores (docs/benchmarks.md).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let found = std::sync::Mutex::new((Vec::new(), None));
    let walked_dirs = std::sync::Mutex::new(Vec::new());
    let with_symlinks = std::sync::Mutex::new(Vec::new());
    builder.threads(threads).build_parallel().run(|| {
        Box::new(|entry| match entry {
            Ok(entry) => {
                if entry.file_type().is_some_and(|t| t.is_dir()) {
                    walked_dirs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(entry.path().to_owned());
                    return ignore::WalkState::Continue;
                }
                if entry.path_is_symlink() {
                    with_symlinks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(entry.path().parent().map(Path::to_owned));
                }
                if let Some(file) = walked_file(&entry, root, canonical_root) {
                    found.lock().unwrap_or_else(|e| e.into_inner()).0.push(file);
                }
                ignore::WalkState::Continue
            }
            Err(err) => {
                let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                found.1.get_or_insert(err);
                ignore::WalkState::Quit
            }
        })
    });
    let (mut out, error) = found.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(source) = error {
        return Err(Error::Walk {
            root: root.to_owned(),
            source,
        });
    }
    // Bases are disjoint, but keep the index sorted and duplicate-free regardless.
    out.sort_unstable();
    out.dedup_by(|a, b| a.0 == b.0);
    area.dirs = walked_dirs.into_inner().unwrap_or_else(|e| e.into_inner());
    area.with_symlinks = with_symlinks
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    area.sort();
    Ok((out, area))
}

/// Whether the walked directory `dir` has the entries and ignore files it had when a walk
/// that started after `trusted_before` (plus the racy margin) read it.
fn dir_holds(dir: &Path, trusted_before: i64) -> bool {
    fs::metadata(dir).is_ok_and(|meta| older(&meta, trusted_before))
        && ignore_files_hold(dir, trusted_before)
}

/// The ignore files a walk reads in each directory it enters and in every parent of a glob
/// base; `.git/info/exclude` is read too, at a repository's top.
pub const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// Whether every ignore file a walk reads in `dir` — `.gitignore`, `.ignore`, and
/// `.git/info/exclude` of a repository's top — is absent or older than `trusted_before`.
/// (A `.git` file, as in a worktree, points elsewhere: not told.)
fn ignore_files_hold(dir: &Path, trusted_before: i64) -> bool {
    let absent_or_old = |path: PathBuf| match fs::metadata(path) {
        Ok(meta) => older(&meta, trusted_before),
        Err(err) => err.kind() == io::ErrorKind::NotFound,
    };
    IGNORE_FILES
        .iter()
        .all(|name| absent_or_old(dir.join(name)))
        && match fs::symlink_metadata(dir.join(".git")) {
            Ok(meta) if meta.is_dir() => absent_or_old(dir.join(".git/info/exclude")),
            Ok(_) => false,
            Err(err) => err.kind() == io::ErrorKind::NotFound,
        }
}

/// Whether nothing about the file behind `meta` changed since `trusted_before` (its ctime
/// moves with every change, and cannot be set back).
fn older(meta: &fs::Metadata, trusted_before: i64) -> bool {
    let stat = FileStat::from_metadata(meta);
    stat.ctime_ns < trusted_before && stat.mtime_ns < trusted_before
}

/// Where a walk looked: what decides which files it finds, besides the files' names.
#[derive(Debug, Clone, Default)]
pub struct WalkArea {
    /// The canonical root the walk started from.
    pub root: PathBuf,
    /// When the walk started (ns since the epoch).
    pub started_ns: i64,
    /// Every directory walked (absolute), sorted: a file added or removed changes its mtime.
    pub dirs: Vec<PathBuf>,
    /// Glob bases that did not exist (absolute).
    pub missing: Vec<PathBuf>,
    /// Every glob base (absolute): ignore files in their parents apply too.
    pub bases: Vec<PathBuf>,
    /// The walked directories holding a symlink (sorted, no duplicates): what a symlink
    /// names can appear, vanish or change kind without its directory changing.
    pub with_symlinks: Vec<PathBuf>,
    /// Glob bases (absolute) that resolve out of the root, through a symlink: not walked.
    pub outside: Vec<PathBuf>,
}

impl WalkArea {
    /// Whether `glob`'s base lies in (or is) a base that resolves out of the root.
    fn base_is_outside(&self, glob: &str) -> bool {
        if self.outside.is_empty() {
            return false;
        }
        let base = self.root.join(glob_base(glob));
        self.outside.iter().any(|out| base.starts_with(out))
    }

    /// Whether no existing component of `rel` (relative to the root; `""` is the root) is a
    /// symlink, by `lstat` from the root down; a component that does not exist ends the check
    /// (a restore creates plain directories). Each prefix decided is kept in `cache`.
    fn is_plain(&self, rel: &str, cache: &mut HashMap<String, bool>) -> bool {
        if rel.is_empty() {
            return true;
        }
        if let Some(known) = cache.get(rel) {
            return *known;
        }
        let (parent, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        let plain = self.is_plain(parent, cache)
            && match fs::symlink_metadata(self.root.join(rel)) {
                Ok(meta) => !meta.file_type().is_symlink(),
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            };
        cache.insert(rel.to_owned(), plain);
        plain
    }

    /// Sorted lists, for lookups by path.
    fn sort(&mut self) {
        self.dirs.sort_unstable();
        self.with_symlinks.sort_unstable();
        self.with_symlinks.dedup();
    }
}

/// The (relative, absolute) path of a walked entry that is an input candidate: a regular file,
/// or a symlink to a file inside the root.
fn walked_file(
    entry: &ignore::DirEntry,
    root: &Path,
    canonical_root: &Path,
) -> Option<(String, PathBuf)> {
    let file_type = entry.file_type()?;
    let path = entry.path();
    if clab_graph::is_temp_file_name(entry.file_name()) {
        return None;
    }
    if file_type.is_symlink() {
        let real = fs::canonicalize(path).ok()?;
        if !(real.starts_with(canonical_root) && real.is_file()) {
            return None;
        }
    } else if !file_type.is_file() {
        return None;
    }
    let rel = relative_string(path.strip_prefix(root).ok()?)?;
    Some((rel, path.to_owned()))
}

/// A relative path as a `/`-separated string; `None` when it climbs out (`..`), is absolute,
/// or is not UTF-8.
pub fn relative_string(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let abs = dir.path().join(path);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            fs::write(abs, text).unwrap();
        }
        dir
    }

    fn paths<F: std::borrow::Borrow<InputFile>>(files: &[F]) -> Vec<&str> {
        files.iter().map(|f| f.borrow().path.as_str()).collect()
    }

    #[test]
    fn hashing_keeps_the_texts_of_the_asked_patterns_that_were_read() {
        let dir = tree(&[
            ("src/a.py", "alpha"),
            ("src/b.txt", "beta"),
            ("docs/c.md", "gamma"),
            ("setup.cfg", "delta"),
        ]);
        let patterns = ["src/**/*.py", "src/*.txt", "docs/*.md", "setup.cfg"];
        let stats = StatCache::new();
        let walked = InputIndex::walk(dir.path(), patterns).unwrap();
        let asked = ["src/**/*.py", "setup.cfg", "!src/b.txt"];
        let (index, kept) = walked.hash_keeping(&stats, &asked, None).unwrap();
        assert_eq!(index.files().len(), 4);
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["setup.cfg", "src/a.py"]);
        assert_eq!(
            kept["src/a.py"],
            (
                Digest::of_bytes(b"alpha"),
                KeptText::Bytes(b"alpha".to_vec())
            )
        );

        // A sieve keeps only what it needs, and the verdict on the rest.
        let sieve = |bytes: &[u8]| bytes.starts_with(b"al");
        let walked = InputIndex::walk(dir.path(), patterns).unwrap();
        let (_, kept) = walked
            .hash_keeping(&StatCache::new(), &asked, Some(&sieve))
            .unwrap();
        assert_eq!(kept["src/a.py"].1, KeptText::Bytes(b"alpha".to_vec()));
        assert_eq!(
            kept["setup.cfg"],
            (Digest::of_bytes(b"delta"), KeptText::Unneeded)
        );

        // Files served by the stat cache are not read, so there is nothing to keep.
        for file in index.paths() {
            let file = fs::File::options().append(true).open(file).unwrap();
            let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            file.set_modified(hour_ago).unwrap();
        }
        let stats = StatCache::new();
        let walked = InputIndex::walk(dir.path(), patterns).unwrap();
        walked.hash_keeping(&stats, &["src/**/*.py"], None).unwrap();
        let walked = InputIndex::walk(dir.path(), patterns).unwrap();
        let (_, kept) = walked
            .hash_keeping(&stats, &["src/**/*.py"], Some(&|_: &[u8]| false))
            .unwrap();
        assert!(kept.is_empty(), "{kept:?}");
    }

    #[test]
    fn walk_respects_gitignore_excludes_and_skips_clab_and_git() {
        let dir = tree(&[
            (".gitignore", "ignored.py\nbuild/\n"),
            ("src/a.py", "a"),
            ("src/ignored.py", "x"),
            ("src/pkg/b.py", "b"),
            ("src/pkg/__pycache__/b.cpython.py", "c"),
            ("src/.ignore", "local.py\n"),
            ("src/local.py", "l"),
            ("src/.hidden.py", "h"),
            ("build/out.py", "o"),
            (".clab/cas/x.py", "cached"),
            (".git/hooks/pre.py", "hook"),
            ("notes.txt", "n"),
        ]);
        let cache = StatCache::new();
        let files = collect(
            dir.path(),
            &["**/*.py", "!**/__pycache__", "notes.txt"],
            &cache,
        )
        .unwrap();
        assert_eq!(
            paths(&files),
            ["notes.txt", "src/.hidden.py", "src/a.py", "src/pkg/b.py"]
        );
        assert_eq!(files[2].hash, Digest::of_bytes(b"a"));
        assert_eq!(files[2].size, 1);
    }

    #[test]
    fn literal_is_found_by_stat_even_when_ignored_and_missing_is_absent() {
        let dir = tree(&[
            (".gitignore", "secret.env\n"),
            ("secret.env", "k=v"),
            ("dir/f", "f"),
        ]);
        let cache = StatCache::new();
        let index = InputIndex::build(dir.path(), ["./secret.env"], &cache).unwrap();
        assert_eq!(
            index.stats().walked,
            0,
            "literals are resolved by stat, not by a walk"
        );
        assert_eq!(
            paths(&index.select(&["./secret.env"]).unwrap()),
            ["secret.env"]
        );
        // A missing literal selects nothing, next to what the other patterns select; a
        // dangling symlink is missing too.
        std::os::unix::fs::symlink("gone.txt", dir.path().join("dangling.txt")).unwrap();
        assert!(
            collect(dir.path(), &["nope.txt"], &cache)
                .unwrap()
                .is_empty()
        );
        assert!(
            collect(dir.path(), &["dangling.txt"], &cache)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            paths(&collect(dir.path(), &["nope.txt", "secret.env", "dir/*"], &cache).unwrap()),
            ["dir/f", "secret.env"]
        );
        let err = collect(dir.path(), &["dir"], &cache).unwrap_err();
        assert!(matches!(err, Error::Directory { .. }));
        assert_eq!(
            paths(&collect(dir.path(), &["dir/"], &cache).unwrap()),
            ["dir/f"]
        );
        assert!(matches!(
            collect(dir.path(), &["../x"], &cache).unwrap_err(),
            Error::OutsideRoot { .. }
        ));
        assert!(matches!(
            collect(dir.path(), &["src/[a"], &cache).unwrap_err(),
            Error::BadGlob { .. }
        ));
    }

    #[test]
    fn a_missing_literal_is_an_input_once_it_is_created() {
        let dir = tree(&[("Cargo.toml", "[package]")]);
        let cache = StatCache::new();
        let patterns = ["Cargo.toml", "Cargo.lock"];
        assert_eq!(
            paths(&collect(dir.path(), &patterns, &cache).unwrap()),
            ["Cargo.toml"]
        );
        fs::write(dir.path().join("Cargo.lock"), "lock").unwrap();
        let files = collect(dir.path(), &patterns, &cache).unwrap();
        assert_eq!(paths(&files), ["Cargo.lock", "Cargo.toml"]);
        assert_eq!(files[0].hash, Digest::of_bytes(b"lock"));
    }

    #[test]
    fn no_patterns_means_no_inputs() {
        let dir = tree(&[("a.txt", "a")]);
        let none: [&str; 0] = [];
        assert!(
            collect(dir.path(), &none, &StatCache::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn star_stays_in_one_directory() {
        let dir = tree(&[("src/a.rs", ""), ("src/deep/b.rs", "")]);
        let cache = StatCache::new();
        assert_eq!(
            paths(&collect(dir.path(), &["src/*.rs"], &cache).unwrap()),
            ["src/a.rs"]
        );
        assert_eq!(
            paths(&collect(dir.path(), &["src/**/*.rs"], &cache).unwrap()),
            ["src/a.rs", "src/deep/b.rs"]
        );
    }

    #[test]
    fn globs_match_only_below_their_base_and_overlapping_bases_combine() {
        let dir = tree(&[
            ("top.txt", ""),
            ("src/a/x.txt", ""),
            ("src/a/y.md", ""),
            ("src/a/deep/z.txt", ""),
            ("src/b/x.txt", ""),
            ("src/ab/x.txt", ""),
        ]);
        let cache = StatCache::new();
        let patterns = [
            "src/a/*.txt",
            "src/b/*.txt",
            "src/a/**",
            "src/*/x.txt",
            "**/*.txt",
            "src/{a,ab}/x.txt",
        ];
        let index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
        let select = |p: &str| {
            index
                .select(&[p])
                .unwrap()
                .into_iter()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(select("src/a/*.txt"), ["src/a/x.txt"]);
        assert_eq!(select("src/b/*.txt"), ["src/b/x.txt"]);
        assert_eq!(
            select("src/a/**"),
            ["src/a/deep/z.txt", "src/a/x.txt", "src/a/y.md"]
        );
        assert_eq!(
            select("src/*/x.txt"),
            ["src/a/x.txt", "src/ab/x.txt", "src/b/x.txt"]
        );
        assert_eq!(
            select("**/*.txt"),
            [
                "src/a/deep/z.txt",
                "src/a/x.txt",
                "src/ab/x.txt",
                "src/b/x.txt",
                "top.txt"
            ]
        );
        assert_eq!(select("src/{a,ab}/x.txt"), ["src/a/x.txt", "src/ab/x.txt"]);
    }

    #[test]
    fn name_globs_share_sets_and_literals_merge_into_the_walked_order() {
        let dir = tree(&[
            (".gitignore", "b/kept.log\n"),
            ("root.txt", ""),
            ("a/1.txt", ""),
            ("a/2.log", ""),
            ("a/sub/3.txt", ""),
            ("b/1.txt", ""),
            ("b/kept.log", ""),
            ("c/d/4.txt", ""),
        ]);
        let cache = StatCache::new();
        // `a/*.txt` and `b/*.txt` share one compiled `*.txt`; `*.txt` has the root as base;
        // `{c/d,a}/*.txt` has a `/` inside braces and is matched as a whole path; the literal
        // `b/kept.log` is gitignored, found by stat, and sorts between walked files.
        let patterns = ["a/*.txt", "b/*.txt", "*.txt", "{c/d,a}/*.txt", "b/kept.log"];
        let index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
        let select = |p: &[&str]| paths(&index.select(p).unwrap()).join(" ");
        assert_eq!(select(&["a/*.txt"]), "a/1.txt");
        assert_eq!(select(&["b/*.txt"]), "b/1.txt");
        assert_eq!(select(&["*.txt"]), "root.txt");
        assert_eq!(select(&["{c/d,a}/*.txt"]), "a/1.txt c/d/4.txt");
        assert_eq!(select(&["b/kept.log"]), "b/kept.log");
        assert_eq!(
            select(&["b/kept.log", "a/*.txt", "b/*.txt"]),
            "a/1.txt b/1.txt b/kept.log"
        );
        let sets = BaseSets::build(&["a/*.txt".into(), "b/*.txt".into(), "a/**".into()]).unwrap();
        assert!(Arc::ptr_eq(&sets.names["a"].0, &sets.names["b"].0));
        assert_eq!(sets.paths["a"].1, [2]);
    }

    /// Pretend `index`'s walk started later than it did, so that the tree as it is now lies
    /// the racy margin before it: what changes from here on is newer.
    fn pretend_walked_later(index: &mut InputIndex, root: &Path) {
        fn newest(path: &Path, max: &mut i64) {
            let meta = fs::symlink_metadata(path).unwrap();
            let stat = FileStat::from_metadata(&meta);
            *max = (*max).max(stat.ctime_ns).max(stat.mtime_ns);
            if meta.is_dir() {
                for entry in fs::read_dir(path).unwrap() {
                    newest(&entry.unwrap().path(), max);
                }
            }
        }
        let mut max = 0;
        newest(root, &mut max);
        index.area.started_ns = max + RACY_MARGIN_NS + 1;
        // Later changes get later timestamps, even from a coarse clock.
        std::thread::sleep(Duration::from_millis(30));
    }

    #[test]
    fn reselect_trusts_the_walk_while_nothing_under_it_changed() {
        let patterns = ["src/**", "!src/skip.txt", "lit.txt", "gone/*.txt"];
        let dir = tree(&[
            ("src/a.txt", "a"),
            ("src/skip.txt", "s"),
            ("src/sub/b.txt", "b"),
            ("lit.txt", "l"),
        ]);
        let cache = StatCache::new();
        let mut index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
        pretend_walked_later(&mut index, dir.path());
        let selected: Vec<InputFile> = index
            .select(&patterns)
            .unwrap()
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(paths(&selected), ["lit.txt", "src/a.txt", "src/sub/b.txt"]);
        assert_eq!(index.reselect(&patterns, &cache).unwrap(), Some(selected));

        // An edit in place leaves every directory alone: still trusted, with the new hash.
        fs::write(dir.path().join("src/sub/b.txt"), "B!").unwrap();
        let files = index.reselect(&patterns, &cache).unwrap().unwrap();
        assert_eq!(files[2].hash, Digest::of_bytes(b"B!"));
        assert_eq!(files[2].size, 2);
    }

    #[test]
    fn reselect_walks_again_after_any_change_a_walk_could_see() {
        let patterns = ["src/**", "lit.txt", "gone/*.txt", "absent.txt"];
        type Change = (&'static str, fn(&Path));
        let changes: [Change; 8] = [
            ("a file added below", |root| {
                fs::write(root.join("src/sub/new.txt"), "n").unwrap()
            }),
            ("a file removed", |root| {
                fs::remove_file(root.join("src/a.txt")).unwrap()
            }),
            ("a directory added", |root| {
                fs::create_dir(root.join("src/new")).unwrap()
            }),
            ("an ignore file written", |root| {
                fs::write(root.join("src/sub/.gitignore"), "b.txt\n").unwrap()
            }),
            ("an ignore file in a parent of a base", |root| {
                fs::write(root.join(".ignore"), "src/a.txt\n").unwrap()
            }),
            ("a repository's exclude file", |root| {
                fs::create_dir_all(root.join(".git/info")).unwrap();
                fs::write(root.join(".git/info/exclude"), "a.txt\n").unwrap();
            }),
            ("a missing base created", |root| {
                fs::create_dir_all(root.join("gone")).unwrap();
                fs::write(root.join("gone/x.txt"), "x").unwrap();
            }),
            ("a missing literal created", |root| {
                fs::write(root.join("absent.txt"), "x").unwrap()
            }),
        ];
        for (what, change) in changes {
            let dir = tree(&[("src/a.txt", "a"), ("src/sub/b.txt", "b"), ("lit.txt", "l")]);
            let cache = StatCache::new();
            let mut index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
            pretend_walked_later(&mut index, dir.path());
            // (`absent.txt` is missing: absent from the answer, and still trusted.)
            let before = index.reselect(&patterns, &cache).unwrap();
            assert!(
                before.is_some_and(|files| files.iter().all(|f| f.path != "absent.txt")),
                "{what}: before"
            );
            change(dir.path());
            assert!(
                matches!(index.reselect(&patterns, &cache), Ok(None)),
                "{what}"
            );
        }
    }

    #[test]
    fn files_written_where_no_include_pattern_looks_need_no_rescan() {
        let dir = tree(&[
            ("src/t1/a.txt", "a"),
            ("src/t2/b.txt", "b"),
            ("lit.txt", "l"),
        ]);
        let patterns = ["src/t1/*.txt", "lit.txt", "!src/t1/skip.txt"];
        let cache = StatCache::new();
        let index =
            InputIndex::build(dir.path(), ["src/t1/*.txt", "lit.txt", "src/**"], &cache).unwrap();
        let plain = Mutex::new(HashMap::new());
        let may_see = |written: &[&str]| index.may_see(&patterns, written, &plain).unwrap();
        // Outputs elsewhere, beside the inputs but not matching, below the base but deeper
        // than `*` reaches: the walk still holds.
        assert!(!may_see(&[]));
        assert!(!may_see(&["out/t1.txt", "out/t2.txt"]));
        assert!(!may_see(&[
            "src/t1/a.bin",
            "src/t1/sub/c.txt",
            "src/t2/b.txt"
        ]));
        assert!(!may_see(&["lit.txt.bak", "src/t10/x.txt"]));
        // An output the node's glob or literal selects: rescan.
        assert!(may_see(&["out/t1.txt", "src/t1/new.txt"]));
        assert!(may_see(&["lit.txt"]));
        // Even one an exclude would remove (excludes are not consulted).
        assert!(may_see(&["src/t1/skip.txt"]));
        // An ignore file anywhere, or anything under `.git/`: rescan.
        assert!(may_see(&["out/.gitignore"]));
        assert!(may_see(&["src/t2/.ignore"]));
        assert!(may_see(&[".git/info/exclude"]));
        // A glob whose base is the root sees every path it matches.
        let everything = ["**/*.txt"];
        let index = InputIndex::build(dir.path(), everything, &cache).unwrap();
        assert!(index.may_see(&everything, &["out/x.txt"], &plain).unwrap());
        assert!(!index.may_see(&everything, &["out/x.bin"], &plain).unwrap());
    }

    #[test]
    fn symlinks_on_the_way_make_any_written_file_a_reason_to_rescan() {
        use std::os::unix::fs::symlink;
        let plain = || Mutex::new(HashMap::new());
        // A symlinked input file may name an output: its directory holds a symlink.
        let dir = tree(&[("src/a.txt", "a"), ("gen/b.txt", "b"), ("other/c.txt", "c")]);
        symlink("../gen/b.txt", dir.path().join("src/b.txt")).unwrap();
        let cache = StatCache::new();
        let patterns = ["src/*.txt", "other/*.txt"];
        let index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
        assert!(
            index
                .may_see(&["src/*.txt"], &["gen/b.txt"], &plain())
                .unwrap()
        );
        assert!(
            !index
                .may_see(&["other/*.txt"], &["gen/b.txt"], &plain())
                .unwrap()
        );

        // An output written through a symlinked directory lands elsewhere.
        let dir = tree(&[("src/a.txt", "a")]);
        symlink("src", dir.path().join("out")).unwrap();
        let index = InputIndex::build(dir.path(), ["src/*.txt"], &cache).unwrap();
        assert!(
            index
                .may_see(&["src/*.txt"], &["out/b.txt"], &plain())
                .unwrap()
        );
        assert!(
            !index
                .may_see(&["src/*.txt"], &["elsewhere/b.txt"], &plain())
                .unwrap()
        );

        // A glob base or a literal reached through a symlink.
        let dir = tree(&[("real/a.txt", "a"), ("real/lit.txt", "l")]);
        symlink("real", dir.path().join("alias")).unwrap();
        symlink("real/lit.txt", dir.path().join("lit.txt")).unwrap();
        let index = InputIndex::build(dir.path(), ["alias/*.txt", "lit.txt", "real/*.txt"], &cache)
            .unwrap();
        assert!(
            index
                .may_see(&["alias/*.txt"], &["x/y.txt"], &plain())
                .unwrap()
        );
        assert!(index.may_see(&["lit.txt"], &["x/y.txt"], &plain()).unwrap());
        assert!(
            !index
                .may_see(&["real/*.txt"], &["x/y.txt"], &plain())
                .unwrap()
        );
    }

    #[test]
    fn reselect_walks_again_where_a_symlink_could_name_something_new() {
        // A dangling symlink counts once its target appears, with no change to its directory.
        let dir = tree(&[("src/a.txt", "a"), ("other/keep.txt", "k")]);
        std::os::unix::fs::symlink("../gen/b.txt", dir.path().join("src/b.txt")).unwrap();
        let patterns = ["src/*.txt", "other/*.txt"];
        let cache = StatCache::new();
        let mut index = InputIndex::build(dir.path(), patterns, &cache).unwrap();
        pretend_walked_later(&mut index, dir.path());
        assert_eq!(
            paths(&index.select(&patterns).unwrap()),
            ["other/keep.txt", "src/a.txt"]
        );
        assert!(matches!(index.reselect(&patterns, &cache), Ok(None)));
        // A directory without one is still trusted.
        assert!(index.reselect(&["other/*.txt"], &cache).unwrap().is_some());

        fs::create_dir(dir.path().join("gen")).unwrap();
        fs::write(dir.path().join("gen/b.txt"), "b").unwrap();
        let walked = collect(dir.path(), &patterns, &cache).unwrap();
        assert_eq!(paths(&walked), ["other/keep.txt", "src/a.txt", "src/b.txt"]);
    }

    #[test]
    fn one_index_serves_many_tasks_and_hashes_each_file_once() {
        let dir = tree(&[
            ("shared/lib.py", "lib"),
            ("pkg/a.py", "a"),
            ("pkg/b.py", "b"),
            ("pkg/c.txt", "c"),
        ]);
        let tasks: Vec<Vec<&str>> = vec![
            vec!["pkg/a.py", "shared/**"],
            vec!["pkg/b.py", "shared/**"],
            vec!["pkg/*.py", "!pkg/b.py"],
        ];
        let cache = StatCache::new();
        let index = InputIndex::build(dir.path(), tasks.iter().flatten(), &cache).unwrap();
        assert_eq!(index.stats().files, 3);
        assert_eq!(cache.counts().hashed, 3);
        assert_eq!(
            paths(&index.select(&tasks[0]).unwrap()),
            ["pkg/a.py", "shared/lib.py"]
        );
        assert_eq!(
            paths(&index.select(&tasks[1]).unwrap()),
            ["pkg/b.py", "shared/lib.py"]
        );
        assert_eq!(paths(&index.select(&tasks[2]).unwrap()), ["pkg/a.py"]);
        assert!(matches!(
            index.select(&["other/**"]).unwrap_err(),
            Error::NotIndexed { .. }
        ));
    }

    #[test]
    fn executable_bit_is_reported() {
        let dir = tree(&[("run.sh", "#!/bin/sh"), ("data", "d")]);
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let files = collect(dir.path(), &["*"], &StatCache::new()).unwrap();
        assert_eq!(paths(&files), ["data", "run.sh"]);
        assert!(!files[0].executable);
        assert!(files[1].executable);
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_followed() {
        let outside = tree(&[("secret.txt", "s"), ("dir/x.txt", "x")]);
        let dir = tree(&[("in.txt", "i")]);
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            dir.path().join("out.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), dir.path().join("outdir")).unwrap();
        std::os::unix::fs::symlink("in.txt", dir.path().join("alias.txt")).unwrap();
        let cache = StatCache::new();
        let files = collect(dir.path(), &["**"], &cache).unwrap();
        assert_eq!(paths(&files), ["alias.txt", "in.txt"]);
        assert_eq!(files[0].hash, files[1].hash);
        assert!(matches!(
            collect(dir.path(), &["out.txt"], &cache).unwrap_err(),
            Error::OutsideRoot { .. }
        ));
    }

    #[test]
    fn stat_cache_keys_are_canonical_however_the_root_is_spelled() {
        let dir = tree(&[("src/a.txt", "a")]);
        let link = tempfile::tempdir().unwrap();
        let via_link = link.path().join("checkout");
        std::os::unix::fs::symlink(dir.path(), &via_link).unwrap();
        let cache = StatCache::new();
        let files = collect(&via_link.join("."), &["src/*.txt"], &cache).unwrap();
        assert_eq!(paths(&files), ["src/a.txt"]);
        let canonical = fs::canonicalize(dir.path()).unwrap();
        let keys: Vec<PathBuf> = cache.take_dirty().into_iter().map(|(p, _)| p).collect();
        assert_eq!(keys, [canonical.join("src/a.txt")]);
    }

    #[test]
    fn outputs_are_expanded_without_ignore_rules() {
        let dir = tree(&[
            (".gitignore", "build/\n"),
            ("build/junit.xml", "j"),
            ("build/cov/coverage.xml", "c"),
            ("build/tmp.log", "l"),
            ("src/a.py", "a"),
        ]);
        let outputs = expand_outputs(
            dir.path(),
            &[
                "build/**/*.xml",
                "build/tmp.log",
                "build/absent.txt",
                "!build/cov",
            ],
        )
        .unwrap();
        assert_eq!(outputs, ["build/junit.xml", "build/tmp.log"]);
        assert!(matches!(
            expand_outputs(dir.path(), &["../out"]).unwrap_err(),
            Error::OutsideRoot { .. }
        ));
    }

    #[test]
    fn glob_bases_are_minimal() {
        let globs = ["src/**/*.py", "src/pkg/*.py", "tests/**", "docs/*.md"].map(String::from);
        assert_eq!(walk_bases(&globs), ["docs", "src", "tests"]);
        assert_eq!(
            walk_bases(&["**/*.rs".to_owned(), "src/*.rs".to_owned()]),
            [""]
        );
        let globs = [
            "src/a/b/*.x",
            "src/a-b/*.x",
            "src/a/*.x",
            "srcx/*",
            "src/ab/*",
        ]
        .map(String::from);
        assert_eq!(walk_bases(&globs), ["src/a", "src/a-b", "src/ab", "srcx"]);
    }

    #[test]
    fn a_glob_base_that_is_a_symlink_out_of_the_root_is_refused_issue_18() {
        let outside = tree(&[("secret.txt", "s"), ("sub/x.txt", "x")]);
        let dir = tree(&[("src/a.txt", "a")]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("srcl")).unwrap();
        std::os::unix::fs::symlink("src", dir.path().join("inside")).unwrap();
        let cache = StatCache::new();
        for pattern in ["srcl/**", "srcl/sub/*.txt", "srcl/*"] {
            let err = collect(dir.path(), &[pattern], &cache).unwrap_err();
            assert!(
                matches!(&err, Error::OutsideRoot { pattern: p } if p == pattern),
                "{pattern}: {err:?}"
            );
        }
        // One index for several tasks: only the task that needs the outside base fails.
        let index = InputIndex::build(dir.path(), ["srcl/**", "src/*.txt"], &cache).unwrap();
        assert!(index.select(&["srcl/**"]).is_err());
        assert_eq!(paths(&index.select(&["src/*.txt"]).unwrap()), ["src/a.txt"]);
        // A symlink that stays inside is walked; outputs are held to the same rule.
        assert_eq!(
            paths(&collect(dir.path(), &["inside/*"], &cache).unwrap()),
            ["inside/a.txt"]
        );
        assert!(matches!(
            expand_outputs(dir.path(), &["srcl/**"]).unwrap_err(),
            Error::OutsideRoot { .. }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn real_dirs_agree_with_canonicalize_and_lstat_only_what_is_new() {
        let outside = tree(&[("sub/x.txt", "x")]);
        let dir = tree(&[("src/a/b/c.txt", "c"), ("src/file.txt", "f")]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("src/link")).unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let mut real = RealDirs::new(&root, &root);
        for rel in [
            "src",
            "src/a",
            "src/a/b",
            "src/link",
            "src/link/b",
            "out",
            "out/sub",
        ] {
            assert_eq!(
                real.of(rel),
                Some(fs::canonicalize(root.join(rel)).unwrap()),
                "{rel}"
            );
        }
        for rel in [
            "missing",
            "src/missing/deeper",
            "src/file.txt",
            "out/nothing",
        ] {
            assert_eq!(real.of(rel), None, "{rel}");
        }
        // Known now: asked again, nothing is looked at (a removed directory still resolves).
        fs::remove_dir_all(root.join("src/a/b")).unwrap();
        assert_eq!(real.of("src/a/b"), Some(root.join("src/a/b")));
    }

    #[test]
    fn clab_temp_files_are_never_inputs_or_outputs_issue_18() {
        let dir = tree(&[
            ("out/a.txt", "a"),
            ("out/.clab-tmp-restore1", "partial"),
            ("out/sub/.clab-restore-old", "partial"),
            ("src/.clab-tmp-x", "x"),
            ("src/b.txt", "b"),
        ]);
        assert_eq!(
            expand_outputs(dir.path(), &["out/**"]).unwrap(),
            ["out/a.txt"]
        );
        let cache = StatCache::new();
        assert_eq!(
            paths(&collect(dir.path(), &["src/*", "out/**"], &cache).unwrap()),
            ["out/a.txt", "src/b.txt"]
        );
    }

    #[test]
    fn stale_temp_files_are_swept_below_output_directories_issue_18() {
        let dir = tree(&[
            ("out/a.txt", "a"),
            ("out/.clab-tmp-old", "partial"),
            ("out/deep/.clab-restore-old", "partial"),
            ("dist/.clab-tmp-old", "partial"),
            ("dist/app.js", "js"),
            ("src/.clab-tmp-old", "not an output directory"),
        ]);
        let cache_dir = tree(&[(".clab-tmp-log-1", "log"), ("cache.db", "db")]);
        let patterns = ["out/**", "dist/app.js"];
        // Fresh: a live writer may own them.
        let none = sweep_temp_files(dir.path(), &patterns, &[cache_dir.path()], TEMP_FILE_GRACE);
        assert!(none.is_empty(), "{none:?}");
        std::thread::sleep(Duration::from_millis(20));
        let removed = sweep_temp_files(
            dir.path(),
            &patterns,
            &[cache_dir.path()],
            Duration::from_millis(10),
        );
        let names: Vec<String> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(names.iter().all(|n| n.starts_with(".clab-")));
        assert!(dir.path().join("src/.clab-tmp-old").exists());
        assert!(
            dir.path().join("out/a.txt").exists() && cache_dir.path().join("cache.db").exists()
        );
    }

    #[test]
    fn inputs_changed_since_they_were_hashed_are_named() {
        let dir = tree(&[("a.txt", "a"), ("b.txt", "b"), ("c.txt", "c")]);
        let cache = StatCache::new();
        let files = collect(dir.path(), &["*.txt"], &cache).unwrap();
        assert!(changed_since(dir.path(), &files, &cache).is_empty());
        fs::write(dir.path().join("b.txt"), "B, longer").unwrap();
        fs::remove_file(dir.path().join("c.txt")).unwrap();
        assert_eq!(
            changed_since(dir.path(), &files, &cache),
            ["b.txt", "c.txt"]
        );
    }
}
