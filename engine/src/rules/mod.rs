//! Cursor rule files (`*.mdc`): lenient parsing, precise validation, compilation into check
//! nodes and LLM context.
