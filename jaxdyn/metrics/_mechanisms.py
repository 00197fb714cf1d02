r"""Measurements of the three feature-learning mechanisms of Xu & Ziyin (alignment,
disalignment, rescaling) on any trajectory of any model: per-layer alignment of consecutive
layers, directional change vs norm ratio, per-layer relative change and the NTK ratio.

A layer is a weight array in forward order (`layer_weights`): `(w, a)` for `SingleNeuron`,
`(W1, W2)` for `TwoLayerLinear`/`TwoLayer`, `layers` for `DeepLinear`/`MLP` (their
multipliers are not layers), every floating-point array leaf for other models. Models may
carry leading (time, batch) axes as for the other metrics (`Trajectory.model`, time first).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._models import MLP, DeepLinear, SingleNeuron, TwoLayer, TwoLayerLinear
from ._metrics import _lead_axes, ntk

__all__ = [
    "directional_change",
    "layer_alignment",
    "layer_change",
    "layer_weights",
    "norm_ratio",
    "ntk_ratio",
]


def layer_weights(model) -> tuple[Array, ...]:
    """The weight arrays of `model` in forward (layer) order, leading axes kept.

    **Arguments:**

    - `model`: a jaxdyn model (possibly with leading time/batch axes) or any Equinox model
      (then every floating-point array leaf, in pytree order).

    **Returns:**

    A tuple of arrays: `(w, a)` for `SingleNeuron`, `(W1, W2)` for `TwoLayerLinear` and
    `TwoLayer`, `layers` for `DeepLinear` and `MLP`.
    """
    if isinstance(model, SingleNeuron):
        return (model.w, model.a)
    if isinstance(model, TwoLayerLinear | TwoLayer):
        return (model.W1, model.W2)
    if isinstance(model, DeepLinear | MLP):
        return tuple(model.layers)
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    if not leaves:
        raise ValueError("`model` has no floating-point array parameters.")
    return tuple(leaves)


def _member_ndims(model) -> tuple[int, ...]:
    lead = _lead_axes(model)
    return tuple(jnp.ndim(W) - lead for W in layer_weights(model))


def _pairs(model0, model_t):
    """Per layer: (W0 expanded to broadcast against Wt, Wt, member axes of Wt)."""
    W0s, Wts = layer_weights(model0), layer_weights(model_t)
    if type(model0) is not type(model_t) or len(W0s) != len(Wts):
        raise ValueError(
            "`model0` and `model_t` must be models of the same type and structure, got "
            f"{type(model0).__name__} and {type(model_t).__name__}."
        )
    lead0 = _lead_axes(model0)
    out = []
    for l, (W0, Wt) in enumerate(zip(W0s, Wts, strict=True)):
        W0, Wt = jnp.asarray(W0), jnp.asarray(Wt)
        k = W0.ndim - lead0  # member ndim
        extra = Wt.ndim - W0.ndim
        if (
            extra < 0
            or Wt.shape[:lead0] != W0.shape[:lead0]
            or Wt.shape[Wt.ndim - k :] != W0.shape[lead0:]
        ):
            raise ValueError(
                f"`model_t` layer {l} of shape {Wt.shape} does not extend `model0`'s "
                f"{W0.shape} by leading (time) axes after model0's own."
            )
        W0e = W0.reshape(W0.shape[:lead0] + (1,) * extra + W0.shape[lead0:])
        out.append((W0e, Wt, tuple(range(Wt.ndim - k, Wt.ndim))))
    return out


def _stack(xs) -> Array:
    return jnp.stack(jnp.broadcast_arrays(*xs), axis=-1)


def _per_layer(model0, model_t, fn: Callable[[Array, Array, tuple[int, ...]], Array]) -> Array:
    """`fn(W0, Wt, axes)` for every layer pair of `_pairs`, stacked on a last layer axis."""
    return _stack([fn(W0, Wt, ax) for W0, Wt, ax in _pairs(model0, model_t)])


def norm_ratio(model0, model_t) -> Float[Array, "*lead L"]:
    r"""Per-layer norm ratio $\|W_l(t)\|_F/\|W_l(0)\|_F$: the **rescaling** part of a layer's
    change (≠ 1 while the direction is kept: learning by rescaling).

    **Arguments:**

    - `model0`: the reference (initial) model, possibly with leading batch axes `B…`.
    - `model_t`: the same model with leading axes `(B…, T…)` (e.g. `Trajectory.model`).

    **Returns:**

    Array `(B…, T…, L)`, one entry per layer (`layer_weights` order).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025), abstract and §1 (learning by alignment, disalignment
        and rescaling; none present in the kernel regime). Which quantity measures which
        mechanism is our reading (jaxdyn notes `xu_ziyin_and_spectral.md` §A.4–A.5, [R]),
        checked against the exact solution in `tests/test_mechanisms.py`.
    """
    return _per_layer(
        model0, model_t, lambda W0, Wt, ax: jnp.sqrt(jnp.sum(Wt * Wt, ax) / jnp.sum(W0 * W0, ax))
    )


def directional_change(model0, model_t) -> Float[Array, "*lead L"]:
    r"""Per-layer directional change $1 - \cos(W_l(t), W_l(0))$, with the Frobenius inner
    product: the **rotation** part of a layer's change (≈ 0 under pure rescaling; > 0 under
    alignment or disalignment).

    **Arguments:**

    - `model0`: the reference (initial) model, possibly with leading batch axes `B…`.
    - `model_t`: the same model with leading axes `(B…, T…)`.

    **Returns:**

    Array `(B…, T…, L)` in [0, 2].

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025), abstract and §1 (learning by alignment, disalignment
        and rescaling; none present in the kernel regime). Which quantity measures which
        mechanism is our reading (jaxdyn notes `xu_ziyin_and_spectral.md` §A.4–A.5, [R]),
        checked against the exact solution in `tests/test_mechanisms.py`.
    """

    def cos_gap(W0, Wt, ax):
        num = jnp.sum(W0 * Wt, ax)
        den = jnp.sqrt(jnp.sum(W0 * W0, ax) * jnp.sum(Wt * Wt, ax))
        return 1.0 - num / den

    return _per_layer(model0, model_t, cos_gap)


def layer_change(model0, model_t) -> Float[Array, "*lead L"]:
    r"""Per-layer relative change $\|W_l(t) - W_l(0)\|_F/\|W_l(0)\|_F$.

    Reported next to the NTK ratio because the NTK can stay put while one layer moves by
    Θ(1) (an imbalanced net that is linear in its fast layer).

    **Arguments:**

    - `model0`: the reference (initial) model, possibly with leading batch axes `B…`.
    - `model_t`: the same model with leading axes `(B…, T…)`.

    **Returns:**

    Array `(B…, T…, L)`.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025), abstract and §1 (learning by alignment, disalignment
        and rescaling; none present in the kernel regime). Which quantity measures which
        mechanism is our reading (jaxdyn notes `xu_ziyin_and_spectral.md` §A.4–A.5, [R]),
        checked against the exact solution in `tests/test_mechanisms.py`.
    """

    def relative(W0, Wt, ax):
        diff = Wt - W0
        return jnp.sqrt(jnp.sum(diff * diff, ax) / jnp.sum(W0 * W0, ax))

    return _per_layer(model0, model_t, relative)


def _as_matrix(W, k):
    """A member array of ndim k (0, 1 or 2) as a matrix: scalar → (1, 1), vector → (1, d)."""
    if k == 0:
        return W[..., None, None]
    if k == 1:
        return W[..., None, :]
    return W


def _spectral(M):
    """Largest singular value over the last two axes, from the smaller Gram matrix (an SVD
    of a tall `(T, H, 1)` stack would allocate `H × H` per member)."""
    m, n = M.shape[-2], M.shape[-1]
    if min(m, n) == 1:
        return jnp.sqrt(jnp.sum(M * M, axis=(-2, -1)))
    Mt = jnp.swapaxes(M, -1, -2)
    G = Mt @ M if n <= m else M @ Mt
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(G)[..., -1], 0.0))


def layer_alignment(model) -> Float[Array, "*lead Lm1"]:
    r"""Alignment of consecutive layers,
    $\|W_{l+1}W_l\|_*/(\|W_{l+1}\|_*\|W_l\|_*) \in [0, 1]$ ($\|\cdot\|_*$ the spectral norm),
    for $l = 1, …, L - 1$.

    1 when the top input direction of $W_{l+1}$ is the top output direction of $W_l$. For a
    two-layer net with one input and one output (the Xu–Ziyin model `MLP((W, u[None]))`
    on 1-D data) it is $|\cos\angle(u, Wa)|$: it grows under learning by alignment and falls
    under learning by disalignment. Vectors count as one-row matrices and scalars as 1×1
    (a `SingleNeuron` is always aligned).

    **Arguments:**

    - `model`: a model with at least two layers (`layer_weights`), possibly with leading
      (time, batch) axes.

    **Returns:**

    Array `(…, L − 1)`.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025), abstract and §1 (learning by alignment, disalignment
        and rescaling; none present in the kernel regime). Which quantity measures which
        mechanism is our reading (jaxdyn notes `xu_ziyin_and_spectral.md` §A.4–A.5, [R]),
        checked against the exact solution in `tests/test_mechanisms.py`.
    """
    Ws = layer_weights(model)
    ks = _member_ndims(model)
    if len(Ws) < 2:
        raise ValueError("`model` must have at least two layers for a layer alignment.")
    if any(k > 2 for k in ks):
        raise ValueError(f"`model`: layers must be scalars, vectors or matrices, got ndims {ks}.")
    mats = [_as_matrix(jnp.asarray(W), k) for W, k in zip(Ws, ks, strict=True)]
    vals = []
    for l in range(len(mats) - 1):
        lo, hi = mats[l], mats[l + 1]
        if hi.shape[-1] != lo.shape[-2]:
            raise ValueError(
                f"`model`: layer {l + 1} of shape {hi.shape} cannot follow layer {l} of shape "
                f"{lo.shape}."
            )
        vals.append(_spectral(hi @ lo) / (_spectral(hi) * _spectral(lo)))
    return _stack(vals)


def ntk_ratio(model0, model_t, X: Float[ArrayLike, "n d"], lr=None) -> Float[Array, "*lead"]:
    r"""NTK ratio $K(t)/K(0)$, as $\operatorname{tr}K(t)/\operatorname{tr}K(0)$ of the
    empirical NTK `jd.metrics.ntk` on inputs `X` (the ratio of the scalar kernels for
    one-dimensional data).

    > 1: the kernel grows (alignment); < 1: it shrinks (disalignment); ≈ 1: kernel regime.

    **Arguments:**

    - `model0`: the reference (initial) model, possibly with leading batch axes `B…`.
    - `model_t`: the same model with leading axes `(B…, T…)`.
    - `X`: inputs `(n, d)`.
    - `lr`: as for `jd.metrics.ntk` (scalar or unbatched per-leaf pytree; the kernel that
      drives the flow with these rates).

    **Returns:**

    Array `(B…, T…)`.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025), abstract and §1 (learning by alignment, disalignment
        and rescaling; none present in the kernel regime). Which quantity measures which
        mechanism is our reading (jaxdyn notes `xu_ziyin_and_spectral.md` §A.4–A.5, [R]),
        checked against the exact solution in `tests/test_mechanisms.py`.
    """
    _pairs(model0, model_t)  # structure check
    tr = lambda K: jnp.trace(K, axis1=-2, axis2=-1)  # noqa: E731
    K0 = tr(ntk(model0, X, lr))
    Kt = tr(ntk(model_t, X, lr))
    extra = Kt.ndim - K0.ndim
    return Kt / K0.reshape(K0.shape + (1,) * extra)
