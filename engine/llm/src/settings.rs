//! LLM settings: partial [`Settings`] layers, their merge, and the complete [`LlmConfig`].
//!
//! What comes in: one [`Settings`] per layer, every field optional. Highest precedence first:
//! CLI flags (`--model`), `CLAB_LLM_PROVIDER`/`CLAB_LLM_BASE_URL`/`CLAB_LLM_MODEL`
//! ([`Settings::from_env`]), the task's `llm` block, its named profile (`llm "NAME" { … }`), the
//! top-level `llm { … }` block, then the user file (`ConfigFile::layer`). What goes out: an
//! [`LlmConfig`] with every default filled in ([`Settings::resolve`]).
//!
//! Merge rule: a higher layer's value wins field by field, except that a lower layer that
//! names a *different* provider than the one already chosen contributes only the
//! provider-neutral settings (temperature, max-tokens, timeout, limits, retries): its
//! `base-url`, `model`, `api-key-env` and `command` belong to its provider and are dropped.
//!
//! The key is not a setting: only the *name* of its environment variable is, so `Settings` and
//! `LlmConfig` are safe to print, hash and serialize.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Error, looks_like_api_key};
// One duration grammar: an LLM `timeout` reads as a task's `timeout` does (`1h30m`, no bare
// numbers), wherever it is written (tasks.kdl, `CLAB_LLM_*`, the user's config file).
use clab_model::duration::parse_duration;

/// Which wire protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI chat completions: OpenAI, Ollama, llama.cpp, vLLM, LM Studio, OpenRouter.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// A shell command: prompt on stdin, answer on stdout.
    Command,
}

impl ProviderKind {
    /// All providers, in the order help texts list them.
    pub const ALL: [ProviderKind; 3] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Command,
    ];

    /// The name as written in `tasks.kdl`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Command => "command",
        }
    }

    /// The default `base-url`, for HTTP providers.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Command => None,
        }
    }

    /// The default `api-key-env`, for HTTP providers.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("OPENAI_API_KEY"),
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::Command => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        let trimmed = name.trim();
        if let Some(kind) = ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(trimmed))
        {
            return Ok(kind);
        }
        let closest = ProviderKind::ALL
            .into_iter()
            .map(|kind| {
                (
                    strsim::jaro_winkler(kind.as_str(), &trimmed.to_ascii_lowercase()),
                    kind,
                )
            })
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let help = match closest {
            Some((_, kind)) => {
                format!("did you mean `{kind}`? providers are `openai`, `anthropic` and `command`")
            }
            None => "providers are `openai`, `anthropic` and `command`".to_owned(),
        };
        Err(Error::UnknownProvider {
            name: name.to_owned(),
            help,
        })
    }
}

/// One layer of LLM settings; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `provider`.
    pub provider: Option<ProviderKind>,
    /// `base-url` of an HTTP provider.
    pub base_url: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `api-key-env`: the name of the variable that holds the key.
    pub api_key_env: Option<String>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `max-tokens` of the answer.
    pub max_tokens: Option<u32>,
    /// `timeout` of one request.
    pub timeout: Option<Duration>,
    /// `requests-per-minute` for the provider's limiter.
    pub requests_per_minute: Option<u32>,
    /// `max-concurrent` requests for the provider's limiter.
    pub max_concurrent: Option<u32>,
    /// `command` of the `command` provider.
    pub command: Option<String>,
    /// `max-retries` on 429, 5xx, timeouts and connection errors.
    pub max_retries: Option<u32>,
}

impl Settings {
    /// `self` over `lower`: each field from `self` if set, else from `lower` (see the module
    /// doc for what happens when the two name different providers).
    pub fn merge(self, lower: Settings) -> Settings {
        let same_provider = match (self.provider, lower.provider) {
            (Some(high), Some(low)) => high == low,
            _ => true,
        };
        let specific = |high: Option<String>, low: Option<String>| {
            if same_provider { high.or(low) } else { high }
        };
        Settings {
            provider: self.provider.or(lower.provider),
            base_url: specific(self.base_url, lower.base_url),
            model: specific(self.model, lower.model),
            api_key_env: specific(self.api_key_env, lower.api_key_env),
            command: specific(self.command, lower.command),
            temperature: self.temperature.or(lower.temperature),
            max_tokens: self.max_tokens.or(lower.max_tokens),
            timeout: self.timeout.or(lower.timeout),
            requests_per_minute: self.requests_per_minute.or(lower.requests_per_minute),
            max_concurrent: self.max_concurrent.or(lower.max_concurrent),
            max_retries: self.max_retries.or(lower.max_retries),
        }
    }

