//! Reporters: how events reach a person or a program.
//!
//! - [`tty`]: progress bars on an interactive terminal.
//! - [`plain`]: `[task] line` prefixes for CI and pipes; GitHub Actions groups and annotations.
//! - [`json`]: one JSON event per line (`--json`).
//! - [`trace`]: a Chrome trace file (`--profile`), beside any of the above.

pub(crate) mod annotation;
pub(crate) mod json;
pub(crate) mod plain;
pub(crate) mod step_summary;
pub(crate) mod trace;
pub(crate) mod tty;

use clab_exec::event::{Event, Reporter, Summary};
use std::{io::IsTerminal, sync::Arc, time::Duration};

use crate::args::Args;

/// Sends every event to each reporter in turn.
pub(crate) struct Fanout(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Fanout {
    fn report(&self, event: &Event) {
        for reporter in &self.0 {
            reporter.report(event);
        }
    }
}

/// The human-facing reporter for this environment: bars on a terminal, lines elsewhere.
pub(crate) fn human(args: &Args) -> Arc<dyn Reporter> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let no_progress = std::env::var_os("CLAB_NO_PROGRESS").is_some();
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if std::io::stderr().is_terminal() && !ci && !no_progress {
        Arc::new(tty::Tty::new(args.verbose > 0, args.quiet))
    } else {
        Arc::new(plain::Plain::new(args.quiet, github))
    }
}

/// `src/m.py:5:5: error: message [rule]`, the severity colored.
pub(crate) fn finding_line(
    path: &str,
    line: usize,
    col: usize,
    severity: &str,
    message: &str,
    rule: &str,
) -> String {
    let styled = if severity == "error" {
        console::style(severity).red().bold()
    } else {
        console::style(severity).yellow()
    };
    format!("{path}:{line}:{col}: {styled}: {message} [{rule}]")
}

/// `1.2s`, `850ms`, `2m05s`.
pub(crate) fn duration(ms: u64) -> String {
    clab_model::duration::format_duration(Duration::from_millis(ms))
}

/// The last line of every run: counts ([`Summary`] defines them; `--json` carries the same),
/// wall time, time saved.
pub(crate) fn summary_line(summary: &Summary) -> String {
    let total = summary.total();
    // The failures that ran are part of "ran": `2 ran (1 failed)` adds up, `2 ran, 1 failed`
    // reads as three.
    let mut parts = vec![match summary.failed {
        0 => format!("{} ran", summary.ran()),
        failed => format!("{} ran ({failed} failed)", summary.ran()),
    }];
    let cached = match summary.remote {
        0 => "cached".to_owned(),
        remote => format!("cached ({remote} remote)"),
    };
    for (count, what) in [
        (summary.cached, cached.as_str()),
        (summary.failed_before_start, "failed before start"),
        (summary.skipped, "skipped"),
        (summary.interrupted_tasks, "interrupted"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    let mut line = format!(
        "{total} task{}: {} in {}",
        if total == 1 { "" } else { "s" },
        parts.join(", "),
        duration(summary.wall_ms)
    );
    if summary.saved_ms > 0 {
        line.push_str(&format!(
            ", {} saved by the cache",
            duration(summary.saved_ms)
        ));
    }
    if summary.tokens_in + summary.tokens_out > 0 {
        line.push_str(&format!(
            ", {} LLM tokens ({} in, {} out)",
            summary.tokens_in + summary.tokens_out,
            summary.tokens_in,
            summary.tokens_out
        ));
    }
    if summary.interrupted {
        line.push_str(" (interrupted)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_counts_every_task_once() {
        let summary = Summary {
            succeeded: 1,
            failed: 1,
            failed_before_start: 1,
            cached: 1,
            skipped: 1,
            interrupted_tasks: 1,
            interrupted: true,
            wall_ms: 1200,
            ..Summary::default()
        };
        assert_eq!(
            summary_line(&summary),
            "6 tasks: 2 ran (1 failed), 1 cached, 1 failed before start, 1 skipped, \
             1 interrupted in 1.2s (interrupted)"
        );
        let clean = Summary {
            succeeded: 2,
            wall_ms: 5,
            ..Summary::default()
        };
        assert_eq!(summary_line(&clean), "2 tasks: 2 ran in 5ms");
    }
}
