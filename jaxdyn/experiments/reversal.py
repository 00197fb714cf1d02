r"""`reversal`: reversal learning Σ̃yx → −Σ̃yx of a λ-balanced two-layer linear network.

Dominé et al. (2024), "From Lazy to Rich" (arXiv:2409.14623), App. D.2; notes
`domine_lazy_to_rich.md` §6.2 and check §8.18. A network converged on Σ̃yx (task-aligned,
W2W1 = Σ̃yx, W2ᵀW2 − W1W1ᵀ = λI: W1 = R S₁Ṽᵀ, W2 = ŨS₂Rᵀ with S₂² − S₁² = λ, S₁S₂ = S̃) is
trained by gradient flow on the reversed task −Σ̃yx. Each mode a_α(t) = ũ_αᵀW2W1ṽ_α must go
from s̃_α to −s̃_α; it crosses zero at

    t*_α = (τ/2ω_α) ln(1 + 2ω_α/|λ|),   ω_α = sqrt(s̃_α² + λ²/4)       (`jd.exact.reversal_time`)

and at λ = 0 it never does: B = 0, the flow converges to the saddle W2W1 = 0 (Braun et al.
2022). The zero-crossing time of the simulated flow (Diffrax, dense save times, local cubic
interpolation + Newton) is compared with t*; `reversed` is 0 where a mode never crosses within
`t_max` (then `t_reversal = inf`). The flow is also compared with the exact matrix solution
`jd.exact.lambda_balanced` on the reversed task (`exact_deviation`).

Rounding puts the λ = 0 flow ~1e-16 off the saddle's stable manifold; that error grows like
e^{s̃ t}, so keep `t_max` ≲ 10/s̃_max to see the exact "never reverses" behaviour.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

#: Largest sweep chunk per device: the batched exact solve `jd.exact.lambda_balanced` can
#: deadlock XLA:CPU for ≳ 256 nets per program (see the `lambda-balanced` experiment).
MAX_CHUNK_PER_DEVICE = 128


#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    **jd.Experiment.SOLVER_CONFIG,
    "d": ("integer >= 1", "input, hidden and output dimension (square net)"),
    "n": ("integer >= 1", "samples (whitened inputs need n ≥ d)"),
    "sv": ("> 0", "task singular values (d of them)"),
    "t_max": ("> 0", "last save time"),
    "n_t": ("integer >= 2", "linearly spaced save times"),
    "data_seed": ("integer >= 0", "seed of the data and the task"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    d: int = 3,
    n: int = 6,
    sv=(2.0, 1.0, 0.5),
    t_max: float = 8.0,
    n_t: int = 801,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    data_seed: int = 0,
    mode: str = "auto",
) -> jd.Experiment:
    """Axes: `lam` (imbalance, includes 0) and `seed` (hidden rotation R, irrelevant to the
    dynamics of W2W1). Config: square width `d` = o = h, `n` samples, task singular values
    `sv`, `t_max`, `n_t` (dense linear save times), `rtol`, `atol`, `data_seed`, `mode`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    sv = np.asarray(sv, float)
    if sv.shape != (d,):
        raise ValueError(f"`sv` must have d = {d} values, got shape {sv.shape}.")
    X_np, Y_np, Syx_np = jd.data.whitened_task(n, d, d, sv, data_seed)
    ts_np = np.linspace(0.0, t_max, n_t)
    solver = diffrax.Dopri8()
    U_np, s_np, Vt_np = np.linalg.svd(Syx_np)

    def run(points):
        dtype = jnp.result_type(float)
        X, Y, Syx = (jnp.asarray(v, dtype) for v in (X_np, Y_np, Syx_np))
        U, Vt, s = jnp.asarray(U_np, dtype), jnp.asarray(Vt_np, dtype), jnp.asarray(s_np, dtype)
        ts = jnp.asarray(ts_np, dtype)
        lam = points["lam"].astype(dtype)
        keys = jax.vmap(jax.random.key)(points["seed"])
        models = jax.vmap(lambda k, l: jd.init.lambda_balanced_converged(k, Syx, l))(keys, lam)
        traj = jd.gradient_flow(
            models,
            (X, -Y),
            ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=200_000,
            batch=mode,
        )
        W1, W2 = traj.model.W1, traj.model.W2
        prod = W2 @ W1  # (B, T, o, d)
        modes = jnp.einsum("oa,btod,ad->bta", U, prod, Vt)  # ũ_αᵀ W2W1 ṽ_α
        crossing = jax.vmap(jd.metrics.crossing_time, in_axes=(None, 1))
        t_rev = jax.vmap(crossing, in_axes=(None, 0))(ts, modes)
        t_th = jd.exact.reversal_time(s[None, :], lam[:, None])
        ex = jax.vmap(lambda m: jd.exact.lambda_balanced(m.W1, m.W2, X, -Y, ts))(models)
        dev = jd.metrics.relative_deviation(prod, ex.product, (1, 2, 3))
        live = jnp.ones((lam.shape[0], d), dtype)
        final_err = jnp.sqrt(jnp.sum((prod[:, -1] + Syx) ** 2, axis=(1, 2)))
        return {
            "mode_strength": modes,
            "loss": traj.loss,
            "t_reversal": t_rev,
            "t_reversal_theory": t_th,
            "reversed": jnp.isfinite(t_rev).astype(jnp.int8),
            "final_error": final_err,
            "exact_deviation": dev,
            "balance_drift": jd.metrics.balance_drift(W1, W2, lam, live),
            "status": traj.status.astype(jnp.int8),
        }

    lam_default = np.concatenate([-np.geomspace(5.0, 0.01, 7), [0.0], np.geomspace(0.01, 5.0, 7)])
    return jd.Experiment(
        name="reversal",
        description="reversal learning Σ̃yx → −Σ̃yx: zero-crossing time vs λ, λ = 0 never "
        "reverses (Dominé et al. 2024 App. D.2)",
        run=run,
        axes={"lam": lam_default, "seed": np.array([0])},
        dims={
            "mode_strength": ("t", "mode"),
            "loss": ("t",),
            "t_reversal": ("mode",),
            "t_reversal_theory": ("mode",),
            "reversed": ("mode",),
        },
        coords={"t": ts_np, "mode": np.arange(d)},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "d": d,
            "n": n,
            "task_singular_values": ",".join(f"{x:.17g}" for x in s_np),
            "reference": "Dominé et al. 2024, arXiv:2409.14623, App. D.2; notes §6.2",
            "description": "start converged on Σ̃yx (aligned, λ-balanced), train on −Σ̃yx; "
            "t_reversal = first zero crossing of ũ_αᵀW2W1ṽ_α (inf: never within t_max); "
            "theory t* = (τ/2ω)ln(1+2ω/|λ|); final_error = ‖W2W1(T) + Σ̃yx‖_F",
        },
        integer_axes=frozenset({"seed"}),
        domains={"seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_t * (2 * d * d * 3 + 2 * d + 4) * 4,
        max_chunk_per_device=MAX_CHUNK_PER_DEVICE,
        block_size=MAX_CHUNK_PER_DEVICE,
    )


