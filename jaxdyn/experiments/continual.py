r"""`continual`: a λ-balanced two-layer linear net trained on a sequence of tasks.

Dominé et al. (2024), "From Lazy to Rich" (arXiv:2409.14623), App. D.1 (continual learning);
notes `domine_lazy_to_rich.md` §6.1 and check §8.19. Tasks T₁, T₂, … share the whitened inputs
X and have correlations Σ̃_k = U_k diag(s̃) V_kᵀ (Haar U_k, V_k, same singular values). The net
is trained by gradient flow on T₁ for `t_task`, then on T₂ from the end state, and so on.
W2ᵀW2 − W1W1ᵀ = λI is conserved across the switches, so the exact solution
(`jd.exact.lambda_balanced`) applies task by task: the end of one segment is the start of the
next (the exact chain restarts from weights rebuilt from the exact QQᵀ, Q = V√Λ of its top-h
eigenpairs, which fixes Q up to a hidden rotation that the dynamics ignore).

**Forgetting.** L_i(t) = ½‖W2W1(t) − Σ̃_i‖²_F (exact under whitening; the noiseless targets
make the constant 0). The forgetting of task i after training on task k > i is
F_{ik} = L_i(end of k) − L_i(end of i); at convergence (W2W1 = Σ̃_k) it equals
½‖Σ̃_k − Σ̃_i‖²_F — task similarity only, **independent of λ** (catastrophic forgetting at
every λ; λ changes only the path and the speed). `forgetting_theory` records that value.

Square tasks are drawn with det Σ̃_k > 0 for every k, and the init with det W2W1(0) > 0: at
λ = 0 a switch between tasks of opposite determinant sign puts the net on the stable manifold
of a saddle (notes §2.4) and it would never converge.
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
    "n_tasks": ("integer >= 2", "tasks trained one after another"),
    "sv": ("> 0", "task singular values (d of them)"),
    "t_task": ("> 0", "training time per task"),
    "n_t": ("integer >= 2", "linearly spaced save times per task"),
    "data_seed": ("integer >= 0", "seed of the data and the tasks"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    d: int = 3,
    n: int = 6,
    n_tasks: int = 3,
    sv=(2.0, 1.0, 0.5),
    t_task: float = 40.0,
    n_t: int = 81,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    data_seed: int = 0,
    mode: str = "auto",
) -> jd.Experiment:
    """Axes: `lam`, `scale` (initial product size), `seed` (init). Config: square width `d`,
    `n` samples, `n_tasks`, task singular values `sv`, `t_task` (training time per task),
    `n_t` (save times per task), `rtol`, `atol`, `data_seed`, `mode`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    sv = np.asarray(sv, float)
    if sv.shape != (d,):
        raise ValueError(f"`sv` must have d = {d} values, got shape {sv.shape}.")
    X_np = jd.data.whitened_inputs(n, d, data_seed)
    S_np = jd.data.task_sequence(d, sv, n_tasks, data_seed)
    Ys_np = np.einsum("nd,kod->kno", X_np, S_np)
    ts_np = np.linspace(0.0, t_task, n_t)
    t_all = np.concatenate([k * t_task + ts_np for k in range(n_tasks)])
    diff = S_np[None, :, :, :] - S_np[:, None, :, :]
    F_th = 0.5 * np.sum(diff**2, axis=(2, 3))  # [i, k] = ½‖Σ_k − Σ_i‖²
    F_th = np.where(np.arange(n_tasks)[None, :] > np.arange(n_tasks)[:, None], F_th, np.nan)
    solver = diffrax.Dopri8()

    def run(points):
        dtype = jnp.result_type(float)
        X = jnp.asarray(X_np, dtype)
        S = jnp.asarray(S_np, dtype)
        Ys = jnp.asarray(Ys_np, dtype)
        ts = jnp.asarray(ts_np, dtype)
        lam = points["lam"].astype(dtype)
        scale = points["scale"].astype(dtype)

        def build(lam, scale, seed):
            m = jd.init.lambda_balanced(jax.random.key(seed), d, d, d, lam, scale)
            return jd.init.match_det_sign(m, S[0], jnp.asarray(True))

        models = jax.vmap(build)(lam, scale, points["seed"])

        def segment(carry, Y):
            m_flow, m_ex = carry
            traj = jd.gradient_flow(
                m_flow,
                (X, Y),
                ts,
                solver=solver,
                rtol=rtol,
                atol=atol,
                max_steps=200_000,
                batch=mode,
            )
            ex = jax.vmap(lambda m: jd.exact.lambda_balanced(m.W1, m.W2, X, Y, ts))(m_ex)
            end_ex = jax.vmap(jd.init.weights_from_qqt, in_axes=(0, 0, 0, None))(
                ex.gram_in[:, -1], ex.product[:, -1], ex.gram_out[:, -1], d
            )
            end_flow = jax.tree.map(lambda a: a[:, -1], traj.model)
            out = (traj.model.W1, traj.model.W2, ex.product, ex.gram_in, ex.gram_out, traj.status)
            return (end_flow, end_ex), out

        _, (W1, W2, p_ex, gi_ex, go_ex, st) = jax.lax.scan(segment, (models, models), Ys)
        # (K, B, T, ...) -> (B, K·T, ...)
        cat = lambda a: jnp.swapaxes(a, 0, 1).reshape((a.shape[1], -1) + a.shape[3:])  # noqa: E731
        W1, W2, p_ex, gi_ex, go_ex = map(cat, (W1, W2, p_ex, gi_ex, go_ex))
        prod = W2 @ W1
        gin = jnp.swapaxes(W1, -1, -2) @ W1
        gout = W2 @ jnp.swapaxes(W2, -1, -2)
        rel = jd.metrics.relative_deviation
        dev = jnp.maximum(
            rel(prod, p_ex, (1, 2, 3)),
            jnp.maximum(rel(gin, gi_ex, (1, 2, 3)), rel(gout, go_ex, (1, 2, 3))),
        )
        L = 0.5 * jnp.sum((prod[:, :, None] - S[None, None]) ** 2, axis=(-2, -1))  # (B, KT, K)
        L_ex = 0.5 * jnp.sum((p_ex[:, :, None] - S[None, None]) ** 2, axis=(-2, -1))
        ends = (jnp.arange(n_tasks) + 1) * n_t - 1
        L_end = L[:, ends, :]  # (B, k, i): loss of task i at the end of task k
        own = jnp.diagonal(L_end, axis1=1, axis2=2)  # (B, i)
        F = jnp.swapaxes(L_end, 1, 2) - own[:, :, None]  # (B, i, k)
        later = jnp.arange(n_tasks)[None, :] > jnp.arange(n_tasks)[:, None]
        F = jnp.where(later[None], F, jnp.nan)
        live = jnp.ones((lam.shape[0], d), dtype)
        status = jnp.max(st, axis=0).astype(jnp.int8)
        return {
            "task_loss": L,
            "task_loss_exact": L_ex,
            "forgetting": F,
            "forgetting_theory": jnp.broadcast_to(jnp.asarray(F_th, dtype), F.shape),
            "final_residual": jnp.sqrt(own * 2),
            "exact_deviation": dev,
            "balance_drift": jd.metrics.balance_drift(W1, W2, lam, live),
            "status": status,
        }

    return jd.Experiment(
        name="continual",
        description="λ-balanced linear net trained on a sequence of tasks: forgetting vs λ "
        "(Dominé et al. 2024 App. D.1)",
        run=run,
        axes={
            "lam": np.linspace(-4.0, 4.0, 9),
            "scale": np.array([0.01]),
            "seed": np.array([0]),
        },
        dims={
            "task_loss": ("t", "task"),
            "task_loss_exact": ("t", "task"),
            "forgetting": ("task", "after"),
            "forgetting_theory": ("task", "after"),
            "final_residual": ("task",),
        },
        coords={"t": t_all, "task": np.arange(n_tasks), "after": np.arange(n_tasks)},
        attrs={
            **jd.describe_solver(solver, rtol=rtol, atol=atol, batch=mode),
            "d": d,
            "n": n,
            "n_tasks": n_tasks,
            "t_task": t_task,
            "task_singular_values": ",".join(f"{x:.17g}" for x in sv),
            "reference": "Dominé et al. 2024, arXiv:2409.14623, App. D.1; notes §6.1",
            "description": "tasks trained one after another for t_task each (t is the "
            "cumulative time); task_loss[t, i] = ½‖W2W1(t) − Σ̃_i‖²; forgetting[i, k] = "
            "L_i(end of task k) − L_i(end of task i) for k > i, theory ½‖Σ̃_k − Σ̃_i‖² "
            "(λ-independent); final_residual[i] = ‖W2W1 − Σ̃_i‖ at the end of task i",
        },
        integer_axes=frozenset({"seed"}),
        domains={"scale": "> 0", "seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_tasks * n_t * (8 * d * d + 4 * n_tasks) * 4,
        max_chunk_per_device=MAX_CHUNK_PER_DEVICE,
        block_size=MAX_CHUNK_PER_DEVICE,
    )


def _forgetting_spread(ds):
    F = ds["forgetting"].values.reshape(-1, *ds["forgetting"].shape[-2:])
    Fth = ds["forgetting_theory"].values.reshape(F.shape)
    later = np.isfinite(Fth).any(axis=0)
    err = np.max(np.abs(F - Fth)[:, later])
    spread = np.max(F[:, later].max(axis=0) - F[:, later].min(axis=0))
    return float(err), float(spread)


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the continual sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    err, spread = _forgetting_spread(ds)
    return "\n".join(
        [
            f"continual sweep: {ds['status'].size} nets × {ds.sizes['task']} tasks, "
            f"{int((ds['status'].values == 0).sum())} ok",
            f"  worst relative deviation flow vs chained exact solution: "
            f"{float(ds['exact_deviation'].max()):.2e}",
            f"  max drift of W2ᵀW2 − W1W1ᵀ = λI across task switches: "
            f"{float(ds['balance_drift'].max()):.2e}",
            f"  forgetting vs ½‖Σ̃_k − Σ̃_i‖² (λ-independent theory): max error {err:.2e}; "
            f"spread over the grid {spread:.2e}",
            f"  worst residual ‖W2W1 − Σ̃_k‖ at the end of a task: "
            f"{float(ds['final_residual'].max()):.2e}",
        ]
    )


def plot(ds, path) -> None:
    """Task losses over the sequence for a few λ, and forgetting vs λ against theory.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    sub = ds.isel(scale=0, seed=0)
    lam = sub["lam"].values
    t = sub["t"].values
    K = sub.sizes["task"]
    fig, axs = plt.subplots(1, 2, figsize=(14, 4.6), constrained_layout=True)
    ax = axs[0]
    picks = sorted({lam[np.argmin(np.abs(lam - v))] for v in (lam.min(), 0.0, lam.max())})
    styles = ("-", "--", ":")
    for j, lv in enumerate(picks):
        for i in range(K):
            ax.semilogy(
                t,
                sub["task_loss"].sel(lam=lv).isel(task=i),
                color=f"C{i}",
                ls=styles[j % 3],
                label=f"task {i + 1}, λ = {lv:+g}",
            )
    T = float(ds.attrs["t_task"])
    for k in range(1, K):
        ax.axvline(k * T, color="k", lw=0.5)
    ax.set_ylim(1e-12, None)
    ax.set_xlabel(f"cumulative time t (task switch every {T:g})")
    ax.set_ylabel("task loss ½‖W2W1 − Σ̃_i‖²")
    ax.set_title("sequential training: every task is forgotten, at every λ")
    ax.legend(fontsize=6, ncol=len(picks))
    ax = axs[1]
    for i in range(K):
        for k in range(i + 1, K):
            F = sub["forgetting"].isel(task=i, after=k)
            Fth = float(sub["forgetting_theory"].isel(task=i, after=k).max())
            ax.plot(lam, F, "o", color=f"C{i + k}", label=f"task {i + 1} after task {k + 1}")
            ax.axhline(Fth, color=f"C{i + k}", lw=1)
    ax.set_xlabel("λ")
    ax.set_ylabel("forgetting L_i(end of k) − L_i(end of i)")
    ax.set_title("forgetting vs λ (lines: theory ½‖Σ̃_k − Σ̃_i‖², λ-independent)")
    ax.legend(fontsize=7)
    err, _ = _forgetting_spread(ds)
    fig.suptitle(
        "Continual learning, λ-balanced linear net (Dominé et al. 2024, App. D.1): "
        f"max |forgetting − theory| = {err:.1e}"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
