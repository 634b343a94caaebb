//! API keys: the [`Secret`] newtype and a detector for keys pasted where they do not belong.
//!
//! A [`Secret`] prints as `****` in `Debug` and `Display`, does not implement `Serialize`, and
//! gives its text only to code inside the crate ([`Secret::expose`]), which is where a
//! provider builds its `Authorization` or `x-api-key` header. [`looks_like_api_key`] lets the
//! `tasks.kdl` validator reject a literal key written in the file.

use std::fmt;

/// Moved down to the syntax stage, which rejects a literal key written in `tasks.kdl`.
pub(crate) use clab_syntax::looks_like_api_key;

/// How long a key must be for parts of it to be redacted too (see [`Secret::redact`]).
pub(crate) const PARTIAL_KEY_LEN: usize = 16;

/// The shortest run of a key's characters that [`Secret::redact`] takes for an echo of it.
pub(crate) const PARTIAL_ECHO_LEN: usize = 6;

/// An API key (or any credential): never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Read a credential from the environment variable `name` through `lookup`; an unset or
    /// empty variable gives `None`.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Secret> {
        lookup(name)
            .filter(|value| !value.trim().is_empty())
            .map(|value| Secret(value.trim().to_owned()))
    }

    /// The key itself: only for building a request header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `****` (servers sometimes echo the
    /// key they were given in their error message) — and, for a key of `PARTIAL_KEY_LEN`
    /// characters or more, every run of `PARTIAL_ECHO_LEN` or more characters that is also
    /// a run of the key: a tool that prints `key is sk-proj-AbC…` or the key's last eight
    /// characters leaks them as surely (issue 18).
    pub fn redact(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_owned();
        }
        let text = text.replace(&self.0, "****");
        if self.0.chars().count() < PARTIAL_KEY_LEN {
            return text;
        }
        let key: Vec<char> = self.0.chars().collect();
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            let longest = (0..key.len())
                .map(|start| {
                    key[start..]
                        .iter()
                        .zip(&chars[i..])
                        .take_while(|(a, b)| a == b)
                        .count()
                })
                .max()
                .unwrap_or(0);
            if longest >= PARTIAL_ECHO_LEN {
                out.push_str("****");
                i += longest;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("sk-live-1234567890abcdef");
        assert_eq!(secret.to_string(), "****");
        assert_eq!(format!("{secret:?}"), "Secret(****)");
        assert_eq!(format!("{secret:#?}"), "Secret(****)");
        assert_eq!(secret.expose(), "sk-live-1234567890abcdef");
    }

    #[test]
    fn from_env_trims_and_ignores_empty() {
        let lookup = |name: &str| match name {
            "SET" => Some(" key-value \n".to_owned()),
            "EMPTY" => Some("  ".to_owned()),
            _ => None,
        };
        assert_eq!(
            Secret::from_env(&lookup, "SET").map(|s| s.expose().to_owned()),
            Some("key-value".to_owned())
        );
        assert!(Secret::from_env(&lookup, "EMPTY").is_none());
        assert!(Secret::from_env(&lookup, "UNSET").is_none());
    }

    #[test]
    fn partial_echoes_of_a_key_are_redacted_too_issue_18() {
        let secret = Secret::new("sk-proj-AbCdEfGh1234567890XyZ");
        assert_eq!(
            secret.redact("debug: key is sk-proj-AbC… (ends 7890XyZ), user sk-1"),
            "debug: key is ****… (ends ****), user sk-1"
        );
        // Five characters in a row are not enough to be taken for the key.
        assert_eq!(secret.redact("AbCdE and 12345"), "AbCdE and 12345");
        // A short key is redacted whole only.
        assert_eq!(Secret::new("abcd1234").redact("abcd123"), "abcd123");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let secret = Secret::new("sk-abcdef123456");
        assert_eq!(
            secret.redact("bad key sk-abcdef123456 (sk-abcdef123456)"),
            "bad key **** (****)"
        );
    }
}
