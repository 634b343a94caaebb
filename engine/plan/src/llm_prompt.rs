//! An LLM node's request, rendered: settings layered and resolved, prompts with their
//! placeholders filled, context files bundled, rules attached — and the parts of all that
//! the cache key holds.
//!
//! Rendering happens before the key is computed, so the key covers exactly what would be
//! sent: the rendered system and user prompts (which contain the context files' text and the
//! attached rules; the project root written as `{{root}}`, so a moved checkout keeps its
//! keys), the resolved provider settings (never the key), the check, the extract
//! mode and the number of attempts. Editing a rule that a node attaches changes its
//! `llm.rules` part and reruns that node, and nothing else.

use std::collections::BTreeMap;

use clab_store::stat_cache::StatCache;

use super::cache_key::without_root;
use clab_graph::{Graph, NodeId, NodeKind};
use clab_llm::{ConfigFile, ContextBundle, Extract, LlmConfig, Settings};
use clab_rules::{attached_rules, render_rules};
use clab_store::Digest;
use clab_syntax::{LlmSettings, Scalar, placeholders};

/// The settings layers that do not come from tasks.kdl: CLI flags, `CLAB_LLM_*` variables
/// and the user's config file.
#[derive(Clone, Debug, Default)]
pub struct LlmLayers {
    /// `--model` and other flags.
    pub cli: Settings,
    /// `CLAB_LLM_PROVIDER/BASE_URL/MODEL`.
    pub env: Settings,
    /// `~/.config/clab/config.toml`.
    pub config_file: ConfigFile,
    /// Why the config file could not be read, when it exists and cannot be (issue 18): a
    /// warning for a run without LLM steps, the failure of each LLM step that needs it.
    pub config_unreadable: Option<String>,
}

impl LlmLayers {
    /// Read the environment layer and the user's config file; `model` is the `--model` flag.
    pub fn load(model: Option<&str>) -> Result<LlmLayers, clab_llm::Error> {
        let lookup = |name: &str| std::env::var(name).ok();
        let mut cli = Settings::default();
        if let Some(model) = model {
            cli.set("model", model, "the --model flag")?;
        }
        let mut config_unreadable = None;
        let config_file = match ConfigFile::path(&lookup) {
            // Unreadable (permissions, a directory, not UTF-8) is a problem only for a run
            // that needs it; a file that reads but does not parse is an error of its own.
            Some(path) => match ConfigFile::load(&path) {
                Err(clab_llm::Error::ConfigRead { path, source }) => {
                    config_unreadable = Some(format!(
                        "cannot read the user config `{}`: {source}",
                        path.display()
                    ));
                    ConfigFile::default()
                }
                loaded => loaded?,
            },
            None => ConfigFile::default(),
        };
        Ok(LlmLayers {
            cli,
            env: Settings::from_env(&lookup)?,
            config_file,
            config_unreadable,
        })
    }
}

/// Everything needed to run one LLM node.
#[derive(Clone, Debug)]
pub struct LlmPrompt {
    /// The resolved provider settings.
    pub config: LlmConfig,
    /// The rendered system prompt.
    pub system: Option<String>,
    /// The rendered user prompt, context and rules included.
    pub user: String,
    /// What to keep of the answer.
    pub extract: Extract,
    /// The output path, relative to the root.
    pub output: String,
    /// The check command (`{{output}}` names the output path, where candidates are staged).
    pub check: Option<String>,
    /// How many answers to try.
    pub attempts: u32,
    /// The key parts of this request.
    pub extra: BTreeMap<String, String>,
}

