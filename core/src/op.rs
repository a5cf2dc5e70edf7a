//! Ops: the functions that tasks run.
//!
//! A *registered* op has a stable string name (`my_crate::inc`) and is compiled
//! into every binary that links the crate defining it, so a worker process can
//! look it up by name ([`lookup`]). Registered ops take and return serializable
//! values. Declare them with [`op!`](crate::op!). A *closure* op is any
//! `Fn` captured in-process: it runs on the local schedulers only, and a
//! distributed scheduler rejects it at submit, naming it.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::value::{Value, ValueError};

/// A failure inside an op, as the op reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The op returned an error.
    #[error("{message}")]
    Failed {
        /// The error's `Display`.
        message: String,
    },
    /// An argument did not convert to the type the op takes.
    #[error("argument {position}: {source}")]
    BadArgument {
        /// Zero-based position of the argument.
        position: usize,
        /// The conversion error.
        source: ValueError,
    },
    /// The op was called with the wrong number of arguments.
    #[error("expected {expected} arguments, got {got}")]
    Arity {
        /// Number of parameters of the op.
        expected: usize,
        /// Number of arguments in the task.
        got: usize,
    },
}

impl OpError {
    /// An op failure carrying `err`'s message.
    pub fn failed(err: impl fmt::Display) -> Self {
        OpError::Failed { message: err.to_string() }
    }
}

/// The erased calling convention of every op: owned argument values in, one value out.
pub type OpFn = fn(Vec<Value>) -> Result<Value, OpError>;

/// One registered op: its stable name and its erased function.
pub struct OpEntry {
    /// Stable name, `crate::path::function`.
    pub name: &'static str,
    /// The erased function.
    pub func: OpFn,
}

/// Finds a registered op by its stable name.
pub fn lookup(name: &str) -> Option<&'static OpEntry> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static TABLE: OnceLock<HashMap<&'static str, &'static OpEntry>> = OnceLock::new();
    TABLE
        .get_or_init(|| inventory::iter::<OpSubmit>.into_iter().map(|s| (s.0.name, s.0)).collect())
        .get(name)
        .copied()
}

/// Names of every op registered in this binary, sorted.
pub fn registered_ops() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<OpSubmit>.into_iter().map(|s| s.0.name).collect();
    names.sort_unstable();
    names
}

/// A closure op: runs in this process only.
pub struct ClosureOp {
    name: Arc<str>,
    func: Box<dyn Fn(Vec<Value>) -> Result<Value, OpError> + Send + Sync>,
}

impl ClosureOp {
    /// Wraps an erased closure under a display name.
    pub fn new(
        name: impl Into<Arc<str>>,
        func: impl Fn(Vec<Value>) -> Result<Value, OpError> + Send + Sync + 'static,
    ) -> Self {
        ClosureOp { name: name.into(), func: Box::new(func) }
    }
}

/// How a task refers to the function it runs.
#[derive(Clone)]
pub enum OpRef {
    /// A registered op, addressable by name from any process.
    Registered(&'static OpEntry),
    /// An in-process closure.
    Closure(Arc<ClosureOp>),
}

impl OpRef {
    /// The op's name (stable for registered ops, a label for closures).
    pub fn name(&self) -> &str {
        match self {
            OpRef::Registered(e) => e.name,
            OpRef::Closure(c) => &c.name,
        }
    }

    /// Whether another process can run this op (it is registered by name).
    pub fn is_registered(&self) -> bool {
        matches!(self, OpRef::Registered(_))
    }

    /// Calls the op.
    pub fn call(&self, args: Vec<Value>) -> Result<Value, OpError> {
        match self {
            OpRef::Registered(e) => (e.func)(args),
            OpRef::Closure(c) => (c.func)(args),
        }
    }
}

impl fmt::Debug for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpRef::Registered(e) => write!(f, "op {}", e.name),
            OpRef::Closure(c) => write!(f, "closure {}", c.name),
        }
    }
}

/// Types that registered ops take and return: serializable, clonable, shareable.
pub trait Data: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Data for T {}

/// What an op body may return: a plain value or a `Result` whose error is displayable.
pub trait IntoOpResult<T> {
    /// Converts into the op's result.
    fn into_op_result(self) -> Result<T, OpError>;
}

/// Wrapper for op bodies that return a `Result`; used by [`op!`](crate::op!).
pub struct Fallible<T, E>(pub Result<T, E>);
/// Wrapper for op bodies that return a plain value; used by [`op!`](crate::op!).
pub struct Infallible<T>(pub T);

