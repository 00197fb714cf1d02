"""λ-balanced initialisation of two-layer linear networks (Dominé et al. 2024, §1 / A2)."""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Real

from .._checks import is_concrete
from .._models import TwoLayerLinear
from ..data._orthogonal import haar_orthogonal
from ._init import _check_positive_int, _check_scalars, _nan_where, mask_width, pad_width

__all__ = [
    "lambda_balanced",
    "lambda_balanced_admissible",
    "lambda_balanced_at_width",
    "lambda_balanced_converged",
    "match_det_sign",
    "split_singular_values",
    "weights_from_qqt",
]


def split_singular_values(
    s: Real[ArrayLike, "..."], lam: Real[ArrayLike, "..."]
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""Split product singular values `s` between the two layers at imbalance `lam`.

    $s_{2,1}^2 = (\sqrt{\lambda^2 + 4s^2} \pm \lambda)/2$, so that $s_2^2 - s_1^2 = \lambda$ and
    $s_1 s_2 = s$. The smaller of the two squares is computed as $s^2/\text{larger}$, so there
    is no cancellation for large $|\lambda|$.

    **Arguments:**

    - `s`: non-negative singular values of the product $W_2W_1$ (any shape).
    - `lam`: the imbalance λ (broadcasts with `s`).

    **Returns:**

    `(s1, s2)`, the singular values of the first and second layer; NaN where a traced `s` is
    negative or `s`/`lam` is not finite.

    **Raises:** `ValueError` naming the argument for such concrete values.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, Theorem 5.2 / Eq. (18).
    """
    s = jnp.asarray(s)
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(jnp.result_type(float))
    lam = jnp.asarray(lam, dtype=s.dtype)
    bad = _check_scalars(
        ("s", s, "non-negative and finite", jnp.isfinite(s) & (s >= 0)),
        ("lam", lam, "finite", jnp.isfinite(lam)),
    )
    q = jnp.sqrt(lam**2 + 4 * s**2)
    big = 0.5 * (q + jnp.abs(lam))
    small = jnp.where(big > 0, s**2 / jnp.where(big > 0, big, 1.0), 0.0)
    s2sq = jnp.where(lam >= 0, big, small)
    s1sq = jnp.where(lam >= 0, small, big)
    nan = jnp.asarray(jnp.nan, s.dtype)
    return jnp.where(bad, nan, jnp.sqrt(s1sq)), jnp.where(bad, nan, jnp.sqrt(s2sq))


def lambda_balanced(
    key: PRNGKeyArray,
    d: int,
    h: int,
    o: int,
    lam: Real[ArrayLike, ""],
    scale: Real[ArrayLike, ""],
    *,
    aligned_to: Float[ArrayLike, "o d"] | None = None,
    dtype: Any = None,
) -> TwoLayerLinear:
    r"""A two-layer linear network with $W_2^\top W_2 - W_1 W_1^\top = \lambda I_h$ exactly.

    Construction (Dominé et al. 2024, §3 / assumption A2; the authors' `get_lambda_balanced`):
    pick a target product $W_2 W_1 = U S V^\top$ with $m = \min(d, h, o)$ modes and a random
    orthogonal $R \in O(h)$, split $S$ between the layers with
    $S_{2,1}^2 = (\sqrt{\lambda^2 + 4S^2} \pm \lambda)/2$ (so $S_2^2 - S_1^2 = \lambda$,
    $S_1S_2 = S$) and set $W_1 = R\,[S_1 V^\top; \cdot]$, $W_2 = [U S_2, \cdot]\,R^\top$.

    The `h - m` hidden directions beyond the product's rank (only when `h > min(d, o)`) carry
    zero product but balanced Grams: $\sqrt{\lambda}$ times orthonormal output directions
    orthogonal to $U$ in $W_2$ when $\lambda > 0$, or $\sqrt{-\lambda}$ times orthonormal input
    directions orthogonal to $V$ in $W_1$ when $\lambda < 0$. By a rank argument this is
    possible exactly when the shapes admit it:

    - `h > d` needs `lam >= 0` (and `h <= o` unless `lam == 0`);
    - `h > o` needs `lam <= 0` (and `h <= d` unless `lam == 0`);
    - `h > max(d, o)` needs `lam == 0`.

    Narrow nets (`h < min(d, o)`) admit any λ; their product has rank `h`.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `d`, `h`, `o`: input, hidden and output widths (static Python ints).
    - `lam`: the imbalance λ (Python float or JAX scalar; may be traced).
    - `scale`: size of the product's singular values (Python float or JAX scalar; may be
      traced). Task-agnostic: $S = \text{scale}\cdot u_\alpha$, $u_\alpha \sim U(0.5, 1.5)$
      i.i.d.; task-aligned: $S = \text{scale}\cdot I$ (every mode starts at
      $a_\alpha(0) = \text{scale}$, as in `jaxdyn.exact.lambda_balanced_mode`).
    - `aligned_to`: optional task correlation $\tilde\Sigma_{yx}$ of shape `(o, d)`; when given,
      $U, V$ are its singular vectors (task-aligned init); otherwise they are Haar-random.
    - `dtype`: float dtype (default: JAX's default float, float64 under `jax_enable_x64`).

    **Returns:**

    A `jaxdyn.TwoLayerLinear` with `W1 (h, d)` and `W2 (o, h)`.

    Jittable and vmappable over `lam` and `scale`. For concrete values the checks below raise
    `ValueError`; for traced values (under `jit`/`vmap`) a member with an inadmissible `lam`,
    a negative `scale` or a non-finite `lam`/`scale` has all-NaN weights instead, so every
    number computed from it is NaN (never a plausible, unbalanced net), while the other
    members are exactly as if built one by one. To raise at run time instead, wrap the result:
    `eqx.error_if(m, ~jd.init.lambda_balanced_admissible(lam, h, d, o), "...")` (honours
    `EQX_ON_ERROR`); sweeps mark such points with `lambda_balanced_admissible`.

    **Raises:** `ValueError` naming the argument: `d`, `h`, `o` not positive ints; a concrete
    `lam` inadmissible for the shapes (above) or not finite; a concrete `scale` negative or not
    finite; `aligned_to` of the wrong shape.

    ??? cite "Reference"

        Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe, *From Lazy to Rich: Exact Learning
        Dynamics in Deep Linear Networks*, ICLR 2025, arXiv:2409.14623, assumption A2 and the
        initialisation of §3.
    """
    for name, v in (("d", d), ("h", h), ("o", o)):
        _check_positive_int(name, v)
    for name, v in (("lam", lam), ("scale", scale)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(v)}.")
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    lam_c = float(np.asarray(lam)) if is_concrete(lam) else None
    if lam_c is not None and _inadmissible(lam_c, h, d, o):
        if h > d and h > o:
            raise ValueError(
                f"λ-balance with h={h} > max(d={d}, o={o}) forces lam == 0, got lam={lam_c}."
            )
        if h > d:
            raise ValueError(
                f"λ-balance with h={h} > d={d} forces lam >= 0 (rank of W1 W1ᵀ ≤ d), "
                f"got lam={lam_c}."
            )
        raise ValueError(
            f"λ-balance with h={h} > o={o} forces lam <= 0 (rank of W2ᵀ W2 ≤ o), got lam={lam_c}."
        )
    if is_concrete(scale) and not float(np.asarray(scale)) >= 0:
        raise ValueError(f"`scale` must be non-negative, got {scale!r}.")
    if aligned_to is not None:
        aligned_to = jnp.asarray(aligned_to, dtype)
        if aligned_to.shape != (o, d):
            raise ValueError(
                f"`aligned_to` must have shape (o, d) = {(o, d)}, got {aligned_to.shape}."
            )
    lam = jnp.asarray(lam, dtype)
    scale = jnp.asarray(scale, dtype)
    bad = _check_scalars(
        ("lam", lam, "finite", jnp.isfinite(lam)),
        ("scale", scale, "finite", jnp.isfinite(scale)),
    )
    # traced values: the same checks, as a NaN mark on the member (see Returns)
    bad = bad | _inadmissible(lam, h, d, o) | ~(scale >= 0)
    return _nan_where(bad, _init(key, lam, scale, aligned_to, d=d, h=h, o=o, dtype=dtype))


@partial(jax.jit, static_argnames=("d", "h", "o", "dtype"))
def _init(key, lam, scale, aligned_to, *, d, h, o, dtype) -> TwoLayerLinear:
    lam = jnp.asarray(lam, dtype)
    scale = jnp.asarray(scale, dtype)
    m = min(d, h, o)
    e = h - m
    kR, kU, kV, kS = jax.random.split(key, 4)

    if aligned_to is not None:
        Ufull, _, Vt = jnp.linalg.svd(aligned_to, full_matrices=True)
        Vfull = Vt.T
        S = scale * jnp.ones((m,), dtype)
    else:
        Ufull = haar_orthogonal(kU, o, dtype)
        Vfull = haar_orthogonal(kV, d, dtype)
        u = jax.random.uniform(kS, (m,), dtype, 0.5, 1.5)
        S = scale * jnp.sort(u)[::-1]
    R = haar_orthogonal(kR, h, dtype)

    S1, S2 = split_singular_values(S, lam)
    W1_core = S1[:, None] * Vfull[:, :m].T  # (m, d)
    W2_core = Ufull[:, :m] * S2[None, :]  # (o, m)
    if e > 0:
        # Extra hidden directions: zero product, Grams balanced by sqrt(|λ|) isometries into the
        # unused output (λ > 0) or input (λ < 0) directions; zero-padded where dims run out
        # (admissible only at λ = 0, checked above).
        n_out = min(e, o - m)
        n_in = min(e, d - m)
        ext2 = jnp.zeros((o, e), dtype)
        ext1 = jnp.zeros((e, d), dtype)
        if n_out > 0:
            ext2 = ext2.at[:, :n_out].set(Ufull[:, m : m + n_out])
        if n_in > 0:
            ext1 = ext1.at[:n_in, :].set(Vfull[:, m : m + n_in].T)
        W2_core = jnp.concatenate([W2_core, jnp.sqrt(jnp.maximum(lam, 0.0)) * ext2], axis=1)
        W1_core = jnp.concatenate([W1_core, jnp.sqrt(jnp.maximum(-lam, 0.0)) * ext1], axis=0)
    W1 = R @ W1_core
    W2 = W2_core @ R.T
    return TwoLayerLinear(W1, W2)


def lambda_balanced_admissible(
    lam: Real[ArrayLike, "..."], width: Int[ArrayLike, "..."], d: int, o: int
) -> Bool[Array, "..."]:
    r"""Whether a λ-balanced two-layer linear net ($W_2^\top W_2 - W_1W_1^\top = \lambda I_h$)
    exists at hidden width `width` for input/output dimensions `d`, `o`.

    By a rank argument ($W_1W_1^\top$ has rank ≤ d, $W_2^\top W_2$ rank ≤ o): `width > d` needs
    λ ≥ 0, `width > o` needs λ ≤ 0 (so `width > max(d, o)` needs λ = 0); widths < 1 and
    non-finite λ are not admissible. These are the cases `lambda_balanced` raises
    `ValueError` for; this form is traceable, for sweeps that mark such points
    `jd.RESULTS.inadmissible_init`.

    **Arguments:**

    - `lam`: the imbalance λ (may be traced, any shape).
    - `width`: hidden width(s), broadcasting with `lam` (may be traced).
    - `d`, `o`: input and output dimensions.

    **Returns:**

    A boolean array of the broadcast shape.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, assumption A2 (λ-balance).
    """
    lam = jnp.asarray(lam)
    width = jnp.asarray(width)
    finite = jnp.isfinite(lam) if jnp.issubdtype(lam.dtype, jnp.inexact) else True
    return ~_inadmissible(lam, width, d, o) & (width >= 1) & finite


def _inadmissible(lam, width, d: int, o: int):
    # The rank obstruction to λ-balance (NumPy, JAX or Python scalars alike).
    return ((width > d) & (lam < 0)) | ((width > o) & (lam > 0))


def lambda_balanced_at_width(
    key: PRNGKeyArray,
    lam: Real[ArrayLike, ""],
    scale: Real[ArrayLike, ""],
    width: Int[ArrayLike, ""],
    *,
    d: int,
    o: int,
    max_width: int,
    aligned_to: Float[ArrayLike, "o d"] | None = None,
    inadmissible: str = "zero",
) -> TwoLayerLinear:
    r"""A λ-balanced `TwoLayerLinear` of (possibly traced) hidden width `width`, embedded at
    `max_width` with zero extra units, so that one compiled program serves every width of a
    sweep.

    The init of every static width 1 … `max_width` is built (`lambda_balanced`), padded with
    zero units (`pad_width`), the one matching `width` is selected and the units ≥ `width`
    masked (`mask_width`). Zero units stay zero under gradient flow.

    **Arguments:**

    - `key`: a JAX PRNG key (the same for every width).
    - `lam`, `scale`, `aligned_to`: as for `lambda_balanced`.
    - `width`: number of active hidden units, 1 … `max_width` (may be traced).
    - `d`, `o`, `max_width`: input, output and embedding widths (static Python ints).
    - `inadmissible`: what a traced member gets when no λ-balanced net exists for its
      (λ, width) (see `lambda_balanced_admissible`) or `width` is outside 1 … `max_width`:
      `"zero"` (default) the all-zero net, or `"nan"` all-NaN weights. Neither is a plausible
      λ-balanced net: the zero net is a saddle (it never learns, its balance error is |λ| and
      its NTK is zero, so kernel distances are NaN). The zero net is finite, so a stacked
      solve of the whole batch (`jd.gradient_flow(batch="stacked")`, whose shared step
      control a NaN member would stall) is unaffected; mark such points with
      `lambda_balanced_admissible` (`jd.RESULTS.inadmissible_init`).

    **Returns:**

    A `TwoLayerLinear` with `W1 (max_width, d)`, `W2 (o, max_width)`. A traced negative or
    non-finite `scale`, or non-finite `lam`, gives all-NaN weights (as `lambda_balanced`).
    Valid members are exactly as if built one by one.

    **Raises:** `ValueError` naming the argument for concrete values: `max_width` not a
    positive int, `width` outside 1 … `max_width`, (λ, width) inadmissible, and the checks of
    `lambda_balanced`.
    """
    _check_positive_int("max_width", max_width)
    if inadmissible not in ("zero", "nan"):
        raise ValueError(f"`inadmissible` must be 'zero' or 'nan', got {inadmissible!r}.")
    if jnp.ndim(width) != 0:
        raise ValueError(f"`width` must be a scalar, got shape {jnp.shape(width)}.")
    width = jnp.asarray(width)
    if is_concrete(width) and not 1 <= int(width) <= max_width:
        raise ValueError(f"`width` must be in [1, {max_width}], got {int(width)}.")
    if is_concrete(lam, width):
        # concrete (λ, width): lambda_balanced raises its own message if inadmissible
        lambda_balanced(key, d, int(width), o, lam, scale, aligned_to=aligned_to)
    W1 = jnp.zeros((max_width, d))
    W2 = jnp.zeros((o, max_width))
    for h in range(1, max_width + 1):
        try:
            m = lambda_balanced(key, d, h, o, lam, scale, aligned_to=aligned_to)
        except ValueError:  # concrete λ inadmissible at this width: never selected validly
            continue
        m = pad_width(m, max_width)
        W1 = jnp.where(width == h, m.W1, W1)
        W2 = jnp.where(width == h, m.W2, W2)
    out = mask_width(TwoLayerLinear(W1, W2), jnp.clip(width, 1, max_width))
    lam_a, scale_a = jnp.asarray(lam), jnp.asarray(scale)
    invalid = ~lambda_balanced_admissible(lam_a, width, d, o) | (width > max_width)
    if inadmissible == "nan":
        out = _nan_where(invalid, out)
    else:
        out = jax.tree_util.tree_map(
            lambda x: jnp.where(invalid, jnp.zeros((), x.dtype), x) if eqx.is_array(x) else x,
            out,
        )
    # bad values (not a shape obstruction) are NaN, masked units included
    return _nan_where(~jnp.isfinite(lam_a) | ~jnp.isfinite(scale_a) | ~(scale_a >= 0), out)


def match_det_sign(
    model: TwoLayerLinear, Syx: Float[ArrayLike, "o d"], apply: Bool[ArrayLike, ""] = True
) -> TwoLayerLinear:
    r"""Reflect the first layer, $W_1 \to W_1(I - 2e_1e_1^\top)$, where `apply` holds and
    $\mathrm{sign}\det W_2W_1 \neq \mathrm{sign}\det\tilde\Sigma_{yx}$ (square nets).

    The reflection keeps $W_1W_1^\top$, hence the λ-balance, and flips $\det W_2W_1$. A square
    net at λ = 0 whose initial determinant sign differs from the task's starts on the stable
    manifold of a saddle and never learns its weakest mode; after this it reaches the global
    minimum.

    **Arguments:**

    - `model`: a square `TwoLayerLinear` (`W2 @ W1` of shape `(d, d)`).
    - `Syx`: the task correlation $\tilde\Sigma_{yx}$, `(d, d)`.
    - `apply`: a boolean (may be traced) switching the reflection on.

    **Returns:**

    The `TwoLayerLinear`, reflected or unchanged.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, §4 (invertibility of B in
        Theorem 4.3).
    """
    if not isinstance(model, TwoLayerLinear):
        raise TypeError(f"`model` must be a TwoLayerLinear, got {type(model).__name__}")
    Syx = jnp.asarray(Syx)
    if (
        Syx.ndim < 2
        or Syx.shape[-1] != Syx.shape[-2]
        or model.W1.shape[-1] != Syx.shape[-1]
        or model.W2.shape[-2] != Syx.shape[-2]
    ):
        raise ValueError(
            f"`Syx` must be square and match W1's input and W2's output dimension, got "
            f"{Syx.shape} for W1 {model.W1.shape}, W2 {model.W2.shape}."
        )
    flip = apply & (jnp.sign(jnp.linalg.det(model.W2 @ model.W1)) != jnp.sign(jnp.linalg.det(Syx)))
    W1 = jnp.where(flip, model.W1.at[:, 0].multiply(-1.0), model.W1)
    return TwoLayerLinear(W1, model.W2)


def lambda_balanced_converged(
    key: PRNGKeyArray, Syx: Real[ArrayLike, "..."], lam: Real[ArrayLike, ""]
) -> TwoLayerLinear:
    r"""A λ-balanced square net at the global minimum of the task, aligned with it:
    $W_2W_1 = \tilde\Sigma_{yx}$ exactly, $W_1 = R S_1\tilde V^\top$, $W_2 = \tilde U S_2 R^\top$
    with $\tilde\Sigma_{yx} = \tilde U\tilde S\tilde V^\top$, $S_{1,2}$ from
    `split_singular_values` and $R$ Haar-random (`jd.data.haar_orthogonal`). This is the
    $t\to\infty$ limit of gradient flow from any λ-balanced init (h = d = o).

    **Arguments:**

    - `key`: a JAX PRNG key for the hidden rotation $R$.
    - `Syx`: the task correlation, square `(d, d)`.
    - `lam`: the imbalance λ (may be traced).

    **Returns:**

    A `TwoLayerLinear` with `W1 (d, d)`, `W2 (d, d)`; all NaN for a traced non-finite `lam`
    or `Syx` (every λ is admissible for a square net).

    **Raises:** `ValueError` for a non-square `Syx`, or a concrete non-finite `lam`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, Theorem 5.2 / Eq. (18).
    """
    Syx = jnp.asarray(Syx)
    if Syx.ndim != 2 or Syx.shape[0] != Syx.shape[1]:
        raise ValueError(f"`Syx` must be square (d, d), got shape {Syx.shape}.")
    if jnp.ndim(lam) != 0:
        raise ValueError(f"`lam` must be a scalar, got shape {jnp.shape(lam)}.")
    U, s, Vt = jnp.linalg.svd(Syx)
    S1, S2 = split_singular_values(s, lam)
    Rot = haar_orthogonal(key, s.shape[0], Syx.dtype)
    return TwoLayerLinear(Rot @ (S1[:, None] * Vt), (U * S2[None, :]) @ Rot.T)


def weights_from_qqt(
    gram_in: Float[Array, "d d"],
    product: Float[Array, "o d"],
    gram_out: Float[Array, "o o"],
    h: int,
) -> TwoLayerLinear:
    r"""Weights, up to a hidden rotation, with the given
    $QQ^\top = [[W_1^\top W_1, (W_2W_1)^\top], [W_2W_1, W_2W_2^\top]]$: $Q = V\sqrt\Lambda$
    from the top-`h` eigenpairs of $QQ^\top$, $W_1 = Q_{:d}^\top$, $W_2 = Q_{d:}$.

    The exact solution depends on the initial weights only through $Q_0Q_0^\top$, so the
    weights returned follow the same trajectory of $W_2W_1$, $W_1^\top W_1$, $W_2W_2^\top$ and keep
    the λ-balance (used to chain exact solutions across task switches).

    **Arguments:**

    - `gram_in`, `product`, `gram_out`: the blocks $W_1^\top W_1$ `(d, d)`, $W_2W_1$ `(o, d)`,
      $W_2W_2^\top$ `(o, o)`.
    - `h`: the hidden width (static Python int, ≤ d + o).

    **Returns:**

    A `TwoLayerLinear` with `W1 (h, d)`, `W2 (o, h)`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, Theorem 4.3.
    """
    d, o = gram_in.shape[-1], gram_out.shape[-1]
    if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= d + o:
        raise ValueError(f"`h` must be a Python int in [1, d + o = {d + o}], got {h!r}.")
    P = jnp.block([[gram_in, product.T], [product, gram_out]])
    ev, evec = jnp.linalg.eigh(0.5 * (P + P.T))
    Q = evec[:, -h:] * jnp.sqrt(jnp.maximum(ev[-h:], 0.0))[None, :]
    return TwoLayerLinear(Q[:d].T, Q[d:])
