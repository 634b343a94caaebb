//! `Secret`: a credential read from the environment (a token, a password, a signing seed).
//!
//! In: the text of an environment variable. Out: a value whose `Debug` and `Display` print
//! `****`, which does not implement `Serialize`, and whose bytes are reachable only through
//! [`Secret::expose`]. [`Scrubber`] replaces every known secret in a text with `****`, for
//! error causes that come from libraries (an HTTP client that prints a URL, a Redis error that
//! prints its connection string).

use std::fmt;

/// What a secret prints as.
pub const REDACTED: &str = "****";

/// A credential: never printed, logged, serialized or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The value, for the one place that sends it (a header, a signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Replaces known secret values in texts that libraries produced.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    /// Remembers `value` (values shorter than 4 characters are not worth hiding: they would
    /// blank out ordinary words, and cannot be secrets worth the name).
    pub fn add(&mut self, value: &str) {
        if value.len() >= 4 && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_owned());
            // Longest first, so that a secret containing another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every known secret replaced by `****`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("hunter2-token");
        assert_eq!(format!("{secret} {secret:?}"), "**** ****");
        assert_eq!(secret.expose(), "hunter2-token");
    }

    #[test]
    fn scrubber_replaces_longest_first() {
        let mut scrubber = Scrubber::default();
        scrubber.add("abcd");
        scrubber.add("abcdefgh");
        scrubber.add("x");
        assert_eq!(
            scrubber.scrub("token abcdefgh and abcd and x"),
            "token **** and **** and x"
        );
    }
}
