"""Paper-scale grid of Kunin et al. 2024 Fig. 1(b), jaxdyn's flow vs the authors' method, timed
on subsets and extrapolated to the whole grid.

    python benchmarks/paper_grids.py [--points 2] [--gd-steps 2000] [--tiny]

Grid (experiment `relu-lazy-rich`, `--config size=paper`): 17 scales τ × 17 imbalances δ × 16
seeds = 4624 two-layer ReLU nets, d = 100, width 50, n = 1000 teacher–student samples, trained
to rescaled time s = 10⁴ (the paper's 10⁶ GD steps).

Methods:

- `jaxdyn_flow`: the experiment's own `run` (jd.gradient_flow with the non-smooth strategy plus
  the experiment's metrics) on `--points` grid points spread over the grid (one vmapped call;
  the ends of the τ range included); time per point × 4624.
- `numpy_gd`: the authors' method, full-batch gradient descent in float64 numpy on
  (1/n)Σ(f − y)² with lr 5e-3/τ², 10⁶ steps per grid point: `--gd-steps` steps are timed on one
  net of the grid's shape and the per-step time × 10⁶ × 4624 is reported (GD's cost per step
  does not depend on τ, δ or the seed).

The two are compared at the same final time. Their accuracy is NOT equal by construction: GD at
lr 5e-3/τ² is a first-order discretisation of the flow (its final-state error against the flow
is O(lr) and not measured here); the flow meets its own tolerance (its error is bounded by the
conserved-invariant drift it records, `delta_drift`). Output: JSON lines and one quotable line.
`--tiny`: the experiment's `size=default` grid at a short horizon, 1 point, 50 GD steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402

try:
    from ._common import emit, machine_info
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import emit, machine_info

BENCH = "paper_grids"
GD_STEPS_PAPER = 10**6


def numpy_gd_step_time(d, h, n, steps, seed=0):
    """Seconds per full-batch GD step of a d → h → 1 ReLU net on n samples (float64 numpy)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    y = np.maximum(X @ rng.standard_normal(d), 0.0)
    W1 = rng.standard_normal((h, d)) * 0.1
    a = rng.standard_normal(h) * 0.1
    lr = 5e-3

    def step(W1, a):
        pre = X @ W1.T  # (n, h)
        act = np.maximum(pre, 0.0)
        r = act @ a - y  # (n,)
        g_a = 2.0 / n * act.T @ r
        g_W1 = 2.0 / n * ((r[:, None] * a[None, :]) * (pre > 0)).T @ X
        return W1 - lr * g_W1, a - lr * g_a

    W1, a = step(W1, a)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        W1, a = step(W1, a)
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--points", type=int, default=2, help="grid points solved by the flow")
    p.add_argument("--gd-steps", type=int, default=2000, help="GD steps timed")
    p.add_argument("--tiny", action="store_true", help="smoke test (default-size grid)")
    a = p.parse_args(argv)
    emit({"bench": BENCH, "method": "machine", "load_avg": os.getloadavg(), **machine_info()})
    cfg = {"size": "default", "t_max": 10.0} if a.tiny else {"size": "paper"}
    if a.tiny:
        a.points, a.gd_steps = 1, 50
    exp = jd.experiments.get_experiment("relu-lazy-rich", **cfg)
    axes = exp.axes
    grid = [g.ravel() for g in np.meshgrid(*axes.values(), indexing="ij")]
    n_grid = grid[0].size
    pick = np.unique(np.linspace(0, n_grid - 1, a.points).round().astype(int))
    points = {k: jnp.asarray(g[pick]) for k, g in zip(axes, grid, strict=True)}
    run = jax.jit(exp.run)
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(points))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(points))
    t_flow = time.perf_counter() - t0
    per_point = t_flow / len(pick)
    d, n = int(exp.attrs["d"]), int(exp.attrs.get("n", 0) or 0)
    h = int(np.max(axes["width"]))
    emit(
        {
            "bench": BENCH,
            "method": "jaxdyn_flow",
            "config": cfg,
            "grid_points": n_grid,
            "timed_points": int(len(pick)),
            "time_s": t_flow,
            "first_call_s": t_first,
            "per_point_s": per_point,
            "grid_s_extrapolated": per_point * n_grid,
            "status": np.asarray(out["status"]).tolist(),
            "max_steps_taken": int(np.max(np.asarray(out["num_steps"]))),
            "delta_drift_max": float(np.max(np.asarray(out["delta_drift"]))),
        }
    )
    step_s = numpy_gd_step_time(d, h, n, a.gd_steps)
    gd_steps = GD_STEPS_PAPER if not a.tiny else int(100 * 10.0)
    gd_grid = step_s * gd_steps * n_grid
    emit(
        {
            "bench": BENCH,
            "method": "numpy_gd",
            "d": d,
            "h": h,
            "n": n,
            "timed_steps": a.gd_steps,
            "step_s": step_s,
            "steps_per_point": gd_steps,
            "grid_s_extrapolated": gd_grid,
            "note": "lr 5e-3/τ² (authors' method); cost per step independent of τ, δ, seed",
        }
    )
    ratio = gd_grid / (per_point * n_grid)
    emit(
        {
            "bench": BENCH,
            "method": "ratios",
            "gd_over_flow": ratio,
            "load_avg_end": os.getloadavg(),
        }
    )
    ncpu = os.cpu_count()
    print(
        f"Kunin et al. Fig. 1b grid ({n_grid} nets, {cfg}): jaxdyn flow "
        f"{per_point * n_grid / 3600:.2f} h on a {ncpu}-core CPU (extrapolated from "
        f"{len(pick)} points); numpy GD, 10^6 steps/point: {gd_grid / 3600:.2f} h "
        f"(extrapolated from {a.gd_steps} steps); ratio {ratio:.1f}x",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
