//! The engine's error type, wrapping each stage's error.
