//! The KDL reader: walks the [`Tree`] of a task file node by node into a [`TaskFile`].
//!
//! Each node is checked against the format's vocabulary (unknown names get a "did you mean"),
//! its arguments against their expected types, and every problem is collected so one run of
//! `clab check` shows them all.

use std::{
    collections::{BTreeMap, HashMap, hash_map},
    fmt,
    ops::Range,
    sync::Arc,
};

use kdl::{KdlDiagnostic, KdlDocument, KdlError};
use miette::SourceSpan;

use super::{
    CacheDecl, CoverageDecl, Diagnostics, Error, LLM_SETTINGS, LlmSettings, LlmStepDecl, MAX_DEPTH,
    MAX_FILE_BYTES, SandboxDecl, Scalar, TaskDecl, TaskFile,
    fast_kdl::{self, Fast},
    outline::Outline,
    parse_duration, placeholders, suggestion,
    tree::{Builder, Document, Entry, Node, Tree, Value},
};
use crate::looks_like_api_key;
use clab_model::source::{SourceFile, Spanned};

const TOP_LEVEL: &[&str] = &[
    "project",
    "members",
    "uses",
    "env",
    "env-inputs",
    "dotenv",
    "llm",
    "rules",
    "cache",
    "task",
];
const CACHE_CHILDREN: &[&str] = &["remote", "read-only", "trusted-key"];
const TASK_CHILDREN: &[&str] = &[
    "description",
    "run",
    "deps",
    "inputs",
    "outputs",
    "env",
    "cwd",
    "cache",
    "timeout",
    "retry",
    "persistent",
    "sandbox",
    "sandbox-writable",
    "for-each",
    "junit",
    "coverage",
    "llm",
];
const LLM_STEP: &[&str] = &[
    "profile",
    "prompt",
    "prompt-file",
    "system",
    "system-file",
    "context",
    "output",
    "extract",
    "check",
    "attempts",
    "max-context-tokens",
    "rules",
];
const COVERAGE_PROPS: &[&str] = &["fail-under", "show-missing", "skip-covered"];

/// Parse `tasks.kdl` text into the model, collecting every problem (at most
/// [`MAX_DIAGNOSTICS`](crate::MAX_DIAGNOSTICS) are kept).
pub fn parse_task_file(source: SourceFile) -> Result<TaskFile, Diagnostics> {
    let size = source.text().len() as u64;
    if size > MAX_FILE_BYTES {
        let error = Error::TooLarge {
            file: source.name().to_owned(),
            size,
            limit: MAX_FILE_BYTES,
        };
        return Err(Diagnostics::bounded(&source, vec![error], false, &[]));
    }
    // The fast path reads the common subset of KDL in a fraction of the crate's time; anything
    // else, errors included, goes to the crate.
    let parsed = match fast_kdl::read(source.text()) {
        Fast::Read(tree) => Ok(tree),
        Fast::TooDeep(at) => Err(Unread {
            problems: vec![Problem::TooDeep(at)],
            partial: false,
        }),
        Fast::Outside => parse_with_crate(source.text()),
    };
    read_task_file(&source, parsed)
}

/// Why a text gave no document.
#[derive(Debug)]
pub(super) struct Unread {
    /// What was wrong, in file order.
    pub(super) problems: Vec<Problem>,
    /// Reading stopped before the end (too many problems).
    pub(super) partial: bool,
}

/// One reason a text gave no document.
#[derive(Debug)]
pub(super) enum Problem {
    /// What the `kdl` crate reported, its span in the whole text.
    Syntax(KdlDiagnostic),
    /// The `{` that nests deeper than `MAX_DEPTH`.
    TooDeep(usize),
    /// A top-level node too large for the crate, outside the fast path's subset.
    NodeTooLarge(Range<usize>),
}

impl From<KdlError> for Unread {
    fn from(err: KdlError) -> Unread {
        Unread {
            problems: err.diagnostics.into_iter().map(Problem::Syntax).collect(),
            partial: false,
        }
    }
}

/// The most the crate reads at once: a piece of whole top-level nodes (see `outline`).
const CRATE_CHUNK: usize = 32 * 1024;

/// Stack for the crate's thread: a base, and per byte of the longest piece the most one byte
/// of KDL was measured to cost (about 2.7 KiB in a release build, where one `"\q{` nests a
/// block the outline cannot see; more without optimizations).
const CRATE_STACK_BASE: usize = 16 * 1024 * 1024;
const CRATE_STACK_PER_BYTE: usize = 6 * 1024;

/// Parse `text` with the `kdl` crate, bounded: blocks no deeper than `MAX_DEPTH` (by the
/// outline), a large text in pieces of whole top-level nodes of at most [`CRATE_CHUNK`]
/// bytes, on a thread whose stack covers the worst such a piece can cost, and no further
/// pieces once more than `MAX_DIAGNOSTICS` problems are found.
fn parse_with_crate(text: &str) -> Result<Tree<'_>, Unread> {
    let outline = Outline::scan(text);
    if let Some(at) = outline.too_deep {
        return Err(Unread {
            problems: vec![Problem::TooDeep(at)],
            partial: false,
        });
    }
    let pieces: Vec<Range<usize>> = if text.len() <= CRATE_CHUNK {
        std::iter::once(0..text.len()).collect()
    } else {
        pieces(&outline.nodes)
    };
    let longest = pieces
        .iter()
        .map(|piece| piece.len().min(CRATE_CHUNK))
        .max()
        .unwrap_or(0);
    let stack = CRATE_STACK_BASE + CRATE_STACK_PER_BYTE * longest;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("kdl".into())
            .stack_size(stack)
            .spawn_scoped(scope, || parse_pieces(text, &pieces))
            .map_err(|err| Unread {
                problems: vec![Problem::Syntax(KdlDiagnostic {
                    input: Arc::new(String::new()),
                    span: (0..0).into(),
                    message: Some(format!("Cannot start the parser: {err}")),
                    label: None,
                    help: None,
                    severity: miette::Severity::Error,
                })],
                partial: false,
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(Unread {
                    problems: vec![Problem::NodeTooLarge(0..text.len())],
                    partial: false,
                })
            })
    })
}

/// Group top-level node ranges into pieces of at most [`CRATE_CHUNK`] bytes (a larger node is
/// a piece of its own).
fn pieces(nodes: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut pieces: Vec<Range<usize>> = Vec::new();
    for node in nodes {
        match pieces.last_mut() {
            Some(piece) if node.end - piece.start <= CRATE_CHUNK => piece.end = node.end,
            _ => pieces.push(node.clone()),
        }
    }
    pieces
}