    /// The keys a settings layer accepts, as written in `tasks.kdl` and the config file (for
    /// "unknown key, did you mean" messages).
    /// The list lives with the syntax stage, which reads the same keys from `llm` blocks.
    pub const KEYS: [&'static str; 11] = clab_syntax::LLM_SETTING_KEYS;

    /// Set `key` (one of [`Settings::KEYS`]) from its text as written; `origin` says where it
    /// was written, for errors. Returns `Ok(false)` when `key` is not a settings key, so the
    /// caller can handle its own keys (`prompt`, `output` …) or report an unknown one. An
    /// `api-key-env` that looks like a key itself is refused without echoing it.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<bool, Error> {
        let invalid = |help: &str| Error::InvalidSetting {
            field: key.to_owned(),
            value: value.to_owned(),
            origin: origin.to_owned(),
            help: help.to_owned(),
        };
        let whole = |help: &str| value.trim().parse::<u32>().map_err(|_| invalid(help));
        match key {
            "provider" => {
                self.provider = Some(value.parse().map_err(|err| match err {
                    Error::UnknownProvider { help, .. } => invalid(&help),
                    other => other,
                })?)
            }
            "base-url" => self.base_url = Some(value.to_owned()),
            "model" => self.model = Some(value.to_owned()),
            "api-key-env" => {
                if looks_like_api_key(value) {
                    return Err(Error::InvalidSetting {
                        field: key.to_owned(),
                        value: "****".to_owned(),
                        origin: origin.to_owned(),
                        help: API_KEY_ENV_HELP.to_owned(),
                    });
                }
                self.api_key_env = Some(value.to_owned())
            }
            "temperature" => {
                self.temperature = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| invalid("use a number from 0 to 2"))?,
                )
            }
            "max-tokens" => self.max_tokens = Some(whole("use a positive whole number")?),
            "timeout" => {
                self.timeout =
                    Some(parse_duration(value).ok_or_else(|| {
                        invalid("write a duration such as `30s`, `500ms` or `2m`")
                    })?)
            }
            "requests-per-minute" => {
                self.requests_per_minute = Some(whole("use a positive whole number")?)
            }
            "max-concurrent" => self.max_concurrent = Some(whole("use a positive whole number")?),
            "command" => self.command = Some(value.to_owned()),
            "max-retries" => self.max_retries = Some(whole("use a whole number")?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Merge layers given highest precedence first.
    pub fn stack(layers: impl IntoIterator<Item = Settings>) -> Settings {
        layers
            .into_iter()
            .fold(Settings::default(), |high, low| high.merge(low))
    }

    /// The environment layer: `CLAB_LLM_PROVIDER`, `CLAB_LLM_BASE_URL` and `CLAB_LLM_MODEL`
    /// read through `lookup` (empty values count as unset).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let provider = match get("CLAB_LLM_PROVIDER") {
            Some(name) => Some(name.parse::<ProviderKind>().map_err(|err| match err {
                Error::UnknownProvider { name, help } => Error::InvalidSetting {
                    field: "provider".to_owned(),
                    value: name,
                    origin: "`CLAB_LLM_PROVIDER`".to_owned(),
                    help,
                },
                other => other,
            })?),
            None => None,
        };
        Ok(Settings {
            provider,
            base_url: get("CLAB_LLM_BASE_URL"),
            model: get("CLAB_LLM_MODEL"),
            ..Settings::default()
        })
    }

    /// Fill in defaults and check that what is needed is there. `task` names the task in errors.
    ///
    /// Defaults: provider `openai`; `base-url` and `api-key-env` per provider (see
    /// [`ProviderKind::default_base_url`]); timeout 120 s; max-concurrent 4; max-retries 4;
    /// max-tokens 4096 for `anthropic` (its API requires one), unset otherwise; no
    /// requests-per-minute limit.
    pub fn resolve(&self, task: &str) -> Result<LlmConfig, Error> {
        let provider = self.provider.unwrap_or(ProviderKind::OpenAi);
        let invalid = |field: &str, value: String, help: &str| Error::InvalidSetting {
            field: field.to_owned(),
            value,
            origin: format!("the llm settings of task `{task}`"),
            help: help.to_owned(),
        };
        if self.api_key_env.as_deref().is_some_and(looks_like_api_key) {
            // Never echo the value: it is a key.
            return Err(invalid("api-key-env", "****".to_owned(), API_KEY_ENV_HELP));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(invalid(
                "temperature",
                t.to_string(),
                "use a number from 0 to 2",
            ));
        }
        for (field, value) in [
            ("max-tokens", self.max_tokens),
            ("requests-per-minute", self.requests_per_minute),
            ("max-concurrent", self.max_concurrent),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    field,
                    "0".to_owned(),
                    "use a positive whole number",
                ));
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(invalid(
                "timeout",
                "0s".to_owned(),
                "use a positive duration such as `30s`",
            ));
        }
        let model = match (&self.model, provider) {
            (Some(model), _) => model.clone(),
            (None, ProviderKind::Command) => String::new(),
            (None, _) => {
                return Err(Error::MissingModel {
                    task: task.to_owned(),
                    provider: provider.to_string(),
                });
            }
        };
        let command = match provider {
            ProviderKind::Command => match &self.command {
                Some(command) if !command.trim().is_empty() => Some(command.clone()),
                _ => {
                    return Err(Error::MissingCommand {
                        task: task.to_owned(),
                    });
                }
            },
            _ => None,
        };
        let base_url = self
            .base_url
            .clone()
            .or_else(|| provider.default_base_url().map(str::to_owned))
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let api_key_env = self
            .api_key_env
            .clone()
            .or_else(|| provider.default_api_key_env().map(str::to_owned));
        let max_tokens = match provider {
            ProviderKind::Anthropic => Some(self.max_tokens.unwrap_or(4096)),
            _ => self.max_tokens,
        };
        Ok(LlmConfig {
            provider,
            base_url,
            model,
            api_key_env,
            temperature: self.temperature,
            max_tokens,
            timeout: self.timeout.unwrap_or(Duration::from_secs(120)),
            requests_per_minute: self.requests_per_minute,
            max_concurrent: self.max_concurrent.unwrap_or(4),
            command,
            max_retries: self.max_retries.unwrap_or(4),
            anthropic_version: "2023-06-01".to_owned(),
        })
    }
}

