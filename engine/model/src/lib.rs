//! clab's shared model: what every stage of the engine needs and no stage owns.
//!
//! # Purpose
//!
//! The leaves of the engine's crate graph: source files and the spans diagnostics point at,
//! the duration grammar of `tasks.kdl`, the one way clab writes a file, and the record of an
//! LLM call that the LLM layer makes and the store keeps ([`llm_call::LlmCall`]).
//!
//! # In
//!
//! Text read from disk ([`source::SourceFile::read`]), duration strings such as `1h30m`,
//! bytes to write.
//!
//! # Out
//!
//! [`source::SourceFile`] and [`source::Spanned`] values that carry their byte ranges to the
//! last diagnostic, [`std::time::Duration`]s, files replaced whole.
//!
//! # Invariants
//!
//! Depends on no other clab crate. A file written through [`atomic_write`] is seen by readers
//! with its old contents or its new, never half of either.

pub mod atomic_write;
pub mod duration;
pub mod llm_call;
pub mod phase;
pub mod source;
pub mod source_text;
#[cfg(feature = "test-support")]
pub mod test_render;
