//! The indexed form of a graph that the local executors run, and the code that
//! runs one node of it (shared by the sync and threaded executors).
//!
//! Keys become dense `u32` indices, arguments point at indices, and each node
//! knows its dependencies, dependents and priority. While running, each node has
//! a slot for its value and a count of dependents that have not yet taken it;
//! the last one takes the value out of the slot (moving it, not copying), so an
//! intermediate lives exactly as long as someone still needs it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::diagnostics::{Callback, TaskInfo};
use crate::error::{ComputeError, FailureKind};
use crate::graph::order::{Csr, Topo};
use crate::graph::{Arg, Graph, Node, Task};
use crate::key::Key;
use crate::op::OpRef;
use crate::value::Value;

pub(crate) enum PArg {
    Dep(u32),
    /// Output of an earlier step of the same fused node.
    Local(usize),
    Literal(Value),
    List(Vec<PArg>),
}

pub(crate) struct PTask {
    op: OpRef,
    args: Vec<PArg>,
}

pub(crate) enum PNode {
    Task(PTask),
    Data(Value),
    Alias(u32),
    Fused(Vec<(Key, PTask)>),
}

/// A graph ready to run: see the module docs.
pub(crate) struct Plan {
    pub keys: Vec<Key>,
    pub nodes: Vec<PNode>,
    pub deps: Csr,
    pub dependents: Csr,
    pub priority: Vec<u32>,
    /// All nodes by increasing priority (a topological order).
    pub order: Vec<u32>,
    pub outputs: Vec<u32>,
    pub is_output: Vec<bool>,
}

fn convert_args(args: &[Arg], index: &impl Fn(&Key) -> PArg) -> Vec<PArg> {
    args.iter()
        .map(|a| match a {
            Arg::Key(k) => index(k),
            Arg::Literal(v) => PArg::Literal(v.clone()),
            Arg::List(items) => PArg::List(convert_args(items, index)),
        })
        .collect()
}

