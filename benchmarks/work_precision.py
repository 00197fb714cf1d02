"""Work–precision: wall time vs achieved worst-member error, jaxdyn vs the alternatives, one run.

    python benchmarks/work_precision.py [--sizes 1000,10000,100000] [--tols 1e-5,1e-7,1e-9,1e-11]
        [--problems single_neuron,lambda_balanced] [--png work_precision.png] [--tiny]
        [--host-devices N] [--solvers Tsit5,Dopri8,Tsit5-f32,Tsit5@1024,...]
        [--f32-tols 1e-4,1e-5,2e-6]

The standard way ODE software is compared: every method solves the same batch of problems at
several tolerances (rtol = atol = tol); for each run we record the wall time and the achieved
error of the WORST member against the closed form, and plot time against error. Speed is then
compared **at equal achieved accuracy**, not at equal nominal tolerance (scipy's RMS error norm
lets single members miss the tolerance that jaxdyn's max norm enforces for every member).

Problems (float64, except the `-f32` solver rows):

- `single_neuron`: f(x) = a·wᵀx on whitened data (d = 2, n = 8), a grid over the imbalance
  δ ∈ [−3, 3] × η_a/η_w ∈ [0.1, 10] (as `benchmarks/single_neuron.py`), 50 save times on
  [0, 20]; reference `jd.exact.single_neuron`; error max |θ − θ_exact| over members, times and
  parameters.
- `lambda_balanced`: square two-layer linear nets 4 → 4 → 4 from λ-balanced inits (as
  `benchmarks/linear_exact.py`: λ ∈ [−5, 5] × scale ∈ [1e-3, 1] × seed), 20 save times on
  [0, 10]; reference `jd.exact.lambda_balanced`; error max |W2W1 − exact| / max |exact|.

Methods (each at every tolerance):

- `jaxdyn_stacked[S]`: `jd.gradient_flow(models, data, ts, batch="stacked", solver=S)`;
  S ∈ {Tsit5, Dopri8}; one stacked ODE with max-norm error control.
- `jaxdyn_stacked[S-f32]`: the same solve in float32 (models, learning rates, data and save
  times cast on entry; error still measured against the float64 closed form), at the
  tolerances `--f32-tols` (float32 cannot meet rtol below 10·eps ≈ 1.2e-6): what a user picks
  when a loose tolerance is enough. Half the bytes per member-step.
- `jaxdyn_stacked[S@B]`: the members in consecutive blocks of B, one block after another,
  each block one stacked solve with its own step control (`gradient_flow(...,
  block_size=B)`, as `jd.sweep` runs its blocks); stacked rows only, where B tiles the batch.
- `jaxdyn_vmap[S]`: the same with `batch="vmap"` (per-member adaptive steps).
- `jaxdyn_sharded[S]`: only with more than one local device (`--host-devices N` makes N XLA
  CPU devices, one per core): the members split evenly over the devices with `jax.shard_map`,
  each device one stacked solve of its members (its own step sizes) -- what `jd.sweep` does
  with a chunk. The other jax methods run on the first device only; numpy/scipy is
  single-threaded (OpenBLAS pinned to one thread) -- so this row uses cores the others do not.
- `diffrax_vmap[S]`: a hand-written `jax.jit(jax.vmap(diffrax.diffeqsolve))` with the loss written
  on the data and `jax.grad` (what a JAX user writes without jaxdyn; Diffrax's default RMS norm).
- `scipy_stacked[M]`: ONE `scipy.integrate.solve_ivp` over all members, right-hand side
  vectorised in numpy (elementwise, no tiny BLAS calls; OpenBLAS pinned to one thread so it
  does not fight XLA's threads); M ∈ {RK45, DOP853}.
- `scipy_loop[M]`: a Python loop of `solve_ivp`, one call per member. Only a random subset of
  `--loop-subset` members is timed; the time is **extrapolated** linearly to the whole batch
  (`extrapolated: true`) and the error is the subset's worst member.

Equal-accuracy ratios: for each method, log(time) is interpolated linearly in log(error) between
its measured points (sorted by error; never extrapolated outside the measured error range). At a
target error e, a method *family* (e.g. jaxdyn stacked = the faster of its solvers at that error,
scipy stacked = the faster of RK45/DOP853) costs the minimum over its members' interpolated
times. The ratio baseline/jaxdyn-stacked is printed at every target error (decades) that both
families reach; `null` where the curves do not overlap.

Timings: compile and warm-up excluded, best of `--repeat` for every method (`time.perf_counter`;
the scipy loop, extrapolated, runs once). Output: one
JSON line per measurement, one `ratios` line per (problem, size), a table on stderr, the PNG.
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()


def _host_devices(argv: list[str]) -> int:
    """`--host-devices N` must act before JAX starts (it sets an XLA flag)."""
    for i, a in enumerate(argv):
        v = a.split("=", 1)[1] if a.startswith("--host-devices=") else None
        if a == "--host-devices" and i + 1 < len(argv):
            v = argv[i + 1]
        if v is not None:
            return int(v) if v.isdigit() else 0
    return 1


if __name__ == "__main__" and _host_devices(sys.argv[1:]) > 1:
    os.environ["XLA_FLAGS"] += (
        f" --xla_force_host_platform_device_count={_host_devices(sys.argv[1:])}"
    )

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import jaxdyn as jd  # noqa: E402

try:
    from ._common import (
        emit,
        equal_accuracy,
        lambda_balanced_models,
        machine_info,
        print_table,
        timeit,
    )
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import (
        emit,
        equal_accuracy,
        lambda_balanced_models,
        machine_info,
        print_table,
        timeit,
    )

BENCH = "work_precision"
SOLVERS = {"Tsit5": diffrax.Tsit5, "Dopri8": diffrax.Dopri8}
SCIPY = ("RK45", "DOP853")
FAMILIES = {
    "jaxdyn_stacked": "jaxdyn stacked",
    "jaxdyn_vmap": "jaxdyn vmap",
    "jaxdyn_sharded": "jaxdyn stacked, sharded over devices",
    "diffrax_vmap": "hand-written vmap(diffeqsolve)",
    "scipy_stacked": "one stacked scipy solve_ivp",
    "scipy_loop": "loop of scipy solve_ivp (extrapolated)",
}


# --------------------------------------------------------------------------------------------
# Problems: each gives jaxdyn models/lr, a member loss on data for the hand-written solve, a
# flat numpy right-hand side for scipy, the closed form, and an error function.


def single_neuron_problem(N: int, seed: int = 0) -> dict:
    d, n = 2, 8
    X = jd.data.whitened_inputs(n, d, seed, fix_signs=False)
    y = X @ np.array([1.0, 0.5])
    n_ratio = max(1, int(np.sqrt(N)))
    n_delta = max(1, -(-N // n_ratio))
    D, R = (
        g.ravel()[:N]
        for g in np.meshgrid(
            np.linspace(-3.0, 3.0, n_delta), np.logspace(-1.0, 1.0, n_ratio), indexing="ij"
        )
    )
    eta_a, eta_w = np.sqrt(R), 1.0 / np.sqrt(R)
    u = np.random.default_rng(seed + 1).standard_normal(d)
    beta0 = jnp.asarray(0.01 * u / np.linalg.norm(u))
    models = jax.vmap(lambda dl, ea, ew: jd.init.single_neuron(beta0, dl, ea, ew))(
        jnp.asarray(D), jnp.asarray(eta_a), jnp.asarray(eta_w)
    )
    ts = np.linspace(0.0, 20.0, 50)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    exact = jax.jit(jax.vmap(jd.exact.single_neuron, in_axes=(None, None, 0, 0, None, 0, 0)))
    a_ex, w_ex = exact(Xj, yj, models.a, models.w, jnp.asarray(ts), eta_a, eta_w)
    ref = np.concatenate([np.asarray(a_ex)[..., None], np.asarray(w_ex)], -1)  # (N, T, 3)
    S, s = X.T @ X / n, X.T @ y / n

    def rhs_factory(idx):
        ea, ew, M = eta_a[idx], eta_w[idx], len(idx)

        def rhs(t, z):
            z = z.reshape(d + 1, M)
            a, w = z[0], z[1:]
            beta = a * w
            r = S[:, 0, None] * beta[0] + S[:, 1, None] * beta[1] - s[:, None]
            out = np.empty_like(z)
            out[0] = -ea * (w[0] * r[0] + w[1] * r[1])
            out[1:] = -(ew * a) * r
            return out.ravel()

        return rhs

    z0 = np.concatenate([np.asarray(models.a)[None], np.asarray(models.w).T])  # (3, N)

    def loss(m, data):
        Xd, yd = data
        return 0.5 * jnp.mean((m.a * (Xd @ m.w) - yd) ** 2)

    return {
        "name": "single_neuron",
        "N": N,
        "data": (Xj, yj),
        "ts": ts,
        "models": models,
        "lr": jd.SingleNeuron(jnp.asarray(eta_a), jnp.asarray(eta_w)[:, None]),
        "loss": loss,
        "rhs_factory": rhs_factory,
        "z0": z0,
        "from_scipy": lambda Y, M: Y.reshape(d + 1, M, -1).transpose(1, 2, 0),  # (M, T, 3)
        "from_models": lambda m: np.concatenate([np.asarray(m.a)[..., None], np.asarray(m.w)], -1),
        "error": lambda th, idx=None: float(
            np.max(np.abs(th - (ref if idx is None else ref[idx])))
        ),
        "describe": "single neuron d=2, n=8, δ∈[-3,3] × η_a/η_w∈[0.1,10], 50 saves on [0,20]",
    }


def lambda_balanced_problem(N: int, seed: int = 0) -> dict:
    d = 4
    X, Y, Syx = jd.data.whitened_task(2 * d, d, d, np.geomspace(2.0, 0.2, d), seed)
    n_seed = 4
    n_scale = max(1, int(np.sqrt(N / n_seed / 4)))
    n_lam = max(1, -(-N // (n_seed * n_scale)))
    lam, scale, keys = (
        g.ravel()[:N]
        for g in np.meshgrid(
            np.linspace(-5.0, 5.0, n_lam),
            np.geomspace(1e-3, 1.0, n_scale),
            np.arange(n_seed),
            indexing="ij",
        )
    )

    models = lambda_balanced_models(lam, scale, keys, Syx, d)
    ts = np.linspace(0.0, 10.0, 20)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    exact = jax.jit(jax.vmap(lambda W1, W2: jd.exact.lambda_balanced(W1, W2, Xj, Yj, ts).product))
    c = 1024
    ref = np.concatenate(
        [np.asarray(exact(models.W1[i : i + c], models.W2[i : i + c])) for i in range(0, N, c)]
    )  # (N, T, o, d)
    ref_scale = float(np.max(np.abs(ref)))
    n = X.shape[0]
    S, Syx_m = X.T @ X / n, Y.T @ X / n  # (d, d), (o, d)

    def rhs_factory(idx):
        M = len(idx)

        def rhs(t, z):
            W1 = z[: M * d * d].reshape(M, d, d)
            W2 = z[M * d * d :].reshape(M, d, d)
            Bm = np.einsum("moh,mhd->mod", W2, W1)
            G = np.einsum("mok,kd->mod", Bm, S) - Syx_m
            dW1 = -np.einsum("moh,mod->mhd", W2, G)
            dW2 = -np.einsum("mod,mhd->moh", G, W1)
            return np.concatenate([dW1.ravel(), dW2.ravel()])

        return rhs

    W1n, W2n = np.asarray(models.W1), np.asarray(models.W2)

    def z0_of(idx):
        return np.concatenate([W1n[idx].ravel(), W2n[idx].ravel()])

    def from_scipy(Yz, M):
        T = Yz.shape[-1]
        W1 = Yz[: M * d * d].reshape(M, d, d, T)
        W2 = Yz[M * d * d :].reshape(M, d, d, T)
        return np.einsum("mohT,mhdT->mTod", W2, W1)

    def loss(m, data):
        Xd, Yd = data
        return 0.5 * jnp.mean(jnp.sum((Xd @ m.W1.T @ m.W2.T - Yd) ** 2, -1))

    return {
        "name": "lambda_balanced",
        "N": N,
        "data": (Xj, Yj),
        "ts": ts,
        "models": models,
        "lr": 1.0,
        "loss": loss,
        "rhs_factory": rhs_factory,
        "z0_of": z0_of,
        "from_scipy": from_scipy,
        "from_models": lambda m: np.asarray(m.W2 @ m.W1),
        "error": lambda P, idx=None: float(
            np.max(np.abs(P - (ref if idx is None else ref[idx]))) / ref_scale
        ),
        "describe": "λ-balanced 4→4→4 linear nets, λ∈[-5,5] × scale∈[1e-3,1] × 4 seeds, "
        "20 saves on [0,10]",
    }


PROBLEMS = {"single_neuron": single_neuron_problem, "lambda_balanced": lambda_balanced_problem}


# --------------------------------------------------------------------------------------------
# Methods: each returns (timeit result, error, extra dict)


def _cached(P, key, build):
    """One compiled program per (method, solver) and problem: the tolerance is a traced
    argument, so the tolerance sweep does not recompile."""
    cache = P.setdefault("_compiled", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _is_f32(name: str) -> bool:
    """Whether a solver name (`"Tsit5-f32"`, `"Tsit5-f32@1024"`, ...) runs in float32."""
    return name.partition("@")[0].endswith("-f32")


def _solver(name: str) -> tuple[diffrax.AbstractSolver, jnp.dtype, int | None]:
    """`"Tsit5"` -> (Tsit5(), float64, None); `"Tsit5-f32"` -> (Tsit5(), float32, None);
    `"Tsit5@4096"` -> (Tsit5(), float64, 4096): members in blocks of 4096."""
    name, _, block = name.partition("@")
    base, _, prec = name.partition("-")
    dtype = jnp.dtype(jnp.float32 if prec == "f32" else jnp.float64)
    return SOLVERS[base](), dtype, int(block) if block else None


def _as_dtype(tree, dtype):
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree
    )


def _flow_fn(P, solver, mode):
    """`(models, lr, tol) -> (model trajectory, status, num_steps)`: the call every jaxdyn row
    times (`jd.gradient_flow` on the problem's data and save times). A `-f32` solver runs the
    whole solve in float32 (models, learning rates, data and save times cast on entry). A
    `@block` solver solves the members in consecutive blocks of `block`, one block after
    another, each block one stacked solve with its own step control
    (`gradient_flow(..., block_size=block)`; what `jd.sweep` runs on a device)."""
    s, dtype, block = _solver(solver)
    data, ts = _as_dtype(P["data"], dtype), jnp.asarray(P["ts"], dtype)

    def flow(m, lr, tol):
        m, lr, tol = _as_dtype(m, dtype), _as_dtype(lr, dtype), tol.astype(dtype)
        traj = jd.gradient_flow(
            m, data, ts, lr=lr, solver=s, rtol=tol, atol=tol, batch=mode, block_size=block
        )
        return traj.model, traj.status, traj.stats["num_steps"]

    return flow


def _jaxdyn_summary(P, model, status, steps, per_member_steps: bool):
    """The worst-member error and the `all_successful` / `steps` fields of a jaxdyn row."""
    steps = np.asarray(steps)
    extra = {
        "all_successful": bool(np.all(np.asarray(status) == 0)),
        "steps": float(np.mean(steps)) if per_member_steps else int(steps.max()),
    }
    return P["error"](P["from_models"](model)), extra


def run_jaxdyn(P, tol, solver, mode, repeat):
    flow = _cached(P, ("jaxdyn", mode, solver), lambda: eqx.filter_jit(_flow_fn(P, solver, mode)))
    tol_j = jnp.asarray(tol)
    r = timeit(lambda: flow(P["models"], P["lr"], tol_j), repeat=repeat)
    # steps: the mean over members where members take different steps (vmap, blocks)
    per_member = mode == "vmap" or _solver(solver)[2] is not None
    err, extra = _jaxdyn_summary(P, *r.pop("result"), per_member_steps=per_member)
    return r, err, extra


def run_jaxdyn_sharded(P, tol, solver, repeat):
    """The members split over all local devices, one stacked solve per device (`shard_map`)."""
    from jax.sharding import NamedSharding, PartitionSpec as Spec

    mesh = jax.make_mesh((jax.device_count(),), ("members",))
    d_models, s_models = eqx.partition(P["models"], eqx.is_array)
    d_lr, s_lr = eqx.partition(P["lr"], eqx.is_array)

    def build():
        flow = _flow_fn(P, solver, "stacked")

        def shard(dm, dl, tol):
            model, status, steps = flow(eqx.combine(dm, s_models), eqx.combine(dl, s_lr), tol)
            return eqx.filter(model, eqx.is_array), status, steps

        specs = lambda t: jax.tree_util.tree_map(lambda _: Spec("members"), t)  # noqa: E731
        return jax.jit(
            jax.shard_map(
                shard,
                mesh=mesh,
                in_specs=(specs(d_models), specs(d_lr), Spec()),
                out_specs=Spec("members"),
                check_vma=False,
            )
        )

    flow = _cached(P, ("jaxdyn_sharded", solver), build)
    put = lambda t: jax.device_put(t, NamedSharding(mesh, Spec("members")))  # noqa: E731
    dm, dl, tol_j = put(d_models), put(d_lr), jnp.asarray(tol)
    r = timeit(lambda: flow(dm, dl, tol_j), repeat=repeat)
    model, status, steps = r.pop("result")
    err, extra = _jaxdyn_summary(
        P, eqx.combine(model, s_models), status, steps, per_member_steps=False
    )
    return r, err, {**extra, "devices": jax.device_count()}


def run_diffrax_vmap(P, tol, solver, repeat):
    """What a JAX user writes: jax.vmap over members of diffrax.diffeqsolve on -∇L."""
    data, ts = P["data"], jnp.asarray(P["ts"])
    loss = P["loss"]
    s = SOLVERS[solver]()  # float64 only

    params, static = eqx.partition(P["models"], eqx.is_inexact_array)

    def vf(t, p, lr):
        g = jax.grad(lambda q: loss(eqx.combine(q, static), data))(p)
        return jax.tree_util.tree_map(lambda gi, e: -e * gi, g, lr)

    lr = P["lr"]
    if isinstance(lr, float):
        lr, lr_axes = jax.tree_util.tree_map(lambda _: lr, params), None
    else:
        lr, lr_axes = eqx.filter(lr, eqx.is_array), 0

    def build():
        return jax.jit(solve)

    def solve(params, lr, tol):
        def one(p, e):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(vf),
                s,
                ts[0],
                ts[-1],
                None,
                p,
                args=e,
                saveat=diffrax.SaveAt(ts=ts),
                stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
                max_steps=100_000,
            )
            return sol.ys, sol.stats["num_steps"]

        return jax.vmap(one, in_axes=(0, lr_axes))(params, lr)

    solve_jit = _cached(P, ("diffrax_vmap", solver), build)
    tol_j = jnp.asarray(tol)
    r = timeit(lambda: solve_jit(params, lr, tol_j), repeat=repeat)
    ys, steps = r.pop("result")
    model = eqx.combine(jax.tree_util.tree_map(lambda y: jnp.asarray(y), ys), static)
    return r, P["error"](P["from_models"](model)), {"steps": float(np.mean(np.asarray(steps)))}


def _z0(P, idx):
    if "z0_of" in P:
        return P["z0_of"](idx)
    return P["z0"][:, idx].ravel()


def run_scipy(P, tol, method, idx, repeat):
    ts = P["ts"]
    rhs = P["rhs_factory"](idx)
    z0 = _z0(P, idx)

    def solve():
        return solve_ivp(rhs, (ts[0], ts[-1]), z0, method=method, t_eval=ts, rtol=tol, atol=tol)

    r = timeit(solve, repeat=repeat, warmup=0)
    sol = r.pop("result")
    th = P["from_scipy"](sol.y, len(idx))
    return r, P["error"](th, idx), {"nfev": int(sol.nfev), "all_successful": sol.status == 0}


def run_scipy_loop(P, tol, method, idx, repeat):
    ts = P["ts"]
    rhss = [P["rhs_factory"](np.array([i])) for i in idx]
    z0s = [_z0(P, np.array([i])) for i in idx]

    def loop():
        return [
            solve_ivp(f, (ts[0], ts[-1]), z, method=method, t_eval=ts, rtol=tol, atol=tol)
            for f, z in zip(rhss, z0s, strict=True)
        ]

    r = timeit(loop, repeat=repeat, warmup=0)
    sols = r.pop("result")
    th = np.concatenate([P["from_scipy"](s_.y, 1) for s_ in sols])
    err = P["error"](th, idx)
    factor = P["N"] / len(idx)
    r = {**r, "best_s": r["best_s"] * factor, "median_s": r["median_s"] * factor}
    return r, err, {"extrapolated": True, "timed_members": len(idx), "factor": factor}


# --------------------------------------------------------------------------------------------


def measure(P, args, out):
    N = P["N"]
    rng = np.random.default_rng(2)
    loop_idx = np.sort(rng.choice(N, min(args.loop_subset, N), replace=False))
    all_idx = np.arange(N)
    recs = []
    f32 = [v for v in args.solvers if _is_f32(v)]
    for tol in sorted(set(args.tols) | set(args.f32_tols if f32 else []), reverse=True):
        rep = args.repeat  # the same best-of-`repeat` for every timed method (the loop: once)
        runs = []
        for solver in args.solvers:
            # float32 solves at their own tolerances (≥ float32's floor), the others at --tols
            if tol not in (args.f32_tols if _is_f32(solver) else args.tols):
                continue
            stacked = ("jaxdyn_stacked", solver, run_jaxdyn, (P, tol, solver, "stacked", rep))
            block = _solver(solver)[2]
            if block is not None:  # in blocks: stacked only, where the blocks tile the batch
                runs += [stacked] if block < N and N % block == 0 else []
                continue
            runs.append(stacked)
            if jax.device_count() > 1 and N % jax.device_count() == 0:
                runs.append(("jaxdyn_sharded", solver, run_jaxdyn_sharded, (P, tol, solver, rep)))
            if N <= args.max_vmap and not _is_f32(solver):
                runs.append(("jaxdyn_vmap", solver, run_jaxdyn, (P, tol, solver, "vmap", rep)))
                runs.append(("diffrax_vmap", solver, run_diffrax_vmap, (P, tol, solver, rep)))
        if tol not in args.tols:
            for family, solver, fn, fargs in runs:
                recs.append(_record(P, family, solver, tol, *fn(*fargs)))
            continue
        for m in args.scipy:
            if N <= args.max_scipy_stacked:
                runs.append(("scipy_stacked", m, run_scipy, (P, tol, m, all_idx, rep)))
            runs.append(("scipy_loop", m, run_scipy_loop, (P, tol, m, loop_idx, 1)))
        for family, solver, fn, fargs in runs:
            recs.append(_record(P, family, solver, tol, *fn(*fargs)))
    return recs


def _record(P, family, solver, tol, r, err, extra):
    """One measurement's JSON line (printed) and record."""
    rec = {
        "bench": BENCH,
        "method": f"{family}[{solver}]",
        "family": family,
        "solver": solver,
        "dtype": "float32" if _is_f32(solver) else "float64",
        "problem": P["name"],
        "n_traj": P["N"],
        "tol": tol,
        "time_s": r["best_s"],
        "median_s": r["median_s"],
        "repeat": r["repeat"],
        "traj_per_s": P["N"] / r["best_s"],
        "max_err": err,
        **extra,
    }
    emit(rec)
    return rec


def ratios_record(P, recs, targets):
    curves: dict[str, dict[str, list]] = {}
    for q in recs:
        curves.setdefault(q["family"], {}).setdefault(q["solver"], []).append(
            (q["max_err"], q["time_s"])
        )
    table = equal_accuracy(curves, "jaxdyn_stacked", targets)
    sharded = (
        equal_accuracy(curves, "jaxdyn_sharded", targets) if "jaxdyn_sharded" in curves else None
    )
    return {
        "bench": BENCH,
        "method": "ratios",
        "problem": P["name"],
        "n_traj": P["N"],
        "basis": "time(baseline)/time(jaxdyn stacked) at equal worst-member error; log-log "
        "linear interpolation, no extrapolation; family = fastest member at that error",
        "ratios": table,
        # the same against the members sharded over the devices (None: one device)
        "ratios_vs_sharded": sharded,
        "load_avg_end": os.getloadavg(),
    }


def _style(solver: str) -> str:
    """Marker by method, line by variant: float64 solid, -f32 dotted, @block dash-dot (both:
    crosses, dotted); scipy dashed."""
    name, _, block = solver.partition("@")
    base, _, prec = name.partition("-")
    marker = {"Tsit5": "o", "Dopri8": "s", "RK45": "^", "DOP853": "v"}.get(base, "x")
    if base in SCIPY:
        return marker + "--"
    if block and prec == "f32":
        return "x:"
    return marker + ("-." if block else ":" if prec == "f32" else "-")


def plot(all_recs, path):
    plt = jd.plot.pyplot()
    keys = sorted({(q["problem"], q["n_traj"]) for q in all_recs})
    fig, axs = plt.subplots(1, len(keys), figsize=(5.6 * len(keys), 5.4), squeeze=False)
    colors = dict(zip(FAMILIES, plt.get_cmap("tab10")(np.arange(len(FAMILIES))), strict=True))
    solvers = sorted({q["solver"] for q in all_recs})
    for ax, (prob, N) in zip(axs[0], keys, strict=True):
        for fam in FAMILIES:
            for solver in solvers:
                pts = sorted(
                    (q["max_err"], q["time_s"])
                    for q in all_recs
                    if q["problem"] == prob
                    and q["n_traj"] == N
                    and q["family"] == fam
                    and q["solver"] == solver
                )
                if pts:
                    e, t = zip(*pts, strict=True)
                    ax.loglog(
                        e,
                        t,
                        _style(solver),
                        color=colors[fam],
                        ms=4,
                        label=f"{FAMILIES[fam]} [{solver}]",
                    )
        ax.set_xlabel("achieved worst-member error vs closed form")
        ax.set_ylabel("wall time [s]")
        ax.set_title(f"{prob}, {N} members")
        ax.invert_xaxis()
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axs[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(
        "Work–precision (lower right = faster and more accurate; float64 unless -f32; CPU)"
    )
    rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0.0, 0.035 * rows + 0.02, 1.0, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="batch sizes, comma-separated")
    p.add_argument("--tols", default="1e-5,1e-7,1e-9,1e-11", help="rtol = atol values")
    p.add_argument("--problems", default="single_neuron,lambda_balanced")
    p.add_argument("--loop-subset", type=int, default=64, help="members timed in the loop")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--max-vmap", type=int, default=10**6, help="skip vmap methods above this")
    p.add_argument("--max-scipy-stacked", type=int, default=10**6)
    p.add_argument(
        "--solvers",
        default="Tsit5,Dopri8,Tsit5-f32,Tsit5@1024,Dopri8@1024,Tsit5-f32@1024",
        help="Diffrax solvers (jax methods); a -f32 suffix: the solve in float32; @B: the "
        "members in blocks of B (gradient_flow's block_size), as jd.sweep does",
    )
    p.add_argument(
        "--f32-tols",
        default="1e-4,1e-5,2e-6",
        help="the tolerances of the -f32 solvers (rtol ≥ 10·eps(float32) = 1.2e-6)",
    )
    p.add_argument("--scipy", default="RK45,DOP853", help="scipy methods")
    p.add_argument("--png", default="work_precision.png", help="the work–precision diagram")
    p.add_argument(
        "--host-devices",
        type=int,
        default=1,
        help="XLA CPU devices (set before JAX starts); > 1 adds the jaxdyn_sharded rows",
    )
    p.add_argument(
        "--tiny", action="store_true", help="smoke test: 16 members, 2 tolerances, Dopri8/RK45"
    )
    args = p.parse_args(argv)
    if args.host_devices < 1:
        p.error("--host-devices must be a positive integer")
    if args.host_devices > 1 and args.host_devices != jax.device_count():
        p.error(
            f"--host-devices {args.host_devices}: JAX already started with "
            f"{jax.device_count()} device(s) (run this file as a script)"
        )
    if args.tiny:
        args.sizes, args.tols, args.loop_subset, args.repeat = "16", "1e-6,1e-9", 2, 1
        args.solvers, args.scipy = "Dopri8,Tsit5-f32,Dopri8@8", "RK45"
        args.f32_tols = "1e-4,1e-5"
    args.solvers = [v.strip() for v in args.solvers.split(",")]
    args.scipy = [v.strip() for v in args.scipy.split(",")]
    known = set(SOLVERS) | {f"{v}-f32" for v in SOLVERS}
    names = [v.partition("@") for v in args.solvers]
    if (
        {v for v, _, _ in names} - known
        or any(at and not (b.isdigit() and int(b) > 0) for _, at, b in names)
        or set(args.scipy) - set(SCIPY)
    ):
        p.error(
            f"--solvers from {sorted(known)}, each optionally @BLOCK (a positive integer); "
            f"--scipy from {list(SCIPY)}"
        )
    args.f32_tols = [float(v) for v in args.f32_tols.split(",")]
    if min(args.f32_tols) < 10 * float(np.finfo(np.float32).eps):
        p.error("--f32-tols must be ≥ 10·eps(float32) ≈ 1.2e-6")
    args.sizes = [int(v) for v in args.sizes.split(",")]
    args.tols = [float(v) for v in args.tols.split(",")]
    problems = [v.strip() for v in args.problems.split(",")]
    unknown = set(problems) - set(PROBLEMS)
    if unknown or min(args.sizes) < 1:
        p.error(f"unknown problem(s) {sorted(unknown)} or non-positive size")
    emit({"bench": BENCH, "method": "machine", "load_avg": os.getloadavg(), **machine_info()})
    out = sys.stderr
    all_recs, ratio_recs = [], []
    targets = [10.0**-k for k in range(3, 13)]
    for name in problems:
        for N in args.sizes:
            P = PROBLEMS[name](N)
            emit(
                {
                    "bench": BENCH,
                    "method": "config",
                    "problem": name,
                    "n_traj": N,
                    "describe": P["describe"],
                    "tols": args.tols,
                    "loop_subset": args.loop_subset,
                    "repeat": args.repeat,
                    "dtype": "float64; float32 for the -f32 solvers",
                    "timing": "best of `repeat` after warm-up (compile excluded)",
                }
            )
            recs = measure(P, args, out)
            all_recs += recs
            rr = ratios_record(P, recs, targets)
            emit(rr)
            ratio_recs.append(rr)
            print_table(
                f"\n{name}, {N} members",
                ["method", "tol", "time [s]", "traj/s", "max err"],
                [
                    [
                        q["method"] + ("*" if q.get("extrapolated") else ""),
                        f"{q['tol']:g}",
                        f"{q['time_s']:.4g}",
                        f"{q['traj_per_s']:.4g}",
                        f"{q['max_err']:.2g}",
                    ]
                    for q in recs
                ],
                out,
            )
            print("* loop timed on a subset, time extrapolated to all members", file=out)
            for ref, key in (
                ("jaxdyn_stacked", "ratios"),
                ("jaxdyn_sharded", "ratios_vs_sharded"),
            ):
                for fam, by_e in (rr[key] or {}).items():
                    cells = ", ".join(f"{e}: {v:.1f}x" for e, v in by_e.items() if v is not None)
                    print(f"  {fam} / {ref} at equal error: {cells or '(no overlap)'}", file=out)
    plot(all_recs, args.png)
    print(f"work–precision diagram: {args.png}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