/// Parse each piece and put the nodes together, spans in the whole text.
fn parse_pieces<'a>(text: &'a str, pieces: &[Range<usize>]) -> Result<Tree<'a>, Unread> {
    let mut builder = Builder::default();
    let mut span: Option<Range<usize>> = None;
    let mut problems = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if problems.len() > crate::MAX_DIAGNOSTICS {
            return Err(Unread {
                problems,
                partial: i < pieces.len(),
            });
        }
        let Some(piece_text) = text.get(piece.clone()) else {
            continue;
        };
        // Once a piece has failed, the others are read only for their problems.
        let into = problems.is_empty().then_some(&mut builder);
        let parsed = if piece.len() <= CRATE_CHUNK {
            KdlDocument::parse(piece_text)
                .map(|part| match into {
                    Some(builder) => builder.push_document(&part, piece.start),
                    None => SourceSpan::from(0..0),
                })
                .map_err(Unread::from)
        } else {
            parse_large_node(text, piece.clone(), into)
        };
        match parsed {
            Ok(part_span) => {
                let part_span = part_span.offset()..part_span.offset() + part_span.len();
                span = Some(match span {
                    Some(whole) => whole.start..part_span.end,
                    None => part_span,
                });
            }
            Err(unread) => {
                for mut problem in unread.problems {
                    if let Problem::Syntax(diagnostic) = &mut problem {
                        diagnostic.span = shift(diagnostic.span, piece.start);
                    }
                    problems.push(problem);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Unread {
            problems,
            partial: false,
        });
    }
    Ok(builder.finish(span.unwrap_or(0..0).into()))
}

/// A single top-level node longer than [`CRATE_CHUNK`]: read by the fast path if it can
/// (onto `builder`, when given; `Ok` holds the node's span in the whole text); otherwise the
/// crate reads its first [`CRATE_CHUNK`] bytes, and the errors it finds before that cut are
/// reported, or else that the node is too large. The errors' spans are relative to the node.
fn parse_large_node<'a>(
    text: &'a str,
    node: Range<usize>,
    builder: Option<&mut Builder<'a>>,
) -> Result<SourceSpan, Unread> {
    let mut scratch = Builder::default();
    let builder = builder.unwrap_or(&mut scratch);
    if let Fast::Read(span) = fast_kdl::read_into(text, node.clone(), builder) {
        return Ok(span);
    }
    let node_text = text.get(node.clone()).unwrap_or_default();
    let mut cut = CRATE_CHUNK.min(node_text.len());
    while !node_text.is_char_boundary(cut) {
        cut -= 1;
    }
    let too_large = || Unread {
        problems: vec![Problem::NodeTooLarge(node.clone())],
        partial: false,
    };
    match KdlDocument::parse(&node_text[..cut]) {
        Ok(_) => Err(too_large()),
        Err(err) => {
            let before_cut: Vec<_> = err
                .diagnostics
                .into_iter()
                .filter(|d| d.span.offset() + d.span.len() + 1 < cut)
                .map(Problem::Syntax)
                .collect();
            if before_cut.is_empty() {
                Err(too_large())
            } else {
                Err(Unread {
                    problems: before_cut,
                    partial: true,
                })
            }
        }
    }
}

fn shift(span: SourceSpan, by: usize) -> SourceSpan {
    SourceSpan::new((span.offset() + by).into(), span.len())
}

/// Read an already parsed document (or report why there is none) into the model.
pub(super) fn read_task_file(
    source: &SourceFile,
    parsed: Result<Tree<'_>, Unread>,
) -> Result<TaskFile, Diagnostics> {
    let mut reader = Reader {
        source,
        errors: Vec::new(),
        secrets: Vec::new(),
    };
    let mut partial = false;
    let file = match parsed {
        Ok(tree) => Some(reader.document(tree.document())),
        Err(unread) => {
            partial = unread.partial;
            for problem in unread.problems {
                let error = match problem {
                    Problem::Syntax(diagnostic) => {
                        let message = diagnostic
                            .message
                            .unwrap_or_else(|| "invalid KDL".to_owned());
                        Error::Syntax {
                            label: diagnostic.label.unwrap_or_else(|| "here".to_owned()),
                            message: format!("invalid KDL: {}", lowercase_first(&message)),
                            src: source.source_code(),
                            span: clamp(diagnostic.span, source.text().len()),
                            help: diagnostic.help,
                        }
                    }
                    Problem::TooDeep(at) => Error::TooDeep {
                        limit: MAX_DEPTH,
                        src: source.source_code(),
                        span: (at, 1).into(),
                    },
                    Problem::NodeTooLarge(node) => Error::NodeTooLarge {
                        size: node.len(),
                        limit: CRATE_CHUNK,
                        src: source.source_code(),
                        span: (node.start, 0).into(),
                    },
                };
                reader.errors.push(error);
            }
            None
        }
    };
    match file {
        Some(file) if reader.errors.is_empty() => Ok(file),
        _ => Err(Diagnostics::bounded(
            source,
            reader.errors,
            partial,
            &reader.secrets,
        )),
    }
}

/// `span`, moved inside a text of `len` bytes.
fn clamp(span: SourceSpan, len: usize) -> SourceSpan {
    let start = span.offset().min(len);
    SourceSpan::new(start.into(), span.len().min(len - start))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

struct Reader<'a> {
    source: &'a SourceFile,
    errors: Vec<Error>,
    /// Byte ranges holding what looks like an API key: masked in every diagnostic's source.
    secrets: Vec<Range<usize>>,
}

