//! The committed JSON Schemas must match the Rust types they are generated from.
//! Regenerate with `CLAB_UPDATE_SCHEMAS=1 cargo test schemas`.

use std::path::Path;

fn check(name: &str, schema: schemars::Schema) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(name);
    let mut fresh = serde_json::to_string_pretty(&schema).expect("schema serializes");
    fresh.push('\n');
    if std::env::var_os("CLAB_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/{name} is stale: run `CLAB_UPDATE_SCHEMAS=1 cargo test schemas`"
    );
}

#[test]
fn graph_schema_is_current() {
    check(
        "graph.schema.json",
        schemars::schema_for!(clab_graph::GraphJson),
    );
}

#[test]
fn events_schema_is_current() {
    check(
        "events.schema.json",
        schemars::schema_for!(clab_exec::event::Event),
    );
}
