//! Chunked arrays against NumPy: inputs and expected values are the `.npy`
//! files written by `tests/fixtures/array/make_fixtures.py` (NumPy 2.4.6).
//! Tolerances (stated per check): 1e-12 relative for float reductions,
//! elementwise results and products; 1e-9 for least squares and QR; exact
//! for integers, booleans, selections and joins.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use rask::array::create::{arange, eye, from_array, full, linspace, ones, standard_normal, zeros};
use rask::array::elementwise::where_;
use rask::array::index::{concatenate, stack, Sel};
use rask::array::linalg::{lstsq, tsqr_r};
use rask::array::npy::{from_npy, from_npy_stack};
use rask::array::{Array, ArrayError, ChunkSpec, Element};
use rask::{ComputeOptions, Scheduler};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/array").join(name)
}

/// A fixture as an array with the given chunks.
fn input<T: Element>(name: &str, chunks: impl Into<ChunkSpec>) -> Array<T> {
    from_npy::<T>(fixture(&format!("{name}.npy")), chunks).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A fixture read whole.
fn load<T: Element>(name: &str) -> ArrayD<T> {
    input::<T>(name, ChunkSpec::Uniform(usize::MAX)).compute().unwrap()
}

fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, rtol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = (g - w).abs() <= rtol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}: element {i}: got {g}, NumPy says {w} (rtol {rtol})");
    }
}

fn check(a: Result<Array<f64>, ArrayError>, exp: &str, rtol: f64) {
    let got = a
        .unwrap_or_else(|e| panic!("{exp}: {e}"))
        .compute()
        .unwrap_or_else(|e| panic!("{exp}: {e}"));
    assert_close(&got, &load::<f64>(exp), rtol, exp);
}

#[test]
fn reductions_match_numpy() {
    // Irregular chunks (13 = 5+5+3, 11 = 4+4+3).
    let a = input::<f64>("a", [5, 4]);
    check(a.sum(&[]), "exp_a_sum", 1e-12);
    check(a.sum(&[0]), "exp_a_sum0", 1e-12);
    check(a.sum(&[1]), "exp_a_sum1", 1e-12);
    check(a.mean(&[]), "exp_a_mean", 1e-12);
    check(a.mean(&[0]), "exp_a_mean0", 1e-12);
    check(a.var(&[0], 0.0), "exp_a_var0", 1e-12);
    check(a.var(&[1], 1.0), "exp_a_var1_ddof1", 1e-12);
    check(a.std(&[], 0.0), "exp_a_std", 1e-12);
    check(a.min(&[1]), "exp_a_min1", 0.0);
    check(a.max(&[1]), "exp_a_max1", 0.0);
    assert_eq!(a.argmin(Some(0)).unwrap().compute().unwrap(), load::<i64>("exp_a_argmin0"));
    assert_eq!(a.argmax(None).unwrap().compute().unwrap(), load::<i64>("exp_a_argmax"));
    // A deeper tree: one-row chunks combined two at a time.
    let fine = input::<f64>("a", [1, 2]);
    check(fine.reduce(&[0], rask::array::ops::Reduction::Sum, 2, false), "exp_a_sum0", 1e-12);
    check(fine.reduce(&[], rask::array::ops::Reduction::Std(0.0), 2, false), "exp_a_std", 1e-12);
    assert_eq!(fine.argmax(None).unwrap().compute().unwrap(), load::<i64>("exp_a_argmax"));

    let m = input::<bool>("m", [4, 3]);
    assert_eq!(m.any(&[0]).unwrap().compute().unwrap(), load::<bool>("exp_m_any0"));
    assert_eq!(m.all(&[0]).unwrap().compute().unwrap(), load::<bool>("exp_m_all0"));
    // Mixed results too: any/all along rows of a mask with true and false in each row.
    let ma = load::<bool>("m");
    let rows_any: Vec<bool> = ma.outer_iter().map(|r| r.iter().any(|&v| v)).collect();
    let rows_all: Vec<bool> = ma.outer_iter().map(|r| r.iter().all(|&v| v)).collect();
    assert_eq!(
        m.any(&[1]).unwrap().compute().unwrap().iter().copied().collect::<Vec<_>>(),
        rows_any
    );
    assert_eq!(
        m.all(&[1]).unwrap().compute().unwrap().iter().copied().collect::<Vec<_>>(),
        rows_all
    );
    assert!(rows_any.contains(&true) && rows_all.contains(&false));
    assert_eq!(
        m.count(&[]).unwrap().compute().unwrap()[[]] as usize,
        ma.iter().filter(|&&v| v).count()
    );

    let t3 = input::<f64>("t3", [2, 3, 4]);
    check(t3.sum(&[0, 2]), "exp_t3_sum02", 1e-12);
    check(t3.max(&[1]), "exp_t3_max1", 0.0);
    check(t3.mean(&[]), "exp_t3_mean", 1e-12);

    let i = input::<i64>("i", [6, 5]);
    assert_eq!(i.sum(&[0]).unwrap().compute().unwrap(), load::<i64>("exp_i_sum0"));
    assert_eq!(i.max(&[]).unwrap().compute().unwrap(), load::<i64>("exp_i_max"));

    let f32s = input::<f32>("f32", [3, 4]);
    check(f32s.cast::<f64>().sum(&[0]), "exp_f32_sum0", 1e-12);
    let fortran = input::<f64>("fortran", [4, 3]);
    check(fortran.sum(&[1]), "exp_fortran_sum1", 1e-12);
}

