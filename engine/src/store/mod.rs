//! The cache store: `cache.db` (SQLite) and the content-addressed blob store.
