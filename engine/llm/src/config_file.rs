//! The user's config file, `~/.config/clab/config.toml`: the lowest settings layer.
//!
//! Format (every key optional, keys as in `tasks.kdl`):
//!
//! ```toml
//! [llm]
//! provider = "openai"              # openai | anthropic | command
//! base-url = "http://localhost:11434/v1"
//! model = "qwen2.5-coder:7b"
//! api-key-env = "OPENAI_API_KEY"   # the variable's name; a key itself is refused
//! temperature = 0.2
//! max-tokens = 2000
//! timeout = "60s"
//! requests-per-minute = 60
//! max-concurrent = 4
//! max-retries = 4
//! command = "llm -m gpt-4o-mini"   # for provider = "command"
//!
//! [llm.profiles.fast]              # used when a task names profile `fast`
//! model = "gpt-4o-mini"
//! ```
//!
//! Where: `$CLAB_CONFIG_DIR/config.toml`, else `$XDG_CONFIG_HOME/clab/config.toml`, else
//! `$HOME/.config/clab/config.toml` ([`ConfigFile::path`]). A missing file is an empty config.
//! Unknown keys are errors (so `api-key = "sk-…"` is refused, not silently ignored).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use miette::{NamedSource, SourceSpan};
use serde::Deserialize;

use clab_model::duration::parse_duration;

use super::{Error, ProviderKind, Settings, error::ConfigParseError};

/// The parsed user config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    /// The `[llm]` table.
    pub llm: Settings,
    /// `[llm.profiles.NAME]` tables.
    pub profiles: BTreeMap<String, Settings>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    llm: RawLlm,
}

/// Declares a settings table with the eleven settings keys plus `$extra` fields. serde's
/// `deny_unknown_fields` does not combine with `flatten`, so `[llm]` (which also holds
/// `profiles`) and a profile table are two structs with the same keys.
macro_rules! settings_table {
    ($name:ident { $($extra:tt)* }) => {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        struct $name {
            provider: Option<String>,
            base_url: Option<String>,
            model: Option<String>,
            api_key_env: Option<String>,
            temperature: Option<f64>,
            max_tokens: Option<u32>,
            timeout: Option<String>,
            requests_per_minute: Option<u32>,
            max_concurrent: Option<u32>,
            command: Option<String>,
            max_retries: Option<u32>,
            $($extra)*
        }
    };
}

settings_table!(RawLlm {
    #[serde(default)]
    profiles: BTreeMap<String, RawSettings>,
});

settings_table!(RawSettings {});

impl RawLlm {
    /// The `[llm]` table's own settings and its profiles.
    fn split(self) -> (RawSettings, BTreeMap<String, RawSettings>) {
        let settings = RawSettings {
            provider: self.provider,
            base_url: self.base_url,
            model: self.model,
            api_key_env: self.api_key_env,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            timeout: self.timeout,
            requests_per_minute: self.requests_per_minute,
            max_concurrent: self.max_concurrent,
            command: self.command,
            max_retries: self.max_retries,
        };
        (settings, self.profiles)
    }
}

impl ConfigFile {
    /// Where the config file lives, from `lookup`ed variables: `CLAB_CONFIG_DIR`, then
    /// `XDG_CONFIG_HOME`, then `HOME`; `None` when none is set.
    pub fn path(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = var("CLAB_CONFIG_DIR") {
            return Some(dir.join("config.toml"));
        }
        if let Some(dir) = var("XDG_CONFIG_HOME") {
            return Some(dir.join("clab").join("config.toml"));
        }
        var("HOME").map(|home| home.join(".config").join("clab").join("config.toml"))
    }

