//! Progress bars for an interactive terminal: one overall bar, a spinner per running task
//! with its elapsed time, a line per finished task, and the full log of each failure.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use clab_exec::event::{Event, Reporter, Status};
use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{plain::status_line, summary_line};

/// The terminal reporter.
pub(crate) struct Tty {
    verbose: bool,
    quiet: bool,
    multi: MultiProgress,
    overall: ProgressBar,
    /// Each running task's spinner, and why it runs (kept for its final line).
    running: Mutex<HashMap<String, (ProgressBar, Option<String>)>>,
    cached: Mutex<usize>,
}

impl Tty {
    /// A reporter drawing to stderr.
    pub(crate) fn new(verbose: bool, quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Tty {
            verbose,
            quiet,
            multi,
            overall,
            running: Mutex::new(HashMap::new()),
            cached: Mutex::new(0),
        }
    }

    fn println(&self, text: &str) {
        // Only fails when the terminal is gone; nothing useful to do then.
        let _ = self.multi.println(text);
    }
}

impl Reporter for Tty {
    fn report(&self, event: &Event) {
        match event {
            Event::RunStarted { total, .. } => self.overall.set_length(*total as u64),
            Event::TaskStarted { task, reason } => {
                let spinner = self
                    .multi
                    .insert_before(&self.overall, ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                let message = match reason {
                    Some(reason) => format!("{task} {}", style(format!("({reason})")).dim()),
                    None => task.clone(),
                };
                spinner.set_message(message);
                spinner.enable_steady_tick(Duration::from_millis(100));
                if let Ok(mut running) = self.running.lock() {
                    running.insert(
                        task.clone(),
                        (spinner, reason.as_ref().map(ToString::to_string)),
                    );
                }
            }
            Event::TaskOutput { task, line } => {
                if self.verbose {
                    self.println(&format!("{} {line}", style(format!("[{task}]")).dim()));
                } else if let Some(message) = task_warning(line) {
                    self.println(&format!(
                        "{} {task}: {message}",
                        style("warning:").yellow().bold()
                    ));
                }
            }
            Event::TaskFinished {
                task,
                status,
                duration_ms,
                log,
            } => {
                let mut reason = None;
                if let Some((spinner, why)) =
                    self.running.lock().ok().and_then(|mut r| r.remove(task))
                {
                    spinner.finish_and_clear();
                    self.multi.remove(&spinner);
                    reason = why;
                }
                self.overall.inc(1);
                if matches!(status, Status::Cached { .. })
                    && let Ok(mut cached) = self.cached.lock()
                {
                    *cached += 1;
                    self.overall.set_message(format!("{cached} cached"));
                }
                let failed = matches!(status, Status::Failed { .. });
                if !self.quiet || failed {
                    self.println(&status_line(task, status, *duration_ms, reason.as_deref()));
                }
                match (status, log) {
                    (Status::Failed { .. }, Some(log)) if !self.verbose => {
                        for line in log.lines() {
                            self.println(&format!("  {line}"));
                        }
                    }
                    (Status::Cached { .. }, Some(log)) if self.verbose => {
                        for line in log.lines() {
                            self.println(&format!("  {}", style(line).dim()));
                        }
                    }
                    _ => {}
                }
            }
            Event::TaskSkipped { task, reason } => {
                if !self.quiet {
                    self.println(&format!("{} {task} skipped: {reason}", style("-").dim()));
                }
            }
            Event::TestReport { report, .. } => {
                for line in report.render().lines() {
                    self.println(&format!("  {line}"));
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
                self.println(&super::finding_line(
                    path, *line, *col, severity, message, rule,
                ));
            }
            Event::CoverageReport { table, .. } => {
                for line in table.render().lines() {
                    self.println(&format!("  {line}"));
                }
            }
            Event::Warning { message } => {
                self.println(&format!("{} {message}", style("warning:").yellow().bold()));
            }
            Event::RunFinished(summary) => {
                self.overall.finish_and_clear();
                let line = summary_line(summary);
                let styled = if !summary.is_success() {
                    style(line).red().bold()
                } else {
                    style(line).green().bold()
                };
                self.println(&styled.to_string());
            }
        }
    }
}

/// A line of task output meant for the user even when output is hidden: GitHub's workflow
/// command form `::warning::MESSAGE` or `::notice::MESSAGE` (optionally with parameters,
/// `::warning file=a.py::MESSAGE`), which GitHub Actions turns into an annotation too.
fn task_warning(line: &str) -> Option<&str> {
    let rest = line
        .trim_start()
        .strip_prefix("::warning")
        .or_else(|| line.trim_start().strip_prefix("::notice"))?;
    let rest = match rest.strip_prefix("::") {
        Some(message) => message,
        None if rest.starts_with(' ') => rest.split_once("::")?.1,
        None => return None,
    };
    Some(rest.trim_end())
}

#[cfg(test)]
mod tests {
    use super::task_warning;

    #[test]
    fn workflow_warnings_in_task_output_are_found() {
        assert_eq!(
            task_warning("::warning::audit skipped: no answer"),
            Some("audit skipped: no answer")
        );
        assert_eq!(task_warning("  ::notice::fyi  "), Some("fyi"));
        assert_eq!(task_warning("::warning file=a.py,line=3::bad"), Some("bad"));
        assert_eq!(task_warning("::warningless"), None);
        assert_eq!(task_warning("::error::not a warning"), None);
        assert_eq!(task_warning("plain output"), None);
    }
}
