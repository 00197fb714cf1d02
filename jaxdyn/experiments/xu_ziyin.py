r"""`xu-ziyin`: phase diagrams of the exactly solvable finite-width linear network
$f(x) = \gamma\,u^\top W x$ on latent-variable data, exact solution vs gradient flow.

Xu & Ziyin (2024/2025), "Three mechanisms of feature learning in a linear network"
(arXiv:2401.07085, ICLR 2025): kernel regime vs feature learning by alignment, disalignment
and rescaling, over width, init scale, output scale and layer-wise learning rates. The closed
form, the scalars (ρ, $o_0$) that decide the regime and the regime boundaries are ours (notes
`xu_ziyin_and_spectral.md` §A.2–A.4, [D] formulas, [R] names); see `jd.exact.xu_ziyin`.

Set-up. Latent data `jd.data.latent_variable_sample` (n = 4, $d_\text{in}$ = 1, exact moments:
$\overline{z^2} = 1$, noise ⟂ z, so $\hat c = c$). Every grid point is the network
`jd.exact.xu_ziyin_network(u0, W0, gamma=γ/√width, eta_u=κ/θ, eta_w=κθ)` with
$u_{0,i}, w_{0,i} \sim N(0, \text{scale}^2)$ for the `width` active units (NTP output scaling
$\gamma/\sqrt d$, so the width moves the regime), $\theta^2$ = `lr_ratio` $= \eta_w/\eta_u$.
Under gradient flow $\kappa = \sqrt{\eta_u\eta_w}$ only sets the time unit; each point takes
the κ for which the late-time rate $K_\infty = 2\kappa|\gamma|D$ is 1, so the save times are
in units of $1/K_\infty$ at every point (recorded as `kappa`). The flow is
`jd.gradient_flow` (Dopri8, max-norm error control, stacked batch solve on CPU) and the
closed form `jd.exact.xu_ziyin` is evaluated at the same times.

Two diagrams (`--config diagram=…`, which only picks the default grid; any grid works):

- `"width-scale"` (default): width 1 … 1024 × init scale, γ = 1, θ = 1 (balanced).
  Expected boundaries ($\bar\rho = \gamma\,\text{scale}^2\sqrt d\,(\theta + 1/\theta)/2$ is ρ
  of a typical init): saddle below $\bar\rho = 0.1|c|$, kernel above the line where
  $\sqrt{1 + c^2/\bar\rho^2} - 1 = 0.1$, disalignment above $\gamma\,\text{scale}^2 = |c|$
  (a typical initial output $|o_0| \approx |c|$).
- `"gamma-lr"`: output scale γ × learning-rate ratio θ² at width 256, scale 0.25; the same
  lines, plus the rescaling band $|\iota| \ge 0.9$ ($\theta^2 \ge 19$ or $\le 1/19$).

**Width is a batch axis**: nets are built at `max_width` with the units ≥ `width` zero; zero
units stay zero under gradient flow, so one compiled program serves every width.
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

#: Default grids of the two diagrams.
DIAGRAMS = {
    "width-scale": {
        "width": 2 ** np.arange(11),
        "scale": np.geomspace(0.02, 5.0, 13),
        "gamma": np.array([1.0]),
        "lr_ratio": np.array([1.0]),
        "seed": np.array([0]),
    },
    "gamma-lr": {
        "width": np.array([256]),
        "scale": np.array([0.25]),
        "gamma": np.geomspace(1e-2, 1e2, 9),
        "lr_ratio": np.geomspace(1e-4, 1e4, 9),
        "seed": np.array([0]),
    },
}

#: Regime thresholds (`jd.exact.xu_ziyin_regime` defaults), also used for the overlaid lines.
KERNEL_TOL, SADDLE_RATIO, IMBALANCE_TOL = 0.1, 0.1, 0.9

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    **jd.Experiment.SOLVER_CONFIG,
    "diagram": ("one of 'width-scale', 'gamma-lr'", "which phase diagram the default grid is"),
    "c": ("real", "target coefficient y = c·z + noise (≠ 0)"),
    "max_width": ("integer >= 1", "largest width; the `width` axis is ≤ it"),
    "n": ("integer >= 2", "samples"),
    "noise_std": (">= 0", "label noise (orthogonal to z: ĉ = c)"),
    "t_max": ("> 0", "last save time, in units of 1/K∞"),
    "n_t": ("integer >= 2", "linearly spaced save times"),
    "data_seed": ("integer >= 0", "seed of the data"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    diagram: str = "width-scale",
    c: float = 1.0,
    max_width: int = 1024,
    n: int = 4,
    noise_std: float = 0.5,
    t_max: float = 40.0,
    n_t: int = 81,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    data_seed: int = 0,
    mode: str = "auto",
) -> jd.Experiment:
    """Build the experiment.

    Axes: `width` (active units, 1 … `max_width`), `scale` (init std of every active
    weight), `gamma` (output scale; the network's multiplier is γ/√width), `lr_ratio`
    (θ² = η_w/η_u), `seed` (init). Config: `diagram` (default grid: `"width-scale"` or
    `"gamma-lr"`), `c`, `max_width`, `n`, `noise_std`, `t_max` (in units of 1/K∞), `n_t`,
    `rtol`, `atol` (Dopri8), `data_seed`, `mode`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep xu-ziyin --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid of `diagram`.
    """
    if c == 0:
        raise jd.SweepError("config c=0.0 must be ≠ 0 (nothing to learn)", argument="config")
    X_np, Y_np = (
        np.asarray(v)
        for v in jd.data.latent_variable_sample(
            jax.random.key(data_seed), n, c=c, noise_std=noise_std
        )
    )
    ts_np = np.linspace(0.0, t_max, n_t)
    solver = diffrax.Dopri8()
    H = max_width

    def run(points):
        dtype = jnp.result_type(float)
        X, Y = jnp.asarray(X_np, dtype), jnp.asarray(Y_np, dtype)
        ts = jnp.asarray(ts_np, dtype)
        width = points["width"]
        scale = points["scale"].astype(dtype)
        gamma = points["gamma"].astype(dtype) / jnp.sqrt(width.astype(dtype))
        theta = jnp.sqrt(points["lr_ratio"].astype(dtype))

        def init(seed, scale, width):
            ku, kw = jax.random.split(jax.random.key(seed))
            live = jnp.arange(H) < width
            u = jnp.where(live, scale * jax.random.normal(ku, (H,), dtype), 0.0)
            w = jnp.where(live, scale * jax.random.normal(kw, (H,), dtype), 0.0)
            return u, w

        u0, w0 = jax.vmap(init)(points["seed"], scale, width)
        # κ with K∞ = 2κ|γ|D = 1 (time in units of 1/K∞); the constants do not depend on κ.
        k1 = jd.exact.xu_ziyin_constants(u0, w0, c=c, gamma=gamma, eta_u=1 / theta, eta_w=theta)
        kappa = 1.0 / (2 * jnp.abs(gamma) * jnp.maximum(k1.D, 1e-300))
        eta_u, eta_w = kappa / theta, kappa * theta
        models, lr = jd.exact.xu_ziyin_network(
            u0, w0[:, :, None], gamma=gamma, eta_u=eta_u, eta_w=eta_w
        )
        traj = jd.gradient_flow(
            models,
            (X, Y),
            ts,
            lr=lr,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=100_000,
            batch=mode,
        )
        u = traj.model.layers[1][:, :, 0, :]  # (B, T, H)
        w = traj.model.layers[0][:, :, :, 0]
        ex = jd.exact.xu_ziyin(u0, w0, ts, c=c, gamma=gamma, eta_u=eta_u, eta_w=eta_w)
        rel = jd.metrics.relative_deviation
        dev = jnp.maximum(rel(u, ex.u, (1, 2)), rel(w, ex.w, (1, 2)))
        m = jd.exact.xu_ziyin_imbalance(u, w, eta_u[:, None], eta_w[:, None])
        scale_m = jnp.sum(u0**2, -1) / eta_u + jnp.sum(w0**2, -1) / eta_w
        drift = jnp.max(jnp.abs(m - m[:, :1]), axis=1) / scale_m

        g2 = gamma[:, None] ** 2
        K = g2 * (eta_u[:, None] * jnp.sum(w * w, -1) + eta_w[:, None] * jnp.sum(u * u, -1))
        final = jax.tree_util.tree_map(lambda a: a[:, -1], traj.model)
        ntk_final = eqx.filter_vmap(lambda m0, mT, eta: jd.metrics.ntk_ratio(m0, mT, X, eta))(
            models, final, lr
        )
        regime = jd.exact.xu_ziyin_regime(c, k1.rho, k1.o0, k1.imbalance_fraction)
        align = jd.metrics.layer_alignment(traj.model)[..., 0]  # (B, T): |cos∠(u, w)|
        return {
            "output": gamma[:, None] * jnp.sum(u * w, -1),
            "output_exact": ex.output,
            "ntk_ratio": K / K[:, :1],
            "ntk_ratio_exact": ex.ntk / ex.ntk[:, :1],
            "alignment": align,
            "loss": traj.loss,
            "ntk_ratio_final": ntk_final,
            "ntk_ratio_theory": k1.ntk_ratio,
            "layer_change": jd.metrics.layer_change(models, final),
            "directional_change": jd.metrics.directional_change(models, final),
            "norm_ratio": jd.metrics.norm_ratio(models, final),
            "exact_deviation": dev,
            "imbalance_drift": drift,
            "rho": k1.rho,
            "o0": k1.o0,
            "imbalance_fraction": k1.imbalance_fraction,
            "regime": regime.astype(jnp.int8),
            "kappa": kappa,
            "num_steps": jnp.broadcast_to(traj.stats["num_steps"], kappa.shape),
            "status": traj.status.astype(jnp.int8),
        }

    return jd.Experiment(
        name="xu-ziyin",
        description="finite-width linear net f = γ·uᵀWx on latent data: exact solution vs "
        "gradient flow, kernel / alignment / disalignment / rescaling vs width, scale, γ, "
        "lr ratio (Xu & Ziyin 2024)",
        run=run,
        axes=dict(DIAGRAMS[diagram]),
        dims={
            "output": ("t",),
            "output_exact": ("t",),
            "ntk_ratio": ("t",),
            "ntk_ratio_exact": ("t",),
            "alignment": ("t",),
            "loss": ("t",),
            "layer_change": ("layer",),
            "directional_change": ("layer",),
            "norm_ratio": ("layer",),
        },
        coords={"t": ts_np, "layer": np.array(["W", "u"])},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "c": c,
            "n": n,
            "noise_std": noise_std,
            "max_width": max_width,
            "data_seed": data_seed,
            "diagram": diagram,
            "regimes": ",".join(jd.exact.XU_ZIYIN_REGIMES),
            "thresholds": f"kernel_tol={KERNEL_TOL}, saddle_ratio={SADDLE_RATIO}, "
            f"imbalance_tol={IMBALANCE_TOL}",
            "reference": "Xu & Ziyin 2024, arXiv:2401.07085 (exactly solvable latent-variable "
            "model); closed form: jaxdyn notes §A.2",
            "description": "f = (γ/√width)·uᵀWx, u_i, w_i ~ N(0, scale²), η_w/η_u = lr_ratio, "
            "time in units of 1/K∞ (kappa = √(η_uη_w)); exact_deviation = max over u, w of "
            "max|flow−exact|/max|exact|; imbalance_drift = max|m(t)−m(0)|/(‖u0‖²/η_u+‖w0‖²/η_w); "
            "ntk_ratio_final = tr K(T)/tr K(0) of the empirical NTK; regime = index into "
            "`regimes` (jd.exact.xu_ziyin_regime of the init)",
        },
        integer_axes=frozenset({"width", "seed"}),
        domains={
            "width": f"integer in [1, {max_width}]",
            "scale": "> 0",
            "gamma": "> 0",
            "lr_ratio": "> 0",
            "seed": "integer >= 0",
        },
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (n_t * (30 * max_width + 20) + 64),
        block_size=int(np.prod([v.size for v in DIAGRAMS[diagram].values()])),
    )


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the xu-ziyin sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    st = ds["status"].values
    ok = st == 0
    worst = float(np.nanmax(ds["exact_deviation"].values)) if ok.any() else float("nan")
    drift = float(np.nanmax(ds["imbalance_drift"].values)) if ok.any() else float("nan")
    kr = ds["ntk_ratio_final"].values
    kt = ds["ntk_ratio_theory"].values
    kdev = float(np.nanmax(np.abs(kr - kt) / kt))
    names = str(ds.attrs["regimes"]).split(",")
    reg = ds["regime"].values.ravel()
    counts = ", ".join(f"{nm} {int((reg == i).sum())}" for i, nm in enumerate(names))
    return "\n".join(
        [
            f"xu-ziyin sweep: {st.size} nets, {int(ok.sum())} ok, {int((~ok).sum())} failed",
            f"  worst relative deviation flow vs exact solution: {worst:.2e}",
            f"  max imbalance drift along the flow:              {drift:.2e}",
            f"  K(T)/K(0) empirical NTK vs closed form K∞/K₀:    {kdev:.2e} (relative)",
            f"  K∞/K₀ range {float(np.nanmin(kt)):.3g} … {float(np.nanmax(kt)):.3g}; "
            f"regimes: {counts}",
        ]
    )


def _rho_width_scale(d, s, *, g, th):
    return g * s**2 * np.sqrt(d) * (th + 1 / th) / 2


def _o_width_scale(d, s, *, g):
    return g * s**2 + 0 * d


def _rho_gamma_lr(r, g, *, d, s):
    th = np.sqrt(r)
    return g * s**2 * np.sqrt(d) * (th + 1 / th) / 2


def _o_gamma_lr(r, g, *, s):
    return g * s**2 + 0 * r


def _boundaries(ax, xs, ys, rho_of, o_of, c, log_x=True):
    """Overlay the expected regime lines ρ̄ = 0.1|c|, K∞/K₀ − 1 = 0.1 and |ō₀| = |c| as
    contours of the typical ρ and o₀ over a fine grid of the two axes."""
    xf = np.geomspace(xs.min(), xs.max(), 200) if log_x else np.linspace(xs.min(), xs.max(), 200)
    yf = np.geomspace(ys.min(), ys.max(), 200)
    Xf, Yf = np.meshgrid(xf, yf)
    rho, o = rho_of(Xf, Yf), o_of(Xf, Yf)
    kernel_rho = abs(c) / np.sqrt((1 + KERNEL_TOL) ** 2 - 1)
    lines = [
        (rho, SADDLE_RATIO * abs(c), "m", "saddle | feature learning (ρ̄ = 0.1|c|)"),
        (rho, kernel_rho, "k", "feature learning | kernel (K∞/K₀ = 1.1)"),
        (o, abs(c), "r", "disalignment above (|ō₀| = |c|)"),
    ]
    handles = []
    for field, level, col, label in lines:
        cs = ax.contour(Xf, Yf, field, levels=[level], colors=col, linewidths=1.8, linestyles="--")
        handles.append((cs, col, label))
    return handles


def plot(ds, path) -> None:
    """The phase diagram(s) of the sweep: for each of (width, scale) and (lr ratio, γ) that
    has more than one value on both axes, the final NTK ratio K(T)/K(0) of the flow, the
    regime of every init, the first-layer change Δw/w and the deviation exact vs flow, with the
    expected regime boundaries overlaid; else trajectories of the output and the NTK ratio.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Xu & Ziyin 2024, arXiv:2401.07085 (phase diagram over width, init scale, output
        scale and layer-wise learning rates; regime lines from jaxdyn notes §A.3).
    """
    plt = jd.plot.pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, TwoSlopeNorm
    from matplotlib.lines import Line2D

    c = float(ds.attrs["c"])
    names = str(ds.attrs["regimes"]).split(",")
    pairs = [
        p for p in (("width", "scale"), ("lr_ratio", "gamma")) if all(ds.sizes[a] > 1 for a in p)
    ]
    rows = max(1, len(pairs))
    fig, axs = plt.subplots(
        rows, 4, figsize=(22, 4.8 * rows), constrained_layout=True, squeeze=False
    )
    regime_colors = ListedColormap(["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#c44e52"])
    if not pairs:
        sub = ds.isel({a: 0 for a in ("width", "scale", "gamma", "lr_ratio", "seed")})
        ax = axs[0, 0]
        ax.plot(sub["t"], sub["output"], label="flow")
        ax.plot(sub["t"], sub["output_exact"], "k:", label="exact")
        ax.set_xlabel("t (units of 1/K∞)")
        ax.set_ylabel("γ u·w")
        ax.legend()
        axs[0, 1].plot(sub["t"], sub["ntk_ratio"])
        axs[0, 1].plot(sub["t"], sub["ntk_ratio_exact"], "k:")
        axs[0, 1].set_ylabel("K(t)/K(0)")
        for ax in axs[0, 2:]:
            ax.axis("off")
    for row, (xa, ya) in enumerate(pairs):
        rest = {a: 0 for a in ("width", "scale", "gamma", "lr_ratio") if a not in (xa, ya)}
        sub = ds.isel(rest).isel(seed=0)
        xs, ys = sub[xa].values.astype(float), sub[ya].values.astype(float)
        fixed = {a: float(ds[a].values[0]) for a in rest}
        if xa == "width":
            g, th = fixed["gamma"], np.sqrt(fixed["lr_ratio"])

            rho_of = functools.partial(_rho_width_scale, g=g, th=th)
            o_of = functools.partial(_o_width_scale, g=g)

            xlabel, ylabel = "width d", "init scale (std of u_i, w_i)"
        else:
            dwid, s = fixed["width"], fixed["scale"]

            rho_of = functools.partial(_rho_gamma_lr, d=dwid, s=s)
            o_of = functools.partial(_o_gamma_lr, s=s)

            xlabel, ylabel = "lr ratio θ² = η_w/η_u", "output scale γ (multiplier γ/√d)"
        panels = [
            ("ntk_ratio_final", "K(T)/K(0), gradient flow (log scale)"),
            ("regime", "regime of each init (xu_ziyin_regime)"),
            ("layer_change", "first-layer change ‖ΔW‖/‖W₀‖ at T"),
            ("exact_deviation", "deviation flow vs exact (log10)"),
        ]
        for col, (var, title) in enumerate(panels):
            ax = axs[row, col]
            da = sub[var]
            if var == "layer_change":
                da = da.sel(layer="W")
            Z = da.transpose(ya, xa).values.astype(float)
            if var == "ntk_ratio_final":
                Z = np.log10(Z)
                vmax = max(float(np.nanmax(np.abs(Z))), 1e-3)
                im = ax.pcolormesh(
                    xs,
                    ys,
                    Z,
                    shading="nearest",
                    cmap="RdBu_r",
                    norm=TwoSlopeNorm(0.0, -vmax, vmax),
                )
                fig.colorbar(im, ax=ax, label="log10 K(T)/K(0)")
            elif var == "regime":
                im = ax.pcolormesh(
                    xs,
                    ys,
                    Z,
                    shading="nearest",
                    cmap=regime_colors,
                    norm=BoundaryNorm(np.arange(-0.5, 5.5), 5),
                )
                cb = fig.colorbar(im, ax=ax, ticks=range(5))
                cb.ax.set_yticklabels(names)
            elif var == "exact_deviation":
                im = ax.pcolormesh(
                    xs, ys, np.log10(np.maximum(Z, 1e-17)), shading="nearest", cmap="viridis"
                )
                fig.colorbar(im, ax=ax, label="log10 max rel. deviation")
            else:
                im = ax.pcolormesh(
                    xs,
                    ys,
                    Z,
                    shading="nearest",
                    cmap="Greens",
                    norm=LogNorm(1e-3, max(Z.max(), 1e-2)),
                )
                fig.colorbar(im, ax=ax, label="‖W(T) − W(0)‖/‖W(0)‖ (log scale)")
            handles = _boundaries(ax, xs, ys, rho_of, o_of, c)
            if xa == "lr_ratio":
                for v in ((1 + IMBALANCE_TOL) / (1 - IMBALANCE_TOL),) * 1:
                    for vv in (v, 1 / v):
                        ax.axvline(vv, color="y", ls=":", lw=1.8)
            ax.set_xscale("log", base=2 if xa == "width" else 10)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            if col == 0:
                leg = [Line2D([], [], color=h[1], ls="--", label=h[2]) for h in handles]
                if xa == "lr_ratio":
                    leg.append(Line2D([], [], color="y", ls=":", label="rescaling band |ι| ≥ 0.9"))
                ax.legend(handles=leg, fontsize=7, loc="lower right", framealpha=0.7)
    worst = float(np.nanmax(ds["exact_deviation"].values))
    fig.suptitle(
        f"Xu–Ziyin model f = γ·uᵀWx on latent data (c = {c:g}): kernel / alignment / "
        f"disalignment / rescaling; exact solution vs gradient flow, worst deviation {worst:.1e}"
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)