def _rel_err(ds):
    tr, th = ds["t_reversal"].values, ds["t_reversal_theory"].values
    both = np.isfinite(tr) & np.isfinite(th)
    return float(np.max(np.abs(tr[both] - th[both]) / th[both])) if both.any() else float("nan")


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the reversal sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    lam = ds["lam"].values
    stuck = ds["reversed"].sel(lam=lam[lam == 0]).values if (lam == 0).any() else None
    lines = [
        f"reversal sweep: {ds['status'].size} nets, {int((ds['status'].values == 0).sum())} ok",
        "  max relative error of the zero-crossing time vs (τ/2ω)ln(1+2ω/|λ|): "
        f"{_rel_err(ds):.2e}",
        f"  worst relative deviation flow vs exact matrix solution: "
        f"{float(ds['exact_deviation'].max()):.2e}",
    ]
    if stuck is not None:
        verdict = (
            "never reverses (stuck at the saddle W2W1 → 0)" if not stuck.any() else "REVERSED"
        )
        lines.append(
            f"  λ = 0: {verdict}, "
            f"‖W2W1(T) + Σ̃‖ = {float(ds['final_error'].sel(lam=0.0).max()):.3f}"
        )
    return "\n".join(lines)


def plot(ds, path) -> None:
    """Reversal time vs |λ| (flow vs closed form) and mode trajectories (App. D.2).

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    sub = ds.isel(seed=0)
    lam = sub["lam"].values
    sv = np.array(str(ds.attrs["task_singular_values"]).split(","), float)
    fig, axs = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    ax = axs[0]
    lam_f = np.geomspace(max(np.min(np.abs(lam[lam != 0])), 1e-4) / 2, np.max(np.abs(lam)) * 1.5)
    for m, c in zip(sub["mode"].values, ("C0", "C1", "C2", "C3", "C4", "C5"), strict=False):
        s = float(sv[m])
        om = np.sqrt(s**2 + lam_f**2 / 4)
        ax.loglog(
            lam_f, np.log1p(2 * om / lam_f) / (2 * om), color=c, lw=1, label=f"theory s̃ = {s:g}"
        )
        for sign, mk in ((1, "o"), (-1, "x")):
            sel = sign * lam > 0
            ax.loglog(
                np.abs(lam[sel]),
                sub["t_reversal"].sel(mode=m).values[sel],
                mk,
                color=c,
                ms=6,
                label=f"flow, λ {'>' if sign > 0 else '<'} 0" if m == 0 else None,
            )
    ax.set_xlabel("|λ|")
    ax.set_ylabel("zero-crossing time t*")
    ax.set_title("reversal time: t* = (τ/2ω) ln(1 + 2ω/|λ|)  (λ = 0: never)")
    ax.legend(fontsize=7)
    ax = axs[1]
    t = sub["t"].values
    pos = np.sort(lam[lam > 0])
    picks = ([0.0] if np.any(lam == 0) else []) + (
        sorted({pos[0], pos[len(pos) // 2], pos[-1]}) if pos.size else []
    )
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(picks)))
    for v, c in zip(picks, colors, strict=True):
        a = sub["mode_strength"].sel(lam=v, method="nearest").isel(mode=-1)
        ax.plot(t, a, color=c, label=f"λ = {v:.3g}")
    s_last = float(sv[-1])
    ax.axhline(0, color="k", lw=0.5)
    ax.axhline(-s_last, color="k", ls=":", lw=1)
    ax.set_xlabel("time t after the reversal")
    ax.set_ylabel(f"mode strength ũᵀW2W1ṽ (s̃ = {s_last:g})")
    ax.set_title("weakest mode: λ = 0 decays to the saddle 0 and never reverses")
    ax.legend(fontsize=7)
    fig.suptitle(
        "Reversal learning Σ̃yx → −Σ̃yx, λ-balanced linear net (Dominé et al. 2024, App. D.2); "
        f"max rel. error of t* {_rel_err(ds):.1e}"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
