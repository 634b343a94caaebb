//! Fixed renderings of diagnostics for snapshot tests (feature `test-support`): colorless
//! graphical at 80 columns, and miette's JSON pretty-printed. In: any
//! [`miette::Diagnostic`]. Out: text; a rendering that fails says so in the text instead of
//! panicking.

/// The diagnostic as a colorless, 80-column graphical report.
pub fn graphical(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(80);
    if let Err(err) = handler.render_report(&mut out, diagnostic) {
        out.push_str(&format!("<render error: {err}>"));
    }
    out
}

/// The diagnostic as miette's JSON, pretty-printed.
pub fn json(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    if let Err(err) = miette::JSONReportHandler::new().render_report(&mut out, diagnostic) {
        out.push_str(&format!("<render error: {err}>"));
    }
    match serde_json::from_str::<serde_json::Value>(&out) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or(out),
        Err(_) => out,
    }
}

/// Both renderings, one after the other.
pub fn both(diagnostic: &dyn miette::Diagnostic) -> String {
    format!("{}\n{}\n", graphical(diagnostic), json(diagnostic))
}
