//! `tasks.kdl` → [`TaskFile`]: the typed model, every value spanned, no semantic checks.
