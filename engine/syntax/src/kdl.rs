//! The KDL reader: walks a `KdlDocument` node by node into a [`TaskFile`].
//!
//! Each node is checked against the format's vocabulary (unknown names get a "did you mean"),
//! its arguments against their expected types, and every problem is collected so one run of
//! `clab check` shows them all.

use std::collections::BTreeMap;

use kdl::{KdlDocument, KdlEntry, KdlError, KdlNode, KdlValue};
use miette::SourceSpan;

use super::{
    CoverageDecl, Diagnostics, Error, LLM_SETTINGS, LlmSettings, LlmStepDecl, Scalar, TaskDecl,
    TaskFile, fast_kdl, parse_duration, placeholders, suggestion,
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
    "task",
];
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

/// Parse `tasks.kdl` text into the model, collecting every problem.
pub fn parse_task_file(source: SourceFile) -> Result<TaskFile, Diagnostics> {
    // The fast path reads the common subset of KDL in a fraction of the crate's time; anything
    // else, errors included, goes to the crate.
    let parsed = fast_kdl::parse(source.text())
        .map(Ok)
        .unwrap_or_else(|| KdlDocument::parse(source.text()));
    read_task_file(source, parsed)
}

/// Read an already parsed document (or report its syntax errors) into the model.
pub(super) fn read_task_file(
    source: SourceFile,
    parsed: Result<KdlDocument, KdlError>,
) -> Result<TaskFile, Diagnostics> {
    let mut reader = Reader {
        source: &source,
        errors: Vec::new(),
    };
    let file = match parsed {
        Ok(document) => Some(reader.document(&document)),
        Err(err) => {
            for diagnostic in err.diagnostics {
                let message = diagnostic
                    .message
                    .unwrap_or_else(|| "invalid KDL".to_owned());
                reader.errors.push(Error::Syntax {
                    label: diagnostic.label.unwrap_or_else(|| "here".to_owned()),
                    message: format!("invalid KDL: {}", lowercase_first(&message)),
                    src: source.named_source(),
                    span: diagnostic.span,
                    help: diagnostic.help,
                });
            }
            None
        }
    };
    match file {
        Some(file) if reader.errors.is_empty() => Ok(file),
        _ => Err(Diagnostics {
            file: source.name().to_owned(),
            errors: reader.errors,
        }),
    }
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
}

