//! `TaskFile` + rules → `Graph`: names resolved, for-each expanded, globs compiled, acyclic.
