//! `clab check`: validate tasks.kdl (every problem at once) without running anything.

use engine::project::Project;

use crate::exit::{Done, Failure};

/// Load the project; errors are the result, success prints a one-line count.
pub fn check(project: &Project) -> Result<Done, Failure> {
    let graph = project.load()?;
    let tasks = graph.file().tasks.len();
    println!(
        "{}: {} task{}, {} node{}, no problems",
        project.display_name(),
        tasks,
        if tasks == 1 { "" } else { "s" },
        graph.len(),
        if graph.len() == 1 { "" } else { "s" },
    );
    Ok(Done::Success)
}