impl<T, E: fmt::Display> IntoOpResult<T> for Fallible<T, E> {
    fn into_op_result(self) -> Result<T, OpError> {
        self.0.map_err(OpError::failed)
    }
}

impl<T> IntoOpResult<T> for Infallible<T> {
    fn into_op_result(self) -> Result<T, OpError> {
        Ok(self.0)
    }
}

/// Takes argument `position` for a registered op (moving it when possible).
pub fn arg<T: Data>(args: &mut std::vec::IntoIter<Value>, position: usize) -> Result<T, OpError> {
    let v = args.next().ok_or(OpError::Arity { expected: position + 1, got: position })?;
    v.take_decode::<T>().map_err(|source| OpError::BadArgument { position, source })
}

/// Declares registered ops: each becomes a lazy constructor returning a
/// [`Delayed`](crate::Delayed), plus a module of the same name holding the eager
/// function (`inc::call`) and the registry entry (`inc::OP`).
///
/// ```
/// rask_core::op! {
///     /// Adds one.
///     pub fn inc(x: i64) -> i64 { x + 1 }
///     /// Adds two numbers.
///     pub fn add(a: i64, b: i64) -> i64 { a + b }
///     /// Fails on negative input: an op may return a `Result` with a displayable error.
///     pub fn checked_sqrt(x: f64) -> Result<f64, String> {
///         if x < 0.0 { Err(format!("negative input {x}")) } else { Ok(x.sqrt()) }
///     }
/// }
/// let total = add(inc(1), inc(2));
/// assert_eq!(total.compute()?, 5);
/// assert_eq!(inc::call(1), 2);
/// assert_eq!(inc::OP.name, concat!(module_path!(), "::inc"));
/// Ok::<(), rask_core::ComputeError>(())
/// ```
#[macro_export]
macro_rules! op {
    () => {};
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> Result<$ok:ty, $err:ty> $body:block
        $($rest:tt)*
    ) => {
        $crate::op!(@one [$(#[$meta])*] $vis $name ($($arg : $ty),*) [$ok] [Result<$ok, $err>] Fallible $body);
        $crate::op!($($rest)*);
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block
        $($rest:tt)*
    ) => {
        $crate::op!(@one [$(#[$meta])*] $vis $name ($($arg : $ty),*) [$ret] [$ret] Infallible $body);
        $crate::op!($($rest)*);
    };
    (@one [$($meta:tt)*] $vis:vis $name:ident ($($arg:ident : $ty:ty),*) [$out:ty] [$ret:ty] $wrap:ident $body:block) => {
        $($meta)*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: impl $crate::IntoArg<$ty>),*) -> $crate::Delayed<$out> {
            $crate::Delayed::from_op(&$name::OP, vec![$($crate::IntoArg::<$ty>::into_arg($arg)),*])
        }

        #[doc = concat!("The eager function (`call`) and registry entry (`OP`) of the op `", stringify!($name), "`.")]
        #[allow(non_snake_case, unused_imports)]
        $vis mod $name {
            use super::*;

            /// Runs the op eagerly, in this thread.
            #[allow(clippy::too_many_arguments)]
            pub fn call($($arg: $ty),*) -> $ret $body

            fn erased(args: Vec<$crate::Value>) -> ::std::result::Result<$crate::Value, $crate::OpError> {
                const N: usize = [$(stringify!($arg)),*].len();
                if args.len() != N {
                    return Err($crate::OpError::Arity { expected: N, got: args.len() });
                }
                let mut _it = args.into_iter();
                let mut _pos = 0usize;
                $(
                    let $arg: $ty = $crate::op::arg(&mut _it, _pos)?;
                    _pos += 1;
                )*
                let out: $out = $crate::IntoOpResult::into_op_result($crate::op::$wrap(call($($arg),*)))?;
                Ok($crate::Value::new(out))
            }

            /// The registry entry of this op.
            pub static OP: $crate::OpEntry = $crate::OpEntry {
                // Inside this module, `module_path!()` already ends in the op's name.
                name: module_path!(),
                func: erased,
            };
            $crate::inventory::submit! { $crate::op::OpSubmit(&OP) }
        }
    };
}

/// A registry submission (a reference to an op's static entry).
pub struct OpSubmit(pub &'static OpEntry);
inventory::collect!(OpSubmit);
