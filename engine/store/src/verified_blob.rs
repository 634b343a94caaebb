//! `VerifiedBlob`: bytes in memory that are known to hash to their digest.
//!
//! In: bytes (a downloaded body) and the digest they should have. Out: a `VerifiedBlob`, made
//! only by hashing the bytes and finding that digest, which the CAS can store
//! ([`Cas::put_verified`](crate::Cas::put_verified)) and an output can be restored from
//! ([`Store::restore_outputs_from`](crate::Store::restore_outputs_from)) without reading or
//! hashing them again.
//!
//! Invariant: `Digest::of_bytes(blob.bytes()) == *blob.digest()` for every value of the type
//! (the fields are private and the bytes immutable).

use bytes::Bytes;

use crate::digest::Digest;

/// Bytes that hashed to their digest when made (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBlob {
    digest: Digest,
    bytes: Bytes,
}

impl VerifiedBlob {
    /// `bytes` as a verified blob if they hash to `digest`; else the digest they hash to.
    pub fn verify(bytes: Bytes, digest: &Digest) -> Result<VerifiedBlob, Digest> {
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(actual);
        }
        Ok(VerifiedBlob {
            digest: actual,
            bytes,
        })
    }

    /// `bytes`, which the caller has just hashed to `digest` (`Cas::read_verified`).
    pub(crate) fn hashed(digest: Digest, bytes: Bytes) -> VerifiedBlob {
        debug_assert_eq!(Digest::of_bytes(&bytes), digest);
        VerifiedBlob { digest, bytes }
    }

    /// The digest the bytes hash to.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bytes_that_hash_to_the_digest_are_verified() {
        let digest = Digest::of_bytes(b"alpha");
        let blob = VerifiedBlob::verify(Bytes::from_static(b"alpha"), &digest).unwrap();
        assert_eq!(
            (blob.digest(), blob.bytes(), blob.len()),
            (&digest, &b"alpha"[..], 5)
        );
        assert!(!blob.is_empty());
        assert_eq!(
            VerifiedBlob::verify(Bytes::from_static(b"alphA"), &digest),
            Err(Digest::of_bytes(b"alphA"))
        );
    }
}