    /// Read and parse `path`; a file that does not exist is an empty config.
    pub fn load(path: &Path) -> Result<ConfigFile, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => ConfigFile::parse(path, &text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(source) => Err(Error::ConfigRead {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parse config text; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, Error> {
        let raw: RawFile = toml::from_str(text).map_err(|err| {
            Error::ConfigParse(Box::new(ConfigParseError {
                path: path.to_owned(),
                message: err.message().to_owned(),
                source_code: NamedSource::new(path.display().to_string(), text.to_owned()),
                span: err
                    .span()
                    .map(|range| SourceSpan::from(range.start..range.end)),
            }))
        })?;
        let origin = format!("`{}`", path.display());
        let (settings, profiles) = raw.llm.split();
        let llm = convert(settings, &origin)?;
        let profiles = profiles
            .into_iter()
            .map(|(name, raw)| {
                let origin = format!("`{}` (profile `{name}`)", path.display());
                convert(raw, &origin).map(|settings| (name, settings))
            })
            .collect::<Result<_, _>>()?;
        Ok(ConfigFile { llm, profiles })
    }

    /// This file's layer: the named profile (when it exists here) over the `[llm]` table.
    pub fn layer(&self, profile: Option<&str>) -> Settings {
        let profile = profile
            .and_then(|name| self.profiles.get(name))
            .cloned()
            .unwrap_or_default();
        profile.merge(self.llm.clone())
    }
}

fn convert(raw: RawSettings, origin: &str) -> Result<Settings, Error> {
    let provider = match raw.provider {
        Some(name) => Some(name.parse::<ProviderKind>().map_err(|err| match err {
            Error::UnknownProvider { name, help } => Error::InvalidSetting {
                field: "provider".to_owned(),
                value: name,
                origin: origin.to_owned(),
                help,
            },
            other => other,
        })?),
        None => None,
    };
    let timeout = match raw.timeout {
        Some(text) => Some(parse_duration(&text).ok_or_else(|| Error::InvalidSetting {
            field: "timeout".to_owned(),
            value: text.clone(),
            origin: origin.to_owned(),
            help: "write a duration such as `30s`, `500ms` or `2m`".to_owned(),
        })?),
        None => None,
    };
    Ok(Settings {
        provider,
        base_url: raw.base_url,
        model: raw.model,
        api_key_env: raw.api_key_env,
        temperature: raw.temperature,
        max_tokens: raw.max_tokens,
        timeout,
        requests_per_minute: raw.requests_per_minute,
        max_concurrent: raw.max_concurrent,
        command: raw.command,
        max_retries: raw.max_retries,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SAMPLE: &str = r#"
[llm]
provider = "openai"
base-url = "http://localhost:11434/v1"
model = "qwen2.5-coder:7b"
timeout = "45s"
max-concurrent = 2

[llm.profiles.fast]
model = "tiny"
temperature = 0.0
"#;

    #[test]
    fn parses_table_and_profiles() {
        let file = ConfigFile::parse(Path::new("config.toml"), SAMPLE).unwrap();
        assert_eq!(file.llm.provider, Some(ProviderKind::OpenAi));
        assert_eq!(file.llm.timeout, Some(Duration::from_secs(45)));
        assert_eq!(file.llm.max_concurrent, Some(2));
        let fast = file.layer(Some("fast"));
        assert_eq!(fast.model.as_deref(), Some("tiny"));
        assert_eq!(fast.temperature, Some(0.0));
        assert_eq!(fast.base_url.as_deref(), Some("http://localhost:11434/v1"));
        assert_eq!(
            file.layer(Some("missing")).model.as_deref(),
            Some("qwen2.5-coder:7b")
        );
        assert_eq!(file.layer(None).model.as_deref(), Some("qwen2.5-coder:7b"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let key =
            ConfigFile::parse(Path::new("c.toml"), "[llm]\napi-key = \"sk-123\"\n").unwrap_err();
        assert!(matches!(key, Error::ConfigParse(_)), "{key:?}");
        assert!(!key.to_string().contains("sk-123"), "{key}");
        let in_profile =
            ConfigFile::parse(Path::new("c.toml"), "[llm.profiles.fast]\nmodle = \"x\"\n")
                .unwrap_err();
        assert!(
            matches!(in_profile, Error::ConfigParse(_)),
            "{in_profile:?}"
        );
        assert!(in_profile.to_string().contains("modle"), "{in_profile}");
        insta::assert_snapshot!(
            "config_unknown_key",
            crate::error::render::graphical(&in_profile)
        );
        let timeout =
            ConfigFile::parse(Path::new("c.toml"), "[llm]\ntimeout = \"later\"\n").unwrap_err();
        assert!(
            matches!(timeout, Error::InvalidSetting { .. }),
            "{timeout:?}"
        );
        let provider =
            ConfigFile::parse(Path::new("c.toml"), "[llm]\nprovider = \"gemini\"\n").unwrap_err();
        assert!(
            matches!(provider, Error::InvalidSetting { .. }),
            "{provider:?}"
        );
    }

    #[test]
    fn path_honours_override_variables() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let all = lookup(&[
            ("CLAB_CONFIG_DIR", "/c"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            ConfigFile::path(&all),
            Some(PathBuf::from("/c/config.toml"))
        );
        let xdg = lookup(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            ConfigFile::path(&xdg),
            Some(PathBuf::from("/x/clab/config.toml"))
        );
        let home = lookup(&[("HOME", "/h")]);
        assert_eq!(
            ConfigFile::path(&home),
            Some(PathBuf::from("/h/.config/clab/config.toml"))
        );
        assert_eq!(ConfigFile::path(&lookup(&[])), None);
    }

    #[test]
    fn load_missing_file_is_empty_and_real_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());
        std::fs::write(&path, SAMPLE).unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().llm.model.as_deref(),
            Some("qwen2.5-coder:7b")
        );
    }
}