impl Plan {
    /// Indexes the ancestors of `outputs`; rejects cycles, missing keys and
    /// values that live on another scheduler.
    pub fn build(graph: &Graph, outputs: &[Key]) -> Result<Plan, ComputeError> {
        let mut topo = Topo::build(graph, outputs)?;
        for (key, node) in topo.keys.iter().zip(&topo.nodes) {
            if let Node::External = node {
                return Err(ComputeError::Unsupported {
                    scheduler: "local".into(),
                    key: (*key).clone(),
                    reason: "its value lives on a cluster (a future); compute this graph with \
                             that cluster's client"
                        .into(),
                });
            }
        }
        let priority = topo.priorities();
        let n = topo.keys.len();
        let dep = |k: &Key| PArg::Dep(topo.index[k]);
        let nodes = topo
            .nodes
            .iter()
            .map(|node| match node {
                Node::Task(Task { op, args }) => {
                    PNode::Task(PTask { op: op.clone(), args: convert_args(args, &dep) })
                }
                Node::Data(v) => PNode::Data(v.clone()),
                Node::Alias(k) => PNode::Alias(topo.index[k]),
                Node::Fused(f) => {
                    let step_index = f.step_index();
                    let steps = f
                        .steps
                        .iter()
                        .enumerate()
                        .map(|(i, (k, t))| {
                            let resolve = |r: &Key| match step_index.get(r) {
                                Some(&step) if step < i => PArg::Local(step),
                                _ => PArg::Dep(topo.index[r]),
                            };
                            (
                                k.clone(),
                                PTask { op: t.op.clone(), args: convert_args(&t.args, &resolve) },
                            )
                        })
                        .collect();
                    PNode::Fused(steps)
                }
                Node::External => unreachable!("refused above"),
            })
            .collect();
        let dependents = topo.deps.transpose();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&i| priority[i as usize]);
        let mut is_output = vec![false; n];
        for &o in &topo.roots {
            is_output[o as usize] = true;
        }
        Ok(Plan {
            keys: topo.keys.iter().map(|k| (*k).clone()).collect(),
            nodes,
            deps: topo.deps,
            dependents,
            priority,
            order,
            outputs: topo.roots,
            is_output,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The mutable state of one execution of a plan.
pub(crate) struct Run<'a> {
    plan: &'a Plan,
    slots: Vec<Mutex<Option<Value>>>,
    uses_left: Vec<AtomicU32>,
    callbacks: &'a [Arc<dyn Callback>],
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

impl<'a> Run<'a> {
    pub fn new(plan: &'a Plan, callbacks: &'a [Arc<dyn Callback>]) -> Self {
        Run {
            plan,
            slots: (0..plan.len()).map(|_| Mutex::new(None)).collect(),
            uses_left: (0..plan.len())
                .map(|i| AtomicU32::new(plan.dependents.row(i).len() as u32))
                .collect(),
            callbacks,
        }
    }

    fn slot_value(&self, i: u32) -> Value {
        self.slots[i as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("a dependency runs before its dependents")
    }

    fn resolve(&self, arg: &PArg, locals: &[Value]) -> Value {
        match arg {
            PArg::Dep(i) => self.slot_value(*i),
            PArg::Local(step) => locals[*step].clone(),
            PArg::Literal(v) => v.clone(),
            PArg::List(items) => {
                Value::list(items.iter().map(|a| self.resolve(a, locals)).collect())
            }
        }
    }

    /// Drops this node's claim on each dependency; the last claimant empties the slot.
    fn release_dependencies(&self, i: u32) {
        for &d in self.plan.deps.row(i as usize) {
            if self.uses_left[d as usize].fetch_sub(1, Ordering::AcqRel) == 1
                && !self.plan.is_output[d as usize]
            {
                let old = self.slots[d as usize].lock().unwrap_or_else(|p| p.into_inner()).take();
                drop(old);
            }
        }
    }

    /// Calls one task; `release` (plain tasks) drops the node's claims on its
    /// dependencies before the call, so the op holds the only reference and can move the value.
    fn call(
        &self,
        key: &Key,
        task: &PTask,
        locals: &[Value],
        release: Option<u32>,
    ) -> Result<Value, ComputeError> {
        let args: Vec<Value> = task.args.iter().map(|a| self.resolve(a, locals)).collect();
        if let Some(i) = release {
            self.release_dependencies(i);
        }
        let failed = |message: String, kind| ComputeError::TaskFailed {
            key: key.clone(),
            op: task.op.name().to_string(),
            message,
            kind,
        };
        match catch_unwind(AssertUnwindSafe(|| task.op.call(args))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(e.to_string(), FailureKind::Error)),
            Err(payload) => Err(failed(panic_message(payload), FailureKind::Panic)),
        }
    }

    /// Runs node `i` on worker `worker`, storing its value.
    pub fn execute(&self, i: u32, worker: usize) -> Result<(), ComputeError> {
        let plan = self.plan;
        let key = &plan.keys[i as usize];
        let node = &plan.nodes[i as usize];
        let timing = (!self.callbacks.is_empty()).then(|| {
            let op = node_op_name(node);
            let info = TaskInfo { key, op, worker };
            self.callbacks.iter().for_each(|c| c.on_task_start(&info));
            Instant::now()
        });
        let result = match node {
            PNode::Task(t) => self.call(key, t, &[], Some(i)),
            PNode::Data(v) => Ok(v.clone()),
            PNode::Alias(d) => {
                let v = self.slot_value(*d);
                self.release_dependencies(i);
                Ok(v)
            }
            PNode::Fused(steps) => {
                let mut locals: Vec<Value> = Vec::with_capacity(steps.len());
                let mut out = Ok(());
                for (k, t) in steps {
                    match self.call(k, t, &locals, None) {
                        Ok(v) => locals.push(v),
                        Err(e) => {
                            out = Err(e);
                            break;
                        }
                    }
                }
                self.release_dependencies(i);
                out.map(|()| locals.pop().expect("a fused node has steps"))
            }
        };
        if let Some(start) = timing {
            let info = TaskInfo { key, op: node_op_name(node), worker };
            let ok = result.is_ok();
            self.callbacks.iter().for_each(|c| c.on_task_finish(&info, start, Instant::now(), ok));
        }
        let value = result?;
        *self.slots[i as usize].lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// The values of the requested outputs (after every node ran).
    pub fn outputs(&self) -> Vec<Value> {
        self.plan.outputs.iter().map(|&o| self.slot_value(o)).collect()
    }
}

fn node_op_name(node: &PNode) -> &str {
    match node {
        PNode::Task(t) => t.op.name(),
        PNode::Data(_) => "data",
        PNode::Alias(_) => "alias",
        PNode::Fused(steps) => steps.last().map(|(_, t)| t.op.name()).unwrap_or("fused"),
    }
}
