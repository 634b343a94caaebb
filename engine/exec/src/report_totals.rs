//! Reading a node's `junit` and `coverage` reports after it ran or was restored: report them
//! as events, apply the coverage gate, and keep the totals for the run's history.

use std::{path::Path, sync::Mutex};

use serde::{Deserialize, Serialize};

use super::{
    coverage::{self, TableOptions},
    junit,
};
use crate::event::{Event, Reporter};
use clab_graph::{Node, NodeId};

use crate::context::Context;

/// What one node's reports said, as kept in the run history (`clab stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportTotals {
    /// The node's display id.
    pub task: String,
    /// JUnit totals, when the node has a `junit` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<junit::Totals>,
    /// Total line coverage in percent, when the node has a `coverage` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
}

/// The totals of every node of a run that had reports, in finishing order.
#[derive(Debug, Default)]
pub struct Reports(Mutex<Vec<ReportTotals>>);

impl Reports {
    /// Read node `id`'s reports, if it declares any (`restored`: after a cache hit), and
    /// keep their totals; `Err` is why the node must fail.
    pub fn read(&self, cx: &Context, id: NodeId, restored: bool) -> Result<(), String> {
        let node = cx.node(id);
        if node.junit.is_none() && node.coverage.is_none() {
            return Ok(());
        }
        let (totals, result) = read_reports(cx.graph.root(), node, &*cx.reporter, restored);
        if let Ok(mut reports) = self.0.lock() {
            reports.push(totals);
        }
        result
    }

    /// The totals kept so far.
    pub fn totals(&self) -> Vec<ReportTotals> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Read the reports `node` declares; report them; `Err` says why the node must fail: a
/// malformed JUnit report, failing tests the commands did not catch, or a coverage report
/// that is missing, malformed or under the gate.
///
/// A JUnit report that does not exist fails nothing: the commands' exit status already says
/// whether the tests passed, and a runner may write no report (`cargo test` where
/// cargo-nextest is not installed). After a run (`restored` false) it is a warning naming the
/// file; after a cache restore it is quiet, since the run that was cached warned already.
pub fn read_reports(
    root: &Path,
    node: &Node,
    reporter: &dyn Reporter,
    restored: bool,
) -> (ReportTotals, Result<(), String>) {
    let mut totals = ReportTotals {
        task: node.name.clone(),
        ..ReportTotals::default()
    };
    let mut problems = Vec::new();
    if let Some(path) = &node.junit {
        match junit::parse(&root.join(path)) {
            Ok(report) => {
                let mut summary = report.summary(5);
                for failure in &mut summary.failures {
                    if let Some(file) = &mut failure.file {
                        *file = relative(root, file);
                    }
                }
                let t = report.totals;
                reporter.report(&Event::TestReport {
                    task: node.name.clone(),
                    report: summary,
                });
                if !t.is_success() {
                    problems.push(format!(
                        "{} of {} tests failed",
                        t.failed + t.errors,
                        t.tests
                    ));
                }
                totals.tests = Some(t);
            }
            Err(junit::Error::Missing { .. }) => {
                if !restored {
                    reporter.report(&Event::Warning {
                        message: format!(
                            "`{}` wrote no JUnit report `{path}`: its exit status alone says whether the tests passed",
                            node.name
                        ),
                    });
                }
            }
            Err(err) => problems.push(report_error(&err)),
        }
    }
    if let Some(gate) = &node.coverage {
        match coverage::parse(&root.join(&gate.path)) {
            Ok(mut report) => {
                report.relative_to(root);
                let percent = report.percent();
                let table = coverage::table(
                    &report,
                    TableOptions {
                        show_missing: gate.show_missing,
                        skip_covered: gate.skip_covered,
                        precision: 1,
                    },
                );
                reporter.report(&Event::CoverageReport {
                    task: node.name.clone(),
                    percent,
                    fail_under: gate.fail_under,
                    table,
                });
                if let Some(threshold) = gate.fail_under
                    && let Err(err) = coverage::check_fail_under(percent, threshold)
                {
                    problems.push(err.to_string());
                }
                totals.coverage = Some(percent);
            }
            Err(err) => problems.push(report_error(&err)),
        }
    }
    let result = if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    };
    (totals, result)
}

/// An error with its help, on one line: the task's failure message.
fn report_error(err: &dyn miette::Diagnostic) -> String {
    match err.help() {
        Some(help) => format!("{err} ({help})"),
        None => err.to_string(),
    }
}

fn relative(root: &Path, file: &str) -> String {
    Path::new(file)
        .strip_prefix(root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.to_owned())
}
