//! `AtSetting`: a remote cache configuration error shown at the value of tasks.kdl's
//! `cache { }` block it is about (`remote "…"`, a `trusted-key "…"`), with the error's own
//! code and help. An error about the environment (`CLAB_REMOTE_CACHE`, …) has no place in
//! the file and stays as it is.

use std::fmt;

use clab_model::source::SourceText;
use clab_remote::signing::TRUSTED_KEY_SOURCE;
use clab_remote::{ConfigError, PublicKey, REMOTE_CACHE_ENV};
use clab_syntax::{CacheDecl, TaskFile};
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// `error` at `span` of the file.
#[derive(Debug)]
pub(super) struct AtSetting {
    error: ConfigError,
    src: NamedSource<SourceText>,
    span: SourceSpan,
}

/// `error` as a report: at the setting of `file` it is about, when it is about one.
pub(super) fn report(error: ConfigError, file: &TaskFile) -> miette::Report {
    match file
        .cache
        .as_ref()
        .and_then(|decl| setting_of(&error, decl))
    {
        Some(span) => miette::Report::new(AtSetting {
            error,
            src: file.source.source_code(),
            span,
        }),
        None => miette::Report::new(error),
    }
}

/// Where in `decl` the value `error` is about is written, if it is written there.
fn setting_of(error: &ConfigError, decl: &CacheDecl) -> Option<SourceSpan> {
    let remote = || decl.remote.as_ref().map(|url| url.span);
    let url_from_env = std::env::var(REMOTE_CACHE_ENV).is_ok_and(|v| !v.trim().is_empty());
    match error {
        ConfigError::BadUrl { source_name, .. } if *source_name == "tasks.kdl" => remote(),
        ConfigError::CredentialsInConfig => remote(),
        ConfigError::UnsupportedScheme { .. } | ConfigError::Backend { .. } if !url_from_env => {
            remote()
        }
        ConfigError::Key(key) if key.source_name() == TRUSTED_KEY_SOURCE => decl
            .trusted_keys
            .iter()
            .find(|key| PublicKey::parse(&key.value, TRUSTED_KEY_SOURCE).is_err())
            .map(|key| key.span),
        _ => None,
    }
}

impl fmt::Display for AtSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for AtSetting {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Diagnostic for AtSetting {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.code()
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error.help()
    }

    fn severity(&self) -> Option<miette::Severity> {
        self.error.severity()
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_owned()),
            self.span,
        ))))
    }
}
