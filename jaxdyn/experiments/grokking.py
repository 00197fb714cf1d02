"""`grokking`: time to generalise on modular arithmetic vs imbalance α and scale τ.

Kunin et al. 2024 (arXiv:2406.06158), Fig. 6d and Fig. 12: upstream imbalance (the first
layer, or the embeddings, learning relatively faster) shortens the time to grokking. Two
model families (notes §5.6):

- `model="mlp"` (default): the two-layer MLP of Gromov 2023 / Kumar et al. 2023 on one-hot
  pairs, $f(x) = \\tau\\, W_2\\,\\sigma(W_1 x)$ with $x = [e_a, e_b] \\in \\{0,1\\}^{2p}$,
  quadratic (or ReLU) activation, MSE on one-hot targets, full-batch gradient descent; the
  first layer ÷ α and the readout × α (`jd.init.rescale`), lr η₀/τ².
- `model="transformer"`: a one-layer post-LayerNorm transformer (token + position
  embeddings, multi-head attention, GELU MLP of width 4·d_model) on the token sequence
  `[a, b, =]`, cross-entropy on the logits at `=`, AdamW (β = (0.9, 0.98), 10-step warm-up,
  weight decay); embeddings ÷ α (no readout rescale: the block has LayerNorm), logits × τ,
  lr η₀/τ².

Every (α, τ, seed) trains as one member of one vmapped, jitted `jd.train` program per block;
`seed` draws the train/test split and the initial weights (shared over the (α, τ) grid).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdyn as jd

#: Presets of `make` (`--config size=…`).
SIZES = {
    "default": {
        "mlp": {"p": 23, "width": 64, "steps": 2000, "every": 50, "train_fraction": 0.9},
        "transformer": {"p": 23, "width": 64, "steps": 1000, "every": 20, "train_fraction": 0.5},
        "alpha": np.array([0.3, 1.0, 3.0, 10.0]),
        "tau": np.array([0.05, 0.1]),
        "seed": np.arange(2),
    },
    "paper": {
        "mlp": {"p": 97, "width": 500, "steps": 30_000, "every": 100, "train_fraction": 0.5},
        "transformer": {
            "p": 97,
            "width": 128,
            "steps": 30_000,
            "every": 100,
            "train_fraction": 0.5,
        },
        "alpha": np.array([0.1, 0.3, 1.0, 3.0, 10.0]),
        "tau": np.array([0.5, 0.75, 1.0, 1.25, 1.5]),
        "seed": np.arange(5),
    },
}

#: Default base learning rate η₀ per model family (the lr is η₀/τ²).
LR = {"mlp": 0.1, "transformer": 1e-3}

CONFIG = {
    "size": (
        "one of 'default', 'paper'",
        "preset: a small CPU run, or the paper's Fig. 12 grid (p 97, 5 τ × 5 α × 5 seeds, "
        "30k steps; for a GPU)",
    ),
    "model": ("one of 'mlp', 'transformer'", "model family"),
    "op": (
        "one of 'add', 'sub', 'mul', 'div', 'x2+y2', 'x2+xy+y2'",
        "the operation a ∘ b mod p",
    ),
    "p": ("optional integer >= 2", "modulus (default: from size and model)"),
    "train_fraction": ("optional in (0, 1)", "fraction of the p² pairs used for training"),
    "width": (
        "optional integer >= 1",
        "MLP hidden width, or the transformer's d_model (default: from size)",
    ),
    "activation": (
        "one of 'relu', 'quadratic'",
        "MLP activation (ReLU: α leaves the function unchanged; quadratic: α also scales "
        "the output by 1/α)",
    ),
    "heads": ("integer >= 1", "attention heads of the transformer (divides width)"),
    "steps": ("optional integer >= 1", "training steps (the budget)"),
    "every": ("optional integer >= 1", "record every this many steps (divides steps)"),
    "lr": ("optional > 0", "base learning rate η₀ (the lr is η₀/τ²); default per model"),
    "weight_decay": (
        ">= 0",
        "weight decay (AdamW's for the transformer; added to GD for the MLP)",
    ),
    "warmup": ("integer >= 0", "linear lr warm-up steps of the transformer's AdamW"),
    "batch_size": (
        "optional integer >= 1",
        "transformer mini-batch (default: full batch)",
    ),
    "threshold": ("in (0, 1]", "accuracy defining 'trained' / 'generalised'"),
}

_AXES_DOMAINS = {"alpha": "> 0", "tau": "> 0", "seed": "integer >= 0"}


class Transformer(eqx.Module):
    """One-layer post-LayerNorm transformer on a token sequence (the model of Power et al.
    2022 / Kunin et al. 2024 Fig. 6d at depth 1).

    **Fields:**

    - `embed`: token embeddings `(vocab, d)`.
    - `pos`: position embeddings `(length, d)`.
    - `attention`: `eqx.nn.MultiheadAttention`.
    - `ln1`, `ln2`: `eqx.nn.LayerNorm` after the attention and the MLP residuals.
    - `mlp1`, `mlp2`: the GELU MLP `d → 4d → d`.
    - `unembed`: the readout `eqx.nn.Linear(d, p)` applied at the last position.
    """

    embed: jax.Array
    pos: jax.Array
    attention: eqx.nn.MultiheadAttention
    ln1: eqx.nn.LayerNorm
    ln2: eqx.nn.LayerNorm
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear
    unembed: eqx.nn.Linear

    def __init__(self, key, vocab: int, length: int, d: int, heads: int, out: int, dtype):
        ks = jax.random.split(key, 6)
        self.embed = jax.random.normal(ks[0], (vocab, d), dtype)
        self.pos = jax.random.normal(ks[1], (length, d), dtype)
        self.attention = eqx.nn.MultiheadAttention(heads, d, key=ks[2], dtype=dtype)
        self.ln1 = eqx.nn.LayerNorm(d, dtype=dtype)
        self.ln2 = eqx.nn.LayerNorm(d, dtype=dtype)
        self.mlp1 = eqx.nn.Linear(d, 4 * d, key=ks[3], dtype=dtype)
        self.mlp2 = eqx.nn.Linear(4 * d, d, key=ks[4], dtype=dtype)
        self.unembed = eqx.nn.Linear(d, out, key=ks[5], dtype=dtype)

    def __call__(self, tokens):
        x = self.embed[tokens] + self.pos
        x = jax.vmap(self.ln1)(x + self.attention(x, x, x))
        h = jax.vmap(lambda v: self.mlp2(jax.nn.gelu(self.mlp1(v))))(x)
        x = jax.vmap(self.ln2)(x + h)
        return self.unembed(x[-1])


def _sampler(key, n: int, batch_size: int | None):
    """`minibatch(data, step)` drawing `batch_size` of the `n` pairs without replacement
    (a fresh draw per step), or `None` (full batch)."""
    if batch_size is None:
        return None
    size = int(batch_size)

    def minibatch(d, k):
        idx = jax.random.choice(jax.random.fold_in(key, k), n, (size,), replace=False)
        return d[0][idx], d[1][idx]

    return minibatch


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    size: str = "default",
    model: str = "mlp",
    op: str = "add",
    p: int | None = None,
    train_fraction: float | None = None,
    width: int | None = None,
    activation: str = "relu",
    heads: int = 4,
    steps: int | None = None,
    every: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    warmup: int = 10,
    batch_size: int | None = None,
    threshold: float = 0.99,
) -> jd.Experiment:
    """Axes: `alpha` (imbalance α > 0: first layer / embeddings ÷ α, MLP readout × α),
    `tau` (output scale τ > 0: logits × τ, lr ÷ τ²), `seed` (split and init).

    `size="default"`: the MLP on a + b mod 23 (width 128, 90 % train, 3000 GD steps,
    η₀ = 0.02) over α ∈ {0.3, 1, 3, 10} × τ ∈ {0.5, 1} × 2 seeds (about a minute on a
    2-core CPU); the transformer at p 23, d_model 64, 1000 AdamW steps. `size="paper"`:
    p 97, 50 % train, 30 000 steps, τ ∈ {0.5, 0.75, 1, 1.25, 1.5} × α ∈ {0.1, 0.3, 1, 3, 10}
    × 5 seeds, MLP width 500 / d_model 128 (the paper's Fig. 12 grid; for a GPU). Explicit
    settings override the preset.

    **Arguments:**

    The keyword-only configuration above (`jaxdyn sweep grokking --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6d, Fig. 12 and
        App. D.3; Gromov 2023, arXiv:2301.02679 (the MLP); Kumar et al. 2023,
        arXiv:2310.06110 (output scale and lr ÷ scale²).
    """
    preset = SIZES[size][model]
    p = int(preset["p"] if p is None else p)
    frac = float(preset["train_fraction"] if train_fraction is None else train_fraction)
    width = int(preset["width"] if width is None else width)
    steps = int(preset["steps"] if steps is None else steps)
    every = int(preset["every"] if every is None else every)
    lr0 = float(LR[model] if lr is None else lr)
    wd = float((1.0 if model == "transformer" else 0.0) if weight_decay is None else weight_decay)
    if steps % every:
        raise jd.SweepError(f"config every={every} must divide steps={steps}", argument="config")
    if model == "transformer" and width % heads:
        raise jd.SweepError(
            f"config heads={heads} must divide width={width} (d_model)", argument="config"
        )
    try:  # the data's own checks (p < 2, train_fraction, op), before anything compiles
        _, _, pairs_te, _ = jd.data.modular_arithmetic(
            jax.random.key(0), p, op=op, train_fraction=frac
        )
    except ValueError as e:
        raise jd.SweepError(f"config: {e}", argument="config") from None
    n_test = int(pairs_te.shape[0])
    n_train = (p * p - (p if op == "div" else 0)) - n_test
    if batch_size is not None and batch_size > n_train:
        raise jd.SweepError(
            f"config batch_size={batch_size} exceeds the {n_train} training pairs",
            argument="config",
        )
    n_rec = steps // every + 1
    rec_steps = np.arange(n_rec) * every

    def one(alpha, tau, seed):
        dtype = jnp.result_type(float)
        k_data, k_init, k_batch = jax.random.split(jax.random.fold_in(jax.random.key(0), seed), 3)
        P_tr, y_tr, P_te, y_te = jd.data.modular_arithmetic(k_data, p, op=op, train_fraction=frac)
        if model == "mlp":
            X_tr, X_te = (
                jd.data.one_hot_pairs(P_tr, p, dtype),
                jd.data.one_hot_pairs(P_te, p, dtype),
            )
            k1, k2 = jax.random.split(k_init)
            W1 = jax.random.normal(k1, (width, 2 * p), dtype) / math.sqrt(2.0)
            W2 = jax.random.normal(k2, (p, width), dtype) / math.sqrt(width)
            act = jnp.square if activation == "quadratic" else jax.nn.relu
            net, lr_t = jd.init.rescale(
                jd.MLP((W1, W2), activation=act), alpha=alpha, tau=tau, lr=lr0
            )
            Y_tr = jax.nn.one_hot(y_tr, p, dtype=dtype)
            Y_te = jax.nn.one_hot(y_te, p, dtype=dtype)

            def loss_fn(m, d):
                X, Y = d
                return 0.5 * jnp.mean(jnp.sum((jax.vmap(m)(X) - Y) ** 2, axis=-1))

            opt = optax.chain(optax.add_decayed_weights(wd), optax.sgd(1.0))
            data, test = (X_tr, Y_tr), (X_te, Y_te)
            minibatch = _sampler(k_batch, n_train, None)
        else:
            eq = jnp.full((P_tr.shape[0], 1), p, jnp.int32)
            T_tr = jnp.concatenate([P_tr, eq], axis=1)
            T_te = jnp.concatenate([P_te, jnp.full((P_te.shape[0], 1), p, jnp.int32)], axis=1)
            base = Transformer(k_init, p + 1, 3, width, heads, p, dtype)
            net, lr_t = jd.init.rescale(
                base, alpha=alpha, tau=tau, lr=lr0, first=lambda m: (m.embed, m.pos), last=None
            )

            def loss_fn(m, d):
                T, y = d
                logits = jax.vmap(m)(T)
                return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

            sched = optax.linear_schedule(0.0, 1.0, max(warmup, 1)) if warmup else 1.0
            opt = optax.adamw(sched, b1=0.9, b2=0.98, weight_decay=wd)
            data, test = (T_tr, y_tr), (T_te, y_te)
            minibatch = _sampler(k_batch, n_train, batch_size)

        def acc(m, X, y):
            return jnp.mean(jnp.argmax(jax.vmap(m)(X), axis=-1) == y)

        def record(m):
            return {
                "train_acc": acc(m, data[0], y_tr),
                "test_acc": acc(m, test[0], y_te),
                "test_loss": loss_fn(m, test),
            }

        out = jd.train(
            net,
            loss_fn,
            opt,
            steps,
            data=data,
            lr=lr_t,
            record=record,
            every=every,
            minibatch=minibatch,
        )
        s_tr, c_tr = jd.metrics.time_to_threshold(
            out.records["train_acc"], threshold, steps=out.steps
        )
        s_te, c_te = jd.metrics.time_to_threshold(
            out.records["test_acc"], threshold, steps=out.steps
        )
        return {
            "train_loss": out.loss,
            "test_loss": out.records["test_loss"],
            "train_acc": out.records["train_acc"],
            "test_acc": out.records["test_acc"],
            "steps_to_train_99": s_tr,
            "steps_to_test_99": s_te,
            "train_99_censored": c_tr,
            "test_99_censored": c_te,
            "status": out.status.astype(jnp.int8),
        }

    def run(points):
        dtype = jnp.result_type(float)
        return jax.vmap(one)(
            points["alpha"].astype(dtype), points["tau"].astype(dtype), points["seed"]
        )

    n_grid = SIZES[size]["alpha"].size * SIZES[size]["tau"].size * SIZES[size]["seed"].size
    per_step = ("train_loss", "test_loss", "train_acc", "test_acc")
    n_params = (
        3 * p * width if model == "mlp" else (p + 4) * width + 12 * width * width + width * p
    )
    return jd.Experiment(
        name="grokking",
        description="modular arithmetic: steps to 99 % test accuracy vs imbalance α and "
        "scale τ, MLP or 1-layer transformer (Kunin et al. 2024 Fig. 6d/12)",
        run=run,
        axes={
            "alpha": SIZES[size]["alpha"],
            "tau": SIZES[size]["tau"],
            "seed": SIZES[size]["seed"],
        },
        dims={k: ("step",) for k in per_step},
        coords={"step": rec_steps},
        attrs={
            "size": size,
            "model": model,
            "op": op,
            "p": p,
            "train_fraction": frac,
            "n_train": n_train,
            "n_test": n_test,
            "width": width,
            "activation": activation if model == "mlp" else "gelu",
            "heads": heads if model == "transformer" else 0,
            "steps": steps,
            "every": every,
            "lr": f"{lr0:g}/tau² (base lr η₀ = {lr0:g})",
            "weight_decay": wd,
            "optimizer": (
                "full-batch gradient descent on ½·mean‖τf − onehot(y)‖² (+ weight decay)"
                if model == "mlp"
                else f"AdamW(b1=0.9, b2=0.98, {warmup}-step warm-up), cross-entropy, "
                + ("full batch" if batch_size is None else f"batch {batch_size}")
            ),
            "threshold": threshold,
            "rescale": "MLP: W1 ÷ α, W2 × α, output × τ, lr ÷ τ²"
            if model == "mlp"
            else "transformer: token and position embeddings ÷ α, logits × τ, lr ÷ τ²",
            "description": "train_acc/test_acc/train_loss/test_loss at the record steps; "
            f"steps_to_train_99 / steps_to_test_99: first record step with accuracy ≥ "
            f"{threshold:g}, censored at the budget ({steps}) where "
            "train_99_censored / test_99_censored is True; status 9 = diverged (NaN)",
        },
        integer_axes=frozenset({"seed"}),
        domains=dict(_AXES_DOMAINS),
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (40 * n_params + 8 * n_rec + p * p * (3 * p + 2 * width)),
        block_size=n_grid,
    )


def _median_steps(ds, var="steps_to_test_99"):
    """Median over seeds (censored runs count at the budget: a lower bound)."""
    return ds[var].median("seed")


def summary(ds) -> str:
    """The numbers `jaxdyn sweep grokking` prints.

    **Arguments:**

    - `ds`: the sweep's Dataset.

    **Returns:**

    A few lines: runs and their status, the median steps to 99 % test (and train) accuracy
    per (τ, α) with the number of censored runs, and the final test accuracy.
    """
    st = ds["status"].values
    lines = [
        f"grokking sweep ({ds.attrs.get('model')}, {ds.attrs.get('op')} mod {ds.attrs.get('p')}, "
        f"{ds.attrs.get('steps')} steps): {st.size} runs, {(st == 0).sum()} ok, "
        f"{(st == 9).sum()} diverged",
    ]
    med_te, med_tr = _median_steps(ds), _median_steps(ds, "steps_to_train_99")
    cens = ds["test_99_censored"].sum("seed")
    final = ds["test_acc"].isel(step=-1).mean("seed")
    for tau in ds["tau"].values:
        parts = []
        for a in ds["alpha"].values:
            sel = {"tau": tau, "alpha": a}
            parts.append(
                f"α={float(a):g}: {float(med_te.sel(sel)):.0f}"
                f" (train {float(med_tr.sel(sel)):.0f}, censored {int(cens.sel(sel))},"
                f" final test {float(final.sel(sel)):.2f})"
            )
        lines.append(f"  τ={float(tau):g}, median steps to 99% test: " + "; ".join(parts))
    return "\n".join(lines)


def plot(ds, path) -> None:
    """The paper's Fig. 12 at small size: median steps to 99 % test accuracy (and to 99 %
    train accuracy, dashed) vs α, one line per τ (censored runs counted at the budget, marked
    with open symbols), and train/test accuracy curves for a few α at the middle τ.

    **Arguments:**

    - `ds`: the sweep's Dataset.
    - `path`: where to write the figure.

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6d and Fig. 12.
    """
    plt = jd.plot.pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    alpha = ds["alpha"].values
    budget = int(ds.attrs.get("steps", ds["step"].values[-1]))
    med_te, med_tr = _median_steps(ds), _median_steps(ds, "steps_to_train_99")
    all_cens = ds["test_99_censored"].all("seed")
    for i, tau in enumerate(ds["tau"].values):
        c = f"C{i}"
        y = med_te.sel(tau=tau).values
        axs[0].plot(alpha, y, "-", color=c, label=f"τ = {float(tau):g}: test")
        cens = all_cens.sel(tau=tau).values
        axs[0].plot(alpha[~cens], y[~cens], "o", color=c)
        axs[0].plot(alpha[cens], y[cens], "o", mfc="none", color=c)
        axs[0].plot(
            alpha,
            med_tr.sel(tau=tau).values,
            "--",
            color=c,
            alpha=0.6,
            label=f"τ = {float(tau):g}: train",
        )
    axs[0].axhline(budget, color="gray", lw=0.8, ls=":")
    axs[0].set_xscale("log")
    axs[0].set_yscale("log")
    axs[0].set_xlabel("imbalance α  (> 1: upstream)")
    axs[0].set_ylabel("median steps to 99 % accuracy")
    axs[0].set_title("steps to generalise (open: all seeds censored at the budget)")
    axs[0].legend(fontsize=8)
    tau_mid = ds["tau"].values[0]  # the richest τ of the grid
    step = ds["step"].values
    near_one = int(np.argmin(np.abs(np.log(alpha))))
    picks = sorted({0, near_one, len(alpha) - 1})
    for j, k in enumerate(picks):
        sub = ds.sel(tau=tau_mid).isel(alpha=k).mean("seed")
        c = f"C{j}"
        axs[1].plot(
            step, sub["test_acc"].values, "-", color=c, label=f"α = {float(alpha[k]):g} test"
        )
        axs[1].plot(
            step, sub["train_acc"].values, "--", color=c, label=f"α = {float(alpha[k]):g} train"
        )
        axs[2].semilogy(
            step, sub["test_loss"].values, "-", color=c, label=f"α = {float(alpha[k]):g} test"
        )
        axs[2].semilogy(
            step, sub["train_loss"].values, "--", color=c, label=f"α = {float(alpha[k]):g} train"
        )
    axs[1].set_title(f"accuracy (mean over seeds), τ = {float(tau_mid):g}")
    axs[1].set_xlabel("step")
    axs[1].set_ylabel("accuracy")
    axs[1].legend(fontsize=8)
    axs[2].set_title(f"loss, τ = {float(tau_mid):g}")
    axs[2].set_xlabel("step")
    axs[2].legend(fontsize=8)
    fig.suptitle(
        f"Grokking {ds.attrs.get('op')} mod {ds.attrs.get('p')} ({ds.attrs.get('model')}, width "
        f"{ds.attrs.get('width')}, {ds.attrs.get('train_fraction')} train, "
        f"{ds.sizes['seed']} seed(s))"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
