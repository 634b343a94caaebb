//! `Digest`: a 32-byte blake3 content hash, the address of every blob and input.
//!
//! In: bytes, a file, or a 64-character lowercase hex string. Out: a `Digest` that prints and
//! serializes as lowercase hex (64 characters) and orders bytewise. Two files with the same
//! `Digest` hold the same bytes; nothing else (path, mode, mtime) enters it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A blake3 hash of some content, printed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hashes `bytes` in memory.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The digest of no bytes at all: the log of a task that printed nothing.
    pub fn empty() -> Digest {
        static EMPTY: std::sync::OnceLock<Digest> = std::sync::OnceLock::new();
        *EMPTY.get_or_init(|| Digest::of_bytes(b""))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex characters; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        if hex.len() != 64 {
            return None;
        }
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Digest(*h.as_bytes()))
    }

    /// Builds a digest from a slice that must be exactly 32 bytes long (as read from SQLite).
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        <[u8; 32]>::try_from(bytes).ok().map(Digest)
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Digest {
        Digest(*hash.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// The error of parsing a `Digest` from text.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{text}` is not a blake3 digest (64 hex characters)")]
#[diagnostic(code(clab::store::bad_digest))]
pub struct BadDigest {
    /// The text that failed to parse.
    pub text: String,
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Digest, BadDigest> {
        Digest::from_hex(text).ok_or_else(|| BadDigest {
            text: text.to_owned(),
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text).ok_or_else(|| serde::de::Error::custom(BadDigest { text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_serde() {
        let d = Digest::of_bytes(b"hello");
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(Digest::from_hex(&hex), Some(d));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(Digest::from_hex("abc").is_none());
        assert!("zz".repeat(32).parse::<Digest>().is_err());
        assert!(serde_json::from_str::<Digest>("\"00\"").is_err());
        assert!(Digest::from_slice(&[0u8; 31]).is_none());
    }
}
