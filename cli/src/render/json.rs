//! `--json`: every event as one line of JSON on stdout (schema: schemas/events.schema.json).

use clab_exec::event::{Event, Reporter};
use std::io::Write;

/// The NDJSON reporter.
pub(crate) struct Json;

impl Reporter for Json {
    fn report(&self, event: &Event) {
        let mut out = std::io::stdout().lock();
        if serde_json::to_writer(&mut out, event).is_ok() {
            let _ = writeln!(out);
        }
    }
}
