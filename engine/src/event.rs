//! Events: the engine's only way to reach a terminal.