impl Reader<'_> {
    /// Whether `name` is met the first time in `once`'s node; a second time is an error that
    /// points at both (issue 18: a repeated `timeout` was silently the last one).
    fn first(&mut self, once: &mut Once<'_>, name: &str, span: SourceSpan) -> bool {
        match once.seen.get(name) {
            Some(&first) => {
                self.errors.push(Error::DuplicateProperty {
                    name: name.to_owned(),
                    node: once.within.to_string(),
                    src: self.source.source_code(),
                    span,
                    first,
                });
                false
            }
            None => {
                once.seen.insert(name.to_owned(), span);
                true
            }
        }
    }

    /// Report an API key at `span`; its bytes are masked in every diagnostic of the file.
    fn api_key(&mut self, span: SourceSpan) {
        self.secrets.push(span.offset()..span.offset() + span.len());
        self.errors.push(Error::ApiKeyInFile {
            file: self.source.name().to_owned(),
            src: self.source.source_code(),
            span,
        });
    }

    /// `text` (written at `span`) as a message may quote it: when it looks like an API key,
    /// the key is reported instead ([`Self::api_key`]) and `****` is returned, so no message
    /// echoes a key or a part of it.
    fn shown(&mut self, text: &str, span: SourceSpan) -> String {
        if looks_like_api_key(text) {
            if !self
                .secrets
                .iter()
                .any(|range| range.start == span.offset())
            {
                self.api_key(span);
            }
            "****".to_owned()
        } else {
            text.to_owned()
        }
    }

    fn document(&mut self, document: Document<'_, '_>) -> TaskFile {
        let mut file = TaskFile {
            source: self.source.clone(),
            project: None,
            members: Vec::new(),
            uses: Vec::new(),
            env: BTreeMap::new(),
            env_inputs: Vec::new(),
            dotenv: Vec::new(),
            rules_dirs: Vec::new(),
            llm_defaults: None,
            llm_profiles: BTreeMap::new(),
            cache: None,
            // Counted first: a task is 1 KB, and growing a vector of 10,000 by doubling
            // touched 40 MB of fresh pages.
            tasks: Vec::with_capacity(
                document
                    .nodes()
                    .filter(|node| node.name().value() == "task")
                    .count(),
            ),
        };
        // Task names, borrowed from the tree (cloning 10,000 names into a map was 10,000
        // allocations).
        let mut seen: HashMap<&str, SourceSpan> = HashMap::with_capacity(file.tasks.capacity());
        let mut once = Once::new(Within::File);
        for node in document.nodes() {
            match node.name().value() {
                "project" => {
                    self.no_children(node);
                    if self.first(&mut once, "project", node.name().span()) {
                        file.project = self.one_string(node);
                    }
                }
                "env" => {
                    self.no_children(node);
                    self.env(node, &mut file.env);
                }
                "members" => {
                    self.no_children(node);
                    self.strings(node, &mut file.members);
                }
                "uses" => {
                    self.no_children(node);
                    self.strings(node, &mut file.uses);
                }
                "env-inputs" => {
                    self.no_children(node);
                    self.strings(node, &mut file.env_inputs);
                }
                "dotenv" => {
                    self.no_children(node);
                    self.strings(node, &mut file.dotenv);
                }
                "rules" => {
                    self.no_children(node);
                    self.strings(node, &mut file.rules_dirs);
                }
                "llm" => {
                    let name = match node.entries() {
                        [entry] => match entry.value() {
                            Value::String(name) => format!("llm \"{name}\""),
                            _ => "llm".to_owned(),
                        },
                        _ => "llm".to_owned(),
                    };
                    if self.first(&mut once, &name, node.name().span()) {
                        self.llm_block(node, &mut file);
                    }
                }
                "cache" => {
                    if self.first(&mut once, "cache", node.name().span()) {
                        file.cache = Some(self.cache_block(node));
                    }
                }
                "task" => {
                    if let Some(task) = self.task(node) {
                        // `task` took the node's one string for its name.
                        let first = only_string(node).and_then(|name| match seen.entry(name) {
                            hash_map::Entry::Occupied(first) => Some(*first.get()),
                            hash_map::Entry::Vacant(slot) => {
                                slot.insert(task.name.span);
                                None
                            }
                        });
                        if let Some(first) = first {
                            self.errors.push(Error::DuplicateTask {
                                name: task.name.value.clone(),
                                src: self.source.source_code(),
                                span: task.name.span,
                                first,
                            });
                        } else {
                            file.tasks.push(task);
                        }
                    }
                }
                _ => self.unknown_node(node, "node", TOP_LEVEL),
            }
        }
        file
    }

    /// `cache { remote "URL"; read-only #true; trusted-key "ed25519:…" }`.
    fn cache_block(&mut self, node: Node<'_, '_>) -> CacheDecl {
        self.no_props(node);
        if let Some(extra) = node.entries().first() {
            self.bad_argument(
                node,
                "takes no arguments, only a block",
                extra,
                "unexpected",
            );
        }
        let mut cache = CacheDecl::default();
        let mut once = Once::new(Within::CacheBlock);
        for child in children(node) {
            let key = child.name().value();
            match key {
                "remote" | "read-only" if !self.first(&mut once, key, child.name().span()) => {}
                "remote" => {
                    self.no_children(child);
                    cache.remote = self.one_string(child);
                }
                "read-only" => {
                    self.no_children(child);
                    cache.read_only = self.one_bool(child);
                }
                "trusted-key" => {
                    self.no_children(child);
                    self.strings(child, &mut cache.trusted_keys);
                }
                _ => self.unknown_node(child, "cache setting", CACHE_CHILDREN),
            }
        }
        cache
    }

    fn llm_block(&mut self, node: Node<'_, '_>, file: &mut TaskFile) {
        self.no_props(node);
        let name = match node.entries() {
            [] => None,
            [entry] => self.string_entry(node, entry, "takes an optional profile name"),
            [_, extra, ..] => {
                self.bad_argument(node, "takes an optional profile name", extra, "unexpected");
                None
            }
        };
        let mut settings = LlmSettings {
            span: node.span(),
            values: BTreeMap::new(),
        };
        let mut once = Once::new(Within::LlmBlock);
        for child in children(node) {
            let key = child.name().value();
            match LLM_SETTINGS.iter().find(|&&s| s == key) {
                Some(&setting) => {
                    if self.first(&mut once, setting, child.name().span()) {
                        self.setting(child, setting, &mut settings);
                    }
                }
                None => self.unknown_node(child, "llm setting", LLM_SETTINGS),
            }
        }
        match name {
            Some(name) => {
                file.llm_profiles.insert(name.value, settings);
            }
            None => file.llm_defaults = Some(settings),
        }
    }

    fn setting(&mut self, node: Node<'_, '_>, setting: &'static str, settings: &mut LlmSettings) {
        self.no_children(node);
        self.no_props(node);
        let [entry] = node.entries() else {
            self.bad_argument_node(node, "takes one value");
            return;
        };
        let value = match entry.value() {
            Value::String(s) => Scalar::String(s.to_string()),
            Value::Integer(i) => match i64::try_from(*i) {
                Ok(i) => Scalar::Integer(i),
                Err(_) => {
                    self.bad_argument(node, "takes a smaller number", entry, "out of range");
                    return;
                }
            },
            Value::Float(f) => Scalar::Float(*f),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Null => {
                self.bad_argument(node, "takes a value", entry, "#null");
                return;
            }
        };
        if let Scalar::String(text) = &value {
            if looks_like_api_key(text) {
                self.api_key(entry.span());
                return;
            }
            if setting == "timeout" && parse_duration(text).is_none() {
                self.bad_duration(text, entry.span());
                return;
            }
        }
        settings
            .values
            .insert(setting, Spanned::new(value, entry.span()));
    }

    fn task(&mut self, node: Node<'_, '_>) -> Option<TaskDecl> {
        self.no_props(node);
        let name = self.one_string(node)?;
        let mut task = TaskDecl {
            // Set at the end: until then `once` borrows it.
            name: Spanned::new(String::new(), name.span),
            span: node.span(),
            description: None,
            run: Vec::new(),
            deps: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            cache: None,
            timeout: None,
            retry: None,
            persistent: None,
            sandbox: None,
            sandbox_writable: Vec::new(),
            for_each: Vec::new(),
            junit: None,
            coverage: None,
            llm: None,
        };
        let mut run_span = None;
        let mut once = Once::new(Within::Task(&name.value));
        for child in children(node) {
            let key = child.name().value();
            if key != "llm" {
                self.no_children(child);
            }
            if SINGLE_TASK_CHILDREN.contains(&key)
                && !self.first(&mut once, key, child.name().span())
            {
                continue;
            }
            match key {
                "description" => task.description = self.one_string(child),
                "run" => {
                    run_span.get_or_insert(child.span());
                    self.strings(child, &mut task.run);
                }
                "deps" => self.strings(child, &mut task.deps),
                "inputs" => self.strings(child, &mut task.inputs),
                "outputs" => self.strings(child, &mut task.outputs),
                "env" => self.env(child, &mut task.env),
                "cwd" => task.cwd = self.one_string(child),
                "cache" => task.cache = self.one_bool(child),
                "persistent" => task.persistent = self.one_bool(child),
                "sandbox" => task.sandbox = self.sandbox(child),
                "sandbox-writable" => self.strings(child, &mut task.sandbox_writable),
                "timeout" => {
                    task.timeout =
                        self.one_string(child)
                            .and_then(|text| match parse_duration(&text.value) {
                                Some(duration) => Some(Spanned::new(duration, text.span)),
                                None => {
                                    self.bad_duration(&text.value, text.span);
                                    None
                                }
                            });
                }
                "retry" => task.retry = self.one_u32(child),
                "for-each" => self.strings(child, &mut task.for_each),
                "junit" => task.junit = self.one_string(child),
                "coverage" => task.coverage = self.coverage(child),
                "llm" => task.llm = Some(Box::new(self.llm_step(child, &name.value))),
                _ => self.unknown_node(child, "task child", TASK_CHILDREN),
            }
        }
        drop(once);
        task.name = name;
        if let (Some(run), Some(llm)) = (run_span, &task.llm) {
            self.errors.push(Error::RunAndLlm {
                task: task.name.value.clone(),
                src: self.source.source_code(),
                run,
                llm: llm.span,
            });
        }
        self.check_placeholders(&task);
        Some(task)
    }

    /// Placeholders are known at parse time: `{{root}}` everywhere, the file ones in
    /// `for-each` tasks, `{{args}}` in `run`, `{{output}}` in an LLM check.
    fn check_placeholders(&mut self, task: &TaskDecl) {
        let for_each = !task.for_each.is_empty();
        let available = |extra| Available { for_each, extra };
        let plain = available(&[]);
        // `{{args}}`: where `clab run TASK -- ARGS` puts its arguments.
        let run = available(&["args"]);
        for field in &task.run {
            self.check_field(field, run);
        }
        let fields = (task.inputs.iter())
            .chain(&task.outputs)
            .chain(&task.cwd)
            .chain(&task.junit)
            .chain(task.env.values())
            .chain(task.coverage.as_ref().map(|c| &c.path));
        for field in fields {
            self.check_field(field, plain);
        }
        if let Some(llm) = &task.llm {
            let fields = (llm.prompt_file.iter())
                .chain(&llm.system_file)
                .chain(&llm.context)
                .chain(&llm.output);
            for field in fields {
                self.check_field(field, plain);
            }
            if let Some(field) = &llm.check {
                self.check_field(field, available(&["output"]));
            }
            // Prompts may also use {{context}} and {{rules}}; prompt files are checked when read.
            let prompt = available(&["context", "rules", "output"]);
            for field in llm.prompt.iter().chain(&llm.system) {
                self.check_field(field, prompt);
            }
        }
    }

    fn check_field(&mut self, field: &Spanned<String>, available: Available) {
        for placeholder in placeholders::scan(&field.value) {
            if available.contains(placeholder.name) {
                continue;
            }
            // The span of a string entry starts at its opening quote.
            let start = field.span.offset() + 1 + placeholder.range.start;
            let help = if placeholders::FOR_EACH.contains(&placeholder.name) {
                format!(
                    "`{{{{{}}}}}` is set only in `for-each` tasks",
                    placeholder.name
                )
            } else {
                suggestion(placeholder.name, &available.names())
            };
            self.errors.push(Error::UnknownPlaceholder {
                name: placeholder.name.to_owned(),
                src: self.source.source_code(),
                span: (start, placeholder.range.len()).into(),
                help,
            });
        }
    }

    fn llm_step(&mut self, node: Node<'_, '_>, task: &str) -> LlmStepDecl {
        self.no_props(node);
        if let Some(entry) = node.entries().first() {
            self.bad_argument(
                node,
                "takes no arguments, only a block",
                entry,
                "unexpected",
            );
        }
        let mut step = LlmStepDecl {
            span: node.span(),
            profile: None,
            settings: LlmSettings {
                span: node.span(),
                values: BTreeMap::new(),
            },
            prompt: None,
            prompt_file: None,
            system: None,
            system_file: None,
            context: Vec::new(),
            output: None,
            extract: None,
            check: None,
            attempts: None,
            max_context_tokens: None,
            rules: Vec::new(),
        };
        let mut once = Once::new(Within::LlmStep(task));
        for child in children(node) {
            let key = child.name().value();
            if let Some(&setting) = LLM_SETTINGS.iter().find(|&&s| s == key) {
                if self.first(&mut once, setting, child.name().span()) {
                    self.setting(child, setting, &mut step.settings);
                }
                continue;
            }
            self.no_children(child);
            if SINGLE_LLM_STEP_CHILDREN.contains(&key)
                && !self.first(&mut once, key, child.name().span())
            {
                continue;
            }
            match key {
                "profile" => step.profile = self.one_string(child),
                "prompt" => step.prompt = self.one_string(child),
                "prompt-file" => step.prompt_file = self.one_string(child),
                "system" => step.system = self.one_string(child),
                "system-file" => step.system_file = self.one_string(child),
                "context" => self.strings(child, &mut step.context),
                "output" => step.output = self.one_string(child),
                "extract" => {
                    step.extract = self.one_string(child);
                    if let Some(extract) = &step.extract
                        && !matches!(extract.value.as_str(), "code" | "text")
                    {
                        let found = format!("`{}`", self.shown(&extract.value, extract.span));
                        self.errors.push(Error::BadArgument {
                            node: "extract".into(),
                            expected: "takes \"code\" or \"text\"".into(),
                            src: self.source.source_code(),
                            span: extract.span,
                            found,
                        });
                    }
                }
                "check" => step.check = self.one_string(child),
                "attempts" => step.attempts = self.one_u32(child),
                "max-context-tokens" => step.max_context_tokens = self.one_u32(child),
                "rules" => self.strings(child, &mut step.rules),
                _ => {
                    let mut valid = LLM_STEP.to_vec();
                    valid.extend(LLM_SETTINGS);
                    self.unknown_node(child, "llm step child", &valid);
                }
            }
        }
        if step.prompt.is_some() == step.prompt_file.is_some() {
            self.errors.push(Error::BadLlmStep {
                task: task.to_owned(),
                problem: "needs exactly one of `prompt` and `prompt-file`".into(),
                src: self.source.source_code(),
                span: node.name().span(),
            });
        }
        if step.output.is_none() {
            self.errors.push(Error::BadLlmStep {
                task: task.to_owned(),
                problem: "needs an `output` file".into(),
                src: self.source.source_code(),
                span: node.name().span(),
            });
        }
        if step.system.is_some() && step.system_file.is_some() {
            self.errors.push(Error::BadLlmStep {
                task: task.to_owned(),
                problem: "has both `system` and `system-file`".into(),
                src: self.source.source_code(),
                span: node.name().span(),
            });
        }
        step
    }

    fn coverage(&mut self, node: Node<'_, '_>) -> Option<CoverageDecl> {
        let mut path = None;
        let mut decl_fail_under = None;
        let mut show_missing = true;
        let mut skip_covered = false;
        for entry in node.entries() {
            let Some(name) = entry.name() else {
                if path.is_some() {
                    self.bad_argument(node, "takes one report path", entry, "unexpected");
                } else {
                    path = self.string_entry(node, entry, "takes one report path");
                }
                continue;
            };
            match (name.value(), entry.value()) {
                ("fail-under", Value::Integer(n)) if (0..=100).contains(n) => {
                    decl_fail_under = Some(Spanned::new(*n as f64, entry.span()));
                }
                ("fail-under", Value::Float(f)) if (0.0..=100.0).contains(f) => {
                    decl_fail_under = Some(Spanned::new(*f, entry.span()));
                }
                ("fail-under", _) => {
                    self.bad_argument(node, "takes `fail-under` from 0 to 100", entry, "here");
                }
                ("show-missing", Value::Bool(b)) => show_missing = *b,
                ("skip-covered", Value::Bool(b)) => skip_covered = *b,
                ("show-missing" | "skip-covered", _) => {
                    self.bad_argument(node, "takes #true or #false", entry, "not a boolean");
                }
                (other, _) => self.unknown_property(node, other, entry, COVERAGE_PROPS),
            }
        }
        let Some(path) = path else {
            self.bad_argument_node(node, "takes one report path");
            return None;
        };
        Some(CoverageDecl {
            path,
            fail_under: decl_fail_under,
            show_missing,
            skip_covered,
        })
    }

    fn env(&mut self, node: Node<'_, '_>, env: &mut BTreeMap<String, Spanned<String>>) {
        if node.entries().is_empty() {
            self.bad_argument_node(node, "takes one or more KEY=\"value\" properties");
        }
        for entry in node.entries() {
            let Some(name) = entry.name() else {
                self.bad_argument(
                    node,
                    "takes KEY=\"value\" properties",
                    entry,
                    "expected KEY=\"value\"",
                );
                continue;
            };
            let value = match entry.value() {
                Value::String(s) => s.to_string(),
                Value::Integer(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => {
                    self.bad_argument(node, "takes string values", entry, "#null");
                    continue;
                }
            };
            if looks_like_api_key(&value) {
                self.api_key(entry.span());
                continue;
            }
            if let Some(first) = env.get(name.value()) {
                let first = first.span;
                let name = self.shown(name.value(), entry.span());
                self.errors.push(Error::DuplicateProperty {
                    name,
                    node: "`env`".to_owned(),
                    src: self.source.source_code(),
                    span: entry.span(),
                    first,
                });
                continue;
            }
            env.insert(name.value().to_owned(), Spanned::new(value, entry.span()));
        }
    }

    /// The node's strings, added to `out` (which grows once, to its exact length).
    fn strings(&mut self, node: Node<'_, '_>, out: &mut Vec<Spanned<String>>) {
        self.no_props(node);
        if node.entries().is_empty() {
            self.bad_argument_node(node, "takes one or more strings");
        }
        // Exact for the first list; a repeated node (`deps` on several lines) grows as usual.
        if out.is_empty() {
            out.reserve_exact(node.entries().len());
        }
        for entry in node.entries() {
            out.extend(self.string_entry(node, entry, "takes strings"));
        }
    }

    fn one_string(&mut self, node: Node<'_, '_>) -> Option<Spanned<String>> {
        self.no_props(node);
        match node.entries() {
            [entry] => self.string_entry(node, entry, "takes one string"),
            [] => {
                self.bad_argument_node(node, "takes one string");
                None
            }
            [_, extra, ..] => {
                self.bad_argument(node, "takes one string", extra, "unexpected argument");
                None
            }
        }
    }

    fn one_bool(&mut self, node: Node<'_, '_>) -> Option<Spanned<bool>> {
        self.no_props(node);
        match node.entries() {
            [entry] => match entry.value() {
                Value::Bool(b) => Some(Spanned::new(*b, entry.span())),
                other => {
                    self.bad_argument(node, "takes #true or #false", entry, &describe(other));
                    None
                }
            },
            _ => {
                self.bad_argument_node(node, "takes #true or #false");
                None
            }
        }
    }

    /// `sandbox #true`, `#false` or `"required"`.
    fn sandbox(&mut self, node: Node<'_, '_>) -> Option<Spanned<SandboxDecl>> {
        self.no_props(node);
        const TAKES: &str = "takes #true, #false or \"required\"";
        match node.entries() {
            [entry] => match entry.value() {
                Value::Bool(true) => Some(Spanned::new(SandboxDecl::On, entry.span())),
                Value::Bool(false) => Some(Spanned::new(SandboxDecl::Off, entry.span())),
                Value::String(s) if s == "required" => {
                    Some(Spanned::new(SandboxDecl::Required, entry.span()))
                }
                other => {
                    self.bad_argument(node, TAKES, entry, &describe(other));
                    None
                }
            },
            _ => {
                self.bad_argument_node(node, TAKES);
                None
            }
        }
    }

    fn one_u32(&mut self, node: Node<'_, '_>) -> Option<Spanned<u32>> {
        self.no_props(node);
        match node.entries() {
            [entry] => match entry.value() {
                Value::Integer(i) => match u32::try_from(*i) {
                    Ok(n) => Some(Spanned::new(n, entry.span())),
                    Err(_) => {
                        self.bad_argument(node, "takes a whole number ≥ 0", entry, "out of range");
                        None
                    }
                },
                other => {
                    self.bad_argument(node, "takes a whole number", entry, &describe(other));
                    None
                }
            },
            _ => {
                self.bad_argument_node(node, "takes one whole number");
                None
            }
        }
    }

    fn string_entry(
        &mut self,
        node: Node<'_, '_>,
        entry: &Entry<'_>,
        expected: &str,
    ) -> Option<Spanned<String>> {
        match entry.value() {
            Value::String(s) => Some(Spanned::new(s.to_string(), entry.span())),
            other => {
                self.bad_argument(node, expected, entry, &describe(other));
                None
            }
        }
    }

    fn no_props(&mut self, node: Node<'_, '_>) {
        for entry in node.entries() {
            if let Some(name) = entry.name() {
                self.unknown_property(node, name.value(), entry, &[]);
            }
        }
    }

    fn no_children(&mut self, node: Node<'_, '_>) {
        if let Some(children) = node.children() {
            self.errors.push(Error::BadArgument {
                node: node.name().value().to_owned(),
                expected: "takes no block".into(),
                src: self.source.source_code(),
                span: children.span(),
                found: "unexpected block".into(),
            });
        }
    }

    fn unknown_node(&mut self, node: Node<'_, '_>, context: &'static str, valid: &[&str]) {
        let name = node.name().value();
        let shown = self.shown(name, node.name().span());
        if shown != name {
            return;
        }
        self.errors.push(Error::UnknownNode {
            name: shown,
            context,
            src: self.source.source_code(),
            span: node.name().span(),
            help: suggestion(name, valid),
        });
    }

    fn unknown_property(
        &mut self,
        node: Node<'_, '_>,
        name: &str,
        entry: &Entry<'_>,
        valid: &[&str],
    ) {
        let help = if valid.is_empty() {
            format!("`{}` takes no properties", node.name().value())
        } else {
            suggestion(name, valid)
        };
        let shown = self.shown(name, entry.span());
        if shown != name {
            return;
        }
        self.errors.push(Error::UnknownProperty {
            name: shown,
            node: node.name().value().to_owned(),
            src: self.source.source_code(),
            span: entry.span(),
            help,
        });
    }

    fn bad_argument(&mut self, node: Node<'_, '_>, expected: &str, entry: &Entry<'_>, found: &str) {
        self.errors.push(Error::BadArgument {
            node: node.name().value().to_owned(),
            expected: expected.to_owned(),
            src: self.source.source_code(),
            span: entry.span(),
            found: found.to_owned(),
        });
    }

    fn bad_argument_node(&mut self, node: Node<'_, '_>, expected: &str) {
        self.errors.push(Error::BadArgument {
            node: node.name().value().to_owned(),
            expected: expected.to_owned(),
            src: self.source.source_code(),
            span: node.name().span(),
            found: "here".into(),
        });
    }

    fn bad_duration(&mut self, value: &str, span: SourceSpan) {
        let shown = self.shown(value, span);
        if shown != value {
            return;
        }
        self.errors.push(Error::BadDuration {
            value: shown,
            src: self.source.source_code(),
            span,
        });
    }
}