#[test]
fn elementwise_with_broadcasting_matches_numpy() {
    let a = input::<f64>("a", [5, 4]);
    // b and c chunked differently from a: they are rechunked to common boundaries.
    let b = input::<f64>("b", [3]);
    let c = input::<f64>("c", [6, 1]);
    check(&a + &b, "exp_a_plus_b", 1e-12);
    check(&a * &c, "exp_a_times_c", 1e-12);
    check((&a / &b).and_then(|q| &q - &c), "exp_a_div_b_minus_c", 1e-12);
    check(Ok(a.abs().powf(1.5)), "exp_pow", 1e-12);
    check(Ok((&(&a * 0.1).exp() + 1.0).log()), "exp_explog", 1e-12);
    check(Ok(a.abs().sqrt()), "exp_sqrtabs", 1e-12);
    let m = input::<bool>("m", [4, 4]);
    check(where_(&m, &a, &(&b * 2.0)), "exp_where", 1e-12);
    assert_eq!(a.lt(&b).unwrap().compute().unwrap(), load::<bool>("exp_a_lt_b"));
    check(Ok(&(&a * 2.5) - 1.0), "exp_scalar", 1e-12);
}

#[test]
fn elementwise_chains_run_as_one_task_per_block() {
    // Blocks of 150 x 100 = 15000 elements, more than one tile (8192): the
    // program runs tile by tile. Expected values come from the same
    // operations in the same order on the computed input, so they are exact.
    let x = standard_normal(3, &[300, 200], [150, 100]).unwrap();
    let xs = x.compute().unwrap();
    let left = (&(&(-&x).exp() * 2.0) + &x.powf(2.0)).unwrap();
    let right = &x.abs().sqrt() - 1.0;
    let z = where_(&x.compare_scalar(0.5, rask::array::ops::BinOp::Gt), &left, &right).unwrap();
    // (black_box: the compiler would turn powf(v, 2.0) into v * v, which can differ in the last bit)
    let two = std::hint::black_box(2.0);
    let want =
        xs.mapv(|v| if v > 0.5 { (-v).exp() * 2.0 + v.powf(two) } else { v.abs().sqrt() - 1.0 });
    assert_eq!(z.compute().unwrap(), want);
    // The graph is the 4 random blocks and one task per output block.
    let g = z.graph();
    let fused = g.iter().filter(|(k, _)| k.to_string().starts_with("fused_block")).count();
    assert_eq!((fused, g.len()), (4, 8), "one fused task per block, over the random blocks");

    // An intermediate used twice, a broadcast row chunked differently, a cast.
    let t = &x * 2.0;
    let shared = (&t + &t.exp()).unwrap();
    assert_eq!(shared.compute().unwrap(), xs.mapv(|v| v * 2.0 + (v * 2.0).exp()));
    let row = ArrayD::from_shape_fn(IxDyn(&[1, 200]), |i| i[1] as f64 / 7.0);
    let r = from_array(&row, [1, 64]).unwrap();
    let scaled = (&(&x * &r).unwrap() - 0.25).cast::<f32>();
    let want32 = (&xs * &row).mapv(|v| (v - 0.25) as f32);
    assert_eq!(scaled.compute().unwrap(), want32);

    // A persisted array is an input, not a program to rerun.
    let p = (&x * 2.0).persist().unwrap();
    let q = &(&p + 1.0) * 3.0;
    assert_eq!(q.compute().unwrap(), xs.mapv(|v| (v * 2.0 + 1.0) * 3.0));
    let g = q.graph();
    assert_eq!(
        g.iter().filter(|(_, n)| matches!(n, rask::Node::Data(_))).count(),
        4,
        "the persisted blocks"
    );
    assert_eq!(g.len(), 8);

    // Errors inside a fused program still name the problem.
    let i = from_array(&ArrayD::from_shape_fn(IxDyn(&[20000]), |j| j[0] as i64), 12000).unwrap();
    #[allow(clippy::erasing_op)] // the zeros are the point: an integer division by zero
    let zeros = &i * 0;
    let e = (&(&i * 2) / &zeros).unwrap().compute().unwrap_err().to_string();
    assert!(e.contains("integer division by zero"), "{e}");
}

