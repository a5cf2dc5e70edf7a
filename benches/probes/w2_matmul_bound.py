"""Probe: the arithmetic dask does for W2's matmul, (x @ x.T)[:4000, :4000].

Run with the peers' virtualenv (`~/.cache/rask-peers/.venv/bin/python`).
NumPy evaluates `a @ a.T` (the same buffer, transposed) with DSYRK, half the
flops of DGEMM, and dask's diagonal output blocks are exactly such products.
So dask does 2 x 160 GFLOP (off-diagonal blocks, DGEMM) + 2 x 80 GFLOP
(diagonal blocks, DSYRK) = 480 GFLOP, while the least a classical algorithm
can do is the symmetric half: 320 GFLOP. At equal BLAS speed the ratio is
capped at 480 / 320 = 1.5x. This script measures the pieces.
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "peers"))
import numpy as np  # noqa: E402


def best(f, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


rng = np.random.default_rng(0)
a = rng.standard_normal((2000, 2000))
b = rng.standard_normal((2000, 2000))
t_gemm = best(lambda: a @ b.T)
t_syrk = best(lambda: a @ a.T)
print(f"numpy 1 thread: a @ b.T {t_gemm:.3f} s ({16e9 / t_gemm / 1e9:.1f} GFLOPS), "
      f"a @ a.T {t_syrk:.3f} s (ratio {t_gemm / t_syrk:.2f}: DSYRK, half the flops)")

try:
    import dask
    import dask.array as da
except ImportError:
    sys.exit("dask not installed: run with the peers' virtualenv")
x = da.random.default_rng(0).standard_normal((20000, 20000), chunks=(2000, 2000))
with dask.config.set(scheduler="threads"):
    x = x.persist()
    t = best(lambda: (x @ x.T)[:4000, :4000].compute(), 2)
rate = 2 * 16e9 / t_gemm / 1e9  # two cores at the single-thread DGEMM rate
print(f"dask threads: {t:.2f} s; 640 GFLOP would need {640 / t:.1f} GFLOPS, "
      f"480 GFLOP needs {480 / t:.1f}; two cores of DGEMM give about {rate:.1f}")
print(f"classical bound for a 2x goal: 320 GFLOP in {t / 2:.2f} s = {640 / t:.1f} GFLOPS, "
      f"which is {640 / t / rate:.2f} x two cores' DGEMM rate")
