"""λ-balanced initialisation of two-layer linear networks (Dominé et al. 2024, §1 / A2)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .models import TwoLayerLinear

__all__ = ["lambda_balanced", "split_singular_values"]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def split_singular_values(s, lam):
    r"""Split product singular values `s` between the two layers at imbalance `lam`.

    Returns `(s1, s2)` with $s_2^2 - s_1^2 = \lambda$ and $s_1 s_2 = s$, i.e.
    $s_{2,1}^2 = (\sqrt{\lambda^2 + 4s^2} \pm \lambda)/2$ (Dominé et al. 2024, Thm 5.2 /
    Eq. 18 as numbered in the ICLR version; verify). The smaller of the two squares is
    computed as $s^2/\text{larger}$, so there is no cancellation for large $|\lambda|$.
    `s` must be non-negative; `s` and `lam` broadcast.
    """
    s = jnp.asarray(s)
    lam = jnp.asarray(lam, dtype=s.dtype)
    q = jnp.sqrt(lam**2 + 4 * s**2)
    big = 0.5 * (q + jnp.abs(lam))
    small = jnp.where(big > 0, s**2 / jnp.where(big > 0, big, 1.0), 0.0)
    s2sq = jnp.where(lam >= 0, big, small)
    s1sq = jnp.where(lam >= 0, small, big)
    return jnp.sqrt(s1sq), jnp.sqrt(s2sq)


def _haar_orthogonal(key, n, dtype):
    """Haar-random orthogonal `(n, n)` matrix (QR of a Gaussian with the sign fix)."""
    if n == 0:
        return jnp.zeros((0, 0), dtype)
    A = jax.random.normal(key, (n, n), dtype)
    Q, R = jnp.linalg.qr(A)
    sign = jnp.where(jnp.diag(R) < 0, -1.0, 1.0).astype(dtype)
    return Q * sign[None, :]


def lambda_balanced(
    key: PRNGKeyArray,
    d: int,
    h: int,
    o: int,
    lam,
    scale,
    *,
    aligned_to=None,
    dtype=None,
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

    Jittable and vmappable over `lam` and `scale`; the admissibility check is done only when
    `lam` is concrete, raising `ValueError`.

    **References:** Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe, "From Lazy to Rich:
    Exact Learning Dynamics in Deep Linear Networks", ICLR 2025 (arXiv:2409.14623),
    assumption A2 and the initialisation of §3.
    """
    for name, v in (("d", d), ("h", h), ("o", o)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive Python int, got {v!r}.")
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    if _is_concrete(lam):
        lam_c = float(lam)
        if h > d and h > o and lam_c != 0:
            raise ValueError(
                f"λ-balance with h={h} > max(d={d}, o={o}) forces lam == 0, got lam={lam_c}."
            )
        if h > d and lam_c < 0:
            raise ValueError(
                f"λ-balance with h={h} > d={d} forces lam >= 0 (rank of W1 W1ᵀ ≤ d), "
                f"got lam={lam_c}."
            )
        if h > o and lam_c > 0:
            raise ValueError(
                f"λ-balance with h={h} > o={o} forces lam <= 0 (rank of W2ᵀ W2 ≤ o), "
                f"got lam={lam_c}."
            )
    if _is_concrete(scale) and not float(scale) >= 0:
        raise ValueError(f"`scale` must be non-negative, got {scale!r}.")
    if aligned_to is not None:
        aligned_to = jnp.asarray(aligned_to, dtype)
        if aligned_to.shape != (o, d):
            raise ValueError(
                f"`aligned_to` must have shape (o, d) = {(o, d)}, got {aligned_to.shape}."
            )
    lam = jnp.asarray(lam, dtype)
    scale = jnp.asarray(scale, dtype)
    return _init(key, lam, scale, aligned_to, d=d, h=h, o=o, dtype=dtype)


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
        Ufull = _haar_orthogonal(kU, o, dtype)
        Vfull = _haar_orthogonal(kV, d, dtype)
        u = jax.random.uniform(kS, (m,), dtype, 0.5, 1.5)
        S = scale * jnp.sort(u)[::-1]
    R = _haar_orthogonal(kR, h, dtype)

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
