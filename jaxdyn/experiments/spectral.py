r"""`spectral`: the coordinate check of SP, NTK, μP and the spectral parametrization, as data.

Yang, Simon & Bernstein (2023), "A spectral condition for feature learning" (arXiv:2310.17813):
under their Parametrization 1 (`jd.parametrization.Spectral`) and under μP
(`jd.parametrization.MuP`) every hidden feature moves by Θ(1) per entry and every weight
matrix by Θ(1) relative to itself, at any width; under SP at a fixed learning rate the hidden
features move more and more as the net widens, and under NTK they freeze (notes
`xu_ziyin_and_spectral.md` §B.5–B.6, §D.B).

Set-up (defaults; all configurable in `make`): a bias-free tanh MLP d_in = 64 → n → n → n →
d_out = 10 (three hidden layers of width n, four weight matrices), one fixed batch of 32
Gaussian inputs with Gaussian targets (`data_seed`), the MSE
L = (1/2B) Σ‖f(x) − y‖², and `steps` full-batch steps of SGD (or Adam) from the
parametrization's init with its per-layer learning rates at base rate `lr`
(`p.lr(model, lr, optimizer=...)`, used unchanged by `jd.gradient_descent`). μP is
`MuP(base_width=base_width)` (64: μP is SP at width 64).

Recorded for every grid point (`lr`, `seed`), parametrization, width n (`widths`) and layer
ℓ = 1 … 4 (input layer, two hidden, readout), after the steps:

- `feature_update`: ‖Δh_ℓ‖₂/√n_ℓ, the RMS over the batch and units of the change of layer
  ℓ's features (after the activation; the readout's is the output) (`jd.metrics.feature_updates`);
- `weight_update`: ‖ΔW_ℓ‖_*/‖W_ℓ(0)‖_*, the relative spectral update;
- `spectral_update`: √(n_{ℓ−1}/n_ℓ)·‖ΔW_ℓ‖_* of the effective weights m_ℓW_ℓ (Condition 1
  says Θ(1));
- `feature_size`: ‖h_ℓ(0)‖₂/√n_ℓ at init (the forward scale);
- `update_stable_rank`, `alignment`: the stable rank of ΔW_ℓ and the alignment ratio
  ‖ΔW_ℓH_{ℓ−1}ᵀ‖_F/(‖ΔW_ℓ‖_*‖H_{ℓ−1}‖_F) with the layer's inputs at init;
- `loss` at step 0 and after the last step;
- `feature_update_slope`, `weight_update_slope`: the least-squares slope of log(value) vs
  log(width) over the widths ≥ `slope_min_width`, per grid point (`jd.metrics.loglog_slope`);
  `slopes(ds)` fits the median over seeds instead (what `summary` prints and `plot` draws).

**Why the slopes are fitted from width 256 (`slope_min_width`).** The coordinate check asks
for the *width exponent*, an asymptotic statement. With a batch of B = 32 the stable rank of a
hidden update ΔW_ℓ = −η G Hᵀ rises from ≈ 3 at n = 64 to ≈ 4.6 at n = 256 and stays near 5
above, which lowers ‖ΔW_ℓ‖_* at fixed Frobenius size; over 64 … 2048 this small-width
transient tilts the hidden ‖ΔW‖_*/‖W‖_* slopes of μP to −0.12/−0.11 and of the spectral
parametrization to −0.09/−0.07 (an independent numpy replication: −0.12/−0.15 and
−0.08/−0.10), while over 256 … 2048 both are flat (|s| ≤ 0.04). All widths stay in the
Dataset and the plot; `summary` prints both fits. `slope_min_width=0` fits every width.

**Why width is not a grid axis.** The sweep engine's axes are numeric and a grid point sees no
other points, so the four parametrizations (named) and the widths (over which the slopes are
fitted, inside one point) are *trailing* dimensions of every variable, with coordinates
`parametrization` ("sp", "ntk", "mup", "spectral") and `width`; set the widths with
`--config widths=[64,128,...]`. The grid axes are `lr` and `seed`. Every width is its own
static shape (no masking), so the cost is that of one run at each width.

Spectral norms of the large matrices are randomized block-Krylov estimates
(`iterations` Krylov blocks, `jd.metrics.spectral_norm`; exact for the low-rank updates,
≲ 1e-6 relative for the dense init at width 2048). ‖W_ℓ(0)‖_* is computed once per width and
seed: every parametrization scales the same Gaussian draw Z_ℓ (`p.from_normal` of the
unit-std NTK init, `jd.init.mlp(key, sizes, "ntk")`), so ‖W_ℓ(0)‖_* = σ_ℓ·‖Z_ℓ‖_*.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn as jd

#: The parametrizations compared, in the order of the `parametrization` coordinate.
PARAMETRIZATIONS = ("sp", "ntk", "mup", "spectral")

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    "widths": ("integer >= 1", "hidden widths n of the check (≥ 2 of them)"),
    "d_in": ("integer >= 1", "input dimension"),
    "d_out": ("integer >= 1", "output dimension"),
    "hidden_layers": ("integer >= 1", "hidden layers of width n"),
    "batch": ("integer >= 1", "inputs in the (full) training batch"),
    "steps": ("integer >= 1", "optimizer steps before the measurement"),
    "optimizer": ("one of 'sgd', 'adam'", "optimizer and learning-rate rule"),
    "activation": ("one of 'tanh', 'relu', 'linear'", "hidden activation"),
    "base_width": ("integer >= 1", "μP base width (μP = SP there)"),
    "iterations": ("optional integer >= 1", "Krylov blocks of the spectral norms (None: SVD)"),
    "slope_min_width": ("integer >= 0", "smallest width in the slope fits (≥ 2 widths above it)"),
    "data_seed": ("integer >= 0", "seed of the inputs and targets"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    widths=(64, 128, 256, 512, 1024, 2048),
    d_in: int = 64,
    d_out: int = 10,
    hidden_layers: int = 3,
    batch: int = 32,
    steps: int = 1,
    optimizer: str = "sgd",
    activation: str = "tanh",
    base_width: int = 64,
    iterations: int | None = 16,
    slope_min_width: int = 256,
    data_seed: int = 0,
) -> jd.Experiment:
    """Build the experiment.

    Axes: `lr` (the base learning rate η₀ of every parametrization's rule) and `seed` (the
    init; the data are fixed by `data_seed`). Config: `widths` (the hidden widths, trailing
    dimension `width`), `d_in`, `d_out`, `hidden_layers`, `batch`, `steps`, `optimizer`
    (`"sgd"` or `"adam"`: which learning-rate rule, and `optax.sgd`/`optax.adam(eps=0)`),
    `activation`, `base_width` (μP), `iterations` (Krylov blocks of the spectral norms;
    `None`: exact SVD), `slope_min_width` (the slopes are fitted over the widths ≥ it; see
    the module docstring), `data_seed`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep spectral --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    widths = tuple(int(n) for n in np.atleast_1d(widths))
    if len(widths) < 2 or len(set(widths)) != len(widths):
        raise jd.SweepError(
            f"config widths={list(widths)} must hold at least two distinct widths (the slopes "
            "are fitted over them)",
            argument="config",
        )
    widths = tuple(sorted(widths))
    fit = tuple(n for n in widths if n >= slope_min_width)
    if len(fit) < 2:
        raise jd.SweepError(
            f"config slope_min_width={slope_min_width} leaves {len(fit)} of widths="
            f"{list(widths)} to fit the slopes over; at least two are needed",
            argument="config",
        )
    first = widths.index(fit[0])
    n_layers = hidden_layers + 1
    rng = np.random.default_rng(data_seed)
    X_np = rng.standard_normal((batch, d_in))
    Y_np = rng.standard_normal((batch, d_out))
    params = [
        jd.parametrization.SP(),
        jd.parametrization.NTK(),
        jd.parametrization.MuP(base_width=base_width),
        jd.parametrization.Spectral(),
    ]
    opt = optax.sgd(1.0) if optimizer == "sgd" else optax.adam(1.0, eps=0.0)
    nonfinite = jd.result_index(jd.RESULTS.nonfinite)

    def at_width(n, lr0, seed, X, Y):
        sizes = (d_in,) + (n,) * hidden_layers + (d_out,)
        key = jax.random.key(seed)
        base = jd.init.mlp(key, sizes, jd.parametrization.NTK(), activation=activation)
        norms0 = jnp.stack(jd.metrics.spectral_norms(base, iterations=iterations))
        models = [p.from_normal(base.layers, activation=activation) for p in params]
        lrs = [p.lr(m, lr0, optimizer=optimizer) for p, m in zip(params, models, strict=True)]
        stds = jnp.stack([jnp.stack([s.std for s in p.scalings(sizes)]) for p in params])
        stack = lambda *xs: jnp.stack(xs)  # noqa: E731
        models = jax.tree_util.tree_map(stack, *models)
        lrs = jax.tree_util.tree_map(stack, *lrs)
        fans = jnp.asarray(sizes, X.dtype)
        dims = jnp.sqrt(fans[:-1] / fans[1:])

        def train(args):
            model, lr, std = args
            traj = jd.gradient_descent(
                model, (X, Y), steps, lr=lr, optimizer=opt, save_every=steps
            )
            m1 = jax.tree_util.tree_map(lambda a: a[-1], traj.model)
            dnorm = jnp.stack(jd.metrics.spectral_norms(m1, model, iterations=iterations))
            mult = jnp.stack(model.multipliers)
            h0 = (X,) + jd.metrics.features(model, X)
            dWs = [b - a for a, b in zip(model.layers, m1.layers, strict=True)]
            align = jnp.stack(
                [
                    jnp.sqrt(jnp.sum((h @ dW.T) ** 2)) / (dn * jnp.sqrt(jnp.sum(h * h)))
                    for h, dW, dn in zip(h0[:-1], dWs, dnorm, strict=True)
                ]
            )
            fro2 = jnp.stack([jnp.sum(dW * dW) for dW in dWs])
            return {
                "feature_update": jd.metrics.feature_updates(model, m1, X),
                "weight_update": dnorm / (std * norms0),
                "spectral_update": dims * mult * dnorm,
                "feature_size": jnp.stack([jnp.sqrt(jnp.mean(h * h)) for h in h0[1:]]),
                "update_stable_rank": fro2 / dnorm**2,
                "alignment": align,
                "loss": traj.loss,
                "ok": traj.status == 0,
            }

        return jax.lax.map(train, (models, lrs, stds))  # (P, …)

    def one_point(args):
        lr0, seed = args
        dtype = jnp.result_type(float)
        X, Y = jnp.asarray(X_np, dtype), jnp.asarray(Y_np, dtype)
        per_width = [at_width(n, lr0.astype(dtype), seed, X, Y) for n in widths]
        out = {k: jnp.stack([o[k] for o in per_width], axis=1) for k in per_width[0]}  # (P, W…)
        ok = jnp.all(out.pop("ok"))
        for name in ("feature_update", "weight_update"):
            out[f"{name}_slope"] = jd.metrics.loglog_slope(
                jnp.asarray(fit, dtype), out[name][:, first:], axis=1
            )
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in out.values()]))
        out["status"] = jnp.where(ok & finite, 0, nonfinite).astype(jnp.int8)
        return out

    def run(points):
        return jax.lax.map(one_point, (points["lr"], points["seed"]))

    layer_dims = ("parametrization", "width", "layer")
    return jd.Experiment(
        name="spectral",
        description="coordinate check: feature and spectral weight updates vs width under "
        "SP / NTK / μP / spectral (Yang, Simon & Bernstein 2023)",
        run=run,
        axes={"lr": np.array([0.5]), "seed": np.arange(4)},
        dims={
            "feature_update": layer_dims,
            "weight_update": layer_dims,
            "spectral_update": layer_dims,
            "feature_size": layer_dims,
            "update_stable_rank": layer_dims,
            "alignment": layer_dims,
            "loss": ("parametrization", "width", "step"),
            "feature_update_slope": ("parametrization", "layer"),
            "weight_update_slope": ("parametrization", "layer"),
        },
        coords={
            "parametrization": np.array(PARAMETRIZATIONS),
            "width": np.array(widths),
            "layer": np.arange(1, n_layers + 1),
            "step": np.array([0, steps]),
        },
        attrs={
            "d_in": d_in,
            "d_out": d_out,
            "hidden_layers": hidden_layers,
            "batch": batch,
            "steps": steps,
            "optimizer": optimizer,
            "activation": activation,
            "base_width": base_width,
            "iterations": -1 if iterations is None else iterations,
            "slope_min_width": slope_min_width,
            "data_seed": data_seed,
            "reference": "Yang, Simon & Bernstein 2023, arXiv:2310.17813 (Condition 1, "
            "Parametrization 1); Yang et al. 2022, arXiv:2203.03466 (μP, Table 3)",
            "description": "MLP d_in→n×hidden_layers→d_out, L=(1/2B)Σ‖f−y‖², `steps` "
            "full-batch steps; feature_update = ‖Δh_l‖/√n_l (RMS over batch and units), "
            "weight_update = ‖ΔW_l‖_*/‖W_l(0)‖_*, spectral_update = √(n_{l-1}/n_l)‖Δ(m_lW_l)‖_*; "
            "*_slope = least-squares d log(value)/d log(width) per grid point over the widths "
            ">= slope_min_width",
        },
        integer_axes=frozenset({"seed"}),
        domains={"lr": "> 0", "seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (8 * max(widths) ** 2 * hidden_layers + (1 << 20)),
        max_chunk_per_device=8,
        block_size=1,
    )


def slopes(ds, variable: str = "feature_update", min_width: int | None = None):
    """Log-log slopes vs width of the median over seeds (the coordinate check's exponents).

    **Arguments:**

    - `ds`: the `spectral` sweep's Dataset.
    - `variable`: `"feature_update"`, `"weight_update"` or another variable with dims
      `(…, parametrization, width, layer)`.
    - `min_width`: fit over the widths ≥ this; `None`: the sweep's `slope_min_width`
      attribute (0 for a Dataset without it), `0`: every width.

    **Returns:**

    An `xarray.DataArray` with dims `(lr, parametrization, layer)`: the least-squares slope
    of log(median over `seed`) against log(width).
    """
    if min_width is None:
        min_width = int(ds.attrs.get("slope_min_width", 0))
    ds = ds.sel(width=ds["width"].values[ds["width"].values >= min_width])
    if ds["width"].size < 2:
        raise ValueError(f"`min_width`={min_width} leaves fewer than two widths to fit.")
    med = ds[variable].median("seed")
    x = np.log(ds["width"].values.astype(float))
    ly = np.log(med.where(med > 0))
    lx = x - x.mean()
    import xarray as xr

    xw = xr.DataArray(lx, dims=("width",), coords={"width": ds["width"].values})
    return ((ly - ly.mean("width")) * xw).sum("width") / float(np.sum(lx * lx))


def summary(ds) -> str:
    """The numbers `jaxdyn sweep spectral` prints: the width exponents of the hidden-layer
    feature and weight updates per parametrization (slope of the median over seeds).

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    st = ds["status"].values
    fs = slopes(ds, "feature_update").isel(lr=0)
    ws = slopes(ds, "weight_update").isel(lr=0)
    ws_all = slopes(ds, "weight_update", min_width=0).isel(lr=0)
    layers = ds["layer"].values
    hidden = layers[1:-1]
    w = ds["width"].values
    lo = int(w[w >= int(ds.attrs.get("slope_min_width", 0))].min())
    lines = [
        f"spectral coordinate check: {st.size} grid points, {int((st == 0).sum())} ok; widths "
        f"{int(w.min())}…{int(w.max())} (slopes fitted over {lo}…{int(w.max())}), "
        f"{ds.attrs['steps']} {ds.attrs['optimizer']} step(s), "
        f"lr = {float(ds['lr'].values[0]):g}",
        "  slope of log(median) vs log(width)   feature ‖Δh‖/√n (hidden … readout)   "
        f"weight ‖ΔW‖*/‖W‖* (hidden)   [same over {int(w.min())}…{int(w.max())}]",
    ]
    for p in ds["parametrization"].values:
        f = " ".join(f"{float(fs.sel(parametrization=p, layer=k)):+.2f}" for k in layers[1:])
        wu = " ".join(f"{float(ws.sel(parametrization=p, layer=k)):+.2f}" for k in hidden)
        wa = " ".join(f"{float(ws_all.sel(parametrization=p, layer=k)):+.2f}" for k in hidden)
        lines.append(f"  {str(p):>9}: {f:>36}   {wu}   [{wa}]")
    return "\n".join(lines)


def plot(ds, path) -> None:
    """The coordinate check: one panel per parametrization (SP, NTK, μP, spectral) with the
    per-unit feature update ‖Δh_ℓ‖/√n_ℓ of every layer against width (log-log, median over
    seeds with the seed range shaded, fitted slope in the legend), and the hidden layers'
    relative spectral weight update ‖ΔW_ℓ‖_*/‖W_ℓ(0)‖_* dashed; widths below the fit range
    (`slope_min_width`) are on a grey background.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Yang, Simon & Bernstein 2023, *A spectral condition for feature learning*,
        arXiv:2310.17813, Desideratum 1 and Condition 1; the coordinate check of Yang et al.
        2022, *Tensor Programs V*, arXiv:2203.03466, Fig. 5.
    """
    plt = jd.plot.pyplot()
    sub = ds.isel(lr=0)
    fs = slopes(ds, "feature_update").isel(lr=0)
    ws = slopes(ds, "weight_update").isel(lr=0)
    w = sub["width"].values
    lo = int(w[w >= int(ds.attrs.get("slope_min_width", 0))].min())
    layers = sub["layer"].values
    titles = {
        "sp": "SP (global lr): hidden features grow",
        "ntk": "NTK: features freeze (lazy)",
        "mup": f"μP (base width {ds.attrs['base_width']}): width-independent",
        "spectral": "spectral (YSB Param. 1): width-independent",
    }
    fig, axs = plt.subplots(1, 4, figsize=(21, 5), constrained_layout=True, sharey=True)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, layers.size))
    for ax, p in zip(axs, sub["parametrization"].values, strict=True):
        fu = sub["feature_update"].sel(parametrization=p)
        wu = sub["weight_update"].sel(parametrization=p)
        for k, c in zip(layers, colors, strict=True):
            v = fu.sel(layer=k)
            ax.loglog(
                w,
                v.median("seed"),
                "o-",
                color=c,
                label=f"‖Δh_{k}‖/√n  (slope {float(fs.sel(parametrization=p, layer=k)):+.2f})",
            )
            ax.fill_between(w, v.min("seed"), v.max("seed"), color=c, alpha=0.2)
            if 1 < k < layers[-1]:
                ax.loglog(
                    w,
                    wu.sel(layer=k).median("seed"),
                    "s--",
                    color=c,
                    ms=4,
                    label=f"‖ΔW_{k}‖*/‖W_{k}‖*  "
                    f"(slope {float(ws.sel(parametrization=p, layer=k)):+.2f})",
                )
        ax.set_xscale("log", base=2)
        if lo > w.min():
            ax.axvspan(w.min(), lo, color="0.92", zorder=0)
        ax.set_xlabel(f"width n (slopes fitted over n ≥ {lo}; shaded: not fitted)")
        ax.set_title(titles.get(str(p), str(p)))
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axs[0].set_ylabel(f"update after {ds.attrs['steps']} {ds.attrs['optimizer']} step(s)")
    fig.suptitle(
        f"Coordinate check (Yang, Simon & Bernstein 2023): {ds.attrs['activation']} MLP "
        f"{ds.attrs['d_in']}→n×{ds.attrs['hidden_layers']}→{ds.attrs['d_out']}, "
        f"lr = {float(sub['lr']):g}, median over {sub['seed'].size} seeds"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
