//! `BoundedBody`: an HTTP response body gathered chunk by chunk under a byte bound, for the
//! reqwest backends ([`super::http`], [`super::turbo`]) and OpenDAL's streams ([`super::dal`]).
//!
//! In: the response's `Content-Length` (if any), the bound, then the body's chunks as they
//! arrive. Out: the whole body as one [`Bytes`], or [`Exceeded`] as soon as the bound is
//! broken — before a byte of the body is read when `Content-Length` already says so, else at
//! the first chunk that takes the total past it (an endless chunked body stops there).
//!
//! Invariants:
//! - At most the bound plus one chunk is ever held.
//! - A body that arrives as one chunk is returned as that chunk: no copy.
//! - Otherwise the buffer is allocated once, sized from `Content-Length` (never more than the
//!   bound, nor than [`PRESIZE_MAX`]: a lying `Content-Length` under a huge bound cannot make
//!   clab reserve gigabytes), so a body of known length is copied once and never regrown.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{BackendError, ObjectName, reqwest_error, within_idle};
use crate::secret::Scrubber;

/// The most a buffer is sized to in advance; past it, it grows as bytes really arrive.
pub(crate) const PRESIZE_MAX: u64 = 64 * 1024 * 1024;

/// The body went past its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded;

/// A body being gathered under a bound.
#[derive(Debug)]
pub(crate) struct BoundedBody {
    max: u64,
    len: u64,
    /// The buffer's size once a second chunk comes.
    capacity: usize,
    /// The first chunk, kept as it is until a second one comes.
    first: Option<Bytes>,
    buffer: BytesMut,
}

impl BoundedBody {
    /// A body of `content_length` bytes (if the server said) that may hold `max`; [`Exceeded`]
    /// at once if the server says it holds more.
    pub(crate) fn new(content_length: Option<u64>, max: u64) -> Result<BoundedBody, Exceeded> {
        if content_length.is_some_and(|len| len > max) {
            return Err(Exceeded);
        }
        let capacity = content_length.unwrap_or(0).min(max).min(PRESIZE_MAX);
        Ok(BoundedBody {
            max,
            len: 0,
            capacity: usize::try_from(capacity).unwrap_or(0),
            first: None,
            buffer: BytesMut::new(),
        })
    }

    /// Adds the next chunk; [`Exceeded`] if the body now holds more than the bound.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Result<(), Exceeded> {
        self.len = self.len.saturating_add(chunk.len() as u64);
        if self.len > self.max {
            return Err(Exceeded);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if self.first.is_none() && self.buffer.is_empty() {
            self.first = Some(chunk);
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            let wanted = usize::try_from(self.len).unwrap_or(usize::MAX);
            self.buffer = BytesMut::with_capacity(self.capacity.max(wanted));
            self.buffer.extend_from_slice(&first);
        }
        self.buffer.extend_from_slice(&chunk);
        Ok(())
    }

    /// The whole body.
    pub(crate) fn finish(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => self.buffer.freeze(),
        }
    }
}

/// The body of `response` (a successful answer for `name`), read under `max`:
/// [`BackendError::TooLarge`] when it holds more, a transport error when it breaks off,
/// [`BackendError::TimedOut`] when nothing comes for `idle`.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    name: &ObjectName,
    max: u64,
    idle: Duration,
    scrubber: &Scrubber,
) -> Result<Bytes, BackendError> {
    let too_large = |_: Exceeded| BackendError::too_large(name, max);
    let mut body = BoundedBody::new(response.content_length(), max).map_err(too_large)?;
    loop {
        let next = async {
            response
                .chunk()
                .await
                .map_err(|e| reqwest_error(e, scrubber))
        };
        match within_idle(idle, "GET", name, next).await? {
            Some(chunk) => body.push(chunk).map_err(too_large)?,
            None => return Ok(body.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(content_length: Option<u64>, max: u64, chunks: &[&[u8]]) -> Result<Bytes, Exceeded> {
        let mut body = BoundedBody::new(content_length, max)?;
        for chunk in chunks {
            body.push(Bytes::copy_from_slice(chunk))?;
        }
        Ok(body.finish())
    }

    #[test]
    fn a_body_within_its_bound_comes_back_whole() {
        assert_eq!(
            gather(Some(6), 6, &[b"ab", b"cd", b"ef"]).unwrap(),
            "abcdef"
        );
        assert_eq!(gather(None, 6, &[b"abc", b"", b"def"]).unwrap(), "abcdef");
        assert_eq!(gather(Some(0), 0, &[]).unwrap(), "");
        assert_eq!(gather(None, 10, &[b""]).unwrap(), "");
    }

    #[test]
    fn a_body_past_its_bound_is_refused_as_soon_as_it_is_known() {
        // Content-Length says so: refused before any chunk.
        assert_eq!(BoundedBody::new(Some(7), 6).err(), Some(Exceeded));
        // Chunked: refused at the chunk that crosses the bound, whatever follows.
        let mut body = BoundedBody::new(None, 6).unwrap();
        body.push(Bytes::from_static(b"abcd")).unwrap();
        assert_eq!(body.push(Bytes::from_static(b"efg")), Err(Exceeded));
        assert_eq!(gather(None, 6, &[b"abcdefg"]), Err(Exceeded));
        assert_eq!(gather(None, 0, &[b"a"]), Err(Exceeded));
    }

    #[test]
    fn one_chunk_is_not_copied_and_more_are_gathered_into_one_presized_buffer() {
        let chunk = Bytes::from(vec![1u8; 1000]);
        let mut body = BoundedBody::new(Some(1000), 1000).unwrap();
        body.push(chunk.clone()).unwrap();
        let whole = body.finish();
        assert_eq!(whole.as_ptr(), chunk.as_ptr(), "the chunk itself");

        let mut body = BoundedBody::new(Some(300_000), 1 << 20).unwrap();
        for _ in 0..30 {
            body.push(Bytes::from(vec![2u8; 10_000])).unwrap();
        }
        assert_eq!(body.buffer.capacity(), 300_000, "sized once, never regrown");
        assert_eq!(body.finish().len(), 300_000);
    }

    #[test]
    fn a_huge_content_length_does_not_reserve_its_size() {
        let mut body = BoundedBody::new(Some(u64::MAX / 2), u64::MAX).unwrap();
        body.push(Bytes::from_static(b"a")).unwrap();
        body.push(Bytes::from_static(b"b")).unwrap();
        assert!(body.buffer.capacity() as u64 <= PRESIZE_MAX);
        assert_eq!(body.finish(), "ab");
    }
}