/// Task children that take one value: a second one is an error.
const SINGLE_TASK_CHILDREN: &[&str] = &[
    "description",
    "cwd",
    "cache",
    "timeout",
    "retry",
    "persistent",
    "sandbox",
    "junit",
    "coverage",
    "llm",
];

/// `llm` step children (besides the settings) that take one value.
const SINGLE_LLM_STEP_CHILDREN: &[&str] = &[
    "profile",
    "prompt",
    "prompt-file",
    "system",
    "system-file",
    "output",
    "extract",
    "check",
    "attempts",
    "max-context-tokens",
];

/// The placeholders a field may use: `{{root}}`, the file ones in a `for-each` task, and
/// the field's own.
#[derive(Debug, Clone, Copy)]
struct Available {
    for_each: bool,
    extra: &'static [&'static str],
}

impl Available {
    fn contains(self, name: &str) -> bool {
        name == "root"
            || (self.for_each && placeholders::FOR_EACH.contains(&name))
            || self.extra.contains(&name)
    }

    /// All of them, in the order suggestions are looked for.
    fn names(self) -> Vec<&'static str> {
        let mut names = vec!["root"];
        if self.for_each {
            names.extend(placeholders::FOR_EACH);
        }
        names.extend(self.extra);
        names
    }
}

/// The single-valued names met so far in one node, and where.
struct Once<'n> {
    within: Within<'n>,
    seen: BTreeMap<String, SourceSpan>,
}

