"""Initialisers with a prescribed imbalance / balance (`jd.init`).

All of them are pure functions of their arguments, jittable and `vmap`-able over the scalar
hyperparameters (δ, λ, scale), so a sweep builds its whole batch of models in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from .._checks import is_concrete
from .._models import SingleNeuron, TwoLayer, TwoLayerLinear

__all__ = [
    "single_neuron",
    "two_layer",
    "readout_from_imbalance",
    "interleave_pairs",
    "mask_width",
    "pad_width",
]


def _nan_where(bad, tree):
    """Every inexact array leaf of `tree` set to NaN where `bad` holds (broadcasting), else
    unchanged bit for bit: how an initialiser marks a traced member whose arguments break its
    assumptions, so that every number computed from it is NaN, never a plausible value."""
    bad = jnp.asarray(bad)

    def mark(x):
        if not eqx.is_inexact_array(x):
            return x
        b = bad.reshape(bad.shape + (1,) * max(x.ndim - bad.ndim, 0)) if bad.ndim else bad
        return jnp.where(b, jnp.asarray(jnp.nan, x.dtype), x)

    return jax.tree_util.tree_map(mark, tree)


def _check_positive_int(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"`{name}` must be a positive Python int, got {v!r}.")


def readout_from_imbalance(
    delta: Real[ArrayLike, "..."],
    r2: Real[ArrayLike, "..."],
    eta_a: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> Float[Array, "..."]:
    r"""The squared readout $a^2$ of a single neuron with imbalance
    $\eta_w a^2 - \eta_a\|w\|^2 = \delta$ (`jd.metrics.imbalance`) and $a^2\|w\|^2 = r^2$:
    $\eta_w a^2 = (\delta + \sqrt{\delta^2 + 4\eta_a\eta_w r^2})/2$, evaluated without
    cancellation for δ < 0.

    **Arguments:**

    - `delta`: the imbalance δ.
    - `r2`: $r^2 = \|a w\|^2$, the squared norm of the end-to-end map.
    - `eta_a`, `eta_w`: the layer learning rates the imbalance is measured with.

    **Returns:**

    $a^2$, broadcast over the arguments; NaN where a traced argument breaks the assumptions
    below.

    **Raises:** `ValueError` naming the argument when a concrete `r2` is negative, `eta_a` or
    `eta_w` is not positive, or any of them is not finite (for traced values those entries
    are NaN instead).

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 (the conserved quantity δ and
        the initialisation it parametrises).
    """
    delta, r2, eta_a, eta_w = (jnp.asarray(v) for v in (delta, r2, eta_a, eta_w))
    bad = _check_scalars(
        ("delta", delta, "finite", jnp.isfinite(delta)),
        ("r2", r2, "non-negative and finite", jnp.isfinite(r2) & (r2 >= 0)),
        ("eta_a", eta_a, "positive and finite", jnp.isfinite(eta_a) & (eta_a > 0)),
        ("eta_w", eta_w, "positive and finite", jnp.isfinite(eta_w) & (eta_w > 0)),
    )
    root = jnp.sqrt(delta**2 + 4 * eta_a * eta_w * r2)
    safe = jnp.where(root - delta > 0, root - delta, 1.0)
    plus = jnp.where(
        delta >= 0, delta + root, jnp.where(root - delta > 0, 4 * eta_a * eta_w * r2 / safe, 0.0)
    )
    out = plus / (2 * eta_w)
    return jnp.where(bad, jnp.asarray(jnp.nan, out.dtype), out)


def _check_scalars(*checks) -> Array:
    """For each `(name, value, what, ok)`: raise `ValueError` if `value` is concrete and `ok`
    fails anywhere; return the broadcast "some check failed" mask (for traced values)."""
    bad = jnp.asarray(False)
    for name, value, what, ok in checks:
        if is_concrete(value, ok) and not bool(np.all(np.asarray(ok))):
            v = np.asarray(value)
            shown = v.item() if v.ndim == 0 else v
            raise ValueError(f"`{name}` must be {what}, got {shown}.")
        bad = bad | ~ok
    return bad


def single_neuron(
    beta0: Real[ArrayLike, "..."],
    delta: Real[ArrayLike, ""],
    eta_a: Real[ArrayLike, ""] = 1.0,
    eta_w: Real[ArrayLike, ""] = 1.0,
    sign: Real[ArrayLike, ""] = 1.0,
) -> SingleNeuron:
    r"""A `SingleNeuron` with end-to-end map $a w = \beta_0$ and imbalance
    $\eta_w a^2 - \eta_a\|w\|^2 = \delta$ (Kunin et al. 2024, §3).

    **Arguments:**

    - `beta0`: the initial function $\beta_0 = a_0 w_0$, shape `(d,)`, non-zero unless δ > 0.
    - `delta`: the conserved imbalance (any real).
    - `eta_a`, `eta_w`: layer learning rates the imbalance is measured with.
    - `sign`: sign of $a_0$ (±1).

    $a_0 = \pm\sqrt{(\delta + \sqrt{\delta^2 + 4\eta_a\eta_w\|\beta_0\|^2})/(2\eta_w)}$,
    $w_0 = \beta_0 / a_0$.

    **Returns:**

    A `jaxdyn.SingleNeuron` `(a0, w0)`. Under `jit`/`vmap` a member whose traced arguments
    break the assumptions below is all NaN (so everything computed from it is NaN), while
    the other members are exactly as if built one by one.

    **Raises:** `ValueError` naming the argument for concrete values: `beta0 = 0` with
    `delta <= 0`, non-finite `beta0` or `delta`, `eta_a`/`eta_w` not positive and finite,
    `sign = 0`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3.
    """
    beta0 = jnp.asarray(beta0)
    if beta0.ndim != 1:
        raise ValueError(f"`beta0` must have shape (d,), got {beta0.shape}.")
    dtype = jnp.result_type(beta0, delta, float)
    beta0 = beta0.astype(dtype)
    delta = jnp.asarray(delta, dtype)
    sign = jnp.asarray(sign, dtype)
    for name, v in (("delta", delta), ("eta_a", eta_a), ("eta_w", eta_w), ("sign", sign)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(v)}.")
    nonzero = jnp.any(beta0 != 0)
    if is_concrete(beta0, delta) and float(delta) <= 0 and not bool(nonzero):
        raise ValueError("`beta0` must be non-zero when `delta` <= 0 (then a0 = 0 is undefined).")
    bad = _check_scalars(
        ("beta0", beta0, "finite", jnp.all(jnp.isfinite(beta0))),
        ("sign", sign, "±1 (non-zero)", sign != 0),
    )
    bad = bad | ((delta <= 0) & ~nonzero)
    a2 = readout_from_imbalance(delta, jnp.sum(beta0**2), eta_a, eta_w)
    a0 = jnp.sign(sign) * jnp.sqrt(a2)
    return _nan_where(bad, SingleNeuron(a0, beta0 / a0))


def two_layer(
    key: PRNGKeyArray,
    d: int,
    h: int,
    o: int = 1,
    scale: Real[ArrayLike, ""] = 1.0,
    imbalance: Real[ArrayLike, ""] = 0.0,
    activation: str | Callable = "relu",
    *,
    symmetric: bool = True,
) -> TwoLayer:
    r"""Bias-free two-layer net with every unit at overall scale `scale` and imbalance `imbalance`.

    Kunin et al. 2024, §5 (the authors' teacher–student set-up): unit `k` gets a random unit
    direction $\hat w_k$ and readout sign, and
    $w_k = \text{scale}\,\alpha\,\hat w_k$, $\|a_k\| = \text{scale}/\alpha$ with
    $\alpha = \sqrt{(\sqrt{4 + (\delta/\text{scale}^2)^2} - \delta/\text{scale}^2)/2}$,
    so that $\|a_k\|^2 - \|w_k\|^2 = \delta$ and $\|a_k\|\|w_k\| = \text{scale}^2$ exactly. δ > 0
    is "upstream" (large readout), δ < 0 "downstream". With `symmetric=True` (the authors'
    choice) units come in pairs with equal $w$ and opposite readouts, so $f \equiv 0$ at init
    (needs even `h`).

    **Arguments:**

    - `key`: a JAX PRNG key (unit directions and readout signs).
    - `d`, `h`, `o`: input, hidden and output widths (Python ints).
    - `scale`: the overall scale (> 0; may be traced).
    - `imbalance`: the per-unit imbalance δ (any real; may be traced).
    - `activation`: as for `jaxdyn.TwoLayer`.
    - `symmetric`: pair the units so that $f \equiv 0$ at init (needs even `h`). The pairs are
      `(k, k + h/2)`; `interleave_pairs` reorders them to `(2k, 2k + 1)`.

    **Returns:**

    `TwoLayer(W1 (h, d), W2 (o, h), activation)`. Under `jit`/`vmap` a member with a traced
    `scale` ≤ 0 or a non-finite `scale`/`imbalance` is all NaN; the other members are exactly
    as if built one by one.

    **Raises:** `ValueError` naming the argument for concrete values: `d`, `h`, `o` not
    positive ints, odd `h` with `symmetric=True`, `scale` ≤ 0, non-finite `scale` or
    `imbalance`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §5.
    """
    for name, v in (("d", d), ("h", h), ("o", o)):
        _check_positive_int(name, v)
    if symmetric and h % 2:
        raise ValueError(f"`h` must be even when symmetric=True, got h = {h}.")
    dtype = jnp.result_type(scale, imbalance, float)
    scale = jnp.asarray(scale, dtype)
    delta = jnp.asarray(imbalance, dtype)
    for name, v in (("scale", scale), ("imbalance", delta)):
        if v.ndim != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}.")
    if is_concrete(scale) and not float(scale) > 0:
        raise ValueError(f"`scale` must be positive, got {float(scale)}.")
    bad = _check_scalars(
        ("scale", scale, "finite", jnp.isfinite(scale)),
        ("imbalance", delta, "finite", jnp.isfinite(delta)),
    )
    bad = bad | ~(scale > 0)
    k1, k2 = jax.random.split(key)
    m = h // 2 if symmetric else h
    dirs = jax.random.normal(k1, (m, d), dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
    outs = jax.random.normal(k2, (o, m), dtype)
    outs = outs / jnp.linalg.norm(outs, axis=0, keepdims=True)
    r = delta / scale**2
    alpha = jnp.sqrt(_half_gap(r))
    W1 = scale * alpha * dirs
    W2 = (scale / alpha) * outs
    if symmetric:
        W1 = jnp.concatenate([W1, W1], axis=0)
        W2 = jnp.concatenate([W2, -W2], axis=1)
    return _nan_where(bad, TwoLayer(W1, W2, activation))


def _half_gap(r: Array) -> Array:
    # (sqrt(4 + r²) − r)/2 without cancellation for large positive r.
    root = jnp.sqrt(4 + r**2)
    return jnp.where(r <= 0, (root - r) / 2, 2 / (root + r))


def mask_width(model, width: Int[ArrayLike, ""]):
    r"""Zero every hidden unit with index ≥ `width` of a two-layer model built at a larger width.

    For bias-free nets whose activation has σ(0) = 0 (relu, leaky_relu, abs, linear, tanh, and
    linear nets) a unit with zero in- and out-weights gets zero gradient, so it stays exactly
    zero under gradient flow and the masked net follows the width-`width` net. `width` may be a
    traced integer: one compiled program serves every width of a sweep.

    **Arguments:**

    - `model`: a `TwoLayer` or `TwoLayerLinear` with `W1 (H, d)`, `W2 (o, H)`.
    - `width`: number of active units, 1 … H (may be traced).

    **Returns:**

    The model with units ≥ `width` set to zero (same shapes). A traced `width` outside
    [1, H] gives NaN weights (never a silently clipped width).

    **Raises:** `ValueError` if a concrete `width` is outside [1, H].
    """
    if not isinstance(model, TwoLayer | TwoLayerLinear):
        raise TypeError(
            f"`model` must be a TwoLayer or TwoLayerLinear, got {type(model).__name__}"
        )
    H = model.W1.shape[-2]
    if jnp.ndim(width) != 0:
        raise ValueError(f"`width` must be a scalar, got shape {jnp.shape(width)}.")
    if is_concrete(width) and not 1 <= int(np.asarray(width)) <= H:
        raise ValueError(f"`width` must be in [1, {H}], got {width}.")
    width = jnp.asarray(width)
    active = jnp.arange(H) < width
    W1 = jnp.where(active[:, None], model.W1, 0.0)
    W2 = jnp.where(active[None, :], model.W2, 0.0)
    out = eqx.tree_at(lambda m: (m.W1, m.W2), model, (W1, W2))
    return _nan_where((width < 1) | (width > H), out)


def pad_width(model, max_width: int):
    """Embed a two-layer model of width h in width `max_width` ≥ h with zero extra units.

    **Arguments:**

    - `model`: a `TwoLayer` or `TwoLayerLinear` with `W1 (h, d)`, `W2 (o, h)`.
    - `max_width`: the new width (≥ h).

    **Returns:**

    The same kind of model with `W1 (max_width, d)`, `W2 (o, max_width)`.
    """
    if not isinstance(model, TwoLayer | TwoLayerLinear):
        raise TypeError(
            f"`model` must be a TwoLayer or TwoLayerLinear, got {type(model).__name__}"
        )
    h = model.W1.shape[-2]
    _check_positive_int("max_width", max_width)
    if max_width < h:
        raise ValueError(f"`max_width` = {max_width} is smaller than the model's width {h}.")
    W1 = jnp.pad(model.W1, ((0, max_width - h), (0, 0)))
    W2 = jnp.pad(model.W2, ((0, 0), (0, max_width - h)))
    return eqx.tree_at(lambda m: (m.W1, m.W2), model, (W1, W2))


def interleave_pairs(model) -> TwoLayer:
    r"""Reorder the units of a symmetric `two_layer` init from pairs `(k, k + H/2)` to
    `(2k, 2k + 1)`, so that masking the first `width` units (`mask_width`) keeps whole pairs
    and the net stays $f \equiv 0$ at init for every even width.

    **Arguments:**

    - `model`: an unbatched `TwoLayer` with an even number `H` of units.

    **Returns:**

    The `TwoLayer` with permuted units (the same function).
    """
    if not isinstance(model, TwoLayer):
        raise TypeError(f"`model` must be a TwoLayer, got {type(model).__name__}")
    H = model.W1.shape[0]
    if H % 2:
        raise ValueError(f"`model` must have an even number of units, got {H}.")
    perm = jnp.stack([jnp.arange(H // 2), jnp.arange(H // 2) + H // 2], axis=1).reshape(-1)
    return TwoLayer(model.W1[perm], model.W2[:, perm], model.activation)
