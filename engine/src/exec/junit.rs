//! JUnit XML test reports: parsed after a task with `junit` runs.
