//! `Delayed<T>`: a typed, lazy handle on a value that a task graph will compute.
//!
//! Calling a registered op (declared with [`op!`](crate::op!)) or a wrapped
//! closure ([`delayed`]) on `Delayed` values, plain values or lists of `Delayed`
//! builds a node and returns a new `Delayed`; nothing runs until
//! [`Delayed::compute`]. A `Delayed` is a node that points at its inputs by
//! `Arc`, so building costs O(1) per call (dask merges dictionaries on every
//! call); the [`Graph`] is materialized once, at compute time, deduplicating
//! shared subgraphs by key.
//!
//! Keys: a registered op applied to the same inputs gets the same key (content
//! tokens of the op name and the arguments). A closure gets a fresh key per call
//! unless marked [`DelayedFn::pure`], in which case its key hashes its name, its
//! closure type and its arguments (captured values are *not* hashed: two pure
//! closures of the same type with different captures must have different names).

use std::any::TypeId;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use crate::error::ComputeError;
use crate::graph::{visualize, Arg, Graph, Node, Task, VisualizeError};
use crate::key::{tokenize, unique_token, Key, Token, TokenHasher};
use crate::local::{default_scheduler, ComputeOptions, Scheduler};
use crate::op::{ClosureOp, Data, OpEntry, OpError, OpRef};
use crate::value::{Value, ValueError};

/// Turns a value that arrived encoded (from another process) into a live one of the node's type.
type Decoder = fn(Value) -> Result<Value, ValueError>;

fn decode_as<T: Data>(v: Value) -> Result<Value, ValueError> {
    if v.is_encoded() {
        Ok(Value::new(v.take_decode::<T>()?))
    } else {
        Ok(v)
    }
}

struct DNode {
    key: Key,
    body: DBody,
    decode: Option<Decoder>,
}

enum DBody {
    Task {
        op: OpRef,
        args: Vec<DelayedArg>,
    },
    Data(Value),
    /// Held by another scheduler under the node's key (kept there while
    /// the handle, if any, lives).
    External {
        /// Dropped with the last handle on the node, so the value is released then.
        _keep: Option<crate::local::KeepAlive>,
    },
}

/// One argument of a delayed call: another `Delayed`, a literal, or a list.
/// Made by [`IntoArg`]; opaque.
pub struct DelayedArg(ArgInner);

enum ArgInner {
    Node(Arc<DNode>),
    Literal { value: Value, token: Token },
    List(Vec<DelayedArg>),
}

impl DelayedArg {
    fn token_into(&self, h: &mut TokenHasher) {
        match &self.0 {
            ArgInner::Node(n) => {
                h.u64(1).key(&n.key);
            }
            ArgInner::Literal { token, .. } => {
                h.u64(2).token(*token);
            }
            ArgInner::List(items) => {
                h.u64(3).u64(items.len() as u64);
                items.iter().for_each(|a| a.token_into(h));
            }
        }
    }

    fn to_graph_arg(&self) -> Arg {
        match &self.0 {
            ArgInner::Node(n) => Arg::Key(n.key.clone()),
            ArgInner::Literal { value, .. } => Arg::Literal(value.clone()),
            ArgInner::List(items) => {
                Arg::List(items.iter().map(DelayedArg::to_graph_arg).collect())
            }
        }
    }

    fn for_each_node(&self, f: &mut impl FnMut(&Arc<DNode>)) {
        match &self.0 {
            ArgInner::Node(n) => f(n),
            ArgInner::Literal { .. } => {}
            ArgInner::List(items) => items.iter().for_each(|a| a.for_each_node(f)),
        }
    }

    fn drain_nodes(self, out: &mut Vec<Arc<DNode>>) {
        match self.0 {
            ArgInner::Node(n) => out.push(n),
            ArgInner::Literal { .. } => {}
            ArgInner::List(items) => items.into_iter().for_each(|a| a.drain_nodes(out)),
        }
    }
}

