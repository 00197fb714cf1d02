"""`filters`: smoothness of a CNN's first-layer filters vs imbalance α and scale τ.

Kunin et al. 2024 (arXiv:2406.06158), Fig. 6b, Fig. 11 and App. D.3: with the first
convolution's weights ÷ α, upstream nets (α > 1, the first layer learning relatively faster)
end with smooth, interpretable first-layer filters, downstream nets (α < 1) with noisy ones,
at similar accuracy. The paper trains a ResNet with a 15 × 15 first convolution on CIFAR-10;
here a small bias-free CNN (a convolution with a large kernel relative to the image, ReLU,
2 × 2 average pooling, a linear readout) trains on the 8 × 8 digits that ship with
scikit-learn (`jd.data.digits`; no download). The CNN has no normalisation layer, so the
paper's convention for such nets applies: the first convolution ÷ α and the readout × α
(`jd.init.rescale`; `readout=False` rescales the first layer only, as in the paper's
BatchNorm ResNet).

The score (`jd.metrics.filter_smoothness`) is the paper's $\\|(w/\\|w\\|) \\ast \\Delta\\|^2$
per first-layer filter (lower is smoother), recorded over training and averaged over the
filters. Every (α, τ, seed) trains as one member of one vmapped, jitted `jd.train` program
per block; `seed` draws the initial weights and the minibatches (the train/test split is
fixed by `data_seed`).
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
    "kernel": ("integer >= 3", "side of the first convolution's (square, odd) kernel"),
    "channels": ("integer >= 1", "first-layer filters (the second layer has twice as many)"),
    "steps": ("integer >= 1", "SGD steps"),
    "every": ("integer >= 1", "record every this many steps (divides steps)"),
    "batch_size": ("integer >= 1", "minibatch size (drawn with replacement)"),
    "lr": ("> 0", "base learning rate η₀ (the lr is η₀/τ², cosine decay)"),
    "momentum": ("in [0, 1)", "SGD momentum"),
    "n_test": ("integer in [1, 1796]", "test images (the rest of the 1797 train)"),
    "readout": ("one of True, False", "also multiply the readout by α (nets without BatchNorm)"),
    "mode": ("one of 'valid', 'same'", "border handling of the smoothness score"),
    "data_seed": ("integer >= 0", "seed of the train/test split and offset of the init seeds"),
}


class DigitsCNN(eqx.Module):
    """Small bias-free CNN on 8 × 8 images: `conv` (`channels` filters of `kernel` × `kernel`,
    stride 1, `same` zero padding) → ReLU → 2 × 2 average pooling → `fc` (a linear readout to
    10 logits).

    The convolution is computed as a matrix product with the image's patches
    (`DigitsCNN.patches`, precomputed once for a data set), so a batch of nets trains as
    batched matrix products (fast on CPU under `jax.vmap`); `__call__` takes one image's
    patches.

    **Fields:**

    - `conv`: the first-layer filters, `(channels, 1, kernel, kernel)` (as
      `equinox.nn.Conv2d` stores them).
    - `fc`: the readout, `(10, channels · 16)`.
    """

    conv: jax.Array
    fc: jax.Array

    def __init__(self, key, kernel: int, channels: int, dtype=None):
        k1, k2 = jax.random.split(key)
        # PyTorch's / Equinox's default: U(±1/sqrt(fan_in))
        b1, b2 = 1 / np.sqrt(kernel * kernel), 1 / np.sqrt(channels * 16)
        self.conv = jax.random.uniform(k1, (channels, 1, kernel, kernel), dtype, -b1, b1)
        self.fc = jax.random.uniform(k2, (10, channels * 16), dtype, -b2, b2)

    @staticmethod
    def patches(images: jax.Array, kernel: int) -> jax.Array:
        """The `kernel` × `kernel` patches (zero padded) of images `(n, 1, 8, 8)`: an array
        `(n, kernel², 64)`, patch pixel first, image position second."""
        p = jax.lax.conv_general_dilated_patches(
            images, (kernel, kernel), (1, 1), [(kernel // 2, kernel // 2)] * 2
        )
        return p.reshape(images.shape[0], kernel * kernel, 64)

    def __call__(self, patches: jax.Array) -> jax.Array:
        c = self.conv.shape[0]
        h = jax.nn.relu(self.conv.reshape(c, -1) @ patches)  # (channels, 64)
        h = h.reshape(c, 4, 2, 4, 2).mean((2, 4))
        return self.fc @ h.reshape(-1)


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    kernel: int = 5,
    channels: int = 16,
    steps: int = 600,
    every: int = 50,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    n_test: int = 297,
    readout: bool = True,
    mode: str = "valid",
    data_seed: int = 0,
) -> jd.Experiment:
    """Axes: `alpha` (> 0; first convolution ÷ α, readout × α), `tau` (> 0; logits × τ, lr
    ÷ τ²), `seed` (initial weights and minibatches).

    Training: softmax cross-entropy, `optax.sgd` with `momentum` and a cosine decay of the lr
    to 0 at 80 % of the steps, minibatches of `batch_size` drawn with replacement. Recorded
    every `every` steps: training loss, test accuracy, mean smoothness score of the
    first-layer filters; at the end: the filters and their scores.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep filters --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`.

    **Raises:**

    `SweepError` (argument `"config"`) for an even `kernel` or an `every` that does not
    divide `steps`. Sweeping without scikit-learn (which ships the digits) raises
    `ImportError`; building the experiment does not need it.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6b, Fig. 11 and App. D.3.
    """
    if kernel % 2 == 0:
        raise jd.SweepError(
            f"config kernel={kernel} must be odd (same padding)", argument="config"
        )
    if steps % every:
        raise jd.SweepError(f"config every={every} must divide steps={steps}", argument="config")
    n_train = 1797 - n_test

    @functools.cache
    def load():  # at the first trace, so that building the experiment needs no scikit-learn
        with jax.ensure_compile_time_eval():  # concrete NumPy data, not traced values
            X_img, y, Xt_img, yt = (np.asarray(a) for a in jd.data.digits(n_test, seed=data_seed))
            X = np.asarray(DigitsCNN.patches(jnp.asarray(X_img), kernel))
            Xt = np.asarray(DigitsCNN.patches(jnp.asarray(Xt_img), kernel))
        return X, y, Xt, yt

    n_rec = steps // every + 1
    decay = max(1, int(0.8 * steps))

    def one(alpha, tau, seed):
        dtype = jnp.result_type(float)
        X_np, y_np, Xt_np, yt_np = load()
        X, Xt = jnp.asarray(X_np, dtype), jnp.asarray(Xt_np, dtype)
        y, yt = jnp.asarray(y_np), jnp.asarray(yt_np)
        k_init, k_batch = jax.random.split(jax.random.fold_in(jax.random.key(data_seed), seed))
        net, lr_t = jd.init.rescale(
            DigitsCNN(k_init, kernel, channels, dtype),
            alpha=alpha,
            tau=tau,
            lr=lr,
            first=lambda m: m.conv,
            last=(lambda m: m.fc) if readout else None,
        )

        def filters_of(m):
            return m.model.conv[:, 0]

        def record(m):
            return {
                "test_accuracy": jnp.mean(jnp.argmax(jax.vmap(m)(Xt), -1) == yt),
                "smoothness": jnp.mean(jd.metrics.filter_smoothness(filters_of(m), mode)),
            }

        opt = optax.sgd(optax.cosine_decay_schedule(1.0, decay), momentum=momentum)
        # every float array of the CNN is trained; the output scale τ is not
        spec = eqx.tree_at(lambda s: s.scale, jax.tree.map(eqx.is_inexact_array, net), False)
        out = jd.train(
            net,
            jd.cross_entropy_loss,
            opt,
            steps,
            data=(X, y),
            lr=lr_t,
            record=record,
            every=every,
            minibatch=jd.uniform_minibatch(k_batch, n_train, batch_size),
            filter_spec=spec,
        )
        w = filters_of(out.model)
        return {
            "train_loss": out.loss,
            "test_accuracy": out.records["test_accuracy"],
            "smoothness": out.records["smoothness"],
            "final_smoothness": out.records["smoothness"][-1],
            "filter_smoothness": jd.metrics.filter_smoothness(w, mode),
            "filters": w,
            "status": out.status.astype(jnp.int8),
        }

    def run(points):
        dtype = jnp.result_type(float)
        return jax.vmap(one)(
            points["alpha"].astype(dtype), points["tau"].astype(dtype), points["seed"]
        )

    axes = {
        "alpha": np.array([0.1, 0.3, 1.0, 3.0, 10.0]),
        "tau": np.array([1.0]),
        "seed": np.arange(2),
    }
    n_params = channels * kernel * kernel + 160 * channels
    return jd.Experiment(
        name="filters",
        description="CNN on 8×8 digits: smoothness of the first-layer filters vs imbalance α "
        "and scale τ (Kunin et al. 2024 Fig. 6b/11)",
        run=run,
        axes=axes,
        dims={
            "train_loss": ("step",),
            "test_accuracy": ("step",),
            "smoothness": ("step",),
            "filter_smoothness": ("filter",),
            "filters": ("filter", "row", "col"),
        },
        coords={
            "step": np.arange(n_rec) * every,
            "filter": np.arange(channels),
            "row": np.arange(kernel),
            "col": np.arange(kernel),
        },
        attrs={
            "data": f"scikit-learn 8×8 digits, {n_train} train / {n_test} test (split seed "
            f"{data_seed}), pixels/16 centred",
            "model": f"bias-free CNN: conv {kernel}×{kernel}×{channels} (same padding) → ReLU "
            f"→ avgpool 2 → linear {16 * channels}→10",
            "kernel": kernel,
            "channels": channels,
            "steps": steps,
            "every": every,
            "batch_size": batch_size,
            "lr": f"{lr:g}/tau², cosine decay to 0 at step {decay}",
            "momentum": momentum,
            "rescale": "conv ÷ α" + (", readout × α" if readout else "") + ", logits × τ, "
            "lr ÷ τ² (jd.init.rescale)",
            "smoothness_mode": mode,
            "description": "smoothness = mean over first-layer filters of ‖(w/‖w‖) ∗ Δ‖² "
            "(jd.metrics.filter_smoothness, lower = smoother) at the record steps; "
            "filter_smoothness, filters: per filter at the end; test_accuracy on the test "
            "images; train_loss = cross-entropy on all training images",
        },
        integer_axes=frozenset({"seed"}),
        domains={"alpha": "> 0", "tau": "> 0", "seed": "integer >= 0"},
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (20 * n_params + batch_size * channels * 64 * 6 + 8 * n_rec)
        + 8 * 2000 * channels * 64,
        block_size=10,
    )


def summary(ds) -> str:
    """The numbers `jaxdyn sweep filters` prints.

    **Arguments:**

    - `ds`: the sweep's Dataset.

    **Returns:**

    A few lines: runs and their status, and per α the smoothness score of the first-layer
    filters at initialisation and at the end, and the final test accuracy (means over seeds
    and τ).
    """
    st = ds["status"].values
    mean = ds.mean(("seed", "tau"))
    lines = [
        f"filters sweep ({ds.attrs.get('steps')} steps, kernel {ds.attrs.get('kernel')}, "
        f"{ds.attrs.get('channels')} filters): {st.size} runs, {(st == 0).sum()} ok",
        "  smoothness score of first-layer filters (lower = smoother), init → end; test accuracy:",
    ]
    for a in ds["alpha"].values:
        m = mean.sel(alpha=a)
        lines.append(
            f"    α={float(a):g}: {float(m['smoothness'].isel(step=0)):.3f} → "
            f"{float(m['final_smoothness']):.3f}; test accuracy "
            f"{float(m['test_accuracy'].isel(step=-1)):.3f}"
        )
    return "\n".join(lines)


def plot(ds, path) -> None:
    """The paper's Fig. 6b / Fig. 11 at small size: the first-layer filters at the smallest
    and the largest α (first seed and τ), and the smoothness score vs α (at the end, and at
    initialisation dashed) with the final test accuracy.

    **Arguments:**

    - `ds`: the sweep's Dataset.
    - `path`: where to write the figure.

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6b and Fig. 11.
    """
    plt = jd.plot.pyplot()
    alphas = ds["alpha"].values
    nf = ds.sizes["filter"]
    cols = min(nf, 8)
    rows = -(-nf // cols)
    fig = plt.figure(figsize=(15, 1.5 * rows + 1.6), constrained_layout=True)
    grid = fig.add_gridspec(rows, 2 * cols + 1, width_ratios=[1] * (2 * cols) + [5])
    for side, a in enumerate((alphas[0], alphas[-1])):
        w = ds["filters"].sel(alpha=a).isel(seed=0, tau=0).values
        sc = ds["filter_smoothness"].sel(alpha=a).isel(seed=0, tau=0).values
        for f in range(nf):
            ax = fig.add_subplot(grid[f // cols, side * cols + f % cols])
            lim = np.abs(w[f]).max() or 1.0
            ax.imshow(w[f], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{sc[f]:.2f}", fontsize=7)
            if f == 0:
                ax.set_ylabel(f"α = {float(a):g}", fontsize=10)
    ax = fig.add_subplot(grid[:, -1])
    mean = ds.mean("tau")
    s_end = mean["final_smoothness"].transpose("alpha", "seed").values
    s_0 = mean["smoothness"].isel(step=0).transpose("alpha", "seed").values
    ax.errorbar(alphas, s_end.mean(1), yerr=s_end.std(1), marker="o", capsize=3, label="end")
    ax.plot(alphas, s_0.mean(1), "k--", lw=1, label="initialisation")
    ax.set_xscale("log")
    ax.set_xlabel("imbalance α (conv ÷ α; > 1 upstream)")
    ax.set_ylabel("smoothness score ‖(w/‖w‖) ∗ Δ‖²  (lower = smoother)")
    acc = mean["test_accuracy"].isel(step=-1).mean("seed").values
    for a, s, c in zip(alphas, s_end.mean(1), acc, strict=True):
        ax.annotate(f"acc {c:.2f}", (a, s), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title("first-layer filter smoothness vs α")
    fig.suptitle(
        f"First-layer filters of a CNN on 8×8 digits (numbers: per-filter score): "
        f"α = {float(alphas[0]):g} (left) vs α = {float(alphas[-1]):g} (right)"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
