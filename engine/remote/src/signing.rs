//! Trust: who wrote a remote entry, and whether this reader accepts it.
//!
//! In: `CLAB_CACHE_SIGNING_KEY` (base64 of a 32-byte ed25519 seed: a secret) and trusted
//! public keys (`cache { trusted-key "ed25519:…" }` in tasks.kdl, `CLAB_CACHE_TRUSTED_KEYS`,
//! comma-separated). Out: a [`SigningKey`] that signs manifests, its [`PublicKey`] printed as
//! one line `ed25519:<base64 of 32 bytes>` ([`public_key_line`], what `clab cache public-key`
//! prints), and [`TrustedKeys`] that decide whether a signer is accepted.
//!
//! Invariants:
//! - A `SigningKey` never prints its seed: `Debug` and `Display` show `****`, it does not
//!   implement `Serialize`, and the seed is zeroed when dropped (ed25519-dalek's `zeroize`).
//! - A [`KeyError`] names the variable and what is wrong with its text, never the text.
//! - Verification is `verify_strict` (no malleable signatures, no small-order keys).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::Signer as _;

/// The environment variable holding the signing seed.
pub const SIGNING_KEY_ENV: &str = "CLAB_CACHE_SIGNING_KEY";

/// The environment variable holding trusted public keys, comma-separated.
pub const TRUSTED_KEYS_ENV: &str = "CLAB_CACHE_TRUSTED_KEYS";

/// What a [`KeyError`] about a key of tasks.kdl's `cache { }` block names as its source.
pub const TRUSTED_KEY_SOURCE: &str = "trusted-key";

/// The prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// A key's text could not be used. Never holds the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    /// Not base64.
    #[error("{source_name} is not base64")]
    #[diagnostic(code(clab::remote::bad_key), help("{}", key_help(source_name)))]
    NotBase64 {
        /// Where the text came from (`CLAB_CACHE_SIGNING_KEY`, `trusted-key`, …).
        source_name: String,
    },

    /// Base64 of the wrong number of bytes.
    #[error("{source_name} holds {found} bytes; an ed25519 key is 32 bytes")]
    #[diagnostic(code(clab::remote::bad_key), help("{}", key_help(source_name)))]
    WrongLength {
        /// Where the text came from.
        source_name: String,
        /// How many bytes it decoded to.
        found: usize,
    },

    /// A public key without the `ed25519:` prefix.
    #[error("{source_name} does not start with `ed25519:`")]
    #[diagnostic(
        code(clab::remote::bad_key),
        help("public keys look like `ed25519:<base64>`, as `clab cache public-key` prints them")
    )]
    NoPrefix {
        /// Where the text came from.
        source_name: String,
    },

    /// 32 bytes that are not a point on the curve.
    #[error("{source_name} is not a valid ed25519 public key")]
    #[diagnostic(code(clab::remote::bad_key))]
    NotAPoint {
        /// Where the text came from.
        source_name: String,
    },
}

/// What a key read from `source_name` should look like: a signing key's seed, or a public
/// key as `clab cache public-key` prints it.
fn key_help(source_name: &str) -> &'static str {
    if source_name == SIGNING_KEY_ENV {
        "a signing key is 32 random bytes in base64: `head -c 32 /dev/urandom | base64`"
    } else {
        "public keys look like `ed25519:<base64 of 32 bytes>`, as `clab cache public-key` prints \
         them"
    }
}

impl KeyError {
    /// Where the text came from (`CLAB_CACHE_SIGNING_KEY`, `trusted-key`, …).
    pub fn source_name(&self) -> &str {
        match self {
            KeyError::NotBase64 { source_name }
            | KeyError::WrongLength { source_name, .. }
            | KeyError::NoPrefix { source_name }
            | KeyError::NotAPoint { source_name } => source_name,
        }
    }
}

fn decode_32(text: &str, source_name: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .map_err(|_| KeyError::NotBase64 {
            source_name: source_name.to_owned(),
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength {
        source_name: source_name.to_owned(),
        found: bytes.len(),
    })
}

/// The key a writer signs manifests with. Prints as `****`.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// Parses base64 of a 32-byte seed; `source_name` names where the text came from in errors.
    pub fn from_base64(text: &str, source_name: &str) -> Result<SigningKey, KeyError> {
        let seed = decode_32(text, source_name)?;
        Ok(SigningKey::from_seed(seed))
    }

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`, returning the 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

/// The public key of `CLAB_CACHE_SIGNING_KEY`'s text as one line, `ed25519:<base64>`: what
/// `clab cache public-key` prints (the cli reads the variable and passes its text).
pub fn public_key_line(signing_key_text: &str) -> Result<String, KeyError> {
    Ok(SigningKey::from_base64(signing_key_text, SIGNING_KEY_ENV)?
        .public_key()
        .to_string())
}

/// The public key of this process's `CLAB_CACHE_SIGNING_KEY` as one line, or `None` when the
/// variable is unset or empty.
pub fn public_key_from_env() -> Result<Option<String>, KeyError> {
    match std::env::var(SIGNING_KEY_ENV) {
        Ok(text) if !text.trim().is_empty() => public_key_line(&text).map(Some),
        _ => Ok(None),
    }
}

/// An ed25519 public key, printed and parsed as `ed25519:<base64 of 32 bytes>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses `ed25519:<base64>`; `source_name` names where the text came from in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<PublicKey, KeyError> {
        let rest =
            text.trim()
                .strip_prefix(PUBLIC_KEY_PREFIX)
                .ok_or_else(|| KeyError::NoPrefix {
                    source_name: source_name.to_owned(),
                })?;
        let bytes = decode_32(rest, source_name)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::NotAPoint {
                source_name: source_name.to_owned(),
            })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether `signature` (64 bytes) signs `message` with this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.0.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::parse(text, "public key")
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &PublicKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &PublicKey) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// The public keys a reader accepts entries from. Empty: any entry is accepted (a signed one
/// still has to carry a valid signature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(BTreeSet<PublicKey>);

