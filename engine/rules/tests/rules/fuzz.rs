//! A bounded fuzz test of the `.mdc` parser (issue 18): arbitrary bytes and mutations of the
//! real rule files in the fixtures never panic, every diagnostic has a span inside its file
//! (on character boundaries, so renderers can cut there), and rendering, compiling and
//! scanning what comes out never panics either. A few hundred cases: a few seconds in CI.

use std::{path::Path, sync::OnceLock, time::Duration};

use clab_rules::{
    CompiledRule, RuleDiagnostic, ScanBudget, attached_rules, discover, render_rules, validate,
};
use proptest::prelude::*;

/// The text of every fixture rule file.
fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = crate::fixtures_dir();
        let sets = ["awesome-cursorrules", "codegen-lab", "codegen-lab-drafts"];
        let texts: Vec<String> = sets
            .iter()
            .flat_map(|set| discover(&root, &[Path::new(set)]).unwrap())
            .map(|f| f.source.text().to_owned())
            .collect();
        assert!(texts.len() >= 20, "the fixtures are there");
        texts
    })
}

/// One edit of a file's bytes; positions are fractions of the length, so they stay valid.
#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    Duplicate { at: f64, len: usize, to: f64 },
    Byte { at: f64, byte: u8 },
    Truncate { at: f64 },
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let pos = |at: f64, len: usize| ((at * len as f64) as usize).min(len);
    match mutation {
        Mutation::Delete { at, len } => {
            let start = pos(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert { at, text } => {
            let at = pos(*at, bytes.len());
            bytes.splice(at..at, text.bytes());
        }
        Mutation::Duplicate { at, len, to } => {
            let start = pos(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            let piece = bytes[start..end].to_vec();
            let to = pos(*to, bytes.len());
            bytes.splice(to..to, piece);
        }
        Mutation::Byte { at, byte } => {
            if !bytes.is_empty() {
                let at = pos(*at, bytes.len() - 1);
                bytes[at] = *byte;
            }
        }
        Mutation::Truncate { at } => {
            let at = pos(*at, bytes.len());
            bytes.truncate(at);
        }
    }
}

/// Fragments that steer edits into the parser's deeper paths.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("---\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("<rule>\n".to_owned()),
        Just("</rule>\n".to_owned()),
        Just("```\n".to_owned()),
        Just("<example>\n".to_owned()),
        Just("extends: ".to_owned()),
        Just("version: 1.x\n".to_owned()),
        Just("    options: {case_insensitive: true, whole_wrd}\n".to_owned()),
        Just("    options:\n      - multiline\n".to_owned()),
        Just("  - type: content\n    pattern: \"(?=a)(a+)+$\"\n".to_owned()),
        Just("      - pattern: \"((?=a)a+)+b\"\n".to_owned()),
        Just("@../../x.md ".to_owned()),
        Just("[x](mdc:".to_owned()),
        Just("|\n".to_owned()),
        Just("\"".to_owned()),
        Just("\u{feff}\u{202E}\u{200D}é🏴".to_owned()),
        "[ -~]{0,12}",
        any::<char>().prop_map(String::from),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..=1.0f64;
    prop_oneof![
        (at.clone(), 0..200usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at.clone(), fragment()).prop_map(|(at, text)| Mutation::Insert { at, text }),
        (at.clone(), 0..400usize, at.clone()).prop_map(|(at, len, to)| Mutation::Duplicate {
            at,
            len,
            to
        }),
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::Byte { at, byte }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

#[track_caller]
fn assert_span_inside(text: &str, offset: usize, len: usize, what: &dyn std::fmt::Debug) {
    assert!(offset + len <= text.len(), "span past the end: {what:?}");
    assert!(
        text.is_char_boundary(offset) && text.is_char_boundary(offset + len),
        "span off a character boundary: {what:?}"
    );
}

/// Parse, validate, render, compile and scan `text`; panics on any broken promise.
fn exercise(text: &str) {
    let file = crate::rule_file("fuzz", text);
    for issue in &file.issues {
        assert_span_inside(text, issue.span.offset(), issue.span.len(), issue);
    }
    let others = crate::rule_file(
        "base",
        "---\ndescription: b\n---\n<rule>\nname: base\nactions:\n  - type: warn\n    conditions:\n      - pattern: x\n</rule>\n",
    );
    let files = [file, others];
    let diagnostics: Vec<RuleDiagnostic> = validate(&files, None);
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    for d in &diagnostics {
        let source = d.file.text();
        assert_span_inside(source, d.issue.span.offset(), d.issue.span.len(), &d.issue);
        let flat = d.flat();
        assert!(flat.line >= 1 && flat.col >= 1, "{flat:?}");
        let mut out = String::new();
        handler.render_report(&mut out, d).unwrap();
    }
    let budget = ScanBudget::new(Duration::from_millis(50));
    for rule in CompiledRule::compile_all(&files) {
        let _ = rule.selects("src/a.py");
        // Never a panic; an incomplete scan is a typed error.
        let _ = rule.try_scan_selected("src/a.py", text, None, budget);
        let _ = rule.definition_hash();
    }
    let _ = render_rules(&attached_rules(&files, &["src/a.py"], &["fuzz"]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_files_never_panic_and_every_span_is_inside(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let corpus = corpus();
        let mut bytes = corpus[pick.index(corpus.len())].clone().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_rule_text_never_panics(parts in prop::collection::vec(fragment(), 0..80)) {
        exercise(&parts.concat());
    }
}

#[test]
fn every_fixture_as_is_passes_the_same_checks() {
    for text in corpus() {
        exercise(text);
    }
}

#[test]
fn a_diagnostic_past_column_65535_renders_issue_18() {
    let text = format!(
        "---\ndescription: d\n---\n<rule>\nname: wide\nactions:\n  - type: reject\n    conditions:\n      - pattern: \"{}(\"\n</rule>\n",
        "x".repeat(70_000)
    );
    exercise(&text);
}
