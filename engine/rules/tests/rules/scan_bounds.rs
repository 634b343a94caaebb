//! Issue 18: a scan that cannot finish is an error of the rule, never a pass, and a
//! backtracking scan is bounded in time.

use std::time::{Duration, Instant};

use clab_rules::{CompiledRule, Incomplete, ScanBudget, Severity};

fn reject_rule(pattern: &str) -> CompiledRule {
    let pattern = pattern.replace('\\', "\\\\").replace('"', "\\\"");
    let file = crate::rule_file(
        "r",
        &format!(
            "---\nglobs: *.txt\n---\n<rule>\nname: r\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"{pattern}\"\n        message: found\n</rule>\n"
        ),
    );
    CompiledRule::compile_all(std::slice::from_ref(&file))
        .pop()
        .unwrap()
}

#[test]
fn backtrack_limit_is_an_error_not_a_pass_issue_18() {
    let rule = reject_rule("((?=a)a+)+b|!");
    let text = format!("{}!\n", "a".repeat(25));
    let err = rule.try_scan("in.txt", &text).unwrap_err();
    assert_eq!(err.reason, Incomplete::BacktrackLimit);
    assert_eq!(
        (err.rule.as_str(), err.path.as_str(), err.line),
        ("r", "in.txt", Some(1))
    );
    // The findings API, as the engine calls it today, fails the node too.
    let findings = rule.scan_selected("in.txt", &text, None);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].severity, Severity::Error);
    assert!(
        findings[0].message.contains("could not finish"),
        "{}",
        findings[0].message
    );
}

#[test]
fn lookahead_over_100k_characters_is_bounded_issue_18() {
    let rule = reject_rule("(?=a)(a+)+$");
    let text = format!("{}!", "a".repeat(100_000));
    let started = Instant::now();
    let err = rule
        .try_scan_selected(
            "in.txt",
            &text,
            None,
            ScanBudget::new(Duration::from_millis(300)),
        )
        .unwrap_err();
    assert_eq!(err.reason, Incomplete::TimeLimit);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn patterns_without_lookaround_run_in_linear_time() {
    // `(a+)+$` would be exponential on a backtracking engine; on `regex` it is linear.
    let rule = reject_rule("(a+)+$");
    let text = format!("{}!\n", "a".repeat(100_000));
    let started = Instant::now();
    let findings = rule
        .try_scan_selected(
            "in.txt",
            &text,
            None,
            ScanBudget::new(Duration::from_millis(1)),
        )
        .unwrap();
    assert!(findings.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}