#[test]
fn reductions_of_elementwise_chains_never_materialize_blocks() {
    // Blocks of 20 x 30 x 20 = 12000 elements: rows of 600, slabs of 13 rows.
    let x = standard_normal(5, &[40, 30, 20], [20, 30, 20]).unwrap();
    let expr = &(&x * 1.5).exp() - 0.5;
    // The reference: the same values, computed and stored, then reduced.
    let kept = expr.persist().unwrap();
    let close =
        |got: Result<Array<f64>, ArrayError>, want: Result<Array<f64>, ArrayError>, what: &str| {
            let got = got.unwrap();
            let g = got.graph();
            assert!(
                expr.blocks().iter().all(|b| !g.contains(b.key())),
                "{what}: a block of the expression was materialized"
            );
            // Summation order differs (per slab, then combined): 1e-12 relative.
            assert_close(&got.compute().unwrap(), &want.unwrap().compute().unwrap(), 1e-12, what);
        };
    for axes in [vec![], vec![0], vec![1], vec![2], vec![0, 2], vec![1, 2]] {
        close(expr.sum(&axes), kept.sum(&axes), &format!("sum {axes:?}"));
        close(expr.mean(&axes), kept.mean(&axes), &format!("mean {axes:?}"));
        close(expr.var(&axes, 1.0), kept.var(&axes, 1.0), &format!("var {axes:?}"));
        close(expr.std(&axes, 0.0), kept.std(&axes, 0.0), &format!("std {axes:?}"));
        close(expr.min(&axes), kept.min(&axes), &format!("min {axes:?}"));
        close(expr.max(&axes), kept.max(&axes), &format!("max {axes:?}"));
    }
    let pos = expr.compare_scalar(1.0, rask::array::ops::BinOp::Gt);
    let pos_kept = pos.persist().unwrap();
    for axes in [vec![], vec![1], vec![0, 2]] {
        assert_eq!(
            pos.any(&axes).unwrap().compute().unwrap(),
            pos_kept.any(&axes).unwrap().compute().unwrap()
        );
        assert_eq!(
            pos.all(&axes).unwrap().compute().unwrap(),
            pos_kept.all(&axes).unwrap().compute().unwrap()
        );
        assert_eq!(
            pos.count(&axes).unwrap().compute().unwrap(),
            pos_kept.count(&axes).unwrap().compute().unwrap()
        );
    }
    // Arg-reductions take the computed blocks (indices are exact).
    assert_eq!(
        expr.argmax(Some(1)).unwrap().compute().unwrap(),
        kept.argmax(Some(1)).unwrap().compute().unwrap()
    );
    // NaN propagates through a fused min as through a stored one.
    let nan = x.log();
    assert!(nan.min(&[]).unwrap().compute().unwrap()[[]].is_nan());
}

#[test]
fn linear_algebra_matches_numpy() {
    let a = input::<f64>("a", [5, 4]);
    check(a.matmul(&a.t()), "exp_a_at", 1e-12);
    check(a.t().matmul(&a), "exp_at_a", 1e-12);
    check(Ok(a.t()), "exp_a_T", 0.0);
    check(Ok(input::<f64>("t3", [3, 2, 4]).t()), "exp_t3_T", 0.0);
    // Contracted axes chunked differently on the two sides.
    check(a.matmul(&input::<f64>("a", [3, 6]).t()), "exp_a_at", 1e-12);
    let tall = input::<f64>("tall", [25, 4]);
    let rhs = input::<f64>("rhs", [30]);
    check(lstsq(&tall, &rhs), "exp_lstsq", 1e-9);
    check(tsqr_r(&tall).map(|r| r.abs()), "exp_qr_r_abs", 1e-9);
}

