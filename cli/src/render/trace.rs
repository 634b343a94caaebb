//! `--profile FILE`: the run as a Chrome trace (the JSON "trace event format"), which
//! Perfetto and chrome://tracing open. Each task is a complete event (`ph: "X"`) on the first
//! free lane, so the lanes show how the job slots were used; cache hits are instant events (`cached (remote)` for hits from the shared remote cache), and the
//! remote cache's totals (bytes and milliseconds each way) are one global instant event at the end.

use clab_exec::event::{Event, Reporter, Status};
use serde_json::json;
use std::{collections::HashMap, path::PathBuf, sync::Mutex, time::Instant};

/// Collects the run and writes the trace when it finishes.
pub(crate) struct Trace {
    path: PathBuf,
    origin: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    started: HashMap<String, (u64, usize)>,
    lanes: Vec<bool>,
    events: Vec<serde_json::Value>,
}

impl Trace {
    /// A trace that will be written to `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Trace {
            path,
            origin: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn write(&self, events: &[serde_json::Value]) -> std::io::Result<()> {
        let document = json!({ "traceEvents": events, "displayTimeUnit": "ms" });
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut temp, &document)?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Reporter for Trace {
    fn report(&self, event: &Event) {
        let now = self.now_us();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::TaskStarted { task, .. } => {
                let lane = match state.lanes.iter().position(|busy| !busy) {
                    Some(free) => free,
                    None => {
                        state.lanes.push(false);
                        state.lanes.len() - 1
                    }
                };
                state.lanes[lane] = true;
                state.started.insert(task.clone(), (now, lane));
            }
            Event::TaskFinished { task, status, .. } => {
                let status_name = match status {
                    Status::Succeeded => "succeeded",
                    Status::Cached { remote: false } => "cached",
                    Status::Cached { remote: true } => "cached (remote)",
                    Status::Failed { .. } => "failed",
                    Status::Interrupted => "interrupted",
                };
                match state.started.remove(task) {
                    Some((start, lane)) => {
                        state.lanes[lane] = false;
                        state.events.push(json!({
                            "name": task, "cat": status_name, "ph": "X",
                            "ts": start, "dur": now - start, "pid": 1, "tid": lane + 1,
                            "args": { "status": status_name },
                        }));
                    }
                    None => state.events.push(json!({
                        "name": task, "cat": status_name, "ph": "i", "s": "p",
                        "ts": now, "pid": 1, "tid": 0,
                    })),
                }
            }
            Event::RunFinished(summary) => {
                // What the remote cache moved and how long it took, on the trace's timeline.
                if let Some(remote) = &summary.remote_cache {
                    state.events.push(json!({
                        "name": "remote cache", "cat": "remote", "ph": "i", "s": "g",
                        "ts": now, "pid": 1, "tid": 0, "args": remote,
                    }));
                }
                let events = std::mem::take(&mut state.events);
                drop(state);
                if let Err(err) = self.write(&events) {
                    eprintln!(
                        "warning: cannot write the trace to `{}`: {err}",
                        self.path.display()
                    );
                }
            }
            _ => {}
        }
    }
}