impl Reader<'_> {
    fn document(&mut self, document: &KdlDocument) -> TaskFile {
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
            tasks: Vec::new(),
        };
        let mut seen: BTreeMap<String, SourceSpan> = BTreeMap::new();
        for node in document.nodes() {
            match node.name().value() {
                "project" => {
                    self.no_children(node);
                    file.project = self.one_string(node);
                }
                "env" => {
                    self.no_children(node);
                    self.env(node, &mut file.env);
                }
                "members" => {
                    self.no_children(node);
                    file.members.extend(self.strings(node));
                }
                "uses" => {
                    self.no_children(node);
                    file.uses.extend(self.strings(node));
                }
                "env-inputs" => {
                    self.no_children(node);
                    file.env_inputs.extend(self.strings(node));
                }
                "dotenv" => {
                    self.no_children(node);
                    file.dotenv.extend(self.strings(node));
                }
                "rules" => {
                    self.no_children(node);
                    file.rules_dirs.extend(self.strings(node));
                }
                "llm" => self.llm_block(node, &mut file),
                "task" => {
                    if let Some(task) = self.task(node) {
                        if let Some(&first) = seen.get(&task.name.value) {
                            self.errors.push(Error::DuplicateTask {
                                name: task.name.value.clone(),
                                src: self.source.named_source(),
                                span: task.name.span,
                                first,
                            });
                        } else {
                            seen.insert(task.name.value.clone(), task.name.span);
                            file.tasks.push(task);
                        }
                    }
                }
                _ => self.unknown_node(node, "node", TOP_LEVEL),
            }
        }
        file
    }

    fn llm_block(&mut self, node: &KdlNode, file: &mut TaskFile) {
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
        for child in children(node) {
            let key = child.name().value();
            match LLM_SETTINGS.iter().find(|&&s| s == key) {
                Some(&setting) => self.setting(child, setting, &mut settings),
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

    fn setting(&mut self, node: &KdlNode, setting: &'static str, settings: &mut LlmSettings) {
        self.no_children(node);
        self.no_props(node);
        let [entry] = node.entries() else {
            self.bad_argument_node(node, "takes one value");
            return;
        };
        let value = match entry.value() {
            KdlValue::String(s) => Scalar::String(s.clone()),
            KdlValue::Integer(i) => match i64::try_from(*i) {
                Ok(i) => Scalar::Integer(i),
                Err(_) => {
                    self.bad_argument(node, "takes a smaller number", entry, "out of range");
                    return;
                }
            },
            KdlValue::Float(f) => Scalar::Float(*f),
            KdlValue::Bool(b) => Scalar::Bool(*b),
            KdlValue::Null => {
                self.bad_argument(node, "takes a value", entry, "#null");
                return;
            }
        };
        if let Scalar::String(text) = &value {
            if looks_like_api_key(text) {
                self.errors.push(Error::ApiKeyInFile {
                    file: self.source.name().to_owned(),
                    src: self.source.named_source(),
                    span: entry.span(),
                });
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

    fn task(&mut self, node: &KdlNode) -> Option<TaskDecl> {
        self.no_props(node);
        let name = self.one_string(node)?;
        let mut task = TaskDecl {
            name,
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
            for_each: Vec::new(),
            junit: None,
            coverage: None,
            llm: None,
        };
        let mut run_span = None;
        for child in children(node) {
            let key = child.name().value();
            if key != "llm" {
                self.no_children(child);
            }
            match key {
                "description" => task.description = self.one_string(child),
                "run" => {
                    run_span.get_or_insert(child.span());
                    task.run.extend(self.strings(child));
                }
                "deps" => task.deps.extend(self.strings(child)),
                "inputs" => task.inputs.extend(self.strings(child)),
                "outputs" => task.outputs.extend(self.strings(child)),
                "env" => self.env(child, &mut task.env),
                "cwd" => task.cwd = self.one_string(child),
                "cache" => task.cache = self.one_bool(child),
                "persistent" => task.persistent = self.one_bool(child),
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
                "for-each" => task.for_each.extend(self.strings(child)),
                "junit" => task.junit = self.one_string(child),
                "coverage" => task.coverage = self.coverage(child),
                "llm" => task.llm = Some(self.llm_step(child, &task.name.value)),
                _ => self.unknown_node(child, "task child", TASK_CHILDREN),
            }
        }
        if let (Some(run), Some(llm)) = (run_span, &task.llm) {
            self.errors.push(Error::RunAndLlm {
                task: task.name.value.clone(),
                src: self.source.named_source(),
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
        let available = |extra: &[&'static str]| {
            let mut names = vec!["root"];
            if for_each {
                names.extend(placeholders::FOR_EACH);
            }
            names.extend(extra);
            names
        };
        let plain = available(&[]);
        // `{{args}}`: where `clab run TASK -- ARGS` puts its arguments.
        let run = available(&["args"]);
        for field in &task.run {
            self.check_field(field, &run);
        }
        let mut fields: Vec<&Spanned<String>> = Vec::new();
        fields.extend(&task.inputs);
        fields.extend(&task.outputs);
        fields.extend(&task.cwd);
        fields.extend(&task.junit);
        fields.extend(task.env.values());
        fields.extend(task.coverage.as_ref().map(|c| &c.path));
        for field in fields {
            self.check_field(field, &plain);
        }
        if let Some(llm) = &task.llm {
            let mut fields: Vec<&Spanned<String>> = Vec::new();
            fields.extend(&llm.prompt_file);
            fields.extend(&llm.system_file);
            fields.extend(&llm.context);
            fields.extend(&llm.output);
            for field in fields {
                self.check_field(field, &plain);
            }
            let check = available(&["output"]);
            if let Some(field) = &llm.check {
                self.check_field(field, &check);
            }
            // Prompts may also use {{context}} and {{rules}}; prompt files are checked when read.
            let prompt = available(&["context", "rules", "output"]);
            for field in llm.prompt.iter().chain(&llm.system) {
                self.check_field(field, &prompt);
            }
        }
    }

    fn check_field(&mut self, field: &Spanned<String>, available: &[&str]) {
        for placeholder in placeholders::scan(&field.value) {
            if available.contains(&placeholder.name) {
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
                suggestion(placeholder.name, available)
            };
            self.errors.push(Error::UnknownPlaceholder {
                name: placeholder.name.to_owned(),
                src: self.source.named_source(),
                span: (start, placeholder.range.len()).into(),
                help,
            });
        }
    }

    fn llm_step(&mut self, node: &KdlNode, task: &str) -> LlmStepDecl {
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
        for child in children(node) {
            let key = child.name().value();
            if let Some(&setting) = LLM_SETTINGS.iter().find(|&&s| s == key) {
                self.setting(child, setting, &mut step.settings);
                continue;
            }
            self.no_children(child);
            match key {
                "profile" => step.profile = self.one_string(child),
                "prompt" => step.prompt = self.one_string(child),
                "prompt-file" => step.prompt_file = self.one_string(child),
                "system" => step.system = self.one_string(child),
                "system-file" => step.system_file = self.one_string(child),
                "context" => step.context.extend(self.strings(child)),
                "output" => step.output = self.one_string(child),
                "extract" => {
                    step.extract = self.one_string(child);
                    if let Some(extract) = &step.extract
                        && !matches!(extract.value.as_str(), "code" | "text")
                    {
                        self.errors.push(Error::BadArgument {
                            node: "extract".into(),
                            expected: "takes \"code\" or \"text\"".into(),
                            src: self.source.named_source(),
                            span: extract.span,
                            found: format!("`{}`", extract.value),
                        });
                    }
                }
                "check" => step.check = self.one_string(child),
                "attempts" => step.attempts = self.one_u32(child),
                "max-context-tokens" => step.max_context_tokens = self.one_u32(child),
                "rules" => step.rules.extend(self.strings(child)),
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
                src: self.source.named_source(),
                span: node.name().span(),
            });
        }
        if step.output.is_none() {
            self.errors.push(Error::BadLlmStep {
                task: task.to_owned(),
                problem: "needs an `output` file".into(),
                src: self.source.named_source(),
                span: node.name().span(),
            });
        }
        if step.system.is_some() && step.system_file.is_some() {
            self.errors.push(Error::BadLlmStep {
                task: task.to_owned(),
                problem: "has both `system` and `system-file`".into(),
                src: self.source.named_source(),
                span: node.name().span(),
            });
        }
        step
    }

    fn coverage(&mut self, node: &KdlNode) -> Option<CoverageDecl> {
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
                ("fail-under", KdlValue::Integer(n)) if (0..=100).contains(n) => {
                    decl_fail_under = Some(Spanned::new(*n as f64, entry.span()));
                }
                ("fail-under", KdlValue::Float(f)) if (0.0..=100.0).contains(f) => {
                    decl_fail_under = Some(Spanned::new(*f, entry.span()));
                }
                ("fail-under", _) => {
                    self.bad_argument(node, "takes `fail-under` from 0 to 100", entry, "here");
                }
                ("show-missing", KdlValue::Bool(b)) => show_missing = *b,
                ("skip-covered", KdlValue::Bool(b)) => skip_covered = *b,
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

    fn env(&mut self, node: &KdlNode, env: &mut BTreeMap<String, Spanned<String>>) {
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
                KdlValue::String(s) => s.clone(),
                KdlValue::Integer(i) => i.to_string(),
                KdlValue::Float(f) => f.to_string(),
                KdlValue::Bool(b) => b.to_string(),
                KdlValue::Null => {
                    self.bad_argument(node, "takes string values", entry, "#null");
                    continue;
                }
            };
            if looks_like_api_key(&value) {
                self.errors.push(Error::ApiKeyInFile {
                    file: self.source.name().to_owned(),
                    src: self.source.named_source(),
                    span: entry.span(),
                });
                continue;
            }
            env.insert(name.value().to_owned(), Spanned::new(value, entry.span()));
        }
    }

    fn strings(&mut self, node: &KdlNode) -> Vec<Spanned<String>> {
        self.no_props(node);
        if node.entries().is_empty() {
            self.bad_argument_node(node, "takes one or more strings");
        }
        node.entries()
            .iter()
            .filter_map(|entry| self.string_entry(node, entry, "takes strings"))
            .collect()
    }

    fn one_string(&mut self, node: &KdlNode) -> Option<Spanned<String>> {
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

    fn one_bool(&mut self, node: &KdlNode) -> Option<Spanned<bool>> {
        self.no_props(node);
        match node.entries() {
            [entry] => match entry.value() {
                KdlValue::Bool(b) => Some(Spanned::new(*b, entry.span())),
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

    fn one_u32(&mut self, node: &KdlNode) -> Option<Spanned<u32>> {
        self.no_props(node);
        match node.entries() {
            [entry] => match entry.value() {
                KdlValue::Integer(i) => match u32::try_from(*i) {
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
        node: &KdlNode,
        entry: &KdlEntry,
        expected: &str,
    ) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(s) => Some(Spanned::new(s.clone(), entry.span())),
            other => {
                self.bad_argument(node, expected, entry, &describe(other));
                None
            }
        }
    }

    fn no_props(&mut self, node: &KdlNode) {
        for entry in node.entries() {
            if let Some(name) = entry.name() {
                self.unknown_property(node, name.value(), entry, &[]);
            }
        }
    }

    fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            self.errors.push(Error::BadArgument {
                node: node.name().value().to_owned(),
                expected: "takes no block".into(),
                src: self.source.named_source(),
                span: children.span(),
                found: "unexpected block".into(),
            });
        }
    }

    fn unknown_node(&mut self, node: &KdlNode, context: &'static str, valid: &[&str]) {
        let name = node.name().value();
        self.errors.push(Error::UnknownNode {
            name: name.to_owned(),
            context,
            src: self.source.named_source(),
            span: node.name().span(),
            help: suggestion(name, valid),
        });
    }

    fn unknown_property(&mut self, node: &KdlNode, name: &str, entry: &KdlEntry, valid: &[&str]) {
        let help = if valid.is_empty() {
            format!("`{}` takes no properties", node.name().value())
        } else {
            suggestion(name, valid)
        };
        self.errors.push(Error::UnknownProperty {
            name: name.to_owned(),
            node: node.name().value().to_owned(),
            src: self.source.named_source(),
            span: entry.span(),
            help,
        });
    }

    fn bad_argument(&mut self, node: &KdlNode, expected: &str, entry: &KdlEntry, found: &str) {
        self.errors.push(Error::BadArgument {
            node: node.name().value().to_owned(),
            expected: expected.to_owned(),
            src: self.source.named_source(),
            span: entry.span(),
            found: found.to_owned(),
        });
    }

    fn bad_argument_node(&mut self, node: &KdlNode, expected: &str) {
        self.errors.push(Error::BadArgument {
            node: node.name().value().to_owned(),
            expected: expected.to_owned(),
            src: self.source.named_source(),
            span: node.name().span(),
            found: "here".into(),
        });
    }

    fn bad_duration(&mut self, value: &str, span: SourceSpan) {
        self.errors.push(Error::BadDuration {
            value: value.to_owned(),
            src: self.source.named_source(),
            span,
        });
    }
}

fn children(node: &KdlNode) -> impl Iterator<Item = &KdlNode> {
    node.children().into_iter().flat_map(|doc| doc.nodes())
}

fn describe(value: &KdlValue) -> String {
    match value {
        KdlValue::String(_) => "a string".into(),
        KdlValue::Integer(_) | KdlValue::Float(_) => "a number".into(),
        KdlValue::Bool(_) => "a boolean".into(),
        KdlValue::Null => "#null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