const API_KEY_ENV_HELP: &str = "`api-key-env` names the environment variable that holds the key, such as `OPENAI_API_KEY`; never write the key itself where it can be committed";

/// Complete settings for one provider, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LlmConfig {
    /// The wire protocol.
    pub provider: ProviderKind,
    /// `base-url` without a trailing slash; empty for `command`.
    pub base_url: String,
    /// The model; may be empty for `command`.
    pub model: String,
    /// The variable that holds the key (`None` for `command`).
    pub api_key_env: Option<String>,
    /// Sampling temperature, when set.
    pub temperature: Option<f64>,
    /// Answer length cap, when set (always set for `anthropic`).
    pub max_tokens: Option<u32>,
    /// Timeout of one request.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Rate limit, when set.
    pub requests_per_minute: Option<u32>,
    /// Concurrent requests allowed to this provider.
    pub max_concurrent: u32,
    /// The `command` provider's command line.
    pub command: Option<String>,
    /// Retries after the first try.
    pub max_retries: u32,
    /// The `anthropic-version` header.
    pub anthropic_version: String,
}

fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

impl LlmConfig {
    /// The environment variables that may hold a provider's key, which an LLM step's check
    /// (code the model wrote) does not get: this config's `api-key-env` and the default key
    /// variable of every HTTP provider (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
    pub fn key_variables(&self) -> Vec<String> {
        let mut names: Vec<String> = ProviderKind::ALL
            .into_iter()
            .filter_map(ProviderKind::default_api_key_env)
            .map(str::to_owned)
            .collect();
        if let Some(name) = &self.api_key_env
            && !names.contains(name)
        {
            names.push(name.clone());
        }
        names
    }

