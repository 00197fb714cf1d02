r"""`lambda-balanced`: exact vs simulated learning dynamics of λ-balanced two-layer linear nets.

Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe (2024), "From Lazy to Rich: Exact Learning
Dynamics in Deep Linear Networks" (ICLR 2025, arXiv:2409.14623), Fig. 2 (exact solution vs
simulation) and the lazy/rich phase diagram of Fig. 1/5 (kernel distance vs λ and scale);
notes `domine_lazy_to_rich.md` §1–§4, §7, §8.

Set-up (defaults; all configurable in `make`): a square net d = o = 4 (the paper's A3 width is
h = min(d, o) = 4; square so that *both* signs of large |λ| are lazy, notes §4.4), whitened
inputs (XᵀX/n = I_d, n = 8) and a noiseless linear task Y = X Σ̃yxᵀ with Haar-random singular
vectors and singular values geomspace(2, 0.2). Every grid point is a λ-balanced init
(`jaxdyn.init.lambda_balanced`, task-agnostic, product singular values `scale`·U(0.5, 1.5)),
trained by gradient flow (Diffrax Dopri8, max-norm error control, stacked batch solve on CPU)
and compared with the closed-form solution `jaxdyn.exact.lambda_balanced` (Theorem 4.3).

Recorded: the loss of flow and exact solution, the NTK kernel distance S(0, t) of both
(the NTK of a two-layer linear net is a function of W1ᵀW1 and W2W2ᵀ only, notes §4.1), the
network function W2W1(t), the max relative deviation exact vs flow of W2W1, W1ᵀW1, W2W2ᵀ,
and the drift of the conserved W2ᵀW2 − W1W1ᵀ = λI along the flow.

**Width is a batch axis.** Nets are built at `max_width` with the units ≥ `width` set to zero
(`jaxdyn.init.mask_width` semantics, traced width), so one program serves every width; zero
units stay zero under gradient flow and the exact solver ignores them. λ-balance at width
h > min(d, o) constrains λ (notes §1, A3): h > d needs λ ≥ 0, h > o needs λ ≤ 0,
h > max(d, o) needs λ = 0 (`jd.init.lambda_balanced_admissible`). Such inadmissible
(λ, width) points get the `status` of `jd.RESULTS.inadmissible_init` and NaN in every
exact-vs-flow comparison.

**Square nets at λ = 0** have a topological obstruction (notes §2.4): if sign det W2W1(0) ≠
sign det Σ̃yx the weakest mode is never learned. With `match_sign=True` (default) the first
layer of a full-width square net is reflected, W1 → W1(I − 2e₁e₁ᵀ) — which keeps the
λ-balance and flips det W2W1(0) — so every init reaches the global minimum.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

#: Largest sweep chunk per device. Programs holding the batched (`jax.vmap`) exact solve
#: `jd.exact.lambda_balanced` for ≳ 256 nets can deadlock inside XLA:CPU (jax/jaxlib 0.10.2;
#: every thread idle in a futex wait; `XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler
#: =false` avoids it), so this experiment declares `max_chunk_per_device`, which `jd.sweep`
#: enforces. `jax.lax.map` over blocks of 64 nets inside a 1024-point chunk still hung.
MAX_CHUNK_PER_DEVICE = 128


#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    **jd.Experiment.SOLVER_CONFIG,
    "d": ("integer >= 1", "input dimension"),
    "o": ("integer >= 1", "output dimension"),
    "n": ("integer >= 1", "samples (whitened inputs need n ≥ d)"),
    "max_width": ("integer >= 1", "largest hidden width; the `width` axis is ≤ it"),
    "sv": ("optional > 0", "task singular values (min(d, o) of them)"),
    "t_max": ("> 0", "last save time"),
    "n_t": ("integer >= 2", "linearly spaced save times"),
    "data_seed": ("integer >= 0", "seed of the data and the task"),
    "match_sign": ("one of True, False", "reflect W1 so sign det W2W1(0) = sign det Σ̃yx"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    d: int = 4,
    o: int = 4,
    n: int = 8,
    max_width: int = 6,
    sv=None,
    t_max: float = 60.0,
    n_t: int = 121,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    data_seed: int = 0,
    match_sign: bool = True,
    mode: str = "auto",
) -> jd.Experiment:
    """Build the experiment.

    Axes: `lam` (imbalance λ, conserved W2ᵀW2 − W1W1ᵀ = λI), `scale` (size of the initial
    product's singular values), `width` (active hidden units, 1 … `max_width`; default
    min(d, o)) and `seed` (init). Config: `d`, `o`, `n`, `max_width`, `sv` (task singular
    values, default geomspace(2, 0.2, min(d, o))), `t_max`, `n_t` (linear save times),
    `rtol`, `atol` (Dopri8), `data_seed`, `match_sign` (see module docstring), `mode`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    r = min(d, o)
    sv = np.geomspace(2.0, 0.2, r) if sv is None else np.asarray(sv, float)
    X_np, Y_np, Syx_np = jd.data.whitened_task(n, d, o, sv, data_seed)
    ts_np = np.linspace(0.0, t_max, n_t)
    solver = diffrax.Dopri8()
    inadmissible = jd.result_index(jd.RESULTS.inadmissible_init)

    def run(points):
        dtype = jnp.result_type(float)
        X, Y, Syx = (jnp.asarray(a, dtype) for a in (X_np, Y_np, Syx_np))
        ts = jnp.asarray(ts_np, dtype)
        lam = points["lam"].astype(dtype)
        scale = points["scale"].astype(dtype)
        width = points["width"]
        seed = points["seed"]
        ok = jd.init.lambda_balanced_admissible(lam, width, d, o) & (width <= max_width)

        def build(lam, scale, width, seed):
            m = jd.init.lambda_balanced_at_width(
                jax.random.key(seed), lam, scale, width, d=d, o=o, max_width=max_width
            )
            return jd.init.match_det_sign(m, Syx, match_sign & (d == o) & (width == d))

        models = jax.vmap(build)(lam, scale, width, seed)
        traj = jd.gradient_flow(
            models,
            (X, Y),
            ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=200_000,
            batch=mode,
        )
        W1, W2 = traj.model.W1, traj.model.W2  # (B, T, H, d), (B, T, o, H)
        prod = W2 @ W1
        gin = jnp.swapaxes(W1, -1, -2) @ W1
        gout = W2 @ jnp.swapaxes(W2, -1, -2)
        ex = jax.vmap(lambda m: jd.exact.lambda_balanced(m.W1, m.W2, X, Y, ts))(models)
        rel = jd.metrics.relative_deviation
        dev = jnp.maximum(
            rel(prod, ex.product, (1, 2, 3)),
            jnp.maximum(rel(gin, ex.gram_in, (1, 2, 3)), rel(gout, ex.gram_out, (1, 2, 3))),
        )
        live = (jnp.arange(max_width)[None, :] < width[:, None]).astype(dtype)
        drift = jd.metrics.balance_drift(W1, W2, lam, live)
        nan = jnp.asarray(jnp.nan, dtype)
        okT = ok[:, None]
        status = jnp.where(ok, traj.status, inadmissible).astype(jnp.int8)
        kd = jd.metrics.kernel_distance_grams
        return {
            "loss": traj.loss,
            "loss_exact": jnp.where(okT, ex.loss, nan),
            "kernel_distance": kd(gin, gout),
            "kernel_distance_exact": jnp.where(okT, kd(ex.gram_in, ex.gram_out), nan),
            "product": prod,
            "product_exact": jnp.where(ok[:, None, None, None], ex.product, nan),
            "exact_deviation": jnp.where(ok, dev, nan),
            "balance_drift": jnp.where(ok, drift, nan),
            "status": status,
        }

    return jd.Experiment(
        name="lambda-balanced",
        description="λ-balanced two-layer linear net: gradient flow vs exact solution, lazy/rich "
        "vs λ, scale, width (Dominé et al. 2024)",
        run=run,
        axes={
            "lam": np.linspace(-5.0, 5.0, 21),
            "scale": np.geomspace(1e-3, 10.0, 5),
            "width": np.array([r]),
            "seed": np.array([0]),
        },
        dims={
            "loss": ("t",),
            "loss_exact": ("t",),
            "kernel_distance": ("t",),
            "kernel_distance_exact": ("t",),
            "product": ("t", "out", "in"),
            "product_exact": ("t", "out", "in"),
        },
        coords={"t": ts_np, "out": np.arange(o), "in": np.arange(d)},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "d": d,
            "o": o,
            "n": n,
            "max_width": max_width,
            "task_singular_values": ",".join(f"{x:.17g}" for x in sv),
            "data_seed": data_seed,
            "match_sign": int(match_sign),
            "reference": "Dominé et al. 2024, arXiv:2409.14623 (Theorem 4.3, Fig. 2)",
            "description": "L=(1/2n)Σ‖W2W1x−y‖², whitened X; exact_deviation = max over "
            "W2W1, W1ᵀW1, W2W2ᵀ of max|flow−exact|/max|exact|; kernel_distance = S(NTK(0), "
            "NTK(t)); balance_drift = max|W2ᵀW2−W1W1ᵀ−λI|",
        },
        integer_axes=frozenset({"width", "seed"}),
        domains={
            "scale": "> 0",
            "width": f"integer in [1, {max_width}]",
            "seed": "integer >= 0",
        },
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_t * (4 * d * o + 6 * max_width * (d + o) + 16) * 6,
        max_chunk_per_device=MAX_CHUNK_PER_DEVICE,
        block_size=MAX_CHUNK_PER_DEVICE,
    )


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the lambda-balanced sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    st = ds["status"].values
    ok = st == 0
    inadmissible = jd.result_index(jd.RESULTS.inadmissible_init)
    worst = float(np.nanmax(ds["exact_deviation"].values)) if ok.any() else float("nan")
    drift = float(np.nanmax(ds["balance_drift"].values)) if ok.any() else float("nan")
    kd = ds["kernel_distance"].isel(t=-1)
    return "\n".join(
        [
            f"lambda-balanced sweep: {st.size} nets, {int(ok.sum())} ok, "
            f"{int((st == inadmissible).sum())} inadmissible (λ, width), "
            f"{int((~ok & (st != inadmissible)).sum())} failed",
            f"  worst relative deviation flow vs exact (Dominé et al. 2024): {worst:.2e}",
            f"  max drift of W2ᵀW2 − W1W1ᵀ = λI along the flow:               {drift:.2e}",
            f"  kernel distance S(0,T): {float(kd.min()):.3f} … {float(kd.max()):.3f} "
            "(≈0 lazy, large rich)",
        ]
    )