impl Drop for DNode {
    /// Drops long chains iteratively (a recursive drop of a 10⁵-long chain would overflow the stack).
    fn drop(&mut self) {
        let mut stack = Vec::new();
        if let DBody::Task { args, .. } = &mut self.body {
            std::mem::take(args).into_iter().for_each(|a| a.drain_nodes(&mut stack));
        }
        while let Some(node) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(node) {
                if let DBody::Task { args, .. } = &mut inner.body {
                    std::mem::take(args).into_iter().for_each(|a| a.drain_nodes(&mut stack));
                }
            }
        }
    }
}

/// Conversion of call arguments: a `Delayed<T>` (or a reference to one), a plain
/// value of a serializable type `T` (embedded in the graph as a literal), or a
/// `Vec<Delayed<T>>` for a `Vec<T>` parameter.
pub trait IntoArg<T> {
    /// The argument.
    fn into_arg(self) -> DelayedArg;
}

impl<T> IntoArg<T> for Delayed<T> {
    fn into_arg(self) -> DelayedArg {
        DelayedArg(ArgInner::Node(self.node))
    }
}

impl<T> IntoArg<T> for &Delayed<T> {
    fn into_arg(self) -> DelayedArg {
        DelayedArg(ArgInner::Node(self.node.clone()))
    }
}

impl<T: Data> IntoArg<T> for T {
    fn into_arg(self) -> DelayedArg {
        // Tokenizing fails only for types postcard cannot encode (unknown-length
        // sequences); such a literal gets a unique token, never a false match.
        let token = tokenize(&self).unwrap_or_else(|_| unique_token());
        DelayedArg(ArgInner::Literal { value: Value::new(self), token })
    }
}

/// A list of `Delayed<T>` is an argument of type `Vec<T>`. Registered ops receive
/// it through serde (encode, decode); closures should take it via [`collect`].
impl<T> IntoArg<Vec<T>> for Vec<Delayed<T>> {
    fn into_arg(self) -> DelayedArg {
        DelayedArg(ArgInner::List(
            self.into_iter().map(|d| DelayedArg(ArgInner::Node(d.node))).collect(),
        ))
    }
}

/// A lazily computed value of type `T`.
pub struct Delayed<T> {
    node: Arc<DNode>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Delayed<T> {
    fn clone(&self) -> Self {
        Delayed { node: self.node.clone(), _type: PhantomData }
    }
}

impl<T> fmt::Debug for Delayed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delayed<{}>({})", std::any::type_name::<T>(), self.node.key)
    }
}

fn wrap<T>(node: DNode) -> Delayed<T> {
    Delayed { node: Arc::new(node), _type: PhantomData }
}

/// Short label of an op path: `my_crate::stats::mean` -> `mean`.
fn short_name(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

impl<T: Data> Delayed<T> {
    /// A task applying a registered op; its key is the content token of the op's
    /// name and the arguments. Used by [`op!`](crate::op!).
    pub fn from_op(op: &'static OpEntry, args: Vec<DelayedArg>) -> Self {
        // Closures downstream may take this output from its encoding.
        crate::value::register_decoder::<T>();
        let mut h = TokenHasher::new();
        h.str(op.name);
        args.iter().for_each(|a| a.token_into(&mut h));
        let key = Key::new(short_name(op.name), h.finish());
        wrap(DNode {
            key,
            body: DBody::Task { op: OpRef::Registered(op), args },
            decode: Some(decode_as::<T>),
        })
    }
}

/// A value embedded in the graph as a data node, keyed by its content.
pub fn value<T: Data>(value: T) -> Delayed<T> {
    let token = tokenize(&value).unwrap_or_else(|_| unique_token());
    let key = Key::new(short_name(std::any::type_name::<T>()), token);
    wrap(DNode { key, body: DBody::Data(Value::new(value)), decode: Some(decode_as::<T>) })
}

/// A process-local value (any type; never sent to another process), with a unique key.
pub fn local_value<T: Send + Sync + 'static>(value: T) -> Delayed<T> {
    let key = Key::new("local", unique_token());
    wrap(DNode { key, body: DBody::Data(Value::local(value)), decode: None })
}