    /// The settings that can change an answer, for the node's cache key: provider, base-url,
    /// model, temperature, max-tokens and (for `command`) the command. Never the key, and not
    /// timeouts or limits.
    pub fn cache_key_parts(&self) -> BTreeMap<&'static str, String> {
        let mut parts = BTreeMap::new();
        parts.insert("provider", self.provider.to_string());
        parts.insert("base-url", self.base_url.clone());
        parts.insert("model", self.model.clone());
        if let Some(t) = self.temperature {
            parts.insert("temperature", t.to_string());
        }
        if let Some(n) = self.max_tokens {
            parts.insert("max-tokens", n.to_string());
        }
        if let Some(command) = &self.command {
            parts.insert("command", command.clone());
        }
        parts
    }

    /// Where requests go, for messages and the limiter registry: the base URL, or the
    /// command line for `command`.
    pub fn endpoint(&self) -> &str {
        match &self.command {
            Some(command) if self.provider == ProviderKind::Command => command,
            _ => &self.base_url,
        }
    }

    /// Whether `base-url` points at this machine (`localhost`, `127.0.0.1`, `[::1]`), where
    /// OpenAI-compatible servers such as Ollama need no key.
    pub fn is_local(&self) -> bool {
        let rest = self
            .base_url
            .strip_prefix("http://")
            .or_else(|| self.base_url.strip_prefix("https://"))
            .unwrap_or(&self.base_url);
        let host = if rest.starts_with('[') {
            rest.split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
        } else {
            rest.split(['/', ':']).next().unwrap_or_default().to_owned()
        };
        matches!(
            host.as_str(),
            "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0"
        )
    }
}

/// Whether LLM steps may run: false when `CODEGEN_LAB_CONFIG_ENABLE_AI` is `false`/`0`/`no`/`off`
/// or `CLAB_AI` is `off`/`false`/`0`/`no` (case-insensitive). Reads through `lookup` so tests
/// need not touch the process environment.
pub fn ai_enabled(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let off = |name: &str| {
        lookup(name)
            .map(|value| {
                matches!(
                    value.trim().to_ascii_lowercase().as_str(),
                    "false" | "0" | "no" | "off"
                )
            })
            .unwrap_or(false)
    };
    !(off("CODEGEN_LAB_CONFIG_ENABLE_AI") || off("CLAB_AI"))
}

