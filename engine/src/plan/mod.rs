//! `Graph` + store → `Plan`: per node a cache key and whether it is fresh.

pub mod inputs;
pub mod stat_cache;
