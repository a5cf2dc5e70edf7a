//! GLM fits on a 2-worker LocalCluster (separate `rask worker` processes):
//! the coefficients equal the same graph's on `Sync` to 1e-10, also when a worker
//! is SIGKILLed between two passes of the fit (its blocks are recomputed
//! from lineage). The kill is deterministic: a wrapper around the data
//! kills the worker before the third gradient pass.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ndarray::{Array1, Array2, ArrayView1};
use rask::array::create::from_array;
use rask::distributed::{ClusterOptions, LocalCluster};
use rask::glm::chunk::{GradSums, HessSums};
use rask::glm::chunked::Chunked;
use rask::glm::data::{AdmmRound, GlmData, InMemory, Ray};
use rask::glm::solve::{fit, Fit, Model, Options, Solver};
use rask::glm::{Family, GlmError, Penalty};

/// Deterministic data: 20 000 rows of 5 features from a small LCG, and
/// logistic targets from a fixed β.
fn data() -> (Array2<f64>, Array1<f64>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (n, p) = (20_000, 5);
    let x = Array2::from_shape_fn((n, p), |_| uniform() * 4.0 - 2.0);
    let beta = [0.8, -0.4, 1.5, 0.0, -0.6];
    let y = Array1::from_shape_fn(n, |i| {
        let eta: f64 = (0..p).map(|j| x[[i, j]] * beta[j]).sum::<f64>() + 0.3;
        f64::from(uniform() < 1.0 / (1.0 + (-eta).exp()))
    });
    (x, y)
}

fn max_diff(a: &Fit, b: &Fit) -> f64 {
    a.coef
        .iter()
        .zip(&b.coef)
        .map(|(p, q)| (p - q).abs())
        .fold((a.intercept - b.intercept).abs(), f64::max)
}

/// Delegates to the chunked data, running `fault` once before gradient pass `at`.
struct FaultAt<'a> {
    inner: &'a Chunked,
    passes: AtomicUsize,
    at: usize,
    fault: Box<dyn Fn() + Send + Sync + 'a>,
}

impl GlmData for FaultAt<'_> {
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    fn n_rows(&self) -> usize {
        self.inner.n_rows()
    }
    fn total_weight(&self) -> f64 {
        self.inner.total_weight()
    }
    fn n_chunks(&self) -> usize {
        self.inner.n_chunks()
    }
    fn local_solves(
        &self,
        round: &AdmmRound<'_>,
    ) -> Result<(Vec<Array1<f64>>, GradSums), GlmError> {
        self.inner.local_solves(round)
    }
    fn grad(
        &self,
        f: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<GradSums, GlmError> {
        if self.passes.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            (self.fault)();
        }
        self.inner.grad(f, beta, b)
    }
    fn hess(
        &self,
        f: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<HessSums, GlmError> {
        self.inner.hess(f, beta, b)
    }
    fn ray(
        &self,
        f: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        d: ArrayView1<'_, f64>,
        d_b: ArrayView1<'_, f64>,
    ) -> Result<Box<dyn Ray + '_>, GlmError> {
        self.inner.ray(f, beta, b, d, d_b)
    }
}

#[test]
fn fits_on_a_cluster_equal_local_fits_even_when_a_worker_dies() {
    let (x, y) = data();
    let model = Model {
        family: Family::Logistic,
        penalty: Penalty::l2(1e-3).unwrap(),
        fit_intercept: true,
    };
    let options = Options { max_iter: 100, tol: 1e-8 };
    // The same blocks and the same tree of sums, on the Sync scheduler.
    let xa = from_array(&x.clone().into_dyn(), [2_000, 5]).unwrap();
    let ya = from_array(&y.clone().into_dyn(), 2_000).unwrap();
    let local_data = Chunked::new(Family::Logistic, &xa, &ya, None, rask::Scheduler::Sync).unwrap();
    let local_fit = |solver| fit(&local_data, model, solver, options).unwrap();
    let newton = local_fit(Solver::Newton);
    let lbfgs = local_fit(Solver::Lbfgs);
    // ADMM is slow to high accuracy (linear convergence): a looser stop.
    let admm_options = Options { max_iter: 1_000, tol: 1e-6 };
    let admm = fit(&local_data, model, Solver::Admm, admm_options).unwrap();
    // And the in-memory fit agrees within the rounding of another summation order.
    let memory = InMemory::new(Family::Logistic, x.view(), y.view(), None, 2_000).unwrap();
    assert!(max_diff(&fit(&memory, model, Solver::Newton, options).unwrap(), &newton) <= 1e-8);
    let cluster = Arc::new(Mutex::new(
        LocalCluster::with_options(ClusterOptions {
            n_workers: 2,
            threads_per_worker: 1,
            binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
            ..ClusterOptions::default()
        })
        .expect("cluster starts"),
    ));
    let client = cluster.lock().unwrap().client().unwrap();
    let scheduler = client.scheduler();
    let (tx, rx) = std::sync::mpsc::channel();
    let killer = cluster.clone();
    std::thread::spawn(move || {
        // The data lives on the workers: persisted blocks, not literals sent per pass.
        let opts = rask::ComputeOptions::default();
        let xa = xa.persist_with(&scheduler, &opts).unwrap();
        let ya = ya.persist_with(&scheduler, &opts).unwrap();
        let chunked = Chunked::new(Family::Logistic, &xa, &ya, None, scheduler.clone()).unwrap();
        for (solver, local, options) in [
            (Solver::Newton, &newton, options),
            (Solver::Lbfgs, &lbfgs, options),
            (Solver::Admm, &admm, admm_options),
        ] {
            let remote = fit(&chunked, model, solver, options).unwrap();
            let d = max_diff(&remote, local);
            assert!(d <= 1e-10, "{}: cluster fit {d:e} from the Sync fit", solver.name());
            assert!(remote.converged);
        }
        // SIGKILL worker 1 before the third gradient pass of an L-BFGS fit.
        let faulty = FaultAt {
            inner: &chunked,
            passes: AtomicUsize::new(0),
            at: 3,
            fault: Box::new(move || killer.lock().unwrap().kill_worker(1).unwrap()),
        };
        let remote = fit(&faulty, model, Solver::Lbfgs, options).unwrap();
        assert!(faulty.passes.load(Ordering::SeqCst) > 3, "the kill happened mid-fit");
        let d = max_diff(&remote, &lbfgs);
        assert!(d <= 1e-10, "after a SIGKILL: {d:e} from the Sync fit");
        let _ = tx.send(());
    });
    // A hang is a failure, not a stuck test run; a panic in the thread drops `tx`.
    rx.recv_timeout(Duration::from_secs(300)).expect("the cluster fit failed or hung");
    drop(cluster);
}