/// `1.5s`, `250ms`, `2m`: short and exact enough for messages.
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        provider: Option<ProviderKind>,
        model: Option<&str>,
        base_url: Option<&str>,
    ) -> Settings {
        Settings {
            provider,
            model: model.map(str::to_owned),
            base_url: base_url.map(str::to_owned),
            ..Settings::default()
        }
    }

    /// Precedence table: each row is one layer set per level; the expected model is the
    /// highest one set. Levels: cli, env, task, profile, defaults, user.
    #[test]
    fn precedence_table() {
        let names = ["cli", "env", "task", "profile", "defaults", "user"];
        let rows: [([bool; 6], &str); 7] = [
            ([true, true, true, true, true, true], "cli"),
            ([false, true, true, true, true, true], "env"),
            ([false, false, true, true, true, true], "task"),
            ([false, false, false, true, true, true], "profile"),
            ([false, false, false, false, true, true], "defaults"),
            ([false, false, false, false, false, true], "user"),
            ([false, true, false, true, false, true], "env"),
        ];
        for (set, expected) in rows {
            let layers = names.iter().zip(set).map(|(name, on)| {
                if on {
                    layer(None, Some(name), None)
                } else {
                    Settings::default()
                }
            });
            let merged = Settings::stack(layers);
            assert_eq!(merged.model.as_deref(), Some(expected), "{set:?}");
        }
    }

    #[test]
    fn fields_merge_independently() {
        let cli = Settings {
            model: Some("cli-model".into()),
            ..Settings::default()
        };
        let task = Settings {
            temperature: Some(0.7),
            ..Settings::default()
        };
        let user = Settings {
            temperature: Some(0.1),
            timeout: Some(Duration::from_secs(9)),
            base_url: Some("http://localhost:11434/v1".into()),
            ..Settings::default()
        };
        let merged = Settings::stack([cli, Settings::default(), task, user]);
        assert_eq!(merged.model.as_deref(), Some("cli-model"));
        assert_eq!(merged.temperature, Some(0.7));
        assert_eq!(merged.timeout, Some(Duration::from_secs(9)));
        assert_eq!(
            merged.base_url.as_deref(),
            Some("http://localhost:11434/v1")
        );
    }

    #[test]
    fn a_lower_layer_of_another_provider_keeps_only_neutral_settings() {
        let task = layer(Some(ProviderKind::Anthropic), None, None);
        let defaults = Settings {
            temperature: Some(0.2),
            ..layer(
                Some(ProviderKind::OpenAi),
                Some("gpt-4o-mini"),
                Some("https://api.openai.com/v1"),
            )
        };
        let merged = Settings::stack([task, defaults]);
        assert_eq!(merged.provider, Some(ProviderKind::Anthropic));
        assert_eq!(merged.model, None);
        assert_eq!(merged.base_url, None);
        assert_eq!(merged.temperature, Some(0.2));
        let err = merged.resolve("gen").map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::MissingModel { .. }), "{err:?}");
    }

    #[test]
    fn resolve_fills_provider_defaults() {
        let openai = layer(None, Some("gpt-4o-mini"), None).resolve("t").unwrap();
        assert_eq!(openai.provider, ProviderKind::OpenAi);
        assert_eq!(openai.base_url, "https://api.openai.com/v1");
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(openai.max_tokens, None);

        let anthropic = layer(Some(ProviderKind::Anthropic), Some("claude-x"), None)
            .resolve("t")
            .unwrap();
        assert_eq!(anthropic.base_url, "https://api.anthropic.com/v1");
        assert_eq!(anthropic.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(anthropic.anthropic_version, "2023-06-01");
        assert_eq!(anthropic.max_tokens, Some(4096));

        let ollama = layer(None, Some("llama3"), Some("http://localhost:11434/v1/"))
            .resolve("t")
            .unwrap();
        assert_eq!(ollama.base_url, "http://localhost:11434/v1");
        assert!(ollama.is_local());
        assert!(!openai.is_local());

        let err = layer(Some(ProviderKind::Command), None, None)
            .resolve("t")
            .unwrap_err();
        assert!(matches!(err, Error::MissingCommand { .. }));
        let command = Settings {
            command: Some("llm -m x".into()),
            ..layer(Some(ProviderKind::Command), None, None)
        }
        .resolve("t")
        .unwrap();
        assert_eq!(command.endpoint(), "llm -m x");
        assert_eq!(command.api_key_env, None);
    }

    #[test]
    fn key_variables_name_the_configured_and_the_default_key_variables() {
        let own = Settings {
            api_key_env: Some("MY_KEY".into()),
            ..layer(None, Some("m"), None)
        }
        .resolve("t")
        .unwrap();
        assert_eq!(
            own.key_variables(),
            ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY"]
        );
        let default = layer(None, Some("m"), None).resolve("t").unwrap();
        assert_eq!(
            default.key_variables(),
            ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
        );
    }

    #[test]
    fn resolve_rejects_nonsense() {
        let hot = Settings {
            temperature: Some(3.0),
            ..layer(None, Some("m"), None)
        };
        assert!(matches!(
            hot.resolve("t"),
            Err(Error::InvalidSetting { .. })
        ));
        let zero = Settings {
            max_concurrent: Some(0),
            ..layer(None, Some("m"), None)
        };
        assert!(matches!(
            zero.resolve("t"),
            Err(Error::InvalidSetting { .. })
        ));
    }

    #[test]
    fn env_layer_reads_clab_llm_variables() {
        let lookup = |name: &str| match name {
            "CLAB_LLM_PROVIDER" => Some("Anthropic".to_owned()),
            "CLAB_LLM_MODEL" => Some("claude-x".to_owned()),
            "CLAB_LLM_BASE_URL" => Some("".to_owned()),
            _ => None,
        };
        let env = Settings::from_env(&lookup).unwrap();
        assert_eq!(env.provider, Some(ProviderKind::Anthropic));
        assert_eq!(env.model.as_deref(), Some("claude-x"));
        assert_eq!(env.base_url, None);

        let bad = |name: &str| (name == "CLAB_LLM_PROVIDER").then(|| "opneai".to_owned());
        match Settings::from_env(&bad) {
            Err(Error::InvalidSetting { help, origin, .. }) => {
                assert!(help.contains("did you mean `openai`"), "{help}");
                assert_eq!(origin, "`CLAB_LLM_PROVIDER`");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ai_switches() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(ai_enabled(&env(&[])));
        assert!(ai_enabled(&env(&[(
            "CODEGEN_LAB_CONFIG_ENABLE_AI",
            "true"
        )])));
        assert!(!ai_enabled(&env(&[(
            "CODEGEN_LAB_CONFIG_ENABLE_AI",
            "false"
        )])));
        assert!(!ai_enabled(&env(&[(
            "CODEGEN_LAB_CONFIG_ENABLE_AI",
            "FALSE"
        )])));
        assert!(!ai_enabled(&env(&[("CLAB_AI", "off")])));
        assert!(ai_enabled(&env(&[("CLAB_AI", "on")])));
    }

    #[test]
    fn set_parses_each_key_and_refuses_keys_in_api_key_env() {
        let mut settings = Settings::default();
        let pairs = [
            ("provider", "anthropic"),
            ("base-url", "http://localhost:11434/v1"),
            ("model", "m"),
            ("api-key-env", "MY_KEY"),
            ("temperature", "0.5"),
            ("max-tokens", "100"),
            ("timeout", "30s"),
            ("requests-per-minute", "60"),
            ("max-concurrent", "2"),
            ("command", "llm"),
            ("max-retries", "1"),
        ];
        for (key, value) in pairs {
            assert!(Settings::KEYS.contains(&key));
            assert_eq!(
                settings
                    .set(key, value, "tasks.kdl")
                    .map_err(|e| e.to_string()),
                Ok(true),
                "{key}"
            );
        }
        assert_eq!(settings.provider, Some(ProviderKind::Anthropic));
        assert_eq!(settings.timeout, Some(Duration::from_secs(30)));
        assert_eq!(settings.max_retries, Some(1));
        assert_eq!(
            settings
                .set("prompt", "x", "tasks.kdl")
                .map_err(|e| e.to_string()),
            Ok(false)
        );
        assert!(matches!(
            settings.set("max-tokens", "lots", "tasks.kdl"),
            Err(Error::InvalidSetting { .. })
        ));

        let key = "sk-proj-Abc123def456ghi789jkl012mno345";
        let err = settings.set("api-key-env", key, "tasks.kdl").unwrap_err();
        assert!(!err.to_string().contains(key), "{err}");
        assert!(!format!("{err:?}").contains(key));
        let written = Settings {
            api_key_env: Some(key.to_owned()),
            model: Some("m".into()),
            ..Settings::default()
        };
        let err = written.resolve("t").unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(key));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        // The grammar of tasks.kdl's `timeout`: compound values, and no bare numbers.
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("3 weeks"), None);
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn settings_and_config_print_no_key() {
        // The key is not a field at all: only its variable's name is.
        let config = layer(None, Some("m"), None).resolve("t").unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            json.contains("\"api-key-env\":\"OPENAI_API_KEY\""),
            "{json}"
        );
        assert!(!format!("{config:?}").contains("sk-"));
        assert_eq!(
            config.cache_key_parts().get("model").map(String::as_str),
            Some("m")
        );
        assert!(!config.cache_key_parts().contains_key("timeout"));
    }
}
