//! `clab stats`: LLM calls per model (runs, cache hit rate, tokens, latency percentiles) and
//! the trend of tests and coverage over recent runs.

use clab_exec::report_totals::ReportTotals;
use clab_graph::project::Project;
use std::{collections::BTreeMap, io::Write};

use crate::exit::{Done, Failure};

/// Print the statistics kept in the project's cache.
pub(super) fn stats(project: &Project) -> Result<Done, Failure> {
    let store = super::cache::store(project)?;
    let fail = |err| Failure::Store(Box::new(err));
    let calls = store.llm_calls().map_err(fail)?;
    let runs = store.recent_runs(20).map_err(fail)?;
    let mut out = std::io::stdout().lock();

    writeln!(out, "LLM calls")?;
    if calls.is_empty() {
        writeln!(out, "  none recorded yet")?;
    }
    let mut by_model: BTreeMap<&str, Vec<&clab_model::llm_call::LlmCall>> = BTreeMap::new();
    for call in &calls {
        by_model.entry(call.model.as_str()).or_default().push(call);
    }
    if !by_model.is_empty() {
        writeln!(
            out,
            "  {:<24} {:>6} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8}",
            "model", "calls", "hits", "hit rate", "tokens in", "tokens out", "p50", "p95", "p99"
        )?;
    }
    for (model, calls) in by_model {
        let hits = calls.iter().filter(|c| c.is_cache_hit()).count();
        let sent: Vec<_> = calls.iter().filter(|c| !c.is_cache_hit()).collect();
        // A node that ran counts once however many attempts it took.
        let runs = sent.iter().filter(|c| c.attempt <= 1).count();
        let rate = if hits + runs == 0 {
            0.0
        } else {
            100.0 * hits as f64 / (hits + runs) as f64
        };
        let tokens_in: u64 = sent.iter().filter_map(|c| c.tokens_in).sum();
        let tokens_out: u64 = sent.iter().filter_map(|c| c.tokens_out).sum();
        let mut latencies: Vec<u64> = sent.iter().map(|c| c.latency_ms).collect();
        latencies.sort_unstable();
        let name = if model.is_empty() { "(unknown)" } else { model };
        writeln!(
            out,
            "  {:<24} {:>6} {:>6} {:>8.1}% {:>10} {:>10} {:>8} {:>8} {:>8}",
            name,
            sent.len(),
            hits,
            rate,
            tokens_in,
            tokens_out,
            percentile(&latencies, 50),
            percentile(&latencies, 95),
            percentile(&latencies, 99),
        )?;
    }

    writeln!(out, "\nTests and coverage (recent runs, newest first)")?;
    let mut any = false;
    for run in &runs {
        let Some(reports) = run.extra.as_ref().and_then(|e| e.get("reports")) else {
            continue;
        };
        let Ok(reports) = serde_json::from_value::<Vec<ReportTotals>>(reports.clone()) else {
            continue;
        };
        for report in reports {
            any = true;
            let tests = report.tests.map_or_else(String::new, |t| {
                format!(
                    "{} tests, {} failed, {} skipped",
                    t.tests,
                    t.failed + t.errors,
                    t.skipped
                )
            });
            let coverage = report
                .coverage
                .map_or_else(String::new, |c| format!("coverage {c:.1}%"));
            writeln!(
                out,
                "  {}  {:<20} {tests:<36} {coverage}",
                super::cache::format_utc(run.started_ms),
                report.task
            )?;
        }
    }
    if !any {
        writeln!(
            out,
            "  none recorded yet (tasks with `junit` or `coverage` record them)"
        )?;
    }
    Ok(Done::Success)
}

/// The `p`th percentile (nearest rank) of sorted values, as `123ms`; `-` when empty.
fn percentile(sorted: &[u64], p: usize) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    format!("{}ms", sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), "50ms");
        assert_eq!(percentile(&values, 99), "99ms");
        assert_eq!(percentile(&[7], 95), "7ms");
        assert_eq!(percentile(&[], 50), "-");
    }
}
