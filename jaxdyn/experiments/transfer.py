r"""`transfer`: learning a new feature from a pretrained λ-balanced representation.

Dominé et al. (2024), "From Lazy to Rich" (arXiv:2409.14623), App. D.3 (transfer learning on
a hierarchical task) and D.4 (fine-tuning); notes `domine_lazy_to_rich.md` §6.3–§6.4.

**Task.** Eight items (one-hot inputs, X = √8·I₈ so XᵀX/n = I) with eight ±1/0 hierarchical
features (Braun et al. 2022 / Saxe et al. 2019 style: "living thing" (all items), one feature
splitting the items 4|4, two splitting each half 2|2, four splitting each pair 1|1). The task
singular values are 1, 1, 1/√2, 1/√2, ½ ×4 (∝ the notes' 2√2, 2√2, 2, 2, √2 ×4).

**Pretraining.** The network is taken at the end of pretraining: the converged λ-balanced
state W2W1 = Σ̃yx, W1ᵀW1 = Ṽ(Ω − λ/2)Ṽᵀ, W2W2ᵀ = Ũ(Ω + λ/2)Ũᵀ (Theorem 4.3's t → ∞ limit,
which does not depend on the initial weights; notes §2.5), built task-aligned
(`jd.init.lambda_balanced_converged`).

**What is measured (fine-tuning a new feature).** A new output unit with zero readout is
trained, by gradient flow on its readout only (the pretrained first layer is frozen: per-layer
learning rates (0, 1)), to output 1 on item 0 (the one labelled example). The prediction for
item j then moves as f_j(t) = K_{j0}/K_{00}·(1 − e^{−K_{00}t}) with K = X W1ᵀW1 Xᵀ, so

- `t_fit`: time until f_0 reaches 0.9 (fine-tuning speed), theory ln 10 / K_{00};
- `transfer[j]` = f_j/f_0: generalisation of the new feature to item j, theory K_{j0}/K_{00}
  (sibling: item 1; cousins: items 2–3; distant: items 4–7).

Large positive λ (lazy, W1ᵀW1 ≈ ṼS̃²Ṽᵀ/λ: small but structured, hierarchy emphasised by S̃²)
gives strong hierarchical transfer but slow fine-tuning; large negative λ (W1ᵀW1 ≈ |λ|I) gives
fast fine-tuning and no transfer; λ = 0 (rich) is in between (W1ᵀW1 = ṼS̃Ṽᵀ). The flow is
compared with the closed form (`exact_deviation`).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    **jd.Experiment.SOLVER_CONFIG,
    "t_max": ("> 0.0001", "last save time (save times: 0 and log-spaced from 1e-4)"),
    "n_t": ("integer >= 3", "save times: 0 and n_t − 1 log-spaced up to t_max"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    t_max: float = 50.0,
    n_t: int = 241,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    mode: str = "auto",
) -> jd.Experiment:
    """Axes: `lam` (imbalance of the pretrained net) and `seed` (hidden rotation). Config:
    `t_max`, `n_t` (0 and log-spaced save times), `rtol`, `atol`, `mode`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    X_np, Y_np = jd.data.hierarchical_task()
    P = X_np.shape[0]
    Syx_np = Y_np.T @ X_np / P
    ts_np = np.concatenate([[0.0], np.geomspace(1e-4, t_max, n_t - 1)])
    solver = diffrax.Dopri8()

    def run(points):
        dtype = jnp.result_type(float)
        X = jnp.asarray(X_np, dtype)
        Syx = jnp.asarray(Syx_np, dtype)
        ts = jnp.asarray(ts_np, dtype)
        lam = points["lam"].astype(dtype)
        B = lam.shape[0]
        keys = jax.vmap(jax.random.key)(points["seed"])
        pre = jax.vmap(lambda k, l: jd.init.lambda_balanced_converged(k, Syx, l))(keys, lam)
        h = pre.W1.shape[-2]
        probe = jd.TwoLayerLinear(pre.W1, jnp.zeros((B, 1, h), dtype))
        # per-layer learning rates (0, 1): first layer frozen (tree_at skips shape checks)
        lr = eqx.tree_at(
            lambda m: (m.W1, m.W2), probe, (jnp.zeros((B,), dtype), jnp.ones((B,), dtype))
        )
        data = (X[:1], jnp.ones((1, 1), dtype))
        traj = jd.gradient_flow(
            probe,
            data,
            ts,
            lr=lr,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=200_000,
            batch=mode,
        )
        # predictions of the new feature on every item: (B, T, P)
        f = jnp.einsum("btoh,bhd,pd->btp", traj.model.W2, pre.W1, X)
        K = jnp.einsum("pd,bhd,bhe,qe->bpq", X, pre.W1, pre.W1, X)
        k00 = K[:, 0, 0]
        f_th = (K[:, :, 0] / k00[:, None])[:, None, :] * (
            -jnp.expm1(-k00[:, None, None] * ts[None, :, None])
        )
        dev = jnp.max(jnp.abs(f - f_th), axis=(1, 2))
        t_fit = jax.vmap(jd.metrics.crossing_time, in_axes=(None, 0))(ts, 0.9 - f[:, :, 0])
        transfer = f[:, -1, :] / f[:, -1, :1]
        return {
            "prediction": f,
            "t_fit": t_fit,
            "t_fit_theory": jnp.log(10.0) / k00,
            "transfer": transfer,
            "transfer_theory": K[:, :, 0] / k00[:, None],
            "exact_deviation": dev,
            "status": traj.status.astype(jnp.int8),
        }

    return jd.Experiment(
        block_size=64,
        name="transfer",
        description="hierarchical 8-item task: fine-tuning a new feature from a pretrained "
        "representation vs λ (Dominé et al. 2024 App. D.3)",
        run=run,
        axes={"lam": np.linspace(-8.0, 8.0, 17), "seed": np.array([0])},
        dims={
            "prediction": ("t", "item"),
            "transfer": ("item",),
            "transfer_theory": ("item",),
        },
        coords={"t": ts_np, "item": np.arange(P)},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "reference": "Dominé et al. 2024, arXiv:2409.14623, App. D.3/D.4; notes §6.3",
            "description": "pretrained = converged λ-balanced net on the hierarchical task; "
            "a new readout (first layer frozen) learns 'feature = 1' on item 0; prediction[t, j] "
            "= new feature on item j; t_fit = time to f_0 = 0.9 (theory ln10/K00); transfer[j] "
            "= f_j/f_0 (theory K_j0/K_00, K = X W1ᵀW1 Xᵀ)",
        },
        integer_axes=frozenset({"seed"}),
        domains={"seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_t * (3 * 8 * 8 + 16) * 4,
    )


