"""Exact λ-balanced solution vs Diffrax gradient flow: time and agreement on one grid of nets.

    python benchmarks/linear_exact.py [--n-lam 32] [--n-scale 8] [--n-seed 4] [--quick]

Problem (Dominé et al. 2024, arXiv:2409.14623; notes §2, §8): two-layer linear nets 4 → 4 → 4 on
whitened inputs (n = 8) and a noiseless task with singular values geomspace(2, 0.2); a grid
λ ∈ [−5, 5] (`--n-lam`) × product scale ∈ [1e-3, 1] (log, `--n-scale`) × init seed (`--n-seed`)
of task-agnostic λ-balanced inits (≥ 1024 configurations by default; square nets with
sign det W2W1(0) = sign det Σ̃yx so λ = 0 converges, notes §2.4); `--n-t` save times on
[0, `--t-max`]; float64.

Methods, on the same nets and save times:

- `exact`: `jax.jit(jax.vmap(jd.exact.lambda_balanced))` — the closed form (Theorem 4.3),
  called on chunks of `--exact-chunk` nets (an XLA:CPU deadlock workaround, see below).
- `flow`: `jd.gradient_flow(models, data, ts, batch=True)` under `eqx.filter_jit` — one stacked
  Diffrax ODE (Dopri8, max-norm PID, rtol = `--rtol`, atol = `--atol`).

Timings exclude compilation (one warm-up call) and are the best of `--repeat` runs. Output: one
JSON line per measurement on stdout (machine, the two methods, then `ratios` with the
exact-over-flow speedup and the max relative deviation of W2W1 between them), and a
human-readable table on stderr. Exit code 1 if the deviation exceeds 1e-6 or the flow fails.
"""

from __future__ import annotations

import argparse
import os
import sys

# XLA:CPU (jaxlib 0.10.2) deadlocked on the vmapped exact solution over ≥ 256 nets with its
# concurrency-optimized scheduler (all threads idle in futex waits); turn it off, before jax loads.
# With the flag off it still hung at 4096 nets in one call, so the exact solution is evaluated in
# chunks of `--exact-chunk` (1024) nets.
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
    from ._common import emit, lambda_balanced_models, machine_info, timeit
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import emit, lambda_balanced_models, machine_info, timeit

BENCH = "linear_exact"
DEV_LIMIT = 1e-6


def make_problem(n_lam: int, n_scale: int, n_seed: int, n_t: int, t_max: float, d: int = 4):
    X, Y, Syx = jd.data.whitened_task(2 * d, d, d, np.geomspace(2.0, 0.2, d), 0)
    lam, scale, seed = (
        g.ravel()
        for g in np.meshgrid(
            np.linspace(-5.0, 5.0, n_lam),
            np.geomspace(1e-3, 1.0, n_scale),
            np.arange(n_seed),
            indexing="ij",
        )
    )

    models = lambda_balanced_models(lam, scale, seed, Syx, d)
    return {
        "data": (jnp.asarray(X), jnp.asarray(Y)),
        "ts": jnp.linspace(0.0, t_max, n_t),
        "models": models,
        "n_traj": lam.size,
        "grid": {"n_lam": n_lam, "n_scale": n_scale, "n_seed": n_seed, "d": d, "n_t": n_t},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-lam", type=int, default=32)
    p.add_argument("--n-scale", type=int, default=8)
    p.add_argument("--n-seed", type=int, default=4)
    p.add_argument("--n-t", type=int, default=50)
    p.add_argument("--t-max", type=float, default=20.0)
    p.add_argument("--rtol", type=float, default=1e-10)
    p.add_argument("--atol", type=float, default=1e-12)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--exact-chunk", type=int, default=1024, help="nets per exact call")
    p.add_argument("--quick", action="store_true", help="smoke test (< 40 s), still 1024 nets")
    a = p.parse_args(argv)
    if a.quick:
        a.n_t, a.t_max, a.repeat = 20, 10.0, 1
    emit({"bench": BENCH, "method": "machine", "load_avg": os.getloadavg(), **machine_info()})
    P = make_problem(a.n_lam, a.n_scale, a.n_seed, a.n_t, a.t_max)
    X, Y = P["data"]
    ts = P["ts"]
    models = P["models"]
    config = {"rtol": a.rtol, "atol": a.atol, "t_max": a.t_max, **P["grid"]}

    exact_chunk = jax.jit(
        jax.vmap(lambda W1, W2: jd.exact.lambda_balanced(W1, W2, X, Y, ts).product)
    )
    c = min(a.exact_chunk, P["n_traj"])

    def exact(W1, W2):  # chunks of ≤ `--exact-chunk` nets (see the XLA note above)
        out = [
            jax.block_until_ready(exact_chunk(W1[i : i + c], W2[i : i + c]))
            for i in range(0, W1.shape[0], c)
        ]
        return jnp.concatenate(out)

    r_ex = timeit(lambda: exact(models.W1, models.W2), repeat=a.repeat)
    p_ex = np.asarray(r_ex.pop("result"))

    @eqx.filter_jit
    def flow(m):
        traj = jd.gradient_flow(
            m, (X, Y), ts, batch=True, solver=diffrax.Dopri8(), rtol=a.rtol, atol=a.atol
        )
        return traj.model.W2 @ traj.model.W1, traj.status, traj.stats["num_steps"]

    r_fl = timeit(lambda: flow(models), repeat=a.repeat)
    p_fl, status, steps = (np.asarray(v) for v in r_fl.pop("result"))

    n = P["n_traj"]
    dev = float(np.max(np.abs(p_fl - p_ex)) / np.max(np.abs(p_ex)))
    ok = bool(np.all(status == 0))
    for name, r, extra in (
        ("exact", r_ex, {}),
        ("flow", r_fl, {"all_successful": ok, "num_steps": int(np.max(steps))}),
    ):
        emit(
            {
                "bench": BENCH,
                "method": name,
                "n_traj": n,
                "traj_per_s": n / r["best_s"],
                **{k: r[k] for k in ("best_s", "median_s", "repeat")},
                **extra,
                **config,
            }
        )
    speedup = r_fl["best_s"] / r_ex["best_s"]
    emit(
        {
            "bench": BENCH,
            "method": "ratios",
            "exact_over_flow_speedup": speedup,
            "max_rel_deviation_product": dev,
            "n_traj": n,
            **config,
        }
    )
    print(
        f"\n{BENCH}: {n} λ-balanced nets, {a.n_t} save times on [0, {a.t_max:g}]", file=sys.stderr
    )
    print(f"  {'method':8s} {'best s':>10s} {'traj/s':>12s}", file=sys.stderr)
    for name, r in (("exact", r_ex), ("flow", r_fl)):
        print(f"  {name:8s} {r['best_s']:10.4f} {n / r['best_s']:12.0f}", file=sys.stderr)
    print(f"  exact is {speedup:.1f}x faster; max relative deviation {dev:.2e}", file=sys.stderr)
    return 0 if (ok and dev <= DEV_LIMIT) else 1


if __name__ == "__main__":
    sys.exit(main())