/// Render the request of LLM node `id`. The error is a message for the node's failure line.
pub fn render(
    graph: &Graph,
    id: NodeId,
    layers: &LlmLayers,
    stat_cache: &StatCache,
) -> Result<LlmPrompt, String> {
    let node = graph.node(id);
    let NodeKind::Llm(llm) = &node.kind else {
        return Err(format!("`{}` is not an LLM step", node.name));
    };
    let root = graph.root();
    // A member's step takes its profiles and defaults from its own tasks.kdl first, then
    // from the root's.
    let file = graph.file_of(id);
    let root_file = graph.file();
    let decl = &llm.decl;

    if let Some(problem) = &layers.config_unreadable {
        return Err(problem.clone());
    }
    let profile = decl.profile.as_ref().map(|p| p.value.as_str());
    let mut stack = vec![layers.cli.clone(), layers.env.clone()];
    stack.push(settings_layer(
        &decl.settings,
        &format!("the `llm` block of task `{}`", node.task),
    )?);
    if let Some(name) = profile {
        // The graph refused unknown profiles; this guards the invariant without panicking.
        let Some(named) = file
            .llm_profiles
            .get(name)
            .or_else(|| root_file.llm_profiles.get(name))
        else {
            return Err(format!("llm profile `{name}` is not defined"));
        };
        stack.push(settings_layer(named, &format!("llm profile `{name}`"))?);
    }
    if let Some(defaults) = &file.llm_defaults {
        stack.push(settings_layer(defaults, "the top-level `llm` block")?);
    }
    if !std::ptr::eq(file, root_file)
        && let Some(defaults) = &root_file.llm_defaults
    {
        stack.push(settings_layer(
            defaults,
            "the top-level `llm` block of the root tasks.kdl",
        )?);
    }
    stack.push(layers.config_file.layer(profile));
    let config = Settings::stack(stack)
        .resolve(&node.name)
        .map_err(|err| err.to_string())?;

    // Context: the files the `context` globs select, bundled with their paths.
    let context_files = if llm.context.is_empty() {
        Vec::new()
    } else {
        super::inputs::collect(root, &llm.context, stat_cache)
            .map_err(|err| format!("context of `{}`: {err}", node.name))?
            .into_iter()
            .map(|f| f.path)
            .collect()
    };
    let budget = decl.max_context_tokens.as_ref().map(|t| u64::from(t.value));
    let context = ContextBundle::read(&node.name, root, &context_files)
        .and_then(|bundle| bundle.render_within(&node.name, budget))
        .map_err(|err| err.to_string())?;

    // Rules: always rules, auto-attached ones whose globs match the context or the output,
    // and the manual ones the step names.
    let mut paths: Vec<&str> = context_files.iter().map(String::as_str).collect();
    paths.push(&llm.output);
    let named: Vec<&str> = decl.rules.iter().map(|r| r.value.as_str()).collect();
    let rules = render_rules(&attached_rules(graph.rule_files(), &paths, &named));

    let mut vars = llm.vars.clone();
    vars.insert("output".to_owned(), llm.output.clone());
    vars.insert("context".to_owned(), context);
    vars.insert("rules".to_owned(), rules.clone());
    let fill = |template: &str, origin: &str| {
        placeholders::render(template, |name| vars.get(name).cloned())
            .map_err(|p| format!("unknown placeholder `{{{{{}}}}}` in {origin}", p.name))
    };
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path))
            .map_err(|err| format!("cannot read `{path}` for `{}`: {err}", node.name))
    };
    // The file paths were rendered (and rebased onto the root) by the graph.
    let user = match (&decl.prompt, &llm.prompt_file) {
        (Some(prompt), _) => fill(&prompt.value, "the prompt")?,
        (None, Some(path)) => {
            let path = fill(path, "prompt-file")?;
            fill(&read(&path)?, &format!("`{path}`"))?
        }
        (None, None) => return Err(format!("`{}` has no prompt", node.name)),
    };
    let system = match (&decl.system, &llm.system_file) {
        (Some(system), _) => Some(fill(&system.value, "the system prompt")?),
        (None, Some(path)) => {
            let path = fill(path, "system-file")?;
            Some(fill(&read(&path)?, &format!("`{path}`"))?)
        }
        (None, None) => None,
    };
    let extract = match decl.extract.as_ref().map(|e| e.value.as_str()) {
        Some("text") => Extract::Text,
        _ => Extract::Code,
    };
    let attempts = decl.attempts.as_ref().map_or(1, |a| a.value.max(1));

    // Hashed with the root written as the marker, like commands: `{{root}}` in a prompt
    // sends the real path but keeps the key the same in every checkout.
    let root_text = root.display().to_string();
    let hash = |text: &str| Digest::of_bytes(without_root(text, &root_text).as_bytes()).to_hex();
    let mut extra: BTreeMap<String, String> = config
        .cache_key_parts()
        .into_iter()
        .map(|(k, v)| (format!("llm.{k}"), v))
        .collect();
    extra.insert("llm.prompt".into(), hash(&user));
    extra.insert("llm.system".into(), hash(system.as_deref().unwrap_or("")));
    extra.insert("llm.rules".into(), hash(&rules));
    extra.insert("llm.extract".into(), format!("{extract:?}").to_lowercase());
    extra.insert("llm.attempts".into(), attempts.to_string());

    Ok(LlmPrompt {
        config,
        system,
        user,
        extract,
        output: llm.output.clone(),
        check: llm.check.clone(),
        attempts,
        extra,
    })
}

/// A settings layer from an `llm` block of tasks.kdl.
fn settings_layer(block: &LlmSettings, origin: &str) -> Result<Settings, String> {
    let mut settings = Settings::default();
    for (key, value) in &block.values {
        let text = match &value.value {
            Scalar::String(s) => s.clone(),
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        };
        settings
            .set(key, &text, origin)
            .map_err(|err| err.to_string())?;
    }
    Ok(settings)
}
