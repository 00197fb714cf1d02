"""Paper-scale grid of Kunin et al. 2024 Fig. 1(b), jaxdyn's flow vs the authors' method, timed
on subsets and extrapolated to the whole grid.

    python benchmarks/paper_grids.py [--points 2] [--gd-steps 2000] [--tiny]
        [--parts relu,lambda] [--lambda-nets 8]

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

**λ-balanced grid** (`--parts lambda`; Dominé et al. 2024, the λ × scale kernel-distance heatmap
of the authors' code, notes `domine_lazy_to_rich.md` §7: 40 × 40 grid, 4000 GD steps at lr 0.01,
i.e. time t = 40 at τ = 1). Our grid: 40 λ ∈ [−5, 5] × 40 scales ∈ [1e-3, 10] = 1600 square nets
4 → 4 → 4 (the `lambda-balanced` experiment's defaults: whitened inputs, n = 8, task singular
values geomspace(2, 0.2); whitened, unlike the authors' heatmap, so that the closed form applies),
41 save times on [0, 40]. Methods, each judged by its error against the closed form along the
trajectory (max over nets and the 41 save times of |W2W1(t) − exact| / max_t |exact|; not the
final state alone: at t = 40 every net has converged to the same fixed point, which any method
reaches, so the final state does not tell them apart):

- `exact`: `jd.exact.lambda_balanced` vmapped over all 1600 nets (chunks of 128, the experiment's
  `MAX_CHUNK_PER_DEVICE`) — the reference itself (its error vs an independent tight ODE solve is
  checked in the test suite, ≤ 1e-9).
- `flow`: one stacked `jd.gradient_flow` (Dopri8, rtol 1e-10, atol 1e-12) over all 1600 nets.
- `numpy_gd`: the authors' method — full-batch GD in float64 numpy, lr 0.01, 4000 steps per net, a
  Python loop over `--lambda-nets` nets spread over the grid, time per net × 1600. Also at lr 0.005
  (8000 steps): the observed order p of GD's error in lr, and the steps GD would need to reach the
  flow's error, err_flow = err_gd(lr)·(lr'/lr)^p → time extrapolated from the per-step cost.
- `numpy_riccati`: explicit Euler time-stepping of the Riccati equation
  τ d(QQᵀ)/dt = F QQᵀ + QQᵀF − (QQᵀ)² (paper Eq. for Q = [W1ᵀ; W2]) with dt = 0.01, the
  "numpy time-stepping of the Riccati solution" reading of the authors' code (our reading, [R]);
  W2W1 is its lower-left block.
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

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402

try:
    from ._common import emit, lambda_balanced_models, machine_info
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import emit, lambda_balanced_models, machine_info

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


LAMBDA_T = 40.0  # 4000 GD steps × lr 0.01 (τ = 1)
LAMBDA_LR = 0.01


def _lambda_grid(n_lam: int, n_scale: int):
    d = 4
    X, Y, Syx = jd.data.whitened_task(8, d, d, np.geomspace(2.0, 0.2, d), 0)
    lam, scale = (
        g.ravel()
        for g in np.meshgrid(
            np.linspace(-5.0, 5.0, n_lam), np.geomspace(1e-3, 10.0, n_scale), indexing="ij"
        )
    )

    return X, Y, lam, lambda_balanced_models(lam, scale, np.zeros(lam.size, int), Syx, d)


def _numpy_gd_product(W1, W2, X, Y, lr, steps, every):
    """Full-batch GD on (1/2n)Σ‖W2W1x − y‖² (float64 numpy); W2W1 every `every` steps."""
    n = X.shape[0]
    Sxx, Syx = X.T @ X / n, Y.T @ X / n
    out = [W2 @ W1]
    for k in range(1, steps + 1):
        G = W2 @ W1 @ Sxx - Syx  # ∇_{W2W1} L
        W1, W2 = W1 - lr * (W2.T @ G), W2 - lr * (G @ W1.T)
        if k % every == 0:
            out.append(W2 @ W1)
    return np.stack(out)


def _numpy_riccati_product(W1, W2, lam, X, Y, dt, steps, every):
    """Explicit Euler on τ d(QQᵀ)/dt = F QQᵀ + QQᵀF − (QQᵀ)², Q = [W1ᵀ; W2], τ = 1; the
    block W2W1 every `every` steps."""
    d, o = W1.shape[1], W2.shape[0]
    Syx = Y.T @ X / X.shape[0]
    F = np.block([[-lam / 2 * np.eye(d), Syx.T], [Syx, lam / 2 * np.eye(o)]])
    Q = np.concatenate([W1.T, W2])
    R = Q @ Q.T
    out = [R[d:, :d]]
    for k in range(1, steps + 1):
        R = R + dt * (F @ R + R @ F - R @ R)
        if k % every == 0:
            out.append(R[d:, :d])
    return np.stack(out)


def lambda_part(n_nets: int, tiny: bool) -> None:
    n_lam = n_scale = 8 if tiny else 40
    X, Y, lam, models = _lambda_grid(n_lam, n_scale)
    N = lam.size
    ts = jnp.linspace(0.0, LAMBDA_T, 41)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    exact = jax.jit(jax.vmap(lambda W1, W2: jd.exact.lambda_balanced(W1, W2, Xj, Yj, ts).product))
    c = 128

    def run_exact():
        return np.concatenate(
            [np.asarray(exact(models.W1[i : i + c], models.W2[i : i + c])) for i in range(0, N, c)]
        )

    run_exact()  # compile
    t0 = time.perf_counter()
    ref = run_exact()  # (N, T, o, d)
    t_exact = time.perf_counter() - t0
    ref_scale = np.max(np.abs(ref), axis=(1, 2, 3))

    def rel_err(prod, idx):
        """max over nets of max over save times |W2W1 − exact| / max|exact| (the transient:
        at t = 40 every net has converged to the same fixed point)."""
        return float(np.max(np.max(np.abs(prod - ref[idx]), axis=(1, 2, 3)) / ref_scale[idx]))

    flow = eqx.filter_jit(
        lambda m: jd.gradient_flow(
            m, (Xj, Yj), ts, solver=diffrax.Dopri8(), rtol=1e-10, atol=1e-12, batch="stacked"
        )
    )
    jax.block_until_ready(flow(models))
    t0 = time.perf_counter()
    traj = jax.block_until_ready(flow(models))
    t_flow = time.perf_counter() - t0
    prod = np.asarray(traj.model.W2 @ traj.model.W1)  # (N, T, o, d)
    err_flow = rel_err(prod, np.arange(N))
    emit(
        {
            "bench": BENCH,
            "method": "lambda_exact",
            "grid_points": N,
            "time_s": t_exact,
            "save_times": int(ts.size),
        }
    )
    emit(
        {
            "bench": BENCH,
            "method": "lambda_flow",
            "grid_points": N,
            "time_s": t_flow,
            "max_rel_err": err_flow,
            "steps": int(np.max(np.asarray(traj.stats["num_steps"]))),
            "all_successful": bool(np.all(np.asarray(traj.status) == 0)),
        }
    )
    idx = np.unique(np.linspace(0, N - 1, n_nets).round().astype(int))
    W1s, W2s = np.asarray(models.W1), np.asarray(models.W2)
    res = {}
    for lr in (LAMBDA_LR, LAMBDA_LR / 2):
        steps = round(LAMBDA_T / lr)
        every = steps // (ts.size - 1)
        t0 = time.perf_counter()
        out = np.stack([_numpy_gd_product(W1s[i], W2s[i], X, Y, lr, steps, every) for i in idx])
        res[lr] = (time.perf_counter() - t0, rel_err(out, idx), steps)
    (t_gd, e_gd, steps), (_, e_gd2, _) = res[LAMBDA_LR], res[LAMBDA_LR / 2]
    order = float(np.log2(e_gd / e_gd2))
    every_gd = steps // (ts.size - 1)
    step_s = t_gd / (len(idx) * steps)
    # GD's error ∝ lr^p: the steps at which it would match the flow's error (NaN if no order)
    ok = err_flow > 0 and order > 0
    steps_eq = steps * (e_gd / err_flow) ** (1.0 / order) if ok else float("nan")
    emit(
        {
            "bench": BENCH,
            "method": "lambda_numpy_gd",
            "timed_nets": int(len(idx)),
            "lr": LAMBDA_LR,
            "steps_per_net": steps,
            "max_rel_err": e_gd,
            "max_rel_err_half_lr": e_gd2,
            "observed_order": order,
            "grid_s_extrapolated": t_gd / len(idx) * N,
            "steps_for_flow_accuracy": steps_eq,
            "grid_s_at_flow_accuracy": step_s * steps_eq * N,
        }
    )
    t0 = time.perf_counter()
    out = np.stack(
        [
            _numpy_riccati_product(W1s[i], W2s[i], float(lam[i]), X, Y, LAMBDA_LR, steps, every_gd)
            for i in idx
        ]
    )
    t_ric = time.perf_counter() - t0
    e_ric = rel_err(out, idx)
    emit(
        {
            "bench": BENCH,
            "method": "lambda_numpy_riccati",
            "timed_nets": int(len(idx)),
            "dt": LAMBDA_LR,
            "max_rel_err": e_ric,
            "grid_s_extrapolated": t_ric / len(idx) * N,
        }
    )
    emit(
        {
            "bench": BENCH,
            "method": "lambda_ratios",
            "gd_over_exact": t_gd / len(idx) * N / t_exact,
            "gd_over_flow": t_gd / len(idx) * N / t_flow,
            "gd_at_flow_accuracy_over_flow": step_s * steps_eq * N / t_flow,
            "load_avg_end": os.getloadavg(),
        }
    )
    print(
        f"Dominé et al. λ × scale grid ({N} nets 4→4→4, t = {LAMBDA_T:g}): exact "
        f"{t_exact:.2f} s, flow {t_flow:.2f} s (error {err_flow:.1e}) on a "
        f"{os.cpu_count()}-core CPU; numpy GD at lr {LAMBDA_LR} (the authors' 4000 steps) "
        f"{t_gd / len(idx) * N:.1f} s (error {e_gd:.1e}, order {order:.2f}), at the flow's "
        f"accuracy {step_s * steps_eq * N / 3600:.1f} h (extrapolated); numpy Euler Riccati "
        f"{t_ric / len(idx) * N:.1f} s (error {e_ric:.1e})",
        file=sys.stderr,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--points", type=int, default=2, help="grid points solved by the flow")
    p.add_argument("--gd-steps", type=int, default=2000, help="GD steps timed")
    p.add_argument("--tiny", action="store_true", help="smoke test (default-size grid)")
    p.add_argument("--parts", default="relu,lambda", help="relu (Fig. 1b), lambda (Dominé)")
    p.add_argument("--lambda-nets", type=int, default=8, help="nets timed with numpy GD")
    a = p.parse_args(argv)
    parts = {v.strip() for v in a.parts.split(",")}
    if not parts or parts - {"relu", "lambda"} or a.lambda_nets < 1 or a.points < 1:
        p.error("--parts from relu,lambda; --lambda-nets and --points positive")
    emit({"bench": BENCH, "method": "machine", "load_avg": os.getloadavg(), **machine_info()})
    if "lambda" in parts:
        lambda_part(2 if a.tiny else a.lambda_nets, a.tiny)
    if "relu" not in parts:
        return 0
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
