"""`hierarchy`: sample complexity of a Random Hierarchy Model vs imbalance α and scale τ.

Kunin et al. 2024 (arXiv:2406.06158), Fig. 6c (notes §5.7): a bias-free MLP trained by SGD
with momentum on the Random Hierarchy Model of Petrini et al. 2023
(`jd.data.random_hierarchy`); upstream imbalance (first layer ÷ α, readout × α, α > 1)
lowers the number of training samples needed to generalise. The sweep is over the
training-set size `train_size` × α × τ × `seed`; every point trains as one member of one
vmapped, jitted `jd.train` program per block.

`seed` draws the rules, the samples (train and test disjoint) and the initial weights,
shared over the (train size, α, τ) grid. Each seed's training set is built once at
`max_train` samples; a point with `train_size = P` trains on its first P samples (nested
training sets; minibatches are drawn uniformly from them), so one compiled program serves
every P.

Defaults (a CPU in about a minute) use a two-level RHM (n_c = 8 classes, m = 4 synonyms,
s = 2, v = 8: 512 distinct samples) and a fixed budget of steps; `size="paper"` is the
paper's setting (L = 3, 131 072 samples, width 64, 3 hidden layers, batch 128, lr 6.4 with
cosine decay, 20 000 test samples).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn as jd

#: Presets of `make` (`--config size=…`).
SIZES = {
    "default": {
        "rhm": {"levels": 2, "classes": 8, "synonyms": 4, "tuple_size": 2, "vocab": 8},
        "width": 64,
        "depth": 3,
        "steps": 1000,
        "every": 100,
        "batch_size": 64,
        "lr": 0.05,
        "max_train": 384,
        "n_test": 128,
        "train_size": np.array([64, 128, 256, 384]),
        "alpha": np.array([0.3, 1.0, 3.0, 10.0]),
        "tau": np.array([1.0]),
        "seed": np.arange(2),
    },
    "paper": {
        "rhm": {"levels": 3, "classes": 8, "synonyms": 4, "tuple_size": 2, "vocab": 8},
        "width": 64,
        "depth": 3,
        "steps": 40_000,
        "every": 1000,
        "batch_size": 128,
        "lr": 6.4,
        "max_train": 65_536,
        "n_test": 20_000,
        "train_size": np.array([4096, 8192, 16384, 32768, 65536]),
        "alpha": np.array([0.03, 0.1, 0.3, 1.0, 3.0, 10.0]),
        "tau": np.array([1.0]),
        "seed": np.arange(6),
    },
}

CONFIG = {
    "size": (
        "one of 'default', 'paper'",
        "preset: a two-level RHM for a CPU, or the paper's Fig. 6c setting (L 3, 131 072 "
        "samples; for a GPU)",
    ),
    "levels": ("optional integer >= 1", "RHM levels L (default: from size)"),
    "classes": ("optional integer >= 1", "RHM classes n_c"),
    "synonyms": ("optional integer >= 1", "RHM synonyms m (rules per symbol)"),
    "tuple_size": ("optional integer >= 2", "RHM tuple size s"),
    "vocab": ("optional integer >= 2", "RHM vocabulary size v"),
    "width": ("optional integer >= 1", "hidden width of the MLP"),
    "depth": ("optional integer >= 1", "hidden layers of the MLP"),
    "steps": ("optional integer >= 1", "SGD steps (the same budget for every train size)"),
    "every": ("optional integer >= 1", "record every this many steps (divides steps)"),
    "batch_size": ("optional integer >= 1", "minibatch size (drawn with replacement)"),
    "lr": ("optional > 0", "base learning rate η₀ (the lr is η₀/τ², cosine decay)"),
    "momentum": ("in [0, 1)", "SGD momentum"),
    "max_train": (
        "optional integer >= 1",
        "training samples drawn per seed; the train_size axis is ≤ it",
    ),
    "n_test": ("optional integer >= 1", "held-out test samples per seed"),
    "data_seed": ("integer >= 0", "offset of the seeds drawing rules, samples and weights"),
}


def _rhm_settings(size, overrides):
    rhm = dict(SIZES[size]["rhm"])
    rhm.update({k: v for k, v in overrides.items() if v is not None})
    return rhm


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    size: str = "default",
    levels: int | None = None,
    classes: int | None = None,
    synonyms: int | None = None,
    tuple_size: int | None = None,
    vocab: int | None = None,
    width: int | None = None,
    depth: int | None = None,
    steps: int | None = None,
    every: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    momentum: float = 0.9,
    max_train: int | None = None,
    n_test: int | None = None,
    data_seed: int = 0,
) -> jd.Experiment:
    """Axes: `train_size` P (training samples, ≤ `max_train`), `alpha` (> 0; first layer
    ÷ α, readout × α), `tau` (> 0; output × τ, lr ÷ τ²), `seed`.

    Model: a bias-free `jd.MLP` (`jd.init.mlp`, standard parametrization) of `depth` hidden
    ReLU layers of `width` units on the flattened one-hot input (s^L·v), n_c logits;
    softmax cross-entropy; `optax.sgd` with `momentum` and a cosine decay of the lr to 0 at
    80 % of the steps (then 0), minibatches of `batch_size` drawn with replacement from the
    point's P training samples. Recorded every `every` steps: training loss, training and
    test accuracy.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep hierarchy --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`.

    **Raises:**

    `SweepError` (argument `"config"`) naming the setting when the RHM settings are
    inconsistent (more synonyms than tuples exist, …), when `max_train + n_test` exceeds
    the number of distinct samples, or when `every` does not divide `steps`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6c and App. D.3;
        Petrini et al. 2023, *How deep neural networks learn compositional data: the
        Random Hierarchy Model*, arXiv:2307.02129.
    """
    preset = SIZES[size]
    rhm_kw = _rhm_settings(
        size,
        {
            "levels": levels,
            "classes": classes,
            "synonyms": synonyms,
            "tuple_size": tuple_size,
            "vocab": vocab,
        },
    )
    width = int(preset["width"] if width is None else width)
    depth = int(preset["depth"] if depth is None else depth)
    steps = int(preset["steps"] if steps is None else steps)
    every = int(preset["every"] if every is None else every)
    batch_size = int(preset["batch_size"] if batch_size is None else batch_size)
    lr0 = float(preset["lr"] if lr is None else lr)
    max_train = int(preset["max_train"] if max_train is None else max_train)
    if steps % every:
        raise jd.SweepError(f"config every={every} must divide steps={steps}", argument="config")
    try:  # the generator's own checks, before anything compiles
        rhm0 = jd.data.random_hierarchy(jax.random.key(0), **rhm_kw)
    except ValueError as e:
        raise jd.SweepError(f"config: {e}", argument="config") from None
    total = rhm0.num_samples
    if n_test is None:
        n_test = min(int(preset["n_test"]), total - max_train)
    n_test = int(n_test)
    if n_test < 1 or max_train + n_test > total:
        raise jd.SweepError(
            f"config max_train={max_train} + n_test={n_test} exceeds the {total} distinct "
            f"samples of this Random Hierarchy Model (levels={rhm_kw['levels']}, classes="
            f"{rhm_kw['classes']}, synonyms={rhm_kw['synonyms']}, tuple_size="
            f"{rhm_kw['tuple_size']})",
            argument="config",
        )
    dim, n_c = rhm0.input_dim, rhm0.classes
    widths = [dim] + [width] * depth + [n_c]
    n_rec = steps // every + 1
    decay = max(1, int(0.8 * steps))

    def one(train_size, alpha, tau, seed):
        dtype = jnp.result_type(float)
        key = jax.random.fold_in(jax.random.key(data_seed), seed)
        k_rules, k_data, k_init, k_batch = jax.random.split(key, 4)
        rhm = jd.data.random_hierarchy(k_rules, **rhm_kw)
        X, y, Xt, yt = jd.data.random_hierarchy_data(k_data, rhm, max_train, n_test, dtype)
        weight = (jnp.arange(max_train) < train_size).astype(dtype)
        net, lr_t = jd.init.rescale(
            jd.init.mlp(k_init, widths, "sp"), alpha=alpha, tau=tau, lr=lr0
        )

        def loss_fn(m, d):
            ce = optax.softmax_cross_entropy_with_integer_labels(jax.vmap(m)(d[0]), d[1])
            return jnp.sum(ce * d[2]) / jnp.sum(d[2])

        def minibatch(d, k):
            idx = jax.random.randint(jax.random.fold_in(k_batch, k), (batch_size,), 0, train_size)
            return d[0][idx], d[1][idx], jnp.ones((batch_size,), dtype)

        def record(m):
            right = jnp.argmax(jax.vmap(m)(X), -1) == y
            return {
                "train_accuracy": jnp.sum(right * weight) / jnp.sum(weight),
                "test_accuracy": jnp.mean(jnp.argmax(jax.vmap(m)(Xt), -1) == yt),
            }

        opt = optax.sgd(optax.cosine_decay_schedule(1.0, decay), momentum=momentum)
        out = jd.train(
            net,
            loss_fn,
            opt,
            steps,
            data=(X, y, weight),
            lr=lr_t,
            record=record,
            every=every,
            minibatch=minibatch,
        )
        return {
            "train_loss": out.loss,
            "train_accuracy": out.records["train_accuracy"],
            "test_accuracy": out.records["test_accuracy"],
            "final_test_accuracy": out.records["test_accuracy"][-1],
            "status": out.status.astype(jnp.int8),
        }

    def run(points):
        dtype = jnp.result_type(float)
        return jax.vmap(one)(
            points["train_size"],
            points["alpha"].astype(dtype),
            points["tau"].astype(dtype),
            points["seed"],
        )

    axes = {k: preset[k] for k in ("train_size", "alpha", "tau", "seed")}
    axes["train_size"] = np.minimum(axes["train_size"], max_train)
    n_grid = int(np.prod([v.size for v in axes.values()]))
    n_params = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    per_step = ("train_loss", "train_accuracy", "test_accuracy")
    return jd.Experiment(
        name="hierarchy",
        description="Random Hierarchy Model: test accuracy vs training-set size, imbalance α "
        "and scale τ, bias-free MLP + SGD momentum (Kunin et al. 2024 Fig. 6c)",
        run=run,
        axes=axes,
        dims={k: ("step",) for k in per_step},
        coords={"step": np.arange(n_rec) * every},
        attrs={
            "size": size,
            **{f"rhm_{k}": v for k, v in rhm_kw.items()},
            "num_samples": total,
            "max_train": max_train,
            "n_test": n_test,
            "widths": str(widths),
            "steps": steps,
            "every": every,
            "batch_size": batch_size,
            "lr": f"{lr0:g}/tau², cosine decay to 0 at step {decay}",
            "momentum": momentum,
            "optimizer": f"optax.sgd(momentum={momentum}) on softmax cross-entropy, "
            f"batch {batch_size} drawn with replacement from the first train_size samples",
            "rescale": "first layer ÷ α, readout × α, logits × τ, lr ÷ τ² (jd.init.rescale)",
            "description": "train_loss (cross-entropy on the point's training samples), "
            "train_accuracy, test_accuracy (on n_test held-out samples) at the record steps; "
            "final_test_accuracy = test_accuracy at the last step; status 9 = diverged",
        },
        integer_axes=frozenset({"train_size", "seed"}),
        domains={
            "train_size": f"integer in [1, {max_train}]",
            "alpha": "> 0",
            "tau": "> 0",
            "seed": "integer >= 0",
        },
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (20 * n_params + (max_train + n_test) * (dim + 2) + 8 * n_rec)
        + 8 * batch_size * sum(widths) * 4,
        block_size=min(n_grid, 64),
    )


def _final(ds):
    """Final test accuracy, mean over seeds and τ: dims (alpha, train_size)."""
    return ds["final_test_accuracy"].mean(("seed", "tau")).transpose("alpha", "train_size")


def summary(ds) -> str:
    """The numbers `jaxdyn sweep hierarchy` prints.

    **Arguments:**

    - `ds`: the sweep's Dataset.

    **Returns:**

    A few lines: runs and their status, and the final test accuracy per α and training-set
    size (mean over seeds and τ).
    """
    st = ds["status"].values
    acc = _final(ds)
    sizes = ", ".join(str(int(p)) for p in acc["train_size"].values)
    lines = [
        f"hierarchy sweep (RHM L={ds.attrs.get('rhm_levels')}, {ds.attrs.get('num_samples')} "
        f"samples, {ds.attrs.get('steps')} steps): {st.size} runs, {(st == 0).sum()} ok, "
        f"{(st == 9).sum()} diverged",
        f"  final test accuracy (mean over seeds, τ) at train sizes [{sizes}]:",
    ]
    for a, row in zip(acc["alpha"].values, acc.values, strict=True):
        lines.append(f"    α={float(a):g}: " + " ".join(f"{v:.3f}" for v in row))
    lines.append(f"  chance level: {1 / float(ds.attrs.get('rhm_classes', 1)):.3f}")
    return "\n".join(lines)


def plot(ds, path) -> None:
    """The paper's Fig. 6c at small size: final test accuracy vs training-set size, one line
    per α (mean over seeds and τ, error bars: spread over seeds), and the test-accuracy
    curves over training at the largest training-set size.

    **Arguments:**

    - `ds`: the sweep's Dataset.
    - `path`: where to write the figure.

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6c.
    """
    plt = jd.plot.pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    final = ds["final_test_accuracy"].mean("tau")
    cmap = plt.get_cmap("coolwarm")
    alphas = ds["alpha"].values
    sizes = ds["train_size"].values
    for i, a in enumerate(alphas):
        c = cmap(i / max(1, len(alphas) - 1))
        f = final.sel(alpha=a).transpose("train_size", "seed").values
        axs[0].errorbar(
            sizes, f.mean(1), yerr=f.std(1), color=c, marker="o", capsize=3, label=f"α = {a:g}"
        )
        curve = ds["test_accuracy"].sel(alpha=a).isel(train_size=-1).mean(("seed", "tau"))
        axs[1].plot(ds["step"].values, curve.values, color=c, label=f"α = {a:g}")
    chance = 1 / float(ds.attrs.get("rhm_classes", 1))
    for ax in axs:
        ax.axhline(chance, color="0.6", ls=":", lw=1)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    axs[0].set_xscale("log", base=2)
    axs[0].set_xticks(sizes, [str(int(p)) for p in sizes])
    axs[0].set_xlabel("training-set size P")
    axs[0].set_title("sample complexity: final test accuracy vs P (Fig. 6c)")
    axs[1].set_xlabel("SGD step")
    axs[1].set_title(f"test accuracy during training, P = {int(sizes[-1])}")
    fig.suptitle(
        f"Random Hierarchy Model (L = {ds.attrs.get('rhm_levels')}, n_c = "
        f"{ds.attrs.get('rhm_classes')}, m = {ds.attrs.get('rhm_synonyms')}, s = "
        f"{ds.attrs.get('rhm_tuple_size')}, v = {ds.attrs.get('rhm_vocab')}), bias-free MLP "
        f"{ds.attrs.get('widths')}\nupstream α > 1 (first layer ÷ α, readout × α) vs downstream"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