#[test]
fn selections_and_joins_match_numpy() {
    let a = input::<f64>("a", [5, 4]);
    let step = |start, stop, step| Sel::Range { start, stop, step };
    check(a.slice(&[step(Some(2), Some(11), 3), step(None, None, 2)]), "exp_slice1", 0.0);
    check(a.slice(&[step(Some(-5), None, 1), Sel::Index(3)]), "exp_slice2", 0.0);
    let t3 = input::<f64>("t3", [3, 2, 4]);
    check(t3.slice(&[Sel::Index(1), Sel::range(1, 4), step(None, None, -1)]), "exp_slice3", 0.0);
    let mask = load::<bool>("mask_rows");
    check(a.select_mask(0, mask.as_slice().unwrap()), "exp_mask_rows", 0.0);
    check(concatenate(&[a.clone(), &a * 2.0], 0), "exp_concat0", 0.0);
    check(concatenate(&[a.clone(), input::<f64>("c", [7, 1])], 1), "exp_concat1", 0.0);
    check(stack(&[a.clone(), &a + 1.0, &a + 2.0], 1), "exp_stack", 0.0);
    // Rechunking keeps the values.
    let re = a.rechunk(ChunkSpec::Explicit(vec![vec![1, 12], vec![11]])).unwrap();
    assert_eq!(re.chunks(), &[vec![1, 12], vec![11]]);
    assert_eq!(re.compute().unwrap(), load::<f64>("a"));
    // A block-aligned corner of a product computes only the blocks it needs.
    let corner = a.matmul(&a.t()).unwrap().slice(&[Sel::range(0, 5), Sel::range(0, 5)]).unwrap();
    assert_eq!(corner.npartitions(), 1);
    let matmuls = corner
        .graph()
        .iter()
        .filter(|(_, n)| matches!(n, rask::Node::Task(t) if t.op.name().ends_with("matmul_block")))
        .count();
    assert_eq!(
        matmuls, 2,
        "only the corner's products are in the graph (3 k-blocks in groups of 2)"
    );
}

#[test]
fn creation_matches_numpy_and_random_is_reproducible() {
    check(arange::<f64>(3.0, 20.0, 0.75, 5), "exp_arange", 1e-15);
    check(linspace(-1.0, 2.0, 17, 4), "exp_linspace", 1e-15);
    check(eye::<f64>(7, 9, 0, 4), "exp_eye", 0.0);
    assert_eq!(
        zeros::<i64>(&[3, 4], 2).unwrap().compute().unwrap(),
        ArrayD::<i64>::zeros(IxDyn(&[3, 4]))
    );
    assert_eq!(ones::<f32>(&[5], 2).unwrap().sum(&[]).unwrap().compute().unwrap()[[]], 5.0);
    assert_eq!(
        full(&[2, 2], [1, 2], true).unwrap().compute().unwrap(),
        ArrayD::from_elem(IxDyn(&[2, 2]), true)
    );
    let data = load::<f64>("a");
    assert_eq!(from_array(&data, [4, 4]).unwrap().compute().unwrap(), data);

    let x = standard_normal(7, &[400, 300], [128, 100]).unwrap();
    let sync = x.compute_with(&Scheduler::Sync, &ComputeOptions::default()).unwrap();
    let threads =
        x.compute_with(&Scheduler::Threads { workers: 2 }, &ComputeOptions::default()).unwrap();
    assert_eq!(sync, threads, "blocks do not depend on the scheduler");
    assert_eq!(
        standard_normal(7, &[400, 300], [128, 100]).unwrap().compute().unwrap(),
        sync,
        "same seed, same numbers"
    );
    assert_ne!(standard_normal(8, &[400, 300], [128, 100]).unwrap().compute().unwrap(), sync);
    let n = sync.len() as f64;
    let mean = sync.sum() / n;
    let var = sync.mapv(|v| (v - mean) * (v - mean)).sum() / n;
    assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean}, var {var}");
}