/// A `Delayed<T>` standing for the value that another scheduler holds under
/// `key` (for example a cluster future), so that it can be an argument of
/// later computations without moving the data.
pub fn external<T: Data>(key: Key) -> Delayed<T> {
    wrap(DNode { key, body: DBody::External { _keep: None }, decode: Some(decode_as::<T>) })
}

/// A `Delayed<Vec<T>>` gathering `items` (moved, not cloned, when nothing else uses them).
pub fn collect<T: Clone + Send + Sync + 'static>(items: Vec<Delayed<T>>) -> Delayed<Vec<T>> {
    try_delayed("collect", |xs: Vec<Value>| {
        xs.into_iter().map(|v| v.take::<T>()).collect::<Result<Vec<T>, ValueError>>()
    })
    .try_erased_list(items)
}

impl<T> Delayed<T> {
    /// The key of this value's node.
    pub fn key(&self) -> &Key {
        &self.node.key
    }

    /// The same value as an untyped handle (for [`compute_many`]).
    pub fn erase(&self) -> AnyDelayed {
        AnyDelayed { node: self.node.clone() }
    }

    /// The task graph that computes this value (its ancestors only).
    pub fn graph(&self) -> Graph {
        materialize(std::slice::from_ref(&self.node))
    }

    /// Writes the graph as `.dot`, `.svg` or `.png` (the last two need Graphviz).
    pub fn visualize(&self, path: impl AsRef<Path>) -> Result<(), VisualizeError> {
        visualize(&self.graph(), path)
    }
}

impl<T: Clone + Send + Sync + 'static> Delayed<T> {
    /// Computes the value on the current default scheduler.
    pub fn compute(&self) -> Result<T, ComputeError> {
        self.compute_with(&default_scheduler(), &ComputeOptions::default())
    }

    /// Computes the value on `scheduler` with `options`.
    pub fn compute_with(
        &self,
        scheduler: &Scheduler,
        options: &ComputeOptions,
    ) -> Result<T, ComputeError> {
        let mut out =
            scheduler.execute(self.graph(), std::slice::from_ref(&self.node.key), options)?;
        let v = out.pop().expect("one output per requested key");
        self.extract(v)
    }

    fn extract(&self, v: Value) -> Result<T, ComputeError> {
        let output = |source| ComputeError::Output { key: self.node.key.clone(), source };
        let v = match self.node.decode {
            Some(decode) => decode(v).map_err(output)?,
            None => v,
        };
        v.take::<T>().map_err(output)
    }

    /// Computes the value and returns a `Delayed` holding it (same key), so later
    /// graphs that use it do not recompute its ancestors.
    pub fn persist(&self) -> Result<Delayed<T>, ComputeError> {
        self.persist_with(&default_scheduler(), &ComputeOptions::default())
    }

    /// [`Delayed::persist`] on `scheduler` with `options`.
    pub fn persist_with(
        &self,
        scheduler: &Scheduler,
        options: &ComputeOptions,
    ) -> Result<Delayed<T>, ComputeError> {
        let mut out =
            scheduler.execute(self.graph(), std::slice::from_ref(&self.node.key), options)?;
        let v = out.pop().expect("one output per requested key");
        let v = match self.node.decode {
            Some(decode) => decode(v)
                .map_err(|source| ComputeError::Output { key: self.node.key.clone(), source })?,
            None => v,
        };
        Ok(wrap(DNode {
            key: self.node.key.clone(),
            body: DBody::Data(v),
            decode: self.node.decode,
        }))
    }

    /// Applies a closure to this value lazily (a fresh key per call).
    pub fn map<R: Send + Sync + 'static>(
        &self,
        name: &str,
        f: impl Fn(T) -> R + Send + Sync + 'static,
    ) -> Delayed<R> {
        delayed(name, f).call((self,))
    }
}

