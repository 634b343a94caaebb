//! `Plan` → outcomes: the scheduler, processes, LLM calls and test reports.

pub mod coverage;
pub mod junit;
pub mod llm;
pub mod process;
pub mod runner;
pub mod scheduler;