#[test]
fn npy_files_and_chunk_folders() {
    let stacked = from_npy_stack::<f64>(fixture("chunks")).unwrap();
    assert_eq!(stacked.chunks(), &[vec![5, 4, 6], vec![3]]);
    assert_eq!(stacked.compute().unwrap(), load::<f64>("exp_chunks_all"));
    check(stacked.sum(&[0]), "exp_chunks_sum0", 1e-12);
    let globbed = from_npy_stack::<f64>(fixture("chunks").join("*.npy")).unwrap();
    assert_eq!(globbed.npartitions(), 3);

    let dir = tempfile::tempdir().unwrap();
    let a = input::<f64>("a", [5, 4]);
    a.to_npy(dir.path().join("a.npy")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("a.npy")).unwrap().len(),
        std::fs::read(fixture("a.npy")).unwrap().len()
    );
    assert_eq!(
        from_npy::<f64>(dir.path().join("a.npy"), [13, 11]).unwrap().compute().unwrap(),
        load::<f64>("a")
    );
    let i = input::<i64>("i", [4, 4]);
    i.to_npy_stack(dir.path().join("stack")).unwrap();
    let back = from_npy_stack::<i64>(dir.path().join("stack")).unwrap();
    assert_eq!(back.chunks()[0], vec![4, 4, 4, 1]);
    assert_eq!(back.compute().unwrap(), load::<i64>("i"));
    let m = input::<bool>("m", [13, 11]);
    m.to_npy(dir.path().join("m.npy")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("m.npy")).unwrap(),
        std::fs::read(fixture("m.npy")).unwrap(),
        "byte-identical to NumPy's file"
    );
}

#[test]
fn persist_and_visualize() {
    let a = input::<f64>("a", [5, 4]);
    let expr = (&a * 2.0).sum(&[0]).unwrap();
    let kept = expr.persist().unwrap();
    assert!(
        kept.graph().iter().all(|(_, n)| matches!(n, rask::Node::Data(_))),
        "persisted blocks are data"
    );
    assert_eq!(kept.compute().unwrap(), expr.compute().unwrap());
    let dir = tempfile::tempdir().unwrap();
    expr.visualize(dir.path().join("g.dot")).unwrap();
    assert!(std::fs::read_to_string(dir.path().join("g.dot")).unwrap().contains("reduce_partial"));
}

