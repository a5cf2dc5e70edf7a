//! Observing computations: the [`Callback`] hooks, a terminal [`Progress`] bar
//! and a [`Profiler`] that writes an HTML timeline.

mod profiler;
mod progress;
pub mod report;

pub use profiler::{Profiler, TaskRecord};
pub use progress::Progress;
pub use report::{performance_report, with_callback};

use std::time::Instant;

use crate::key::Key;

/// What a callback learns about a task.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo<'a> {
    /// The task's key.
    pub key: &'a Key,
    /// Its op name (`data` and `alias` for those nodes).
    pub op: &'a str,
    /// Index of the worker thread running it.
    pub worker: usize,
}

/// Hooks called by executors. Called from worker threads, so implementations
/// must be cheap and thread-safe. Every method has an empty default.
pub trait Callback: Send + Sync {
    /// Before the first task, with the number of tasks to run.
    fn on_start(&self, _n_tasks: usize) {}
    /// A task is about to run.
    fn on_task_start(&self, _task: &TaskInfo<'_>) {}
    /// A task ended (`ok` false when it failed), with its start and end times.
    fn on_task_finish(
        &self,
        _task: &TaskInfo<'_>,
        _started: Instant,
        _finished: Instant,
        _ok: bool,
    ) {
    }
    /// After the last task (or the failure that stopped the computation).
    fn on_finish(&self, _ok: bool) {}
}