impl<'n> Once<'n> {
    fn new(within: Within<'n>) -> Once<'n> {
        Once {
            within,
            seen: BTreeMap::new(),
        }
    }
}

/// The node whose children [`Once`] watches, as a message names it (written out only for
/// an error: formatting it for every task was an allocation per task).
#[derive(Debug, Clone, Copy)]
enum Within<'n> {
    File,
    CacheBlock,
    LlmBlock,
    Task(&'n str),
    LlmStep(&'n str),
}

impl fmt::Display for Within<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Within::File => f.write_str("the file"),
            Within::CacheBlock => f.write_str("the `cache` block"),
            Within::LlmBlock => f.write_str("the `llm` block"),
            Within::Task(task) => write!(f, "task `{task}`"),
            Within::LlmStep(task) => write!(f, "the `llm` step of task `{task}`"),
        }
    }
}

/// The node's one argument, when it is a string, borrowed from the tree.
fn only_string<'t>(node: Node<'t, '_>) -> Option<&'t str> {
    match node.entries() {
        [entry] => match entry.value() {
            Value::String(value) => Some(value),
            _ => None,
        },
        _ => None,
    }
}

fn children<'t, 'a>(node: Node<'t, 'a>) -> impl Iterator<Item = Node<'t, 'a>> {
    node.children().into_iter().flat_map(|doc| doc.nodes())
}

