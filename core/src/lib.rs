#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod array;
pub mod delayed;
pub mod diagnostics;
pub mod error;
pub mod fastmath;
pub mod files;
pub mod graph;
pub mod key;
pub mod local;
pub mod npy;
pub mod op;
pub mod raw_array;
pub mod value;

pub use delayed::{
    collect, compute_all, compute_many, delayed, external, graph_of, local_value, try_delayed,
    value, AnyDelayed, Delayed, DelayedArg, DelayedFn, IntoArg,
};
pub use diagnostics::{performance_report, Callback, Profiler, Progress, TaskInfo};
pub use error::{ComputeError, FailureKind};
pub use graph::{Arg, Graph, GraphError, Node, Task};
pub use key::{tokenize, Key, Token};
pub use local::{
    default_scheduler, set_default_scheduler, with_scheduler, ComputeOptions, Executor, KeepAlive,
    Scheduler,
};
pub use op::{Data, IntoOpResult, OpEntry, OpError, OpRef};
pub use value::{Value, ValueError};

#[doc(hidden)]
pub use inventory;
