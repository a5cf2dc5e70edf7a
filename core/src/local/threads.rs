//! The threaded executor: a work-stealing pool with dependency counting.
//!
//! Roots (nodes without dependencies) wait in a global FIFO in priority order.
//! Each worker owns a LIFO deque: when a task finishes, the dependents it made
//! ready are pushed there, best priority last, so the worker continues the chain
//! it is on (depth first, few live intermediates) while idle workers steal the
//! oldest entries. A worker that finds nothing spins briefly, then sleeps on a
//! condition variable with a short timeout, woken when work appears.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;

use super::plan::{Plan, Run};
use crate::error::ComputeError;

struct Shared<'a> {
    plan: &'a Plan,
    run: &'a Run<'a>,
    deps_left: Vec<AtomicU32>,
    injector: Injector<u32>,
    stealers: Vec<Stealer<u32>>,
    done: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<ComputeError>>,
    sleepers: AtomicUsize,
    wake: (Mutex<()>, Condvar),
}

impl Shared<'_> {
    fn finished(&self) -> bool {
        self.failed.load(Ordering::Acquire) || self.done.load(Ordering::Acquire) == self.plan.len()
    }

    fn wake_one(&self) {
        if self.sleepers.load(Ordering::Acquire) > 0 {
            self.wake.1.notify_one();
        }
    }

    fn wake_all(&self) {
        let _guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.1.notify_all();
    }

    fn find_task(&self, local: &Worker<u32>, me: usize) -> Option<u32> {
        if let Some(t) = local.pop() {
            return Some(t);
        }
        loop {
            // One at a time: roots are queued in priority order and should start in it.
            match self.injector.steal() {
                Steal::Success(t) => return Some(t),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let n = self.stealers.len();
        for k in 1..n {
            let victim = &self.stealers[(me + k) % n];
            loop {
                match victim.steal() {
                    Steal::Success(t) => return Some(t),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        None
    }

    fn fail(&self, e: ComputeError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::Release);
        drop(slot);
        self.wake_all();
    }

    fn work(&self, local: Worker<u32>, me: usize) {
        let backoff = Backoff::new();
        let mut ready: Vec<u32> = Vec::new();
        while !self.finished() {
            let Some(i) = self.find_task(&local, me) else {
                if backoff.is_completed() {
                    let guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
                    self.sleepers.fetch_add(1, Ordering::AcqRel);
                    if !self.finished() && self.injector.is_empty() {
                        // A timeout bounds the cost of a missed wake-up.
                        let _ = self.wake.1.wait_timeout(guard, Duration::from_micros(500));
                    }
                    self.sleepers.fetch_sub(1, Ordering::AcqRel);
                    backoff.reset();
                } else {
                    backoff.snooze();
                }
                continue;
            };
            backoff.reset();
            if let Err(e) = self.run.execute(i, me) {
                self.fail(e);
                return;
            }
            ready.clear();
            for &d in self.plan.dependents.row(i as usize) {
                if self.deps_left[d as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                    ready.push(d);
                }
            }
            // LIFO deque: push the worst first so the best priority pops next.
            ready.sort_unstable_by_key(|&d| std::cmp::Reverse(self.plan.priority[d as usize]));
            for &d in &ready {
                local.push(d);
            }
            if ready.len() > 1 {
                self.wake_one();
            }
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.plan.len() {
                self.wake_all();
            }
        }
    }
}

/// Runs `run`'s plan on `workers` threads (the calling thread is one of them).
pub(crate) fn execute(plan: &Plan, run: &Run<'_>, workers: usize) -> Result<(), ComputeError> {
    let workers = workers.max(1);
    let locals: Vec<Worker<u32>> = (0..workers).map(|_| Worker::new_lifo()).collect();
    let shared = Shared {
        plan,
        run,
        deps_left: (0..plan.len()).map(|i| AtomicU32::new(plan.deps.row(i).len() as u32)).collect(),
        injector: Injector::new(),
        stealers: locals.iter().map(Worker::stealer).collect(),
        done: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        sleepers: AtomicUsize::new(0),
        wake: (Mutex::new(()), Condvar::new()),
    };
    for &i in &plan.order {
        if plan.deps.row(i as usize).is_empty() {
            shared.injector.push(i);
        }
    }
    std::thread::scope(|s| {
        let mut locals = locals.into_iter().enumerate();
        let (_, first) = locals.next().expect("at least one worker");
        let shared = &shared;
        for (me, local) in locals {
            std::thread::Builder::new()
                .name(format!("rask-worker-{me}"))
                .spawn_scoped(s, move || shared.work(local, me))
                .expect("spawning a worker thread");
        }
        shared.work(first, 0);
    });
    match shared.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
