"""`single-neuron`: lazy vs rich learning of f(x) = a·wᵀx as a function of the imbalance δ.

Kunin et al. 2024 (arXiv:2406.06158), §3: gradient flow from a small initial function β0 with
conserved imbalance δ = η_w a² − η_a‖w‖². Every grid point is solved numerically (Diffrax) and
compared with the closed form `jd.exact.single_neuron`; the Dataset records the loss, the kernel
distance S(0, t) of the (learning-rate weighted) NTK, the drift of δ and the deviation from theory.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    **jd.Experiment.SOLVER_CONFIG,
    "d": ("integer >= 1", "input dimension"),
    "n": ("integer >= 1", "samples (whitened inputs need n ≥ d)"),
    "angle": ("real", "direction of β0 in the (e1, e2) plane, radians"),
    "t_max": ("> 0", "last save time"),
    "n_t": ("integer >= 2", "linearly spaced save times"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    d: int = 2,
    n: int = 8,
    angle: float = 2.0,
    t_max: float = 30.0,
    n_t: int = 121,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    mode: str = "auto",
) -> jd.Experiment:
    """Build the experiment. β* = e₁ (unit norm), β0 = `scale`·(cos `angle`, sin `angle`, 0…)
    (the set-up of the notes' check C10), whitened data with n samples in d dims.

    Axes: `delta` (conserved imbalance), `scale` = ‖β0‖ (initial function size), and
    `lr_ratio` = η_a/η_w with η_aη_w = 1. By the notes' symmetry C26(ii), β(t) and the kernel
    depend on the learning rates only through η_aη_w, so curves at equal δ coincide across
    `lr_ratio` — the default grid includes two ratios to show it.
    `mode`: the `batch` mode of `jd.gradient_flow` ("stacked": one ODE for the whole chunk,
    fastest on CPU; "vmap": per-member adaptive steps; "auto": `jd.resolve_batch` decides).

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    beta_star = np.zeros(d)
    beta_star[0] = 1.0
    X, y = jd.data.whitened_regression(n, d, beta_star, fix_signs=False)
    direction = np.zeros(d)
    direction[0], direction[1 % d] = np.cos(angle), np.sin(angle)
    if d == 1:
        direction[0] = np.sign(np.cos(angle))
    ts_np = np.linspace(0.0, t_max, n_t)
    solver = diffrax.Dopri8()

    def run(points):
        dtype = jnp.result_type(float)
        Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
        ts = jnp.asarray(ts_np, dtype)
        delta = points["delta"].astype(dtype)
        ratio = points["lr_ratio"].astype(dtype)
        eta_a, eta_w = jnp.sqrt(ratio), 1.0 / jnp.sqrt(ratio)
        b0 = points["scale"].astype(dtype)[:, None] * jnp.asarray(direction, dtype)
        models = jax.vmap(jd.init.single_neuron)(b0, delta, eta_a, eta_w)
        lr = jd.SingleNeuron(eta_a, eta_w)
        traj = jd.gradient_flow(
            models, (Xj, yj), ts, lr=lr, solver=solver, rtol=rtol, atol=atol, batch=mode
        )
        a, w = traj.model.a, traj.model.w  # (B, T), (B, T, d)
        bstar = Xj.T @ yj / Xj.shape[0]
        a_ex, w_ex = jax.vmap(
            lambda a0, w0, ea, ew: jd.exact.single_neuron_from_target(bstar, a0, w0, ts, ea, ew)
        )(models.a, models.w, eta_a, eta_w)
        th = jnp.concatenate([a[..., None], w], -1)
        th_ex = jnp.concatenate([a_ex[..., None], w_ex], -1)
        scale = jnp.max(jnp.abs(th_ex), axis=(1, 2))
        deviation = jnp.max(jnp.abs(th - th_ex), axis=(1, 2)) / scale
        ea, ew = eta_a[:, None], eta_w[:, None]
        dl = jd.metrics.imbalance(a, w, ea, ew)
        drift = jnp.max(jnp.abs(dl - delta[:, None]), axis=1)
        kd = jd.metrics.kernel_distance_single_neuron(a[:, :1], w[:, :1], a, w, ea, ew)
        loss0 = traj.loss[:, :1]
        fitted = traj.loss <= 1e-2 * loss0
        t_fit = jnp.where(jnp.any(fitted, 1), ts[jnp.argmax(fitted, axis=1)], jnp.inf)
        return {
            "loss": traj.loss,
            "kernel_distance": kd,
            "a": a,
            "beta": a[..., None] * w,
            "delta_drift": drift,
            "exact_deviation": deviation,
            "t_fit": t_fit,
            "status": traj.status.astype(jnp.int8),
        }

    return jd.Experiment(
        block_size=256,
        name="single-neuron",
        description="single neuron a·wᵀx: lazy vs rich vs imbalance δ and lr ratio "
        "(Kunin et al. 2024)",
        run=run,
        axes={
            "delta": np.linspace(-3.0, 3.0, 121),
            "scale": np.array([0.01, 0.1, 1.0]),
            "lr_ratio": np.array([1.0, 4.0]),
        },
        dims={"loss": ("t",), "kernel_distance": ("t",), "a": ("t",), "beta": ("t", "component")},
        coords={"t": ts_np, "component": np.arange(d)},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "d": d,
            "n": n,
            "beta0_angle": angle,
            "description": "loss L=(1/2n)Σ(a wᵀx−y)², whitened X, β*=e1; t_fit = first save "
            "time with loss ≤ 1% of initial; exact_deviation = max|θ_flow−θ_exact|/max|θ_exact|",
        },
        domains={"scale": "> 0", "lr_ratio": "> 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_t * (8 * d + 16) * 4,
    )


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the single-neuron sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    st = ds["status"].values
    ok = int((st == 0).sum())
    worst = float(ds["exact_deviation"].max())
    drift = float(ds["delta_drift"].max())
    kd_end = ds["kernel_distance"].isel(t=-1)
    lines = [
        f"single-neuron sweep: {st.size} trajectories, {ok} ok, {st.size - ok} failed/flagged",
        f"  worst deviation from the exact solution (Kunin et al. 2024): {worst:.2e} (relative)",
        f"  max drift of the conserved imbalance δ along the flow:        {drift:.2e}",
        f"  kernel distance S(0,T): {float(kd_end.min()):.3f} … {float(kd_end.max()):.3f} "
        f"(large = rich, ≈0 = lazy)",
    ]
    return "\n".join(lines)


def plot(ds, path) -> None:
    """Phase plot of the kernel distance over (δ, t), final kernel distance vs δ per scale and lr
    ratio, and loss curves (Kunin et al. 2024, §3).

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    ratios = ds["lr_ratio"].values
    r1 = ratios[np.argmin(np.abs(np.log(ratios)))]
    scales = ds["scale"].values
    s0 = scales.min()
    sub = ds.sel(lr_ratio=r1, scale=s0)
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    im = axs[0].pcolormesh(
        sub["t"].values,
        sub["delta"].values,
        sub["kernel_distance"].values,
        shading="auto",
        cmap="magma",
        vmin=0,
        vmax=1,
    )
    axs[0].set_xlabel("time t")
    axs[0].set_ylabel("imbalance δ = η_w a² − η_a‖w‖²")
    axs[0].set_title(f"kernel distance S(0, t), ‖β0‖ = {s0:g}, η_a/η_w = {r1:g}")
    fig.colorbar(im, ax=axs[0], label="S(0, t)")
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(scales)))
    for sc, col in zip(scales, colors, strict=True):
        for j, r in enumerate(ratios):
            kd = ds["kernel_distance"].sel(lr_ratio=r, scale=sc).isel(t=-1)
            axs[1].plot(
                ds["delta"].values,
                kd,
                color=col,
                ls=("-", "--", ":")[j % 3],
                lw=2.2 if j == 0 else 1.2,
                label=f"‖β0‖ = {sc:g}, η_a/η_w = {r:g}",
            )
    axs[1].set_xlabel("imbalance δ")
    axs[1].set_ylabel(f"S(0, T = {float(ds['t'][-1]):g})")
    axs[1].set_title("final kernel movement: rich (small scale, δ ≤ 0) → lazy")
    axs[1].legend(fontsize=7)
    axs[1].set_ylim(0, 1)
    deltas = sub["delta"].values
    picks = [deltas[np.argmin(np.abs(deltas - v))] for v in (-3, -1, 0, 1, 3)]
    cmap = plt.get_cmap("coolwarm")
    for i, dv in enumerate(picks):
        axs[2].semilogy(
            sub["t"], sub["loss"].sel(delta=dv), color=cmap(i / 4), label=f"δ = {dv:+.1f}"
        )
    axs[2].set_xlabel("time t")
    axs[2].set_ylabel("loss")
    axs[2].set_ylim(1e-12, 2)
    axs[2].set_title(f"loss, ‖β0‖ = {s0:g}, η_a/η_w = {r1:g}")
    axs[2].legend()
    worst = float(ds["exact_deviation"].max())
    fig.suptitle(
        "Single neuron f(x) = a·wᵀx (Kunin et al. 2024): gradient flow (Diffrax) vs exact "
        f"solution, worst relative deviation {worst:.1e}"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
