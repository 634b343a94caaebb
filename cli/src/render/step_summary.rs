//! `$GITHUB_STEP_SUMMARY`: when GitHub Actions gives a step summary file, a Markdown table of
//! the run is appended to it — each task, how it ended, its time, and why it ran.

use clab_exec::event::{Event, Reporter, Status};
use std::{collections::HashMap, path::PathBuf, sync::Mutex};

use super::{duration, summary_line};

/// Collects the run and appends the table when it finishes.
pub(crate) struct StepSummary {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    reasons: HashMap<String, String>,
    rows: Vec<String>,
}

impl StepSummary {
    /// The reporter, when `GITHUB_STEP_SUMMARY` names a file.
    pub(crate) fn from_env() -> Option<StepSummary> {
        let path = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())?;
        Some(StepSummary {
            path: PathBuf::from(path),
            state: Mutex::new(State::default()),
        })
    }
}

/// A table cell: no pipes or newlines.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Reporter for StepSummary {
    fn report(&self, event: &Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::TaskStarted {
                task,
                reason: Some(reason),
            } => {
                state.reasons.insert(task.clone(), reason.to_string());
            }
            Event::TaskFinished {
                task,
                status,
                duration_ms,
                ..
            } => {
                let (result, time) = match status {
                    Status::Succeeded => ("✅ ran".to_owned(), duration(*duration_ms)),
                    Status::Cached { .. } => (
                        "⚡ cached".to_owned(),
                        format!("{} saved", duration(*duration_ms)),
                    ),
                    Status::Failed { message } => (format!("❌ {message}"), duration(*duration_ms)),
                    Status::Interrupted => ("⏹ interrupted".to_owned(), duration(*duration_ms)),
                };
                let why = state.reasons.remove(task).unwrap_or_default();
                state.rows.push(format!(
                    "| `{}` | {} | {} | {} |",
                    cell(task),
                    cell(&result),
                    time,
                    cell(&why)
                ));
            }
            Event::TaskSkipped { task, reason } => {
                state.rows.push(format!(
                    "| `{}` | ⏭ skipped | | {} |",
                    cell(task),
                    cell(reason)
                ));
            }
            Event::RunFinished(summary) => {
                let mut text = std::fs::read_to_string(&self.path).unwrap_or_default();
                text.push_str(
                    "### clab run\n\n| task | result | time | why it ran |\n|---|---|---|---|\n",
                );
                for row in &state.rows {
                    text.push_str(row);
                    text.push('\n');
                }
                text.push_str(&format!("\n**{}**\n\n", summary_line(summary)));
                if let Err(err) =
                    clab_model::atomic_write::write_atomic(&self.path, text.as_bytes())
                {
                    eprintln!(
                        "warning: cannot write the step summary `{}`: {err}",
                        self.path.display()
                    );
                }
            }
            _ => {}
        }
    }
}