def _groups(tr):
    """sibling (item 1), cousins (2–3), distant (4–7) means along the last axis."""
    return tr[..., 1], tr[..., 2:4].mean(-1), tr[..., 4:].mean(-1)


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the transfer sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    lam = ds["lam"].values
    sib, cou, dis = _groups(ds["transfer"].isel(seed=0).values)
    tf = ds["t_fit"].isel(seed=0).values
    lines = [
        f"transfer sweep: {ds['status'].size} nets, {int((ds['status'].values == 0).sum())} ok",
        f"  max |flow − closed form| of the fine-tuned predictions: "
        f"{float(ds['exact_deviation'].max()):.2e}",
        f"  max relative error of t_fit vs ln10/K00: "
        f"{float(np.max(np.abs(ds['t_fit'] / ds['t_fit_theory'] - 1))):.2e}",
    ]
    for i in sorted({0, len(lam) // 2, len(lam) - 1}):
        lines.append(
            f"  λ = {lam[i]:+.3g}: t_fit = {tf[i]:.3g}, transfer sibling {sib[i]:.3f}, "
            f"cousins {cou[i]:.3f}, distant {dis[i]:.3f}"
        )
    return "\n".join(lines)


def plot(ds, path) -> None:
    """Fine-tuning time and transfer (sibling / cousin / distant) vs λ, against theory.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    sub = ds.isel(seed=0)
    lam = sub["lam"].values
    fig, axs = plt.subplots(1, 3, figsize=(18, 4.6), constrained_layout=True)
    ax = axs[0]
    ax.semilogy(lam, sub["t_fit"], "o", label="flow")
    ax.semilogy(lam, sub["t_fit_theory"], "k-", lw=1, label="theory ln 10 / K₀₀")
    ax.set_xlabel("λ of the pretrained network")
    ax.set_ylabel("time to learn the new feature (f₀ = 0.9)")
    ax.set_title("fine-tuning speed: fast for λ < 0, slow for λ ≫ 0")
    ax.legend()
    ax = axs[1]
    for g, name, c in zip(
        _groups(sub["transfer"].values),
        ("sibling", "cousins", "distant"),
        ("C0", "C1", "C2"),
        strict=True,
    ):
        ax.plot(lam, g, "o", color=c, label=f"{name} (flow)")
    for g, c in zip(_groups(sub["transfer_theory"].values), ("C0", "C1", "C2"), strict=True):
        ax.plot(lam, g, "-", color=c, lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("λ")
    ax.set_ylabel("transfer f_j / f₀ of the new feature")
    ax.set_title("hierarchical generalisation (lines: K_j0/K_00)")
    ax.legend(fontsize=8)
    ax = axs[2]
    picks = [lam[np.argmin(np.abs(lam - v))] for v in (lam.min(), 0.0, lam.max())]
    M = np.stack([sub["transfer_theory"].sel(lam=v).values for v in picks])
    im = ax.imshow(M, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_yticks(range(len(picks)), [f"λ = {v:+g}" for v in picks])
    ax.set_xlabel("item j")
    ax.set_title("K_j0 / K_00 (item 0's row of the representation)")
    fig.colorbar(im, ax=ax)
    fig.suptitle(
        "Transfer from a pretrained λ-balanced representation, hierarchical 8-item task "
        "(Dominé et al. 2024, App. D.3); new readout trained on item 0"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
