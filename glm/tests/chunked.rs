//! Fits over chunked arrays (each pass a task graph) equal fits over the same
//! row chunks in memory, on the `Sync` and `Threads` schedulers, to 1e-10;
//! files read inside the tasks give the same coefficients; bad input names
//! its row.

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use rask_core::array::create::from_array;
use rask_core::array::Array;
use rask_core::Scheduler;
use rask_glm::chunked::Chunked;
use rask_glm::data::{GlmData, InMemory};
use rask_glm::solve::{fit, Fit, Model, Options, Solver};
use rask_glm::{Family, GlmError, Penalty};

fn fixture() -> (Array2<f64>, Array1<f64>, Array1<f64>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["X"].clone()).unwrap();
    let x = Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
    let y: Vec<f64> = serde_json::from_value(v["y"]["logistic"].clone()).unwrap();
    let w: Vec<f64> = serde_json::from_value(v["sample_weight"].clone()).unwrap();
    (x, Array1::from(y), Array1::from(w))
}

fn arrays(x: &Array2<f64>, y: &Array1<f64>, w: &Array1<f64>) -> [Array<f64>; 3] {
    let xd: ArrayD<f64> = x.clone().into_dyn();
    [
        from_array(&xd, [64, 5]).unwrap(),
        from_array(&y.clone().into_dyn(), 64).unwrap(),
        from_array(&w.clone().into_dyn(), 64).unwrap(),
    ]
}

fn max_diff(a: &Fit, b: &Fit) -> f64 {
    a.coef
        .iter()
        .zip(&b.coef)
        .map(|(p, q)| (p - q).abs())
        .fold((a.intercept - b.intercept).abs(), f64::max)
}

#[test]
fn chunked_fits_equal_in_memory_fits_on_every_local_scheduler() {
    let (x, y, w) = fixture();
    let [xa, ya, wa] = arrays(&x, &y, &w);
    let family = Family::Logistic;
    let memory = InMemory::new(family, x.view(), y.view(), Some(w.view()), 64).unwrap();
    for (solver, penalty, tol) in [
        (Solver::Newton, Penalty::l2(0.01).unwrap(), 1e-10),
        (Solver::Lbfgs, Penalty::l2(0.01).unwrap(), 1e-10),
        (Solver::ProximalGrad, Penalty::new(0.01, 0.5).unwrap(), 1e-8),
        (Solver::Admm, Penalty::new(0.01, 0.5).unwrap(), 1e-8),
    ] {
        let model = Model { family, penalty, fit_intercept: true };
        let options = Options { max_iter: 100_000, tol };
        let reference = fit(&memory, model, solver, options).unwrap();
        assert!(reference.converged);
        for scheduler in [Scheduler::Sync, Scheduler::Threads { workers: 2 }] {
            let data = Chunked::new(family, &xa, &ya, Some(&wa), scheduler.clone()).unwrap();
            assert_eq!((data.n_rows(), data.n_features()), (240, 5));
            assert!((data.total_weight() - w.sum()).abs() < 1e-12);
            let f = fit(&data, model, solver, options).unwrap();
            let d = max_diff(&f, &reference);
            assert!(
                d <= 1e-10,
                "{} on {}: {d:e} from the in-memory fit",
                solver.name(),
                scheduler.name()
            );
            assert_eq!(f.n_iter, reference.n_iter, "{} on {}", solver.name(), scheduler.name());
        }
    }
}

#[test]
fn blocks_read_from_npy_files_give_the_same_fit() {
    let (x, y, w) = fixture();
    let [xa, ya, _] = arrays(&x, &y, &w);
    let dir = std::env::temp_dir().join(format!("rask-glm-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    xa.to_npy_stack(dir.join("x")).unwrap();
    ya.to_npy_stack(dir.join("y")).unwrap();
    let xf = rask_core::array::npy::from_npy_stack::<f64>(dir.join("x")).unwrap();
    let yf = rask_core::array::npy::from_npy_stack::<f64>(dir.join("y")).unwrap();
    let model = Model {
        family: Family::Logistic,
        penalty: Penalty::l2(0.01).unwrap(),
        fit_intercept: true,
    };
    let options = Options { max_iter: 100, tol: 1e-10 };
    let files = Chunked::new(Family::Logistic, &xf, &yf, None, Scheduler::Sync).unwrap();
    let memory = InMemory::new(Family::Logistic, x.view(), y.view(), None, 64).unwrap();
    let a = fit(&files, model, Solver::Newton, options).unwrap();
    let b = fit(&memory, model, Solver::Newton, options).unwrap();
    assert!(max_diff(&a, &b) <= 1e-10);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_chunked_input_names_the_row() {
    let (mut x, mut y, w) = fixture();
    y[130] = 2.0;
    let [xa, ya, wa] = arrays(&x, &y, &w);
    let err = Chunked::new(Family::Logistic, &xa, &ya, Some(&wa), Scheduler::Sync).err().unwrap();
    assert!(matches!(&err, GlmError::Input { what, row: 130, .. } if what == "y"), "{err}");
    assert!(err.to_string().contains("must be 0 or 1"), "{err}");
    y[130] = 1.0;
    x[[200, 3]] = f64::NAN;
    let [xa, ya, _] = arrays(&x, &y, &w);
    let err = Chunked::new(Family::Logistic, &xa, &ya, None, Scheduler::Sync).err().unwrap();
    assert!(matches!(&err, GlmError::Input { what, row: 200, .. } if what == "X"), "{err}");
    let short = from_array(&ArrayD::<f64>::zeros(IxDyn(&[100])), 64).unwrap();
    let err = Chunked::new(Family::Logistic, &xa, &short, None, Scheduler::Sync).err().unwrap();
    assert!(err.to_string().contains("shape [100], but X has 240 rows"), "{err}");
}