impl TrustedKeys {
    /// Parses the keys of tasks.kdl (`trusted-key`) and of `CLAB_CACHE_TRUSTED_KEYS`
    /// (comma-separated; blanks ignored).
    pub fn parse(config: &[String], env: Option<&str>) -> Result<TrustedKeys, KeyError> {
        let mut keys = BTreeSet::new();
        for text in config {
            keys.insert(PublicKey::parse(text, TRUSTED_KEY_SOURCE)?);
        }
        for text in env
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.trim().is_empty())
        {
            keys.insert(PublicKey::parse(text, TRUSTED_KEYS_ENV)?);
        }
        Ok(TrustedKeys(keys))
    }

    /// A set of these keys.
    pub fn of(keys: impl IntoIterator<Item = PublicKey>) -> TrustedKeys {
        TrustedKeys(keys.into_iter().collect())
    }

    /// Whether no key is trusted (every entry is accepted).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` is one of them.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.0.contains(key)
    }

    /// The keys, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn public_key_round_trips_as_one_line() {
        let line = public_key_line(SEED).unwrap();
        assert!(
            line.starts_with("ed25519:") && !line.contains('\n'),
            "{line}"
        );
        assert_eq!(line.len(), "ed25519:".len() + 44);
        let parsed: PublicKey = line.parse().unwrap();
        assert_eq!(parsed.to_string(), line);
        // Whitespace around a pasted key is ignored; padding may be left off.
        assert_eq!(
            PublicKey::parse(&format!("  {}\n", line.trim_end_matches('=')), "x").unwrap(),
            parsed
        );
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let key = SigningKey::from_base64(SEED, SIGNING_KEY_ENV).unwrap();
        let other = SigningKey::from_seed([7; 32]);
        let signature = key.sign(b"message");
        assert!(key.public_key().verify(b"message", &signature));
        assert!(!key.public_key().verify(b"massage", &signature));
        assert!(!other.public_key().verify(b"message", &signature));
        assert!(!key.public_key().verify(b"message", &signature[..63]));
    }

    #[test]
    fn signing_key_never_prints_its_seed() {
        let key = SigningKey::from_base64(SEED, SIGNING_KEY_ENV).unwrap();
        assert_eq!(format!("{key} {key:?}"), "**** ****");
    }

    #[test]
    fn bad_key_text_is_a_typed_error_without_the_text() {
        let cases = [
            ("c2VjcmV0LXNlZWQtdGhhdC1pcy10b28tc2hvcnQ=", "holds 29 bytes"),
            ("not base64 at all: secret!", "is not base64"),
            ("", "holds 0 bytes"),
        ];
        for (text, expected) in cases {
            let err = SigningKey::from_base64(text, SIGNING_KEY_ENV).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(expected), "{shown}");
            assert!(shown.contains(SIGNING_KEY_ENV), "{shown}");
            if !text.is_empty() {
                assert!(!shown.contains(text), "{shown}");
            }
        }
        let err = PublicKey::parse(SEED, "trusted-key").unwrap_err();
        assert!(matches!(err, KeyError::NoPrefix { .. }), "{err:?}");
    }

    #[test]
    fn trusted_keys_come_from_config_and_env() {
        let a = SigningKey::from_seed([1; 32]).public_key();
        let b = SigningKey::from_seed([2; 32]).public_key();
        let c = SigningKey::from_seed([3; 32]).public_key();
        let keys = TrustedKeys::parse(&[a.to_string()], Some(&format!("{b}, ,{a}"))).unwrap();
        assert!(keys.contains(&a) && keys.contains(&b) && !keys.contains(&c));
        assert_eq!(keys.iter().count(), 2);
        assert!(TrustedKeys::parse(&[], None).unwrap().is_empty());
        assert!(TrustedKeys::parse(&[], Some("ed25519:xx")).is_err());
    }
}