/// A `Delayed` of any type (from [`Delayed::erase`]).
#[derive(Clone)]
pub struct AnyDelayed {
    node: Arc<DNode>,
}

impl AnyDelayed {
    /// Its key.
    pub fn key(&self) -> &Key {
        &self.node.key
    }
}

/// The one graph computing all of `items` (shared ancestors appear once).
pub fn graph_of(items: &[AnyDelayed]) -> Graph {
    let nodes: Vec<Arc<DNode>> = items.iter().map(|d| d.node.clone()).collect();
    materialize(&nodes)
}

/// Computes several values in one graph: shared ancestors run once. Values come
/// back in the order of `items` (decoded when they arrived from another process).
pub fn compute_many(
    items: &[AnyDelayed],
    scheduler: &Scheduler,
    options: &ComputeOptions,
) -> Result<Vec<Value>, ComputeError> {
    let keys: Vec<Key> = items.iter().map(|d| d.node.key.clone()).collect();
    let values = scheduler.execute(graph_of(items), &keys, options)?;
    values
        .into_iter()
        .zip(items.iter().map(|d| &d.node))
        .map(|(v, n)| match n.decode {
            Some(decode) => {
                decode(v).map_err(|source| ComputeError::Output { key: n.key.clone(), source })
            }
            None => Ok(v),
        })
        .collect()
}

/// Computes `items` in one graph and returns handles holding the values
/// under the same keys (see [`Delayed::persist`]).
pub fn persist_many<T: Clone + Send + Sync + 'static>(
    items: &[Delayed<T>],
    scheduler: &Scheduler,
    options: &ComputeOptions,
) -> Result<Vec<Delayed<T>>, ComputeError> {
    let erased: Vec<AnyDelayed> = items.iter().map(Delayed::erase).collect();
    // A cluster keeps the values on its workers: later graphs refer to them.
    let keys: Vec<Key> = erased.iter().map(|d| d.node.key.clone()).collect();
    if let Some(handles) = scheduler.persist(graph_of(&erased), &keys, options)? {
        return Ok(handles
            .into_iter()
            .zip(items)
            .map(|(h, d)| {
                let body = DBody::External { _keep: Some(h) };
                wrap(DNode { key: d.node.key.clone(), body, decode: d.node.decode })
            })
            .collect());
    }
    let values = compute_many(&erased, scheduler, options)?;
    Ok(values
        .into_iter()
        .zip(items)
        .map(|(v, d)| {
            wrap(DNode { key: d.node.key.clone(), body: DBody::Data(v), decode: d.node.decode })
        })
        .collect())
}

/// Computes a list of same-typed values in one graph, on the default scheduler.
pub fn compute_all<T: Clone + Send + Sync + 'static>(
    items: &[Delayed<T>],
) -> Result<Vec<T>, ComputeError> {
    let erased: Vec<AnyDelayed> = items.iter().map(Delayed::erase).collect();
    let values = compute_many(&erased, &default_scheduler(), &ComputeOptions::default())?;
    values
        .into_iter()
        .zip(items)
        .map(|(v, d)| {
            v.take::<T>().map_err(|source| ComputeError::Output { key: d.key().clone(), source })
        })
        .collect()
}

/// Builds the graph of the ancestors of `roots` (iteratively; deduplicated by key).
fn materialize(roots: &[Arc<DNode>]) -> Graph {
    let mut graph = Graph::new();
    let mut stack: Vec<Arc<DNode>> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if graph.contains(&n.key) {
            continue;
        }
        let node = match &n.body {
            DBody::Data(v) => Node::Data(v.clone()),
            DBody::External { .. } => Node::External,
            DBody::Task { op, args } => {
                for a in args {
                    a.for_each_node(&mut |c| {
                        if !graph.contains(&c.key) {
                            stack.push(c.clone());
                        }
                    });
                }
                Node::Task(Task {
                    op: op.clone(),
                    args: args.iter().map(DelayedArg::to_graph_arg).collect(),
                })
            }
        };
        graph.insert(n.key.clone(), node);
    }
    graph
}