fn describe(value: &Value<'_>) -> String {
    match value {
        Value::String(_) => "a string".into(),
        Value::Integer(_) | Value::Float(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "#null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_DIAGNOSTICS;
    use miette::Diagnostic as _;

    fn parse(text: &str) -> Result<TaskFile, Diagnostics> {
        // Every document here also checks the fast path against the `kdl` crate.
        crate::fast_kdl::tests::assert_same_task_file(text);
        parse_task_file(SourceFile::new("tasks.kdl", "tasks.kdl", text))
    }

    fn messages(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn reads_a_full_task() {
        let file = parse(
            r#"
project "demo"
env A="1"
env-inputs "CC"
task "build" {
    description "Build it"
    deps "gen"
    run "make" "make install"
    run "echo done"
    inputs "src/**/*.c" "!src/skip.c"
    outputs "out/app"
    env MODE="release"
    cwd "sub"
    cache #false
    timeout "1m30s"
    retry 2
}
"#,
        )
        .unwrap();
        assert_eq!(file.project.unwrap().value, "demo");
        assert_eq!(file.env["A"].value, "1");
        let task = &file.tasks[0];
        let run: Vec<_> = task.run.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(run, ["make", "make install", "echo done"]);
        assert_eq!(task.inputs.len(), 2);
        assert_eq!(task.timeout.as_ref().unwrap().value.as_secs(), 90);
        assert_eq!(task.retry.as_ref().unwrap().value, 2);
        assert!(!task.cache.as_ref().unwrap().value);
        assert_eq!(task.env["MODE"].value, "release");
    }

    #[test]
    fn collects_every_problem() {
        let errors = messages(
            r#"
task "a" { rn "x"; timeout "soon" }
task "a" { run 1 }
tsk "b"
"#,
        );
        assert_eq!(
            errors,
            [
                "unknown task child `rn`",
                "invalid duration `soon`",
                "`run` takes strings",
                "task `a` is defined twice",
                "unknown node `tsk`",
            ]
        );
    }

    #[test]
    fn reads_the_cache_block() {
        let file = parse(
            r#"
cache {
    remote "https://cache.example.com/clab"
    read-only #true
    trusted-key "ed25519:AAAA" "ed25519:BBBB"
    trusted-key "ed25519:CCCC"
}
"#,
        )
        .unwrap();
        let cache = file.cache.unwrap();
        assert_eq!(
            cache.remote.unwrap().value,
            "https://cache.example.com/clab"
        );
        assert!(cache.read_only.unwrap().value);
        let keys: Vec<_> = cache
            .trusted_keys
            .iter()
            .map(|k| k.value.as_str())
            .collect();
        assert_eq!(keys, ["ed25519:AAAA", "ed25519:BBBB", "ed25519:CCCC"]);
        assert!(parse("task \"t\" { run \"x\"; }").unwrap().cache.is_none());
    }

    #[test]
    fn cache_block_problems_are_diagnostics() {
        let errors = messages(
            r#"
cache { remot "x"; remote "a"; remote "b"; read-only "yes" }
cache { }
"#,
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(errors[0], "unknown cache setting `remot`");
        assert!(errors[1].contains("remote"), "{errors:?}");
        assert!(errors[3].contains("cache"), "{errors:?}");
    }

    #[test]
    fn suggests_close_names() {
        let Err(diagnostics) = parse("task \"a\" { dpes \"b\" }") else {
            panic!("expected an error");
        };
        let help = miette::Diagnostic::help(&diagnostics.errors[0])
            .unwrap()
            .to_string();
        assert_eq!(help, "did you mean `deps`?");
    }

    #[test]
    fn refuses_run_with_llm_and_keys() {
        let errors = messages(
            r#"
llm { api-key-env "sk-abcdefghijklmnopqrstuvwxyz012345" }
task "g" {
    run "x"
    llm { prompt "hi"; output "out.txt" }
}
"#,
        );
        assert_eq!(
            errors,
            [
                "an API key is written in `tasks.kdl`",
                "task `g` has both `run` and `llm`"
            ]
        );
    }

    #[test]
    fn checks_placeholders_against_the_task_kind() {
        let errors = messages(
            r#"
task "a" { run "cat {{file}}" }
task "b" { for-each "*.py"; run "cat {{file}} {{stme}}" }
"#,
        );
        assert_eq!(
            errors,
            [
                "unknown placeholder `{{file}}`",
                "unknown placeholder `{{stme}}`"
            ]
        );
    }

    #[test]
    fn reads_llm_steps_and_profiles() {
        let file = parse(
            r#"
llm { provider "openai"; model "m"; temperature 0.2 }
llm "fast" { model "small" }
task "gen" {
    for-each "src/*.py"
    llm {
        profile "fast"
        prompt "write tests for {{file}}: {{context}}"
        context "{{file}}"
        output "tests/test_{{stem}}.py"
        extract "code"
        check "python -m py_compile {{output}}"
        attempts 3
    }
}
"#,
        )
        .unwrap();
        assert_eq!(
            file.llm_profiles["fast"].values["model"].value,
            Scalar::String("small".into())
        );
        let step = file.tasks[0].llm.as_ref().unwrap();
        assert_eq!(step.attempts.as_ref().unwrap().value, 3);
        assert_eq!(step.profile.as_ref().unwrap().value, "fast");
    }

    #[test]
    fn reads_members_and_uses() {
        let file = parse(
            r#"
members "packages/*" "apps/*"
uses "core"
uses "lib"
task "a" { run "x" }
"#,
        )
        .unwrap();
        let values = |items: &[Spanned<String>]| -> Vec<String> {
            items.iter().map(|s| s.value.clone()).collect()
        };
        assert_eq!(values(&file.members), ["packages/*", "apps/*"]);
        assert_eq!(values(&file.uses), ["core", "lib"]);
        assert_eq!(
            messages("members\nuses 1"),
            [
                "`members` takes one or more strings",
                "`uses` takes strings"
            ]
        );
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let Err(diagnostics) = parse("task \"a\" {\n    run \"x\n}\n") else {
            panic!("expected an error");
        };
        assert!(matches!(diagnostics.errors[0], Error::Syntax { .. }));
    }

    /// Every label of every diagnostic lies inside a text of `len` bytes.
    fn assert_spans_inside(diagnostics: &Diagnostics, len: usize) {
        for error in &diagnostics.errors {
            for label in error.labels().into_iter().flatten() {
                assert!(
                    label.offset() + label.len() <= len,
                    "{error}: {label:?} past {len}"
                );
            }
        }
    }

    /// Render like the cli: miette's graphical handler, two context lines, no colors.
    fn render(diagnostics: &Diagnostics) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(80)
            .with_context_lines(2)
            .render_report(&mut out, diagnostics)
            .expect("renders");
        out
    }

    fn parse_only(text: &str) -> Result<TaskFile, Diagnostics> {
        parse_task_file(SourceFile::new("tasks.kdl", "tasks.kdl", text))
    }

    /// A raw string the fast path does not read: what follows goes to the `kdl` crate.
    const CRATE_PATH: &str = "project #\"p\"#\n";

    #[test]
    fn nesting_depth_is_bounded_issue_18() {
        for prefix in ["", CRATE_PATH] {
            for close in [true, false] {
                let mut text = format!("{prefix}{}", "a {".repeat(4000));
                if close {
                    text.push_str(&"}".repeat(4000));
                }
                let Err(diagnostics) = parse_only(&text) else {
                    panic!("4,000 nested blocks were accepted");
                };
                let [Error::TooDeep { span, limit, .. }] = &diagnostics.errors[..] else {
                    panic!("{:?}", diagnostics.errors);
                };
                assert_eq!(*limit, MAX_DEPTH);
                assert_eq!(span.offset(), prefix.len() + MAX_DEPTH * 3 + 2);
                assert_eq!(&text[span.offset()..span.offset() + 1], "{");
                let out = render(&diagnostics);
                assert!(out.contains("blocks nest more than 64 deep"), "{out}");
            }
        }
        // As deep as allowed still reads.
        let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        let Err(diagnostics) = parse_only(&ok) else {
            panic!("`a` is not a task file node");
        };
        assert!(
            !diagnostics
                .errors
                .iter()
                .any(|e| matches!(e, Error::TooDeep { .. }))
        );
    }

    #[test]
    fn pathological_text_for_the_crate_ends_in_bounded_diagnostics_issue_18() {
        let cases = [
            "}".repeat(20_000),
            "= ".repeat(100_000),
            "a =\n".repeat(50_000),
            format!("{CRATE_PATH}/*{}*/", "*".repeat(200_000)),
            "\"\\q{".repeat(20_000),
            "\\q{".repeat(20_000),
            format!("{CRATE_PATH}/*{}", "a{".repeat(50_000)),
            format!(
                "{CRATE_PATH}task \"a\" {{ run \"{}\" }}",
                "x".repeat(100_000)
            ),
        ];
        for text in &cases {
            let started = std::time::Instant::now();
            let result = parse_only(text);
            let Err(diagnostics) = result else {
                // Valid, only large: a long comment, a long string.
                assert!(text.starts_with(CRATE_PATH), "accepted {}…", &text[..40]);
                continue;
            };
            assert!(diagnostics.errors.len() <= MAX_DIAGNOSTICS + 1);
            assert_spans_inside(&diagnostics, text.len());
            let out = render(&diagnostics);
            assert!(
                out.len() < 200_000,
                "{} bytes for {}…",
                out.len(),
                &text[..20]
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{:?} for {}…",
                started.elapsed(),
                &text[..20]
            );
        }
    }

    #[test]
    fn file_size_is_bounded_issue_18() {
        let text = "// x\n".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() / 5 + 1);
        let Err(diagnostics) = parse_only(&text) else {
            panic!("a file over the limit was read");
        };
        let [Error::TooLarge { size, limit, .. }] = &diagnostics.errors[..] else {
            panic!("{:?}", diagnostics.errors);
        };
        assert_eq!((*size, *limit), (text.len() as u64, MAX_FILE_BYTES));
        // At the limit it is read.
        let text = &text[..usize::try_from(MAX_FILE_BYTES).unwrap()];
        assert!(parse_only(text).is_ok());
    }

    #[test]
    fn diagnostics_are_capped_issue_18() {
        let text = format!("task \"a\" {{ run \"x\" }}\n{}\n", "\"".repeat(8_000));
        let started = std::time::Instant::now();
        let Err(diagnostics) = parse_only(&text) else {
            panic!("8,000 stray quotes were accepted");
        };
        assert_eq!(diagnostics.errors.len(), MAX_DIAGNOSTICS + 1);
        let Some(Error::MoreProblems { count, partial }) = diagnostics.errors.last() else {
            panic!("no count of the rest");
        };
        assert!(*count > 2_000 && !partial, "{count}");
        let out = render(&diagnostics);
        assert!(out.contains(&format!("and {count} more problems")), "{out}");
        assert!(out.contains(&format!("{} problems in `tasks.kdl`", count + 50)));
        assert!(out.len() < 100_000, "{} bytes printed", out.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn an_error_past_column_65535_renders_issue_18() {
        for prefix in ["", CRATE_PATH] {
            let text = format!("{prefix}task \"a\" {{{}run 1 }}\n", " ".repeat(70_000));
            let Err(diagnostics) = parse_only(&text) else {
                panic!("accepted");
            };
            let out = render(&diagnostics);
            assert!(
                out.contains("tasks.kdl:") && out.contains(":70015]"),
                "{out}"
            );
            assert!(out.len() < 4_000, "{} bytes printed", out.len());
            // A syntax error there, too.
            let text = format!("{prefix}task \"a\" {{ run \"{}\n}}\n", "x".repeat(70_000));
            let Err(diagnostics) = parse_only(&text) else {
                panic!("accepted");
            };
            assert!(render(&diagnostics).len() < 4_000);
        }
    }

    #[test]
    fn duplicate_properties_are_diagnostics_issue_18() {
        let text = r#"
project "a"
project "b"
llm { model "m"; model "n" }
task "t" {
    timeout "1m"
    run "x"
    timeout "2m"
    cwd "a"
    cwd "b"
    description "one"
    description "two"
    env A="1"
    env A="2"
    llm { prompt "p"; output "o"; prompt "q"; temperature 0.1; temperature 0.2 }
}
"#;
        let errors = messages(text);
        assert_eq!(
            errors,
            [
                "`project` is set twice in the file",
                "`model` is set twice in the `llm` block",
                "`timeout` is set twice in task `t`",
                "`cwd` is set twice in task `t`",
                "`description` is set twice in task `t`",
                "`A` is set twice in `env`",
                "`prompt` is set twice in the `llm` step of task `t`",
                "`temperature` is set twice in the `llm` step of task `t`",
                "task `t` has both `run` and `llm`",
            ]
        );
        // The crate's path reads them alike, and each points at both occurrences.
        let slow = parse_only(&format!(
            "{CRATE_PATH}{}",
            text.replacen("project \"a\"\n", "", 1)
        ));
        let Err(diagnostics) = slow else {
            panic!("accepted")
        };
        let Some(Error::DuplicateProperty { span, first, .. }) = diagnostics
            .errors
            .iter()
            .find(|e| matches!(e, Error::DuplicateProperty { name, .. } if name == "timeout"))
        else {
            panic!("{:?}", diagnostics.errors);
        };
        let source = format!("{CRATE_PATH}{}", text.replacen("project \"a\"\n", "", 1));
        assert_eq!(&source[span.offset()..span.offset() + 7], "timeout");
        assert_eq!(&source[first.offset()..first.offset() + 7], "timeout");
        assert!(first.offset() < span.offset());
    }

    #[test]
    fn an_api_key_is_never_echoed_issue_18() {
        let key = "sk-proj-Abc123def456ghi789jkl012mno345";
        let text = format!(
            "llm {{ api-key-env \"{key}\" }}\n\
             task \"a\" {{\n    run \"x\"\n    env TOKEN=\"{key}\"\n    timeout \"{key}\"\n}}\n\
             {key} \"node named by a key\"\n"
        );
        let Err(diagnostics) = parse_only(&text) else {
            panic!("a key was accepted");
        };
        let out = render(&diagnostics);
        let mut json = String::new();
        miette::JSONReportHandler::new()
            .render_report(&mut json, &diagnostics)
            .expect("renders");
        for shown in [&out, &json] {
            assert!(!shown.contains("sk-"), "a key prefix is shown:\n{shown}");
            assert!(
                !shown.contains("Abc123"),
                "a part of the key is shown:\n{shown}"
            );
        }
        insta::assert_snapshot!(out);
        insta::assert_snapshot!("an_api_key_is_never_echoed_issue_18_json", json);
    }

    #[test]
    fn a_large_file_outside_the_fast_path_reads_like_the_crate_whole() {
        let text = format!(
            "/-task \"off\" {{ run #\"raw\"# }}\n{}",
            crate::fast_kdl::tests::generated_task_file(2000)
        );
        assert!(text.len() > 4 * CRATE_CHUNK);
        let source = SourceFile::new("tasks.kdl", "tasks.kdl", text.as_str());
        let pieced = parse_task_file(source.clone()).expect("parses");
        // The crate reads the whole text on a thread with room for it.
        let whole = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn({
                let text = text.clone();
                move || {
                    KdlDocument::parse(&text)
                        .map(|document| read_task_file(&source, Ok(Tree::from_document(&document))))
                        .map_err(Unread::from)
                }
            })
            .unwrap()
            .join()
            .unwrap();
        let whole = whole.expect("kdl parses").expect("parses");
        assert_eq!(
            serde_json::to_value(&pieced).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
        // An error far into it is found in its piece (the crate's label starts where its
        // recovery began, which is no earlier than the piece).
        let broken = text.replacen("task \"t1500\"", "task \"t1500\" =", 1);
        let Err(diagnostics) = parse_only(&broken) else {
            panic!("accepted");
        };
        let at = broken.find("task \"t1500\"").unwrap();
        assert!(
            diagnostics.errors.iter().any(|e| e
                .labels()
                .into_iter()
                .flatten()
                .any(|l| l.offset() + CRATE_CHUNK >= at && l.offset() <= at)),
            "{diagnostics:?}"
        );
    }
}
