"""Phase-diagram sweep throughput: `jd.sweep` vs a per-point jitted loop vs a scipy loop.

    python benchmarks/sweep.py [--n-points 4096] [--mode auto|stacked|vmap]
                               [--dtype float64|float32] [--quick]

Problem: the built-in `single-neuron` experiment (Kunin et al. 2024; `jaxdyn sweep
single-neuron`), built with `get_experiment("single-neuron", rtol=1e-8, atol=1e-8, mode=...)`:
Dopri8 + PID step control (max norm), default save times (121 on [0, 30]), float64 (with
`--dtype float32`: rtol = atol = 1e-5 unless `--rtol/--atol`; scipy stays float64). Grid:
δ ∈ [−3, 3] (linear) × ‖β0‖ ∈ [1e-2, 1] (log) × η_a/η_w ∈ [0.1, 10] (log), default
64 × 16 × 4 = 4096 points (`--n-points N` grows the δ axis to reach N).

Methods, all on points of the same grid and the same ODE / solver order / tolerances:

- `sweep`: `jd.sweep(exp, grid, progress=False)`: chunked, batched, one compiled call per
  chunk (automatic chunk size unless `--chunk-size`). Timed after one warm-up call; the timed
  calls must not recompile (checked with jax.monitoring compile events and the jit cache size;
  exit code 1 otherwise). Includes everything a user waits for: post-processing (exact
  solution, kernel distance…) and the assembly of the xarray Dataset.
- `per_point_jit_loop`: a Python loop calling the same compiled `exp.jitted` on ONE point at a
  time (batch of 1), over a random subset of `--loop-subset` points, rate extrapolated.
- `sweep_chunk1`: `jd.sweep(exp, subgrid, chunk_size=1)` on a sub-grid (one compiled call per
  point through the sweep engine), rate extrapolated.
- `scipy_loop_DOP853`: a Python loop of `scipy.integrate.solve_ivp` (DOP853, the order-8
  Dormand–Prince pair Dopri8 also is) at the experiment's rtol/atol, on the same subset as
  the per-point loop, ODE only (no post-processing), rate extrapolated. Its trajectories are
  compared with the sweep's (`max_abs_dev_vs_sweep`, on a(t)).
- `memory`: XLA's compiled memory analysis of the sweep's chunk program (temp + argument +
  output bytes, divided by the chunk size) and the growth of the process's peak RSS during
  one timed sweep, divided by the number of points.

Every timing excludes compilation and is the best of `--repeat` runs (`time.perf_counter`).
Output: one JSON line per measurement on stdout (machine, config, methods, memory, ratios),
then a human-readable table on stderr. Exit code 1 if the sweep recompiles, a trajectory
fails, or the sweep deviates from the closed form by more than 1e-5 (relative; 1e-3 in
float32).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import jaxdyn as jd  # noqa: E402
from jaxdyn import init as jinit  # noqa: E402
from jaxdyn.experiments import get_experiment  # noqa: E402

try:
    from ._common import (
        compile_counter,
        emit,
        machine_info,
        peak_rss_tracker,
        print_ratios,
        rate_record,
        timeit,
    )
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import (
        compile_counter,
        emit,
        machine_info,
        peak_rss_tracker,
        print_ratios,
        rate_record,
        timeit,
    )

BENCH = "sweep"
TOL = {"float64": 1e-8, "float32": 1e-5}  # default rtol = atol per dtype
TARGETS = {"sweep_over_scipy_loop": 200.0}
DEV_LIMIT = {"float64": 1e-5, "float32": 1e-3}
MEMORY_BUDGET = 2**30  # jd.sweep's default


# --------------------------------------------------------------------------------------------
# Grid and reference problem


def make_grid(n_delta: int, n_scale: int, n_ratio: int) -> dict[str, np.ndarray]:
    return {
        "delta": np.linspace(-3.0, 3.0, n_delta),
        "scale": np.geomspace(1e-2, 1.0, n_scale),
        "lr_ratio": np.geomspace(0.1, 10.0, n_ratio),
    }


def flat_points(grid):
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    return {k: m.ravel() for k, m in zip(grid, mesh, strict=True)}


def subgrid(grid, n_target: int):
    """About `n_target` points: evenly spaced values of each axis (a sub-grid of `grid`)."""
    sizes = {k: v.size for k, v in grid.items()}
    frac = (n_target / math.prod(sizes.values())) ** (1.0 / len(sizes))
    out = {}
    for k, v in grid.items():
        m = min(v.size, max(1, round(v.size * frac)))
        out[k] = v[np.unique(np.linspace(0, v.size - 1, m).round().astype(int))]
    return out


def scipy_problem(exp, pts):
    """Data moments, save times and initial conditions of the experiment at points `pts`."""
    d, n, angle = int(exp.attrs["d"]), int(exp.attrs["n"]), float(exp.attrs["beta0_angle"])
    beta_star = np.zeros(d)
    beta_star[0] = 1.0
    X, y = jd.data.whitened_regression(n, d, beta_star, fix_signs=False)  # as the experiment
    direction = np.zeros(d)
    direction[0], direction[1 % d] = np.cos(angle), np.sin(angle)
    if d == 1:
        direction[0] = np.sign(np.cos(angle))
    eta_a, eta_w = np.sqrt(pts["lr_ratio"]), 1.0 / np.sqrt(pts["lr_ratio"])
    b0 = pts["scale"][:, None] * direction
    models = jax.vmap(jinit.single_neuron)(
        jnp.asarray(b0), jnp.asarray(pts["delta"]), jnp.asarray(eta_a), jnp.asarray(eta_w)
    )
    return {
        "Sxx": X.T @ X / n,
        "sxy": X.T @ y / n,
        "ts": np.asarray(exp.coords["t"], float),
        "a0": np.asarray(models.a),
        "w0": np.asarray(models.w),
        "eta_a": eta_a,
        "eta_w": eta_w,
    }


# --------------------------------------------------------------------------------------------
# Methods


def run_sweep(exp, grid, chunk_size, repeat):
    """Warm-up sweep (compiles), then `repeat` timed sweeps that must not compile again."""
    t0 = time.perf_counter()
    jd.sweep(exp, grid, chunk_size=chunk_size, progress=False)
    warm_s = time.perf_counter() - t0
    cache0 = _cache_size(exp.jitted)
    times, rss = [], None
    with compile_counter() as cc:
        for i in range(max(1, repeat)):
            with peak_rss_tracker(enabled=i == 0) as tracker:
                t0 = time.perf_counter()
                ds = jd.sweep(exp, grid, chunk_size=chunk_size, progress=False)
                times.append(time.perf_counter() - t0)
            if i == 0:
                rss = tracker.result
    cache1 = _cache_size(exp.jitted)
    r = {
        "best_s": min(times),
        "median_s": float(np.median(times)),
        "times_s": times,
        "repeat": len(times),
        "warmup_s_incl_compile": warm_s,
        "compiles_during_timed": cc.compiles,
        "traces_during_timed": cc.traces,
        "jit_cache_size": [cache0, cache1],
    }
    r["recompiled"] = cc.compiles > 0 or (cache0 is not None and cache1 != cache0)
    return r, ds, rss


def _cache_size(f):
    try:
        return int(f._cache_size())
    except Exception:  # noqa: BLE001 - private API, informational only
        return None


def run_per_point_jit(exp, pts, idx, repeat):
    """One compiled call of the experiment per point (batch of 1), in a Python loop."""
    f = exp.jitted
    one = [{k: jnp.asarray(v[i : i + 1]) for k, v in pts.items()} for i in idx]

    def loop():
        return [jax.block_until_ready(f(p)) for p in one]

    jax.block_until_ready(f(one[0]))  # compile the batch-of-1 program
    r = timeit(loop, repeat=repeat, warmup=0)
    out = r.pop("result")
    r["all_successful"] = bool(all(int(o["status"][0]) == 0 for o in out))
    return r


def run_sweep_chunk1(exp, sub, repeat):
    """`jd.sweep(..., chunk_size=1)`: the sweep engine with one compiled call per point."""
    first = {k: v[:1] for k, v in sub.items()}
    jd.sweep(exp, first, chunk_size=1, progress=False)  # compile / warm the engine
    r = timeit(lambda: jd.sweep(exp, sub, chunk_size=1, progress=False), repeat=repeat, warmup=0)
    ds = r.pop("result")
    r["all_successful"] = bool(np.all(ds["status"].values == 0))
    return r


def run_scipy_loop(P, idx, method, rtol, atol, repeat):
    Sxx, sxy, ts = P["Sxx"], P["sxy"], P["ts"]

    def rhs(t, z, eta_a, eta_w):
        a, w = z[0], z[1:]
        g = Sxx @ (a * w) - sxy
        return np.concatenate(([-eta_a * (w @ g)], -eta_w * a * g))

    def one(i):
        z0 = np.concatenate(([P["a0"][i]], P["w0"][i])).astype(np.float64)
        return solve_ivp(
            rhs,
            (ts[0], ts[-1]),
            z0,
            method=method,
            t_eval=ts,
            rtol=rtol,
            atol=atol,
            args=(P["eta_a"][i], P["eta_w"][i]),
        )

    one(idx[0])  # warm scipy's caches
    r = timeit(lambda: [one(i) for i in idx], repeat=repeat, warmup=0)
    sols = r.pop("result")
    r["nfev_mean"] = float(np.mean([s.nfev for s in sols]))
    r["all_successful"] = all(s.status == 0 for s in sols)
    return r, np.stack([s.y[0] for s in sols])


def memory_analysis(exp, chunk: int) -> dict:
    """XLA's compiled memory statistics of the experiment's program for one chunk."""
    spec = {k: jax.ShapeDtypeStruct((chunk,), jnp.result_type(float)) for k in exp.axes}
    try:
        stats = exp.jitted.lower(spec).compile().memory_analysis()
    except Exception as e:  # noqa: BLE001 - backend without analysis
        return {"available": False, "error": f"{type(e).__name__}: {e}"}
    if stats is None:
        return {"available": False}
    fields = ("temp", "argument", "output", "alias", "generated_code", "peak_memory")
    out = {"available": True}
    for f in fields:
        name = f if f == "peak_memory" else f"{f}_size"
        v = getattr(stats, f"{name}_in_bytes", None)
        if v is not None:
            out[f"{name}_bytes"] = int(v)
    total = sum(out.get(f"{f}_size_bytes", 0) for f in ("temp", "argument", "output"))
    total -= out.get("alias_size_bytes", 0)
    out["temp_arg_out_bytes"] = total
    out["bytes_per_point"] = total / chunk
    return out


# --------------------------------------------------------------------------------------------
# Main


def _record(method, n, r, **extra):
    return rate_record(BENCH, method, "n_points", n, r, **extra)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--n-points",
        type=int,
        default=None,
        help="grid size: grows the δ axis to ⌈N / (n_scale·n_ratio)⌉ values",
    )
    p.add_argument("--n-delta", type=int, default=64)
    p.add_argument("--n-scale", type=int, default=16)
    p.add_argument("--n-ratio", type=int, default=4)
    p.add_argument(
        "--mode",
        choices=("auto", "stacked", "vmap"),
        default="auto",
        help="experiment mode (auto: stacked on CPU, vmap on accelerators)",
    )
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--rtol", type=float, default=None, help="default 1e-8 (float32: 1e-5)")
    p.add_argument("--atol", type=float, default=None, help="default 1e-8 (float32: 1e-5)")
    p.add_argument("--chunk-size", type=int, default=None, help="default: jd.sweep's automatic")
    p.add_argument("--loop-subset", type=int, default=128, help="points timed in the loops")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--scipy-methods", default="DOP853", help="comma list, first = baseline")
    p.add_argument("--n-t", type=int, default=None, help="save times (experiment default 121)")
    p.add_argument("--quick", action="store_true", help="small smoke test (< 1 min)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_delta, args.n_scale, args.n_ratio = 16, 4, 2
        args.loop_subset, args.repeat = 8, 1
        args.n_points = None
    if args.n_points is not None:
        if args.n_points < 1:
            p.error("--n-points must be positive")
        args.n_delta = math.ceil(args.n_points / (args.n_scale * args.n_ratio))
    if min(args.n_delta, args.n_scale, args.n_ratio, args.loop_subset, args.repeat) < 1:
        p.error("grid sizes, --loop-subset and --repeat must be positive")
    if args.chunk_size is not None and args.chunk_size < 1:
        p.error("--chunk-size must be positive")

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    emit({"bench": BENCH, "method": "machine", "load_avg": os.getloadavg(), **machine_info()})
    tol = TOL[args.dtype]
    extra = {} if args.n_t is None else {"n_t": args.n_t}
    exp = get_experiment(
        "single-neuron", rtol=args.rtol or tol, atol=args.atol or tol, mode=args.mode, **extra
    )
    rtol, atol = float(exp.attrs["rtol"]), float(exp.attrs["atol"])
    grid = make_grid(args.n_delta, args.n_scale, args.n_ratio)
    pts = flat_points(grid)
    N = pts["delta"].size
    n_dev = jax.device_count()
    if args.chunk_size is None:
        from jaxdyn._sweep._plan import auto_chunk  # the chunk jd.sweep picks itself

        chunk = auto_chunk(exp, N, n_dev, MEMORY_BUDGET)
    else:
        chunk = math.ceil(args.chunk_size / n_dev) * n_dev
    m = min(args.loop_subset, N)
    idx = np.sort(np.random.default_rng(2).choice(N, m, replace=False))
    sub = subgrid(grid, m)
    n_sub = math.prod(v.size for v in sub.values())
    emit(
        {
            "bench": BENCH,
            "method": "config",
            "experiment": exp.name,
            "mode": exp.attrs["mode"],
            "solver": exp.attrs["solver"],
            "rtol": rtol,
            "atol": atol,
            "n_points": N,
            "grid": {
                k: {"n": int(v.size), "min": float(v[0]), "max": float(v[-1])}
                for k, v in grid.items()
            },
            "n_t": int(exp.coords["t"].size),
            "t_max": float(exp.coords["t"][-1]),
            "dtype": str(jnp.result_type(float)),
            "chunk_size": chunk,
            "chunk_size_source": "automatic" if args.chunk_size is None else "--chunk-size",
            "n_chunks": math.ceil(N / chunk),
            "loop_subset": m,
            "sweep_chunk1_points": n_sub,
            "repeat": args.repeat,
            "timing": "best of `repeat` after warm-up (compile excluded), time.perf_counter",
        }
    )
    ok = True
    recs = {}

    r, ds, rss = run_sweep(exp, grid, args.chunk_size, args.repeat)
    status = ds["status"].values.ravel()
    worst = float(ds["exact_deviation"].max())
    recs["sweep"] = _record(
        "sweep",
        N,
        r,
        all_successful=bool(np.all(status == 0)),
        max_rel_dev_vs_exact=worst,
        max_delta_drift=float(ds["delta_drift"].max()),
    )
    ok &= bool(np.all(status == 0)) and worst <= DEV_LIMIT[args.dtype] and not r["recompiled"]
    a_sweep = ds["a"].values.reshape(N, -1)

    reps = max(1, min(2, args.repeat))
    r = run_per_point_jit(exp, pts, idx, reps)
    recs["per_point"] = _record(
        "per_point_jit_loop",
        m,
        r,
        extrapolated=True,
        note=f"exp.jitted on 1 point per call, {m} of {N} points; traj_per_s per point",
    )
    r = run_sweep_chunk1(exp, sub, 1)
    recs["chunk1"] = _record(
        "sweep_chunk1",
        n_sub,
        r,
        extrapolated=True,
        note=f"jd.sweep(chunk_size=1) on a {n_sub}-point sub-grid; traj_per_s per point",
    )
    P = scipy_problem(exp, {k: v[idx] for k, v in pts.items()})
    loops = {}
    for method in [s.strip() for s in args.scipy_methods.split(",") if s.strip()]:
        r, a = run_scipy_loop(P, np.arange(m), method, rtol, atol, reps)
        loops[method] = _record(
            f"scipy_loop_{method}",
            m,
            r,
            extrapolated=True,
            max_abs_dev_vs_sweep=float(np.max(np.abs(a - a_sweep[idx]))),
            note=f"solve_ivp per point, ODE only, {m} of {N} points; traj_per_s per point",
        )

    mem = memory_analysis(exp, chunk)
    mem_rec = {"bench": BENCH, "method": "memory", "chunk_size": chunk, "xla": mem}
    if rss is not None:
        mem_rec["rss_peak_growth_bytes"] = rss
        mem_rec["rss_peak_growth_bytes_per_point"] = rss / N
    mem_rec["note"] = (
        "xla: compiled program of one chunk (device memory); rss: growth of "
        "the process peak RSS during one timed sweep (host, incl. outputs)"
    )
    emit(mem_rec)

    base = next(iter(loops.values()))
    rate = recs["sweep"]["traj_per_s"]
    ratios = {
        "sweep_over_scipy_loop": rate / base["traj_per_s"],
        "sweep_over_per_point_jit_loop": rate / recs["per_point"]["traj_per_s"],
        "sweep_over_sweep_chunk1": rate / recs["chunk1"]["traj_per_s"],
        "per_point_jit_loop_over_scipy_loop": recs["per_point"]["traj_per_s"] / base["traj_per_s"],
    }
    for name, rec in list(loops.items())[1:]:
        ratios[f"sweep_over_scipy_loop_{name}"] = rate / rec["traj_per_s"]
    meets = {k: ratios[k] >= v for k, v in TARGETS.items()}
    emit(
        {
            "bench": BENCH,
            "method": "ratios",
            "n_points": N,
            "mode": exp.attrs["mode"],
            **ratios,
            "scipy_loop_baseline": base["method"],
            "basis": "best-of-k traj/s measured in this run",
            "targets": TARGETS,
            "meets_target": meets,
            "sweep_recompiled": recs["sweep"]["recompiled"],
            "xla_bytes_per_point": mem.get("bytes_per_point"),
            "rss_bytes_per_point": None if rss is None else rss / N,
            "load_avg_end": os.getloadavg(),
        }
    )

    out = sys.stderr
    print(
        f"\nsingle-neuron sweep, {N} points ({' x '.join(str(v.size) for v in grid.values())}"
        f"), mode={exp.attrs['mode']}, chunk={chunk}, Dopri8 rtol={rtol:g} atol={atol:g}, "
        f"{jnp.result_type(float)}",
        file=out,
    )
    print(f"{'method':<26}{'traj/s':>12}{'time [s]':>11}{'points':>9}", file=out)
    for q in [recs["sweep"], recs["per_point"], recs["chunk1"], *loops.values()]:
        name = q["method"] + ("*" if q.get("extrapolated") else "")
        print(
            f"{name:<26}{q['traj_per_s']:>12.4g}{q['time_s']:>11.4g}{q['n_points']:>9}", file=out
        )
    print("* timed on a subset, per-point rate extrapolated", file=out)
    if mem.get("available"):
        print(
            f"XLA memory per point (chunk {chunk}): {mem['bytes_per_point'] / 1024:.1f} KiB "
            f"(temp {mem.get('temp_size_bytes', 0) / 2**20:.1f} MiB, "
            f"out {mem.get('output_size_bytes', 0) / 2**20:.1f} MiB)",
            file=out,
        )
    if rss is not None:
        print(f"peak RSS growth per point: {rss / N / 1024:.1f} KiB", file=out)
    print_ratios(ratios, TARGETS, meets, 36, out)
    print(
        f"sweep: worst relative deviation from exact {worst:.2e}; recompiled in timed calls: "
        f"{recs['sweep']['recompiled']}; load avg {os.getloadavg()}",
        file=out,
    )
    if not ok:
        print(
            "FAIL: the sweep recompiled, a point failed, or it deviates from the closed form",
            file=out,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
