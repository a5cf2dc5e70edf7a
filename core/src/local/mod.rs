//! Schedulers: choosing one, and the local executors.
//!
//! | scheduler | runs tasks on | use it for |
//! |---|---|---|
//! | [`Scheduler::Sync`] | the calling thread, in priority order | debugging, deterministic runs |
//! | [`Scheduler::Threads`] | a work-stealing pool (default: one thread per core) | everyday local work (the default) |
//! | [`Scheduler::Custom`] | any [`Executor`] (the distributed client registers itself here) | clusters |
//!
//! The scheduler of a `compute` is, in order: the one passed explicitly, the
//! innermost [`with_scheduler`] scope on this thread, the process default set by
//! [`set_default_scheduler`], or `Threads`.

mod plan;
mod sync;
mod threads;

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::diagnostics::Callback;
use crate::error::ComputeError;
use crate::graph::{fuse, Graph};
use crate::key::Key;
use crate::value::Value;

use plan::{Plan, Run};

/// Something that runs graphs: implemented by the distributed client and by
/// anyone who wants to plug in their own execution.
pub trait Executor: Send + Sync {
    /// A short name for messages (`"distributed(tcp://…)"`).
    fn name(&self) -> String;
    /// Runs `graph` and returns the values of `outputs`, in order.
    fn execute(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Vec<Value>, ComputeError>;

    /// Runs `graph` and keeps the values of `outputs` where they were made
    /// (a cluster keeps them on its workers), returning one keep-alive
    /// handle per output: the executor holds the value while its handle
    /// lives. `None` when this executor cannot hold values; the caller then
    /// fetches them with [`Executor::execute`].
    fn persist(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Option<Vec<KeepAlive>>, ComputeError> {
        let _ = (graph, outputs, options);
        Ok(None)
    }
}

/// A handle that keeps a value held by an [`Executor`] alive (see [`Executor::persist`]).
pub type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// Which scheduler runs a computation.
#[derive(Clone)]
pub enum Scheduler {
    /// One thread, the caller's; tasks in priority order.
    Sync,
    /// A work-stealing thread pool.
    Threads {
        /// Number of worker threads (the calling thread counts as one).
        workers: usize,
    },
    /// A user-supplied or distributed executor.
    Custom(Arc<dyn Executor>),
}

impl Scheduler {
    /// The threaded scheduler with one worker per available core.
    pub fn threads() -> Self {
        Scheduler::Threads {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    /// The threaded scheduler with `workers` threads.
    pub fn threads_n(workers: usize) -> Self {
        Scheduler::Threads { workers: workers.max(1) }
    }

    /// A name for messages and benchmark records.
    pub fn name(&self) -> String {
        match self {
            Scheduler::Sync => "sync".into(),
            Scheduler::Threads { .. } => "threads".into(),
            Scheduler::Custom(e) => e.name(),
        }
    }

    /// Runs `graph` and returns the values of `outputs` in order.
    pub fn execute(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Vec<Value>, ComputeError> {
        let graph = if options.fuse { fuse(&graph, outputs) } else { graph };
        match self {
            Scheduler::Sync => run_local(graph, outputs, options, sync::execute),
            Scheduler::Threads { workers } => run_local(graph, outputs, options, |plan, run| {
                threads::execute(plan, run, *workers)
            }),
            Scheduler::Custom(e) => e.execute(graph, outputs, options),
        }
    }

    /// Runs `graph` and keeps the values of `outputs` on the executor that
    /// made them (see [`Executor::persist`]); `None` for the local schedulers
    /// and executors that cannot hold values.
    pub fn persist(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Option<Vec<KeepAlive>>, ComputeError> {
        match self {
            Scheduler::Custom(e) => {
                let graph = if options.fuse { fuse(&graph, outputs) } else { graph };
                e.persist(graph, outputs, options)
            }
            _ => Ok(None),
        }
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheduler::Threads { workers } => write!(f, "Threads({workers})"),
            other => write!(f, "{}", other.name()),
        }
    }
}

fn run_local(
    graph: Graph,
    outputs: &[Key],
    options: &ComputeOptions,
    exec: impl FnOnce(&Plan, &Run<'_>) -> Result<(), ComputeError>,
) -> Result<Vec<Value>, ComputeError> {
    let plan = Plan::build(&graph, outputs)?;
    drop(graph);
    // The computation's callbacks, and those installed around it (`with_callback`).
    let scoped = crate::diagnostics::report::scoped_callbacks();
    let merged: Vec<Arc<dyn Callback>>;
    let callbacks = if scoped.is_empty() {
        &options.callbacks
    } else {
        merged = options.callbacks.iter().cloned().chain(scoped).collect();
        &merged
    };
    callbacks.iter().for_each(|c| c.on_start(plan.len()));
    let run = Run::new(&plan, callbacks);
    let result = exec(&plan, &run).map(|()| run.outputs());
    callbacks.iter().for_each(|c| c.on_finish(result.is_ok()));
    result
}

/// Options of one computation.
#[derive(Clone, Default)]
pub struct ComputeOptions {
    /// Observers of task starts and ends (progress bars, profilers).
    pub callbacks: Vec<Arc<dyn Callback>>,
    /// Fuse linear chains before running (fewer, larger tasks).
    pub fuse: bool,
}

impl ComputeOptions {
    /// Default options: no callbacks, no fusion.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an observer.
    pub fn with_callback(mut self, callback: Arc<dyn Callback>) -> Self {
        self.callbacks.push(callback);
        self
    }

    /// Turns chain fusion on or off.
    pub fn with_fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }
}

static DEFAULT: RwLock<Option<Scheduler>> = RwLock::new(None);

thread_local! {
    static SCOPED: RefCell<Vec<Scheduler>> = const { RefCell::new(Vec::new()) };
}

/// Sets (or with `None`, clears) the process-wide default scheduler. A
/// distributed `Client` calls this when it connects, as in Dask.
pub fn set_default_scheduler(scheduler: Option<Scheduler>) {
    *DEFAULT.write().unwrap_or_else(|p| p.into_inner()) = scheduler;
}

/// The scheduler a `compute` without an explicit one uses right now (see the module docs).
pub fn default_scheduler() -> Scheduler {
    if let Some(s) = SCOPED.with(|s| s.borrow().last().cloned()) {
        return s;
    }
    DEFAULT.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(Scheduler::threads)
}

/// Runs `f` with `scheduler` as this thread's default; restores the previous one
/// afterwards, also when `f` panics.
pub fn with_scheduler<R>(scheduler: Scheduler, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPED.with(|s| s.borrow_mut().pop());
        }
    }
    SCOPED.with(|s| s.borrow_mut().push(scheduler));
    let _pop = Pop;
    f()
}
