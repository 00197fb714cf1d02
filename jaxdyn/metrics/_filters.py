"""Smoothness of convolutional filters (Kunin et al. 2024, App. D.3) and activation-pattern
distances."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["LAPLACIAN", "activation_hamming", "filter_smoothness"]

#: The discrete Laplacian stencil of the smoothness score.
LAPLACIAN = ((-0.25, -0.5, -0.25), (-0.5, 2.0, -0.5), (-0.25, -0.5, -0.25))


def filter_smoothness(
    filters: Float[ArrayLike, "*batch kh kw"], mode: str = "valid"
) -> Float[Array, "*batch"]:
    r"""Roughness score of 2-D filters: $\|(w/\|w\|) \ast \Delta\|^2$ with the discrete
    Laplacian $\Delta = \begin{pmatrix} -0.25 & -0.5 & -0.25 \\ -0.5 & 2 & -0.5 \\
    -0.25 & -0.5 & -0.25 \end{pmatrix}$, per filter (lower is smoother).

    A constant filter scores 0; i.i.d. noise scores about
    $\sum \Delta_{ij}^2 = 5.25$ times the fraction of positions kept (`"valid"`:
    $(k_h-2)(k_w-2)/(k_h k_w)$). A filter of zeros scores 0.

    **Arguments:**

    - `filters`: filters with the two spatial axes last (e.g. a first convolution's weight
      `(out_channels, in_channels, kh, kw)`); every leading index is one filter. `kh, kw ≥ 3`.
    - `mode`: `"valid"` (the Laplacian at interior positions only, the default) or `"same"`
      (zero padding of one pixel: edges of a filter that does not decay to 0 count as rough).
      The paper does not say which; the same mode must be used to compare filters.

    **Returns:**

    The score per filter, shape `filters.shape[:-2]`.

    **Raises:**

    `ValueError` for fewer than two axes, spatial sizes below 3 or an unknown `mode`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, App. D.3 and Fig. 6b/Fig. 11
        (the smoothness score of the first-layer filters).
    """
    w = jnp.asarray(filters)
    if w.ndim < 2 or w.shape[-1] < 3 or w.shape[-2] < 3:
        raise ValueError(
            f"`filters` must have shape (..., kh, kw) with kh, kw >= 3, got {w.shape}."
        )
    if mode not in ("valid", "same"):
        raise ValueError(f"`mode` must be 'valid' or 'same', got {mode!r}.")
    norm = jnp.sqrt(jnp.sum(w * w, axis=(-2, -1), keepdims=True))
    w = w / jnp.where(norm > 0, norm, 1.0)
    if mode == "same":
        pad = [(0, 0)] * (w.ndim - 2) + [(1, 1), (1, 1)]
        w = jnp.pad(w, pad)
    kh, kw = w.shape[-2] - 2, w.shape[-1] - 2
    out = sum(
        c * w[..., i : i + kh, j : j + kw]
        for i, row in enumerate(LAPLACIAN)
        for j, c in enumerate(row)
    )
    return jnp.sum(out * out, axis=(-2, -1))


def activation_hamming(
    pre0: Float[ArrayLike, "*batch n h"], pre_t: Float[ArrayLike, "*batch n h"]
) -> Float[Array, "*batch"]:
    r"""Normalised Hamming distance between two activation patterns: the fraction of (sample,
    unit) pairs whose ReLU gate $\mathbb 1\{z > 0\}$ differs between pre-activations `pre0`
    and `pre_t`.

    **Arguments:**

    - `pre0`, `pre_t`: pre-activations of one layer on the same inputs, `(..., n, h)`
      (leading axes broadcast).

    **Returns:**

    The fraction in `[0, 1]` over the broadcast leading axes.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 6a and Fig. 10 (Hamming
        distance of activation patterns).
    """
    on0 = jnp.asarray(pre0) > 0
    on_t = jnp.asarray(pre_t) > 0
    return jnp.mean(on0 != on_t, axis=(-2, -1))