#[test]
fn bad_input_gets_clear_errors() {
    let a = input::<f64>("a", [5, 4]);
    let t = input::<f64>("t3", [2, 2, 2]);
    let e = (&a + &t).unwrap_err().to_string();
    assert!(
        e.contains("cannot be broadcast") && e.contains("[13, 11]") && e.contains("[4, 5, 6]"),
        "{e}"
    );
    let e = from_npy::<f64>(fixture("a.npy"), ChunkSpec::Explicit(vec![vec![5, 5], vec![11]]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("add up to 10, but the axis has length 13") && e.contains("a.npy"), "{e}");
    let e = a.slice(&[Sel::Index(13)]).unwrap_err().to_string();
    assert!(e.contains("index 13 is out of range for axis 0 of length 13"), "{e}");
    let e = a.matmul(&a).unwrap_err().to_string();
    assert!(e.contains("not aligned"), "{e}");
    let e = from_npy::<f64>(fixture("truncated.npy"), 5).unwrap_err().to_string();
    assert!(
        e.contains("truncated.npy") && e.contains("truncated .npy file") && e.contains("800 bytes"),
        "{e}"
    );
    let e = from_npy::<f64>(fixture("bad_magic.npy"), 5).unwrap_err().to_string();
    assert!(e.contains("bad_magic.npy") && e.contains("not a .npy file"), "{e}");
    let e = from_npy::<i64>(fixture("a.npy"), 5).unwrap_err().to_string();
    assert!(e.contains("holds <f8 data") && e.contains("int64"), "{e}");
    let e = from_npy_stack::<f64>(fixture("no-such-folder")).unwrap_err().to_string();
    assert!(e.contains("no-such-folder"), "{e}");

    // A chunk file that disappears after the graph is built: the task's error names it.
    let dir = tempfile::tempdir().unwrap();
    for k in 0..3 {
        std::fs::copy(fixture(&format!("chunks/{k}.npy")), dir.path().join(format!("{k}.npy")))
            .unwrap();
    }
    let lazy = from_npy_stack::<f64>(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("1.npy")).unwrap();
    let e = lazy.sum(&[]).unwrap().compute().unwrap_err().to_string();
    assert!(e.contains("1.npy") && e.contains("cannot open chunk file"), "{e}");
    // One cut short after the header was read.
    std::fs::copy(fixture("chunks/1.npy"), dir.path().join("1.npy")).unwrap();
    let lazy = from_npy_stack::<f64>(dir.path()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(dir.path().join("1.npy")).unwrap();
    f.set_len(100).unwrap();
    let e = lazy.compute().unwrap_err().to_string();
    assert!(e.contains("1.npy") && e.contains("truncated"), "{e}");
}

#[test]
fn sums_of_sums_reduce_each_operand() {
    let a = input::<f64>("a", [5, 4]);
    let twice = &a * 2.0;
    let expr = (&a + &twice).unwrap();
    let want = load::<f64>("exp_a_sum0").mapv(|v| 3.0 * v);
    assert_close(&expr.sum(&[0]).unwrap().compute().unwrap(), &want, 1e-12, "sum of a + 2a");
    // No block of a + 2a is materialized: the graph adds the two sums.
    let g = expr.sum(&[0]).unwrap().graph();
    assert!(
        expr.blocks().iter().all(|b| !g.contains(b.key())),
        "a block of a + 2a is in the graph"
    );
    assert!(
        twice.blocks().iter().all(|b| !g.contains(b.key())),
        "2a is reduced where it is computed"
    );
    let adds = g.iter().filter(|(k, _)| k.to_string().starts_with("fused_block")).count();
    assert_eq!(adds, 3, "one add per output block, of reduced blocks");
    // Reductions of transposes reduce the source (and drop the same axes).
    check(a.t().sum(&[1]), "exp_a_sum0", 1e-12);
    check(a.t().var(&[0], 1.0), "exp_a_var1_ddof1", 1e-12);
    check(input::<f64>("t3", [3, 2, 4]).t().sum(&[0, 2]), "exp_t3_sum02", 1e-12);
    assert_eq!(a.t().max(&[0]).unwrap().shape(), vec![13]);
    let diff = (&a - &a.t().t()).unwrap().mean(&[]).unwrap().compute().unwrap()[[]];
    assert_eq!(diff, 0.0);
    let m = (&a + &a.t().t()).unwrap().mean(&[0]).unwrap().compute().unwrap();
    assert_close(&m, &load::<f64>("exp_a_mean0").mapv(|v| 2.0 * v), 1e-12, "mean of a + a");
}

#[test]
fn gram_matrices_compute_half_of_their_blocks() {
    let a = input::<f64>("a", [5, 4]);
    let gram = a.matmul(&a.t()).unwrap();
    let products =
        gram.graph().iter().filter(|(k, _)| k.to_string().starts_with("matmul_block")).count();
    assert_eq!(
        products, 12,
        "3 x 3 output blocks, 6 on or above the diagonal, 2 product groups each"
    );
    assert_close(&gram.compute().unwrap(), &load::<f64>("exp_a_at"), 1e-12, "a @ a.T");
    let other = a.matmul(&(&a * 1.0).t()).unwrap();
    let products =
        other.graph().iter().filter(|(k, _)| k.to_string().starts_with("matmul_block")).count();
    assert_eq!(products, 18, "a product with another array computes every block");
}

#[test]
fn zarr_v2_and_v3_read_python_files_and_round_trip() {
    use rask::array::zarr::{from_zarr, ZarrCodec, ZarrFormat};
    let a = load::<f64>("a");
    // Written by zarr-python 3.1.6 (make_fixtures.py), chunks (5, 4), uncompressed.
    for name in ["py_v2.zarr", "py_v3.zarr"] {
        let z = from_zarr::<f64>(fixture(name), None).unwrap();
        assert_eq!(z.chunks(), &[vec![5, 5, 3], vec![4, 4, 3]], "{name}: one block per Zarr chunk");
        assert_eq!(z.compute().unwrap(), a, "{name}");
        // Blocks that cut across Zarr chunks read the right regions too.
        assert_eq!(
            from_zarr::<f64>(fixture(name), Some(ChunkSpec::PerAxis(vec![3, 7])))
                .unwrap()
                .compute()
                .unwrap(),
            a
        );
    }
    // zarr-python's default codecs (zstd), int64.
    let zi = from_zarr::<i64>(fixture("py_v3_default.zarr"), None).unwrap();
    assert_eq!(zi.compute().unwrap(), load::<i64>("i"));
    assert_eq!(zi.sum(&[0]).unwrap().compute().unwrap(), load::<i64>("exp_i_sum0"));

    // Written by Rask, read back, for every element type and both formats.
    let dir = tempfile::tempdir().unwrap();
    for (k, format) in [ZarrFormat::V2, ZarrFormat::V3].into_iter().enumerate() {
        let p = dir.path().join(format!("a{k}.zarr"));
        input::<f64>("a", ChunkSpec::Explicit(vec![vec![6, 7], vec![11]]))
            .to_zarr(&p, format)
            .unwrap();
        let back = from_zarr::<f64>(&p, None).unwrap();
        assert_eq!(back.chunks(), &[vec![6, 6, 1], vec![11]], "irregular blocks are made regular");
        assert_eq!(back.compute().unwrap(), a);
        let p = dir.path().join(format!("m{k}.zarr"));
        input::<bool>("m", [4, 4]).to_zarr(&p, format).unwrap();
        assert_eq!(from_zarr::<bool>(&p, None).unwrap().compute().unwrap(), load::<bool>("m"));
        let p = dir.path().join(format!("f{k}.zarr"));
        input::<f32>("f32", [3, 6]).to_zarr(&p, format).unwrap();
        assert_eq!(from_zarr::<f32>(&p, None).unwrap().compute().unwrap(), load::<f32>("f32"));
    }
    assert!(
        dir.path().join("a0.zarr/.zarray").is_file()
            && dir.path().join("a1.zarr/zarr.json").is_file()
    );
    // Compressed: gzip and zstd in both formats; a compressible array gets chunks
    // smaller than their raw bytes, and the metadata names the codec as zarr-python does.
    let ramp = arange::<i64>(0.0, 4096.0, 1.0, 1024).unwrap();
    let codecs = [(ZarrCodec::Gzip { level: 5 }, "gzip"), (ZarrCodec::Zstd { level: 3 }, "zstd")];
    for (k, format) in [ZarrFormat::V2, ZarrFormat::V3].into_iter().enumerate() {
        for (codec, name) in codecs {
            let p = dir.path().join(format!("ramp{k}-{name}.zarr"));
            ramp.to_zarr_with(&p, format, codec).unwrap();
            assert_eq!(
                from_zarr::<i64>(&p, None).unwrap().compute().unwrap(),
                ramp.compute().unwrap(),
                "{name} v{}",
                k + 2
            );
            let (meta, chunk) = if k == 0 { (".zarray", "1") } else { ("zarr.json", "c/1") };
            let meta = std::fs::read_to_string(p.join(meta)).unwrap();
            assert!(meta.contains(&format!("\"{name}\"")), "{meta}");
            let size = std::fs::metadata(p.join(chunk)).unwrap().len();
            assert!(size < 1024 * 8 / 2, "{name} v{}: a chunk of 8 KiB took {size} bytes", k + 2);
        }
    }
    let e = ramp
        .to_zarr_with(dir.path().join("bad.zarr"), ZarrFormat::V3, ZarrCodec::Zstd { level: 40 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.zarr") && e.contains("zstd level 40 is out of range 1-22"), "{e}");

    // Bad input.
    let e = from_zarr::<i64>(fixture("py_v3.zarr"), None).unwrap_err().to_string();
    assert!(e.contains("py_v3.zarr") && e.contains("holds <f8 data"), "{e}");
    let e = from_zarr::<f64>(fixture("chunks"), None).unwrap_err().to_string();
    assert!(e.contains("chunks") && e.contains("not a readable Zarr array"), "{e}");
    // A chunk removed after the graph was built reads as the fill value in
    // Zarr; a corrupted one is an error naming the store.
    let p = dir.path().join("c.zarr");
    input::<f64>("a", [5, 4]).to_zarr(&p, ZarrFormat::V3).unwrap();
    let lazy = from_zarr::<f64>(&p, None).unwrap();
    std::fs::write(p.join("c/1/1"), b"garbage").unwrap();
    let e = lazy.sum(&[]).unwrap().compute().unwrap_err().to_string();
    assert!(e.contains("c.zarr") && e.contains("cannot read region"), "{e}");
}
