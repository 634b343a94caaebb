//! Phase timing for measuring where a run's time goes: `CLAB_PHASES=1 clab run …` prints,
//! at exit, how long after `main` started each named phase ended, and the summed time of work
//! done many times (keys, storing).
//!
//! In: [`mark`] calls at phase ends and [`add`] calls around repeated work (a static name
//! each), from any thread. Out: on stderr, written by [`print()`], one `phase <name> <ms since
//! start>` line per mark in the order made, then one `total <name> <ms> <count>` line per
//! name added to. Invariants: when the variable is unset a call costs one atomic load and
//! records nothing; nothing here is written to a cache or affects a result.

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The process's recorder; `None` when `CLAB_PHASES` is unset (or empty, or `0`).
static PHASES: OnceLock<Option<Phases>> = OnceLock::new();

/// Marks and totals since an origin.
#[derive(Debug)]
pub struct Phases {
    origin: Instant,
    marks: Mutex<Vec<(&'static str, Duration)>>,
    totals: Mutex<Vec<(&'static str, Duration, u32)>>,
}

impl Phases {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Phases {
            origin: Instant::now(),
            marks: Mutex::new(Vec::new()),
            totals: Mutex::new(Vec::new()),
        }
    }

    /// Record that phase `name` ended now.
    pub fn mark(&self, name: &'static str) {
        let at = self.origin.elapsed();
        if let Ok(mut marks) = self.marks.lock() {
            marks.push((name, at));
        }
    }

    /// Add `took` to the total of `name`.
    pub fn add(&self, name: &'static str, took: Duration) {
        if let Ok(mut totals) = self.totals.lock() {
            match totals.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, total, count)) => {
                    *total += took;
                    *count += 1;
                }
                None => totals.push((name, took, 1)),
            }
        }
    }

    /// The marks as `phase <name> <ms>` lines, then the totals as `total <name> <ms> <count>`.
    pub fn render(&self) -> String {
        let marks = self.marks.lock().map(|m| m.clone()).unwrap_or_default();
        let totals = self.totals.lock().map(|t| t.clone()).unwrap_or_default();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let mut out: String = marks
            .iter()
            .map(|(name, at)| format!("phase {name} {:.3}\n", ms(at)))
            .collect();
        for (name, total, count) in totals {
            out.push_str(&format!("total {name} {:.3} {count}\n", ms(&total)));
        }
        out
    }
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

fn phases() -> Option<&'static Phases> {
    PHASES
        .get_or_init(|| {
            std::env::var_os("CLAB_PHASES")
                .filter(|value| !value.is_empty() && value != "0")
                .map(|_| Phases::new())
        })
        .as_ref()
}

/// Start the clock (first thing in `main`).
pub fn start() {
    let _ = phases();
}

/// Record that the phase `name` ended now.
pub fn mark(name: &'static str) {
    if let Some(phases) = phases() {
        phases.mark(name);
    }
}

/// Now, when phases are recorded (to pass to [`add`] when the work is done).
pub fn now() -> Option<Instant> {
    phases().map(|_| Instant::now())
}

/// Add the time since `since` (from [`now`]) to the total of `name`.
pub fn add(name: &'static str, since: Option<Instant>) {
    if let (Some(phases), Some(since)) = (phases(), since) {
        phases.add(name, since.elapsed());
    }
}

/// Mark the exit and write everything to stderr (nothing when phases are off).
pub fn print() {
    if let Some(phases) = phases() {
        phases.mark("exit");
        eprint!("{}", phases.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_render_in_order_then_totals_with_counts() {
        let phases = Phases::new();
        phases.mark("one");
        phases.mark("two");
        phases.add("work", Duration::from_millis(2));
        phases.add("work", Duration::from_millis(3));
        let text = phases.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("phase one "), "{text}");
        assert!(lines[1].starts_with("phase two "), "{text}");
        assert_eq!(lines[2], "total work 5.000 2");
    }
}