/// Positional arguments of a wrapped closure: a tuple of [`IntoArg`]s.
pub trait CallArgs<A> {
    /// The arguments, in order.
    fn into_args(self) -> Vec<DelayedArg>;
}

/// A closure `Fn(A0, A1, …) -> R` in erased form.
pub trait ClosureFn<A, R>: Send + Sync + 'static {
    /// The erased calling convention.
    fn erase(self) -> Box<dyn Fn(Vec<Value>) -> Result<Value, OpError> + Send + Sync>;
}

/// A closure wrapped for lazy calls (see [`delayed`]).
pub struct DelayedFn<A, R> {
    op: OpRef,
    type_token: u64,
    pure: bool,
    _sig: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for DelayedFn<A, R> {
    fn clone(&self) -> Self {
        DelayedFn {
            op: self.op.clone(),
            type_token: self.type_token,
            pure: self.pure,
            _sig: PhantomData,
        }
    }
}

/// Wraps a closure for lazy calls: `delayed("add", |a: i64, b: i64| a + b).call((x, 1))`.
/// The closure may return a plain value or a `Result` (its error fails the task).
/// Closures run on local schedulers only.
pub fn delayed<A, R, F: ClosureFn<A, R>>(name: &str, f: F) -> DelayedFn<A, R> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    TypeId::of::<F>().hash(&mut h);
    DelayedFn {
        op: OpRef::Closure(Arc::new(ClosureOp::new(name, f.erase()))),
        type_token: h.finish(),
        pure: false,
        _sig: PhantomData,
    }
}

impl<A, R: Send + Sync + 'static> DelayedFn<A, R> {
    /// Marks the closure pure: same inputs, same key (see the module docs for the caveat on captures).
    pub fn pure(mut self) -> Self {
        self.pure = true;
        self
    }

    fn node_key(&self, args: &[DelayedArg]) -> Key {
        let token = if self.pure {
            let mut h = TokenHasher::new();
            h.str("closure").str(self.op.name()).u64(self.type_token);
            args.iter().for_each(|a| a.token_into(&mut h));
            h.finish()
        } else {
            unique_token()
        };
        Key::new(self.op.name(), token)
    }

    /// Applies the closure lazily to a tuple of arguments.
    pub fn call(&self, args: impl CallArgs<A>) -> Delayed<R> {
        let args = args.into_args();
        let key = self.node_key(&args);
        wrap(DNode { key, body: DBody::Task { op: self.op.clone(), args }, decode: None })
    }
}

impl<R: Send + Sync + 'static> DelayedFn<(Vec<Value>,), R> {
    /// Calls a closure over erased values with a list argument (used by [`collect`]).
    fn try_erased_list<T>(&self, items: Vec<Delayed<T>>) -> Delayed<R> {
        let list = DelayedArg(ArgInner::List(
            items.into_iter().map(|d| DelayedArg(ArgInner::Node(d.node))).collect(),
        ));
        let args = vec![list];
        let key = self.node_key(&args);
        wrap(DNode { key, body: DBody::Task { op: self.op.clone(), args }, decode: None })
    }
}

/// A fallible closure, wrapped by [`try_delayed`]: its `Err` fails the task.
pub struct TryFn<F, E>(F, PhantomData<fn() -> E>);

/// Wraps a closure returning `Result<R, E>`: an `Err` fails the task with `E`'s
/// message, and the `Delayed` holds `R`.
pub fn try_delayed<A, R, E, F>(name: &str, f: F) -> DelayedFn<A, R>
where
    TryFn<F, E>: ClosureFn<A, R>,
{
    delayed(name, TryFn(f, PhantomData))
}

