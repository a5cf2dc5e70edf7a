//! Matrix products through the system's OpenBLAS (cargo feature `blas`;
//! Debian's `libopenblas-dev`): DGEMM for general block products and DSYRK
//! for the diagonal blocks of `A·Aᵀ`, which need half the flops. OpenBLAS
//! runs single-threaded here: Rask already runs one task per core.

use std::os::raw::c_int;

use ndarray::{Array2, ArrayView2};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const UPPER: c_int = 121;

#[link(name = "openblas")]
extern "C" {
    fn cblas_dgemm(
        layout: c_int,
        transa: c_int,
        transb: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        b: *const f64,
        ldb: c_int,
        beta: f64,
        c: *mut f64,
        ldc: c_int,
    );
    fn cblas_dsyrk(
        layout: c_int,
        uplo: c_int,
        trans: c_int,
        n: c_int,
        k: c_int,
        alpha: f64,
        a: *const f64,
        lda: c_int,
        beta: f64,
        c: *mut f64,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
}

fn single_threaded() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets a global of the library before any other call here.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// A matrix operand as BLAS sees it: pointer, transposition, leading dimension.
/// `None` when neither it nor its transpose is contiguous row-major.
fn operand(v: &ArrayView2<'_, f64>) -> Option<(*const f64, c_int, c_int)> {
    if v.is_standard_layout() {
        Some((v.as_ptr(), NO_TRANS, v.ncols().max(1) as c_int))
    } else if v.t().is_standard_layout() {
        Some((v.as_ptr(), TRANS, v.nrows().max(1) as c_int))
    } else {
        None
    }
}

/// `Σ_k a[k] @ b[k]` for float64 blocks; `None` when a layout does not suit BLAS
/// (the caller falls back to the pure-Rust product).
pub(crate) fn sum_of_products(
    a: &[ArrayView2<'_, f64>],
    b: &[ArrayView2<'_, f64>],
) -> Option<Array2<f64>> {
    single_threaded();
    let (m, n) = (a[0].nrows(), b[0].ncols());
    // Every term x·xᵀ of one block (the same memory, transposed): the sum is
    // symmetric, and each term is a rank-k update of the upper triangle.
    let symmetric = m == n
        && a.iter().zip(b).all(|(x, y)| {
            x.as_ptr() == y.as_ptr()
                && x.is_standard_layout()
                && y.strides() == [x.strides()[1], x.strides()[0]]
        });
    let mut out = Array2::<f64>::zeros((m, n));
    let ldc = n.max(1) as c_int;
    for (x, y) in a.iter().zip(b) {
        let k = x.ncols();
        if y.nrows() != k || x.nrows() != m || y.ncols() != n {
            return None;
        }
        let (pa, ta, lda) = operand(x)?;
        let (pb, tb, ldb) = operand(y)?;
        // SAFETY: the pointers and leading dimensions describe live, contiguous
        // matrices of the stated shapes; `out` is m×n row-major with ldc = n.
        unsafe {
            if symmetric {
                cblas_dsyrk(
                    ROW_MAJOR,
                    UPPER,
                    NO_TRANS,
                    m as c_int,
                    k as c_int,
                    1.0,
                    pa,
                    lda,
                    1.0,
                    out.as_mut_ptr(),
                    ldc,
                );
            } else {
                cblas_dgemm(
                    ROW_MAJOR,
                    ta,
                    tb,
                    m as c_int,
                    n as c_int,
                    k as c_int,
                    1.0,
                    pa,
                    lda,
                    pb,
                    ldb,
                    1.0,
                    out.as_mut_ptr(),
                    ldc,
                );
            }
        }
    }
    if symmetric {
        // DSYRK filled the upper triangle only.
        for i in 0..m {
            for j in 0..i {
                out[[i, j]] = out[[j, i]];
            }
        }
    }
    Some(out)
}
