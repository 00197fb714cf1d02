"""Imbalance α and output scale τ applied to any Equinox model (Kunin et al. 2024 conventions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Real

from .._checks import is_concrete
from .._models import MLP, DeepLinear, SingleNeuron, TwoLayer, TwoLayerLinear

__all__ = ["Scaled", "rescale", "layer_ends"]

#: `first=` / `last=`: `"auto"` (the model's own first / last layer), `None` (leave alone), or
#: a `where` function as for `eqx.tree_at`: `where(model)` returns one node or a tuple of nodes
#: (arrays or whole sub-modules); every floating-point array under them is rescaled.
Where = Literal["auto"] | Callable[[Any], Any] | None


class Scaled(eqx.Module):
    r"""A model whose output is multiplied by a fixed scale: $\tilde f(x) = \tau\, f(x)$.

    The scale is an array field (so it can be traced and batched: a sweep over τ is one
    compiled program), but it is not a parameter: `__call__` stops its gradient and
    `jaxdyn.train` leaves it out of the trained leaves (so weight decay never touches it).

    **Fields:**

    - `model`: the wrapped model; `Scaled(model, tau)(*args, **kwargs)` is
      `tau * model(*args, **kwargs)`, so models taking a key or a sequence work too.
    - `scale`: the output multiplier τ (a scalar array).
    """

    model: PyTree
    scale: Float[Array, ""]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        return jax.lax.stop_gradient(self.scale).astype(jnp.result_type(out)) * out


def layer_ends(model: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """The `where` functions selecting the first and the last layer of a built-in model (what
    `rescale(..., first="auto", last="auto")` uses).

    **Arguments:**

    - `model`: a `jd.SingleNeuron` (first `w`, last `a`), `jd.TwoLayerLinear` / `jd.TwoLayer`
      (`W1`, `W2`), `jd.DeepLinear` / `jd.MLP` (`layers[0]`, `layers[-1]`) or an
      `eqx.nn.MLP` (its first and last `eqx.nn.Linear`, weight and bias), or a `Scaled` of one.

    **Returns:**

    `(first, last)`: two functions `model -> node`, as `eqx.tree_at` takes them.

    **Raises:**

    `TypeError` for any other model: pass `first=` / `last=` to `rescale` yourself.
    """
    if isinstance(model, Scaled):
        f, ll = layer_ends(model.model)
        return (lambda m: f(m.model)), (lambda m: ll(m.model))
    if isinstance(model, SingleNeuron):
        return (lambda m: m.w), (lambda m: m.a)
    if isinstance(model, TwoLayerLinear | TwoLayer):
        return (lambda m: m.W1), (lambda m: m.W2)
    if isinstance(model, DeepLinear | MLP):
        return (lambda m: m.layers[0]), (lambda m: m.layers[-1])
    if isinstance(model, eqx.nn.MLP):
        return (lambda m: m.layers[0]), (lambda m: m.layers[-1])
    raise TypeError(
        f"`first`/`last`='auto' knows jd.SingleNeuron, jd.TwoLayerLinear, jd.TwoLayer, "
        f"jd.DeepLinear, jd.MLP and eqx.nn.MLP, not {type(model).__name__}: pass "
        "`first=lambda m: m.<first layer>` and `last=lambda m: m.<last layer>` (or `last=None` "
        "for a network with normalisation layers)."
    )


def _check_positive(name: str, v) -> None:
    if not is_concrete(v):
        return
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != ():
        raise ValueError(
            f"`{name}` must be a scalar (vmap over it for a batch), got shape {arr.shape}."
        )
    if not (np.isfinite(arr) and arr > 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {v!r}.")


def _positive_or_nan(v, dtype) -> Array:
    # `v` as `dtype`. A traced value cannot raise `_check_positive`'s error, so one that is
    # not a finite number > 0 becomes NaN: a bad point of a vmapped sweep is NaN (and
    # `jd.train` marks it `nonfinite`), never a plausible wrong number.
    x = jnp.asarray(v, dtype)
    if is_concrete(v):
        return x
    r = jnp.asarray(v)
    return jnp.where(jnp.isfinite(r) & (r > 0), x, jnp.nan)


def _times(where: Callable[[Any], Any], model: Any, factor) -> Any:
    def scale_node(node):
        return jax.tree_util.tree_map(
            lambda x: (x * factor).astype(x.dtype) if eqx.is_inexact_array(x) else x, node
        )

    return eqx.tree_at(where, model, replace_fn=scale_node)


def rescale(
    model: Any,
    *,
    alpha: Real[ArrayLike, ""] = 1.0,
    tau: Real[ArrayLike, ""] = 1.0,
    lr: Real[ArrayLike, ""] = 1.0,
    first: Where = "auto",
    last: Where = "auto",
) -> tuple[Scaled, Float[Array, ""]]:
    r"""Apply the imbalance α and the output scale τ of Kunin et al. 2024 to any Equinox model.

    - **Imbalance α** divides the first layer's initial weights by α and (for networks without
      normalisation layers) multiplies the last layer's by α, so α > 1 is *upstream* (the
      first layer learns relatively faster) and α < 1 *downstream*. For a bias-free two-layer
      net this maps the per-unit imbalance $a_k^2 - \|w_k\|^2$ to
      $\alpha^2 a_k^2 - \|w_k\|^2/\alpha^2$ at an unchanged function.
    - **Scale τ** multiplies the model's output (the logits): the result is
      `Scaled(model, tau)`, $\tilde f = \tau f$, and the learning rate is divided by τ²
      (Kumar et al. 2023): the second return value is `lr / tau**2`, to pass on as the
      optimizer's learning rate (e.g. `jd.train(..., lr=...)`). Large τ is lazy, small τ rich.

    Every argument may be a traced scalar, so `jax.vmap(lambda a, t: rescale(m, alpha=a,
    tau=t))(alphas, taus)` builds a whole (α, τ) batch in one call; the model structure (and
    hence the compiled training program) is the same for every α and τ, including 1.

    **Arguments:**

    - `model`: any Equinox model.
    - `alpha`: the imbalance α > 0 (1: unchanged).
    - `tau`: the output scale τ > 0 (1: unchanged).
    - `lr`: the base learning rate η₀ (returned as η₀/τ²).
    - `first`: which leaves are the "first layer": `"auto"` (see `layer_ends`: the first
      weight matrix of the built-in models and of `eqx.nn.MLP`), `None` (no division), or a
      `where` function as for `eqx.tree_at`, e.g. `lambda m: (m.token_embed, m.pos_embed)`;
      every floating-point array under the selected nodes is divided by α.
    - `last`: the same for the last layer, multiplied by α. Pass `last=None` for networks with
      normalisation layers (the paper rescales only the first layer there).

    **Returns:**

    `(scaled_model, lr_scaled)`: the rescaled model wrapped in `Scaled` with scale τ, and
    η₀/τ² (an array of the weights' dtype).

    **Raises:**

    `ValueError` naming `alpha`, `tau` or `lr` when a concrete value is not a finite number
    > 0 (a traced one gives NaN weights, scale or learning rate instead, so the point's
    training is marked `nonfinite`); `TypeError` for `"auto"` on a model `layer_ends` does
    not know.

    ```python
    model = jd.MLP((W1, W2), activation=jnp.square)
    model, lr = jd.init.rescale(model, alpha=10.0, tau=0.5, lr=1.0)  # W1/10, W2·10, out·0.5
    ```

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §6 and App. D.3 (α divides
        the first layer and multiplies the last, logits × τ and lr ÷ τ²); Kumar et al. 2023,
        *Grokking as the transition from lazy to rich training dynamics*, arXiv:2310.06110,
        §2 (output scale with lr ∝ 1/scale²).
    """
    for name, v in (("alpha", alpha), ("tau", tau), ("lr", lr)):
        _check_positive(name, v)
    if first == "auto" or last == "auto":
        auto_first, auto_last = layer_ends(model)
        first = auto_first if first == "auto" else first
        last = auto_last if last == "auto" else last
    leaves = [x for x in jax.tree_util.tree_leaves(model) if eqx.is_inexact_array(x)]
    if not leaves:
        raise ValueError("`model` has no floating-point array parameters to rescale.")
    dtype = jnp.result_type(*leaves)
    alpha_ = _positive_or_nan(alpha, dtype)
    tau_ = _positive_or_nan(tau, dtype)
    if first is not None:
        model = _times(first, model, 1 / alpha_)
    if last is not None:
        model = _times(last, model, alpha_)
    return Scaled(model, tau_), _positive_or_nan(lr, dtype) / tau_**2
