"""Optax training of any Equinox model (or a batch of them) as one jitted scan, with metrics
recorded every k steps: the discrete-time companion of `gradient_flow` for models and losses
that gradient flow does not cover (cross-entropy, AdamW, mini-batches, transformers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree, Real, Shaped

from ._checks import is_concrete
from ._models import MLP
from ._results import RESULTS, status_code
from .init._rescale import Scaled

__all__ = ["Training", "cross_entropy_loss", "train", "trainable", "uniform_minibatch"]


class Training(eqx.Module):
    """The outcome of `jaxdyn.train`.

    **Fields:**

    - `steps`: the steps of the records, `(R,)` = `0, every, 2·every, …, steps`.
    - `loss`: the training loss `loss_fn(model, data)` (on the full `data`) at those steps,
      `(R,)`.
    - `records`: what `record(model)` returned at those steps, every leaf with a leading
      record axis `R` (`{}` without `record`).
    - `model`: the trained model (after the last step).
    - `result`: a `jaxdyn.RESULTS` item: `successful`, or `nonfinite` when the final
      parameters or a recorded loss are NaN/inf (a diverged run is marked, not silent).

    From `train(..., batch=True)` (or under `jax.vmap`) every field has a leading batch axis.
    """

    steps: Int[Array, "*batch R"]
    loss: Float[Array, "*batch R"]
    records: PyTree
    model: PyTree
    result: RESULTS

    @property
    def status(self) -> Array:
        """The index of `result` in `jaxdyn.RESULTS` (`int8`; 0 is `successful`), the code a
        sweep stores in its `status` variable."""
        return status_code(self.result)


def trainable(model: Any) -> PyTree:
    """The default filter of `jaxdyn.train`: which leaves of `model` are trained.

    Every floating-point array is trained except the fixed multipliers the model only carries
    as arrays so that they can be traced and batched: the output scale of a
    `jaxdyn.init.Scaled` and the per-layer `multipliers` of a `jaxdyn.MLP` (their gradient
    is zero, but an optimizer with weight decay would still shrink them).

    **Arguments:**

    - `model`: any Equinox model (batched or not).

    **Returns:**

    A filter spec for `eqx.partition`: `model`'s structure with a bool per leaf.
    """

    def spec(node):
        if isinstance(node, Scaled):
            return eqx.tree_at(lambda s: (s.model, s.scale), node, (trainable(node.model), False))
        if isinstance(node, MLP):
            return eqx.tree_at(
                lambda m: (m.layers, m.multipliers),
                node,
                (tuple(True for _ in node.layers), tuple(False for _ in node.multipliers)),
            )
        return eqx.is_inexact_array(node)

    return jax.tree_util.tree_map(spec, model, is_leaf=lambda x: isinstance(x, Scaled | MLP))


def _check_int(name: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"`{name}` must be an int >= {lo}, got {v!r}.")
    return int(v)


def cross_entropy_loss(
    model: Callable[[Any], Any], data: tuple[Shaped[ArrayLike, "n ..."], Int[ArrayLike, " n"]]
) -> Float[Array, ""]:
    r"""The mean softmax cross-entropy of a classifier's logits against integer labels,
    $L = -\frac1n \sum_i \log \operatorname{softmax}(f(x_i))_{y_i}$: a `loss_fn` for
    `jaxdyn.train`.

    **Arguments:**

    - `model`: a model applied to one input, returning its logits `(classes,)` (it is
      `jax.vmap`-ed over the inputs).
    - `data`: `(X, y)` with `X (n, …)` the inputs and `y (n,)` the integer labels.

    **Returns:**

    The scalar loss (`optax.softmax_cross_entropy_with_integer_labels`, averaged).
    """
    X, y = data
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(X), y))


def uniform_minibatch(
    key: PRNGKeyArray, n: int, batch_size: int
) -> Callable[[PyTree, Int[ArrayLike, ""]], PyTree]:
    """A `minibatch` for `jaxdyn.train` drawing `batch_size` of the `n` samples uniformly
    with replacement, a fresh draw per step from `fold_in(key, step)`.

    **Arguments:**

    - `key`: the PRNG key of the draws (may be traced, e.g. one per vmapped member).
    - `n`: the number of samples (the leading axis of every leaf of the data).
    - `batch_size`: the number of indices drawn per step.

    **Returns:**

    `minibatch(data, step)`: every leaf of `data` indexed at the step's `batch_size`
    indices (so `(X, y)` gives `(X[idx], y[idx])`).

    **Raises:**

    `ValueError` naming `n` or `batch_size` when it is not an int ≥ 1.
    """
    n = _check_int("n", n)
    batch_size = _check_int("batch_size", batch_size)

    def minibatch(data, step):
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)
        return jax.tree_util.tree_map(lambda a: a[idx], data)

    return minibatch


def train(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    optimizer: optax.GradientTransformation | Callable[[Any], optax.GradientTransformation],
    steps: int,
    *,
    data: Any = None,
    lr: Real[ArrayLike, "*batch"] = 1.0,
    hyper: PyTree = None,
    record: Callable[[Any], Any] | None = None,
    every: int = 1,
    minibatch: Callable[[Any, Array], Any] | None = None,
    filter_spec: Any = None,
    batch: bool = False,
) -> Training:
    r"""Train an Equinox model with an Optax optimizer for `steps` steps, recording the loss
    and any metrics every `every` steps; one `lax.scan`, so the whole run is one program
    under `jax.jit`, and `jax.vmap` (or `batch=True`) trains a batch of configurations
    (models, learning rates, weight decays, …) as one program.

    Each step is θ ← θ + lr · u with `u, state = optimizer.update(∇θ L, state, θ)` and
    $L$ = `loss_fn(model, minibatch(data, step))`, the gradient taken with respect to the
    leaves selected by `filter_spec` only. With `optax.sgd(1.0)` this is plain gradient
    descent with learning rate `lr`, like `jaxdyn.gradient_descent`.

    Per-configuration hyperparameters are traced values, never Python constants closed over,
    so a sweep over them compiles once: `lr` multiplies the updates (the η₀/τ² that
    `jaxdyn.init.rescale` returns), and `optimizer` may be a function of `hyper` building the
    optimizer inside the traced program, e.g.
    `optimizer=lambda h: optax.adamw(1.0, b2=0.98, weight_decay=h)` with `hyper=wd`
    (note Optax's AdamW, like PyTorch's, multiplies the decay by the learning rate).

    **Arguments:**

    - `model`: the Equinox model (with `batch=True`: every array leaf carries a leading
      batch axis, e.g. `jax.vmap(make_model)(alphas)`).
    - `loss_fn`: `loss_fn(model, data) -> scalar`.
    - `optimizer`: an `optax.GradientTransformation`, or a function `hyper ->
      GradientTransformation`.
    - `steps`: the number of optimizer steps (an int ≥ 1, a multiple of `every`).
    - `data`: passed to `loss_fn` (any pytree; `None` for a loss that closes over its data).
      Shared by the whole batch with `batch=True` (vmap yourself for per-member data).
    - `lr`: a scalar multiplying the updates (with `batch=True` a scalar or one per member).
    - `hyper`: a pytree given to `optimizer` when it is a function (with `batch=True`: a
      leading batch axis on every leaf).
    - `record`: `record(model) -> pytree of arrays`, evaluated at every record step (e.g.
      train and test accuracy); closes over whatever data it needs.
    - `every`: record every this many steps (records at steps 0, every, …, steps).
    - `minibatch`: optional `minibatch(data, step) -> batch_data` giving the data of step
      `step` (an int32 scalar; fold it into a key stored in `data` to sample); default: the
      full `data` every step.
    - `filter_spec`: which leaves are trained, as for `eqx.partition` (a bool pytree or a
      predicate on leaves); default `jaxdyn.trainable(model)` (every floating-point array
      except fixed multipliers such as `Scaled.scale`).
    - `batch`: train a batch of models (leading axis on `model`, `hyper` and optionally `lr`)
      with `jax.vmap`.

    **Returns:**

    A `jaxdyn.Training` (steps, loss and records at the record steps, the final model, and a
    `result` marking runs that diverged).

    **Raises:**

    `ValueError` for a bad `steps` or `every`, a model without trainable leaves, or a
    concrete non-finite `lr` (a traced one makes the run's `result` `nonfinite`); `TypeError`
    for a `loss_fn`/`optimizer` that is not callable or a transformation.

    ```python
    models = jax.vmap(lambda k: jd.MLP(...))(keys)
    out = jd.train(models, loss, optax.sgd(1.0), 1000, data=(X, Y), lr=lrs, batch=True,
                   record=lambda m: {"test": test_loss(m)}, every=10)
    out.records["test"]  # (B, 101)
    ```
    """
    steps = _check_int("steps", steps)
    every = _check_int("every", every)
    if steps % every:
        raise ValueError(f"`steps` ({steps}) must be a multiple of `every` ({every}).")
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable loss_fn(model, data), got {loss_fn!r}.")
    if not (isinstance(optimizer, optax.GradientTransformation) or callable(optimizer)):
        raise TypeError(
            "`optimizer` must be an optax.GradientTransformation or a function of `hyper` "
            f"returning one, got {type(optimizer).__name__}."
        )
    if is_concrete(lr) and not np.all(np.isfinite(np.asarray(lr, dtype=np.float64))):
        raise ValueError(f"`lr` must be finite, got {lr!r}.")
    spec = trainable(model) if filter_spec is None else filter_spec
    params, rest = eqx.partition(model, spec)
    # Arrays that are not trained (e.g. `Scaled.scale`) are batched like the parameters.
    frozen, static = eqx.partition(rest, eqx.is_array)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("`model` has no trainable floating-point array leaves.")
    n_blocks = steps // every

    def one(params, frozen, lr, hyper):
        fixed = eqx.combine(frozen, static)
        opt = (
            optimizer if isinstance(optimizer, optax.GradientTransformation) else optimizer(hyper)
        )

        def loss_p(p, d):
            return loss_fn(eqx.combine(p, fixed), d)

        def observe(p):
            m = eqx.combine(p, fixed)
            return loss_fn(m, data), ({} if record is None else record(m))

        def one_step(carry, k):
            p, s = carry
            d = data if minibatch is None else minibatch(data, k)
            g = jax.grad(loss_p)(p, d)
            u, s = opt.update(g, s, p)
            u = jax.tree_util.tree_map(lambda x: (lr * x).astype(x.dtype), u)
            return (optax.apply_updates(p, u), s), None

        def block(carry, b):
            ks = b * every + jnp.arange(every, dtype=jnp.int32)
            carry, _ = jax.lax.scan(one_step, carry, ks)
            return carry, observe(carry[0])

        first = observe(params)
        (p_end, _), later = jax.lax.scan(
            block, (params, opt.init(params)), jnp.arange(n_blocks, dtype=jnp.int32)
        )
        loss_t, recs = jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), first, later
        )
        finite = jnp.all(jnp.isfinite(loss_t))
        for leaf in jax.tree_util.tree_leaves(p_end):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        result = RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite)  # pyright: ignore[reportArgumentType]
        return Training(
            steps=jnp.arange(n_blocks + 1, dtype=jnp.int32) * every,
            loss=loss_t,
            records=recs,
            model=eqx.combine(p_end, fixed),
            result=result,
        )

    if not batch:
        return one(params, frozen, lr, hyper)
    lr_axis = 0 if jnp.ndim(lr) else None
    hyper_axis = None if hyper is None else 0
    return jax.vmap(one, in_axes=(0, 0, lr_axis, hyper_axis))(params, frozen, lr, hyper)
