//! [`AggregateKind`]: a task with no work of its own (`task "ci" { deps "lint" "test" }`),
//! done when its dependencies are.

use crate::{
    context::Context,
    kind::{Kind, RunResult, Work},
};

/// Does nothing.
#[derive(Debug, Default)]
pub struct AggregateKind;

impl Kind for AggregateKind {
    fn run(&self, _cx: &Context, _work: Work<'_>) -> RunResult {
        Ok(Default::default())
    }
}
