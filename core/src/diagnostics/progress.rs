use std::sync::RwLock;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Callback, TaskInfo};

/// A terminal progress bar for local computations (opt-in: add it to the
/// options' callbacks). Draws on stderr when stderr is a terminal.
#[derive(Default)]
pub struct Progress {
    bar: RwLock<Option<ProgressBar>>,
}

impl Progress {
    /// A bar drawn on stderr.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks finished so far in the current (or last) computation.
    pub fn position(&self) -> u64 {
        self.bar.read().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |b| b.position())
    }

    /// Number of tasks of the current (or last) computation.
    pub fn length(&self) -> Option<u64> {
        self.bar.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|b| b.length())
    }
}

impl Callback for Progress {
    fn on_start(&self, n_tasks: usize) {
        let bar = ProgressBar::with_draw_target(Some(n_tasks as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} tasks ({per_sec}) {msg}",
            )
            .expect("static template")
            .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        *self.bar.write().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn on_task_finish(&self, _task: &TaskInfo<'_>, _s: Instant, _e: Instant, _ok: bool) {
        if let Some(bar) = self.bar.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.inc(1);
        }
    }

    fn on_finish(&self, ok: bool) {
        if let Some(bar) = self.bar.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if ok {
                bar.finish_with_message("done");
            } else {
                bar.abandon_with_message("failed");
            }
        }
    }
}