/// Closure arguments: any clonable, shareable type. A `Vec<Value>` parameter
/// receives a list argument's items unconverted.
fn take_arg<T: Clone + Send + Sync + 'static>(v: Value, position: usize) -> Result<T, OpError> {
    if TypeId::of::<T>() == TypeId::of::<Vec<Value>>() {
        if let Some(items) = v.as_list() {
            let items: Vec<Value> = items.to_vec();
            let boxed: Box<dyn std::any::Any> = Box::new(items);
            return Ok(*boxed.downcast::<T>().expect("type checked above"));
        }
    }
    v.take::<T>().map_err(|source| OpError::BadArgument { position, source })
}

macro_rules! closure_arity {
    ($n:literal; $($A:ident $I:ident $a:ident),*) => {
        impl<$($A, $I: IntoArg<$A>),*> CallArgs<($($A,)*)> for ($($I,)*) {
            #[allow(unused_variables, non_snake_case)]
            fn into_args(self) -> Vec<DelayedArg> {
                let ($($a,)*) = self;
                vec![$($a.into_arg()),*]
            }
        }

        /// Plain-valued closures.
        impl<F, R, $($A),*> ClosureFn<($($A,)*), R> for F
        where
            F: Fn($($A),*) -> R + Send + Sync + 'static,
            R: Send + Sync + 'static,
            $($A: Clone + Send + Sync + 'static),*
        {
            #[allow(unused_mut, unused_variables, unused_assignments)]
            fn erase(self) -> Box<dyn Fn(Vec<Value>) -> Result<Value, OpError> + Send + Sync> {
                Box::new(move |args: Vec<Value>| {
                    if args.len() != $n {
                        return Err(OpError::Arity { expected: $n, got: args.len() });
                    }
                    let mut it = args.into_iter();
                    let mut pos = 0usize;
                    $(
                        let $a: $A = take_arg(it.next().expect("arity checked"), pos)?;
                        pos += 1;
                    )*
                    Ok(Value::local((self)($($a),*)))
                })
            }
        }

        /// Fallible closures (through [`try_delayed`]).
        impl<F, R, E, $($A),*> ClosureFn<($($A,)*), R> for TryFn<F, E>
        where
            F: Fn($($A),*) -> Result<R, E> + Send + Sync + 'static,
            R: Send + Sync + 'static,
            E: fmt::Display + 'static,
            $($A: Clone + Send + Sync + 'static),*
        {
            #[allow(unused_mut, unused_variables, unused_assignments)]
            fn erase(self) -> Box<dyn Fn(Vec<Value>) -> Result<Value, OpError> + Send + Sync> {
                let f = self.0;
                Box::new(move |args: Vec<Value>| {
                    if args.len() != $n {
                        return Err(OpError::Arity { expected: $n, got: args.len() });
                    }
                    let mut it = args.into_iter();
                    let mut pos = 0usize;
                    $(
                        let $a: $A = take_arg(it.next().expect("arity checked"), pos)?;
                        pos += 1;
                    )*
                    f($($a),*).map(Value::local).map_err(OpError::failed)
                })
            }
        }
    };
}

closure_arity!(0;);
closure_arity!(1; A0 I0 a0);
closure_arity!(2; A0 I0 a0, A1 I1 a1);
closure_arity!(3; A0 I0 a0, A1 I1 a1, A2 I2 a2);
closure_arity!(4; A0 I0 a0, A1 I1 a1, A2 I2 a2, A3 I3 a3);
closure_arity!(5; A0 I0 a0, A1 I1 a1, A2 I2 a2, A3 I3 a3, A4 I4 a4);
closure_arity!(6; A0 I0 a0, A1 I1 a1, A2 I2 a2, A3 I3 a3, A4 I4 a4, A5 I5 a5);