def _nearest(values, v):
    values = np.asarray(values)
    return values[np.argmin(np.abs(values - v))]


def plot(ds, path) -> None:
    """Phase diagram S(0, T) over (λ, scale), S(0, t) curves vs λ, S(0, T) vs λ per scale, and
    flow-vs-exact loss curves (Dominé et al. 2024, Figs. 1, 2, 5).

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    widths = ds["width"].values
    d, o = int(ds.attrs["d"]), int(ds.attrs["o"])
    w = _nearest(widths, min(d, o))
    sub = ds.sel(width=w).isel(seed=0)
    lams, scales, t = sub["lam"].values, sub["scale"].values, sub["t"].values
    kd_T = sub["kernel_distance"].isel(t=-1).transpose("scale", "lam").values
    s0 = scales.min()
    fig, axs = plt.subplots(1, 4, figsize=(21, 4.6), constrained_layout=True)

    ax = axs[0]
    if scales.size > 1 and lams.size > 1:
        im = ax.pcolormesh(lams, scales, kd_T, shading="auto", cmap="magma", vmin=0)
        ax.set_yscale("log")
        fig.colorbar(im, ax=ax, label=f"kernel distance S(0, T={t[-1]:g})")
    else:
        ax.plot(lams, kd_T.ravel(), "o-")
    ax.set_xlabel("λ (relative scale: W2ᵀW2 − W1W1ᵀ = λI)")
    ax.set_ylabel("absolute scale of W2W1(0)")
    ax.set_title("lazy (dark) vs rich (bright): NTK movement")

    ax = axs[1]
    sub0 = sub.sel(scale=s0)
    picks = sorted({_nearest(lams, v) for v in (0.0, 0.5, 1.0, 2.0, 5.0)})
    colors = plt.get_cmap("plasma")(np.linspace(0, 0.85, len(picks)))
    for lv, c in zip(picks, colors, strict=True):
        ax.plot(t, sub0["kernel_distance"].sel(lam=lv), color=c, lw=2, label=f"λ = {lv:+.2g}")
        lm = _nearest(lams, -lv)
        if lm != lv:
            ax.plot(
                t,
                sub0["kernel_distance"].sel(lam=lm),
                color=c,
                ls="--",
                lw=1.2,
                label=f"λ = {lm:+.2g}",
            )
        ax.plot(t, sub0["kernel_distance_exact"].sel(lam=lv), color="k", ls=":", lw=1)
    ax.set_xlabel("time t (τ = 1)")
    ax.set_ylabel("S(NTK(0), NTK(t))")
    ax.set_title(f"S(0, t), scale = {s0:g} (dashed: −λ; dotted: exact)")
    ax.legend(fontsize=7)

    ax = axs[2]
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, scales.size))
    for sc, col in zip(scales, colors, strict=True):
        ax.plot(
            lams,
            sub["kernel_distance"].sel(scale=sc).isel(t=-1),
            "o-",
            ms=3,
            color=col,
            label=f"scale = {sc:g}",
        )
    ax.set_xlabel("λ")
    ax.set_ylabel(f"S(0, T = {t[-1]:g})")
    ax.set_title("large |λ| → lazy, λ ≈ 0 → rich (weak dependence on scale)")
    ax.legend(fontsize=7)

    ax = axs[3]
    for lv, c in zip([_nearest(lams, v) for v in (-2, 0, 2)], ("C0", "C1", "C2"), strict=True):
        ax.semilogy(t, sub0["loss"].sel(lam=lv), color=c, label=f"flow, λ = {lv:+g}")
        ax.semilogy(t, sub0["loss_exact"].sel(lam=lv), "k:", lw=1.5)
    ax.set_ylim(1e-13, None)
    ax.set_xlabel("time t")
    ax.set_ylabel("loss")
    ax.set_title(f"loss, scale = {s0:g}: flow (solid), exact (dotted)")
    ax.legend(fontsize=7)

    worst = float(np.nanmax(ds["exact_deviation"].values))
    fig.suptitle(
        f"λ-balanced two-layer linear net {d}→{int(w)}→{o} (Dominé et al. 2024): gradient flow "
        f"vs exact solution, worst relative deviation {worst:.1e}"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
