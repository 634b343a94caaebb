//! Line-oriented output for CI logs and pipes: `[task] line` as tasks print, one status line
//! per finished task. Under GitHub Actions each task's output is folded into a group and
//! failures become `::error` annotations, and warnings `::warning` ones.

use std::{collections::HashMap, io::Write, sync::Mutex};

use clab_exec::event::{Event, Reporter, Status};
use console::style;

use super::{
    annotation::{Annotation, Level},
    duration, summary_line,
};

/// The plain reporter.
pub(crate) struct Plain {
    quiet: bool,
    github: bool,
    /// Why each running task runs, for its final line.
    reasons: Mutex<HashMap<String, String>>,
    /// Under GitHub Actions: output held back until the task finishes, to print as a group.
    held: Mutex<HashMap<String, Vec<String>>>,
}

impl Plain {
    /// A reporter that prints only failures and the summary when `quiet`.
    pub(crate) fn new(quiet: bool, github: bool) -> Self {
        Plain {
            quiet,
            github,
            reasons: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn print(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not abort the run; the tasks still finish and are cached.
        let _ = writeln!(out, "{text}");
    }
}

impl Reporter for Plain {
    fn report(&self, event: &Event) {
        match event {
            Event::TaskStarted {
                task,
                reason: Some(reason),
            } => {
                if let Ok(mut reasons) = self.reasons.lock() {
                    reasons.insert(task.clone(), reason.to_string());
                }
                if !self.quiet && !self.github {
                    self.print(&format!(
                        "{} runs: {reason}",
                        style(format!("[{task}]")).dim()
                    ));
                }
            }
            Event::TaskOutput { task, line } => {
                if self.github {
                    if let Ok(mut held) = self.held.lock() {
                        held.entry(task.clone()).or_default().push(line.clone());
                    }
                } else if !self.quiet {
                    self.print(&format!("{} {line}", style(format!("[{task}]")).dim()));
                }
            }
            Event::TaskFinished {
                task,
                status,
                duration_ms,
                log,
            } => {
                let reason = self.reasons.lock().ok().and_then(|mut r| r.remove(task));
                let failed = matches!(status, Status::Failed { .. });
                if self.quiet && !failed && !self.github {
                    return;
                }
                let line = status_line(task, status, *duration_ms, reason.as_deref());
                if self.github {
                    let held = self
                        .held
                        .lock()
                        .ok()
                        .and_then(|mut held| held.remove(task))
                        .unwrap_or_default();
                    self.print(&format!("::group::{line}"));
                    for text in held {
                        self.print(&text);
                    }
                    if let (Status::Cached { .. }, Some(log)) = (status, log) {
                        self.print(log.trim_end());
                    }
                    self.print("::endgroup::");
                    if let Status::Failed { message } = status {
                        let message = format!("{task} {message}");
                        let annotation =
                            Annotation::new(Level::Error, "clab task failed", &message);
                        self.print(&annotation.to_string());
                    }
                    return;
                }
                if self.quiet
                    && let Some(log) = log
                {
                    for text in log.lines() {
                        self.print(&format!("[{task}] {text}"));
                    }
                }
                self.print(&line);
            }
            Event::TaskSkipped { task, reason } => {
                if !self.quiet {
                    self.print(&format!("{} {task} skipped: {reason}", style("-").dim()));
                }
            }
            Event::TestReport { task, report } => {
                for line in report.render().lines() {
                    self.print(&format!("{} {line}", style(format!("[{task}]")).dim()));
                }
                if self.github {
                    for failure in &report.failures {
                        self.print(&annotation(task, failure));
                    }
                }
            }
            Event::Finding {
                path,
                line,
                col,
                message,
                severity,
                rule,
                ..
            } => {
                self.print(&super::finding_line(
                    path, *line, *col, severity, message, rule,
                ));
                if self.github {
                    let annotation = Annotation::new(Level::from_severity(severity), rule, message)
                        .at(path, Some(*line), Some(*col));
                    self.print(&annotation.to_string());
                }
            }
            Event::CoverageReport { task, table, .. } => {
                for line in table.render().lines() {
                    self.print(&format!("{} {line}", style(format!("[{task}]")).dim()));
                }
            }
            Event::Warning { message } if self.github => {
                // GitHub shows the command in the log as `Warning: …`, and on the run's page.
                self.print(&Annotation::new(Level::Warning, "clab", message).to_string());
            }
            Event::Warning { message } => {
                self.print(&format!("{} {message}", style("warning:").yellow().bold()));
            }
            Event::RunFinished(summary) => {
                let line = summary_line(summary);
                let styled = if !summary.is_success() {
                    style(line).red().bold()
                } else {
                    style(line).green().bold()
                };
                self.print(&styled.to_string());
            }
            Event::RunStarted { .. } | Event::TaskStarted { .. } => {}
        }
    }
}

/// `✓ lint 1.2s (src/a.py changed)`, `✗ test exit 1 (0.4s)`, `⚡ build cached`. `reason` is
/// why the task ran (its `TaskStarted` reason); the line that stays keeps it.
pub(crate) fn status_line(
    task: &str,
    status: &Status,
    duration_ms: u64,
    reason: Option<&str>,
) -> String {
    match status {
        Status::Succeeded => {
            let mut line = format!("{} {task} {}", style("✓").green(), duration(duration_ms));
            if let Some(reason) = reason {
                line.push_str(&format!(" {}", style(format!("({reason})")).dim()));
            }
            line
        }
        Status::Cached { remote: false } => format!("{} {task} cached", style("⚡").cyan()),
        Status::Cached { remote: true } => {
            format!("{} {task} cached (remote)", style("⚡").cyan())
        }
        Status::Failed { message } => format!(
            "{} {task} {message} ({})",
            style("✗").red().bold(),
            duration(duration_ms)
        ),
        Status::Interrupted => format!("{} {task} interrupted", style("✗").red()),
    }
}

/// A GitHub Actions `::error` annotation for a failed test, placed on its file and line
/// when the report knows them.
fn annotation(task: &str, failure: &clab_reports::junit::FailureRecord) -> String {
    let title = format!("{task}: {}", failure.id);
    let message = failure.message.as_deref().unwrap_or("test failed");
    let annotation = Annotation::new(Level::Error, &title, message);
    match &failure.file {
        Some(file) => annotation
            .at(file, failure.line.map(|line| line as usize), None)
            .to_string(),
        None => annotation.to_string(),
    }
}
