"""`deep`: feature learning layer by layer in a deep net vs imbalance α and scale τ.

Kunin et al. 2024 (arXiv:2406.06158), Fig. 6a (notes §5.9): in a deep finite-width net,
early movement of the empirical NTK tracks changes of the activation patterns rather than
parameter distance, and rescaling the first and last layers (first ÷ α, last × α) amplifies
or damps it. The paper trains LeNet-5 on MNIST; here a bias-free ReLU `jd.MLP` of `depth`
hidden layers trains on the scikit-learn 8 × 8 digits (`jd.data.digits`, flattened).

Recorded over training, on a fixed probe set of `n_probe` training images:

- `kernel_distance`: $S(K_0, K_t)$ of the whole empirical NTK (`jd.metrics.ntk`,
  `jd.metrics.kernel_distance`), and `layer_kernel_distance` of each layer's own kernel
  $K_\\ell = J_\\ell J_\\ell^\\top$ (the NTK with only layer ℓ's parameters; their sum is
  `jd.metrics.ntk`, tested);
- `hamming`: per hidden layer, the fraction of (probe image, unit) ReLU gates flipped since
  initialisation (`jd.metrics.activation_hamming`);
- `param_distance`: per layer, $\\|W_\\ell(t) - W_\\ell(0)\\|_F / \\|W_\\ell(0)\\|_F$.

The summary says which of the two (activation flips or parameter distance, averaged over
layers) correlates better with the kernel distance across the grid at an early step.
Every (α, τ, seed) trains as one member of one vmapped, jitted `jd.train` program per block.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn as jd

CONFIG = {
    "width": ("integer >= 1", "hidden width"),
    "depth": ("integer >= 2", "hidden layers"),
    "steps": ("integer >= 1", "SGD steps"),
    "every": ("integer >= 1", "record every this many steps (divides steps)"),
    "batch_size": ("integer >= 1", "minibatch size (drawn with replacement)"),
    "lr": ("> 0", "base learning rate η₀ (the lr is η₀/τ²)"),
    "momentum": ("in [0, 1)", "SGD momentum"),
    "n_probe": ("integer >= 1", "training images on which kernels and gates are measured"),
    "n_test": ("integer in [1, 1796]", "test images"),
    "early": ("integer >= 1", "the record index ('early' step) the summary correlates at"),
    "data_seed": ("integer >= 0", "seed of the train/test split and offset of the init seeds"),
}


def layer_kernels(model, X):
    """Each layer's empirical NTK $K_\\ell = J_\\ell J_\\ell^\\top$ of a `jd.MLP` on inputs `X`
    ($J_\\ell$ = Jacobian of the flattened outputs, sample-major, with respect to layer ℓ's
    weights); their sum is `jd.metrics.ntk(model, X)`.

    **Arguments:**

    - `model`: a `jd.MLP`.
    - `X`: inputs `(n, d)`.

    **Returns:**

    The kernels, `(layers, n·o, n·o)`.
    """

    def f(layers):
        return jax.vmap(eqx.tree_at(lambda m: m.layers, model, layers))(X).reshape(-1)

    J = jax.jacrev(f)(model.layers)
    return jnp.stack([jnp.einsum("aij,bij->ab", j, j) for j in J])


def _preactivations(model, X):
    """Pre-activations of every hidden layer of a `jd.MLP` on `X`: a list of `(n, width)`."""
    out, h = [], X
    for W, m in zip(model.layers[:-1], model.multipliers[:-1], strict=True):
        z = m * (h @ W.T)
        out.append(z)
        h = model.activation(z)
    return out


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    width: int = 64,
    depth: int = 4,
    steps: int = 600,
    every: int = 50,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    n_probe: int = 24,
    n_test: int = 297,
    early: int = 1,
    data_seed: int = 0,
) -> jd.Experiment:
    """Axes: `alpha` (> 0; first layer ÷ α, last layer × α), `tau` (> 0; output × τ, lr ÷
    τ²), `seed` (initial weights and minibatches).

    Model: `jd.init.mlp` (standard parametrization) of sizes 64 → `width`×`depth` → 10,
    bias-free ReLU; softmax cross-entropy; `optax.sgd` with `momentum` at a constant lr;
    minibatches of `batch_size` drawn with replacement.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep deep --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`.

    **Raises:**

    `SweepError` (argument `"config"`) for an `every` that does not divide `steps` or an
    `early` record index past the last record. Sweeping without scikit-learn raises
    `ImportError`; building the experiment does not need it.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6a.
    """
    if steps % every:
        raise jd.SweepError(f"config every={every} must divide steps={steps}", argument="config")
    n_rec = steps // every + 1
    if early >= n_rec:
        raise jd.SweepError(
            f"config early={early} must be a record index below {n_rec} (steps // every + 1)",
            argument="config",
        )
    n_train = 1797 - n_test

    @functools.cache
    def load():  # at the first trace, so that building the experiment needs no scikit-learn
        with jax.ensure_compile_time_eval():  # concrete NumPy data, not traced values
            data = jd.data.digits(n_test, seed=data_seed, flatten=True)
            return tuple(np.asarray(a) for a in data)

    if n_probe > n_train:
        raise jd.SweepError(
            f"config n_probe={n_probe} exceeds the {n_train} training images", argument="config"
        )
    widths = [64] + [width] * depth + [10]
    n_layers = depth + 1

    def one(alpha, tau, seed):
        dtype = jnp.result_type(float)
        X_np, y_np, Xt_np, yt_np = load()
        X, Xt = jnp.asarray(X_np, dtype), jnp.asarray(Xt_np, dtype)
        y, yt = jnp.asarray(y_np), jnp.asarray(yt_np)
        probe = X[:n_probe]
        k_init, k_batch = jax.random.split(jax.random.fold_in(jax.random.key(data_seed), seed))
        net, lr_t = jd.init.rescale(jd.init.mlp(k_init, widths, "sp"), alpha=alpha, tau=tau, lr=lr)
        base0 = net.model

        def kernels(base):
            # per-layer NTKs (the whole NTK is their sum); τ² drops out of every distance
            return layer_kernels(base, probe)

        K0 = kernels(base0)
        pre0 = _preactivations(base0, probe)

        def record(m):
            base = m.model
            K = kernels(base)
            pre = _preactivations(base, probe)
            dist = jnp.stack(
                [
                    jnp.linalg.norm(W - W0) / jnp.linalg.norm(W0)
                    for W, W0 in zip(base.layers, base0.layers, strict=True)
                ]
            )
            return {
                "kernel_distance": jd.metrics.kernel_distance(K0.sum(0), K.sum(0)),
                "layer_kernel_distance": jd.metrics.kernel_distance(K0, K),
                "hamming": jnp.stack(
                    [jd.metrics.activation_hamming(a, b) for a, b in zip(pre0, pre, strict=True)]
                ),
                "param_distance": dist,
                "test_accuracy": jnp.mean(jnp.argmax(jax.vmap(m)(Xt), -1) == yt),
            }

        out = jd.train(
            net,
            jd.cross_entropy_loss,
            optax.sgd(1.0, momentum=momentum),
            steps,
            data=(X, y),
            lr=lr_t,
            record=record,
            every=every,
            minibatch=jd.uniform_minibatch(k_batch, n_train, batch_size),
        )
        r = out.records
        return {
            "train_loss": out.loss,
            "test_accuracy": r["test_accuracy"],
            "kernel_distance": r["kernel_distance"],
            "layer_kernel_distance": r["layer_kernel_distance"],
            "hamming": r["hamming"],
            "param_distance": r["param_distance"],
            "status": out.status.astype(jnp.int8),
        }

    def run(points):
        dtype = jnp.result_type(float)
        return jax.vmap(one)(
            points["alpha"].astype(dtype), points["tau"].astype(dtype), points["seed"]
        )

    axes = {
        "alpha": np.array([0.3, 1.0, 3.0]),
        "tau": np.array([0.5, 1.0, 2.0]),
        "seed": np.arange(1),
    }
    n_params = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    m = n_probe * 10
    return jd.Experiment(
        name="deep",
        description="deep MLP on digits: per-layer NTK movement vs activation-pattern and "
        "parameter distance, first/last layers rescaled by α (Kunin et al. 2024 Fig. 6a)",
        run=run,
        axes=axes,
        dims={
            "train_loss": ("step",),
            "test_accuracy": ("step",),
            "kernel_distance": ("step",),
            "layer_kernel_distance": ("step", "layer"),
            "hamming": ("step", "hidden"),
            "param_distance": ("step", "layer"),
        },
        coords={
            "step": np.arange(n_rec) * every,
            "layer": np.arange(1, n_layers + 1),
            "hidden": np.arange(1, depth + 1),
        },
        attrs={
            "data": f"scikit-learn 8×8 digits (flattened), {n_train} train / {n_test} test, "
            f"probe = the first {n_probe} training images",
            "widths": str(widths),
            "steps": steps,
            "every": every,
            "early": early,
            "batch_size": batch_size,
            "lr": f"{lr:g}/tau² (constant)",
            "momentum": momentum,
            "rescale": "first layer ÷ α, last layer × α, output × τ, lr ÷ τ² (jd.init.rescale)",
            "description": "kernel_distance S(K_0, K_t) of the empirical NTK on the probe "
            "images; layer_kernel_distance: of each layer's own NTK J_l J_lᵀ; hamming: "
            "fraction of ReLU gates flipped per hidden layer on the probe images; "
            "param_distance: ‖W_l(t) − W_l(0)‖/‖W_l(0)‖ per layer",
        },
        integer_axes=frozenset({"seed"}),
        domains={"alpha": "> 0", "tau": "> 0", "seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (n_layers * (m * m + 2 * m * n_params) + 20 * n_params),
        block_size=9,
    )


def correlations(ds, early: int | None = None) -> dict[str, float]:
    """Pearson correlations, across all grid points, between the kernel distance at record
    `early` and the layer-mean activation flips / relative parameter distance there.

    **Arguments:**

    - `ds`: the sweep's Dataset.
    - `early`: the record index (default: the `early` attr).

    **Returns:**

    `{"hamming": r, "param_distance": r, "step": step}`.
    """
    i = int(ds.attrs.get("early", 1) if early is None else early)
    sub = ds.isel(step=i)
    kd = sub["kernel_distance"].values.ravel()
    ham = sub["hamming"].mean("hidden").values.ravel()
    par = sub["param_distance"].mean("layer").values.ravel()

    def r(a, b):
        if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
            return float("nan")
        return float(np.corrcoef(a, b)[0, 1])

    return {"hamming": r(kd, ham), "param_distance": r(kd, par), "step": float(ds["step"][i])}


def summary(ds) -> str:
    """The numbers `jaxdyn sweep deep` prints.

    **Arguments:**

    - `ds`: the sweep's Dataset.

    **Returns:**

    A few lines: runs and their status; per α, at the early step, the kernel distance, the
    mean activation flips and parameter distance and the final test accuracy (means over τ
    and seeds); the correlations across the grid.
    """
    st = ds["status"].values
    c = correlations(ds)
    i = int(ds.attrs.get("early", 1))
    sub = ds.isel(step=i).mean(("tau", "seed"))
    lines = [
        f"deep sweep (MLP {ds.attrs.get('widths')}, {ds.attrs.get('steps')} steps): "
        f"{st.size} runs, {(st == 0).sum()} ok",
        f"  at step {c['step']:g}: kernel distance / mean gate flips / mean relative "
        "parameter distance; final test accuracy (means over τ, seeds):",
    ]
    acc = ds["test_accuracy"].isel(step=-1).mean(("tau", "seed"))
    for a in ds["alpha"].values:
        s = sub.sel(alpha=a)
        lines.append(
            f"    α={float(a):g}: {float(s['kernel_distance']):.3f} / "
            f"{float(s['hamming'].mean()):.3f} / {float(s['param_distance'].mean()):.3f}; "
            f"test accuracy {float(acc.sel(alpha=a)):.3f}"
        )
    lines.append(
        f"  correlation with the kernel distance across {st.size} runs at step {c['step']:g}: "
        f"gate flips r = {c['hamming']:.3f}, parameter distance r = {c['param_distance']:.3f}"
    )
    return "\n".join(lines)


def plot(ds, path) -> None:
    """The paper's Fig. 6a at small size: kernel distance, mean activation flips and mean
    relative parameter distance against the step for each α (τ = the middle value, first
    seed); per-layer kernel distance at the end; and, at the early step, the kernel distance
    of every run against its gate flips and its parameter distance.

    **Arguments:**

    - `ds`: the sweep's Dataset.
    - `path`: where to write the figure.

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6a.
    """
    plt = jd.plot.pyplot()
    fig, axs = plt.subplots(2, 3, figsize=(16, 8.5), constrained_layout=True)
    alphas = ds["alpha"].values
    taus = ds["tau"].values
    tau = taus[len(taus) // 2]
    cmap = plt.get_cmap("coolwarm")
    steps = ds["step"].values
    for i, a in enumerate(alphas):
        c = cmap(i / max(1, len(alphas) - 1))
        pt = ds.sel(alpha=a, tau=tau).isel(seed=0)
        axs[0, 0].plot(steps, pt["kernel_distance"], color=c, label=f"α = {a:g}")
        axs[0, 1].plot(steps, pt["hamming"].mean("hidden"), color=c, label=f"α = {a:g}")
        axs[0, 2].plot(steps, pt["param_distance"].mean("layer"), color=c, label=f"α = {a:g}")
        axs[1, 0].plot(
            ds["layer"].values,
            pt["layer_kernel_distance"].isel(step=-1),
            "o-",
            color=c,
            label=f"α = {a:g}",
        )
    axs[0, 0].set_title(f"kernel distance S(K₀, K_t) (τ = {tau:g})")
    axs[0, 1].set_title("activation-pattern Hamming distance (mean over layers)")
    axs[0, 2].set_title("relative parameter distance (mean over layers)")
    for ax in axs[0]:
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    axs[1, 0].set_xlabel("layer")
    axs[1, 0].set_title("per-layer kernel distance at the end")
    axs[1, 0].legend(fontsize=8)
    c = correlations(ds)
    i = int(ds.attrs.get("early", 1))
    sub = ds.isel(step=i)
    kd = sub["kernel_distance"]
    for ax, var, dim, name, short in (
        (axs[1, 1], "hamming", "hidden", "mean gate flips", "gate flips"),
        (
            axs[1, 2],
            "param_distance",
            "layer",
            "mean relative parameter distance",
            "parameter distance",
        ),
    ):
        x = sub[var].mean(dim)
        for j, a in enumerate(alphas):
            ax.scatter(
                x.sel(alpha=a).values.ravel(),
                kd.sel(alpha=a).values.ravel(),
                color=cmap(j / max(1, len(alphas) - 1)),
                label=f"α = {a:g}",
            )
        ax.set_xlabel(f"{name} at step {c['step']:g}")
        ax.set_ylabel(f"kernel distance at step {c['step']:g}")
        ax.set_title(f"early kernel movement vs {short}: r = {c[var]:.2f}")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Deep bias-free ReLU MLP {ds.attrs.get('widths')} on 8×8 digits: which tracks early "
        "NTK movement? (first layer ÷ α, last × α)"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
