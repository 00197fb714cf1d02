"""Haar-random orthogonal matrices and the sign-fixed QR factor every whitened task uses."""

from __future__ import annotations

from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["haar_orthogonal", "orthonormal_columns"]


def orthonormal_columns(A, *, fix_signs: bool = True):
    r"""The orthonormal factor $Q$ of the reduced QR decomposition $A = QR$, with its column
    signs fixed so that $\mathrm{diag}(R) \geq 0$ when `fix_signs` (the convention that makes
    $Q$ Haar-distributed for Gaussian $A$; Mezzadri 2007).

    Works on NumPy arrays (returns NumPy, LAPACK's QR) and on JAX arrays (returns JAX, traceable),
    so the NumPy data makers and the JAX initialisers share one implementation.

    **Arguments:**

    - `A`: a `(n, m)` NumPy or JAX array with `n >= m`.
    - `fix_signs`: multiply column `j` of $Q$ by $\mathrm{sign}(R_{jj})$ (default); `False`
      returns LAPACK's raw factor.

    **Returns:**

    $Q$ of shape `(n, m)`, of the same array kind and dtype as `A`.
    """
    xp = np if isinstance(A, np.ndarray) else jnp
    Q, R = xp.linalg.qr(A)
    if not fix_signs:
        return Q
    sign = xp.where(xp.diagonal(R) < 0, -1.0, 1.0).astype(Q.dtype)
    return Q * sign[None, :]


@overload
def haar_orthogonal(
    key: np.random.Generator, n: int, dtype: Any = None
) -> Float[np.ndarray, "n n"]: ...


@overload
def haar_orthogonal(key: PRNGKeyArray, n: int, dtype: Any = None) -> Float[Array, "n n"]: ...


def haar_orthogonal(
    key: PRNGKeyArray | np.random.Generator, n: int, dtype: Any = None
) -> Float[Array, "n n"] | Float[np.ndarray, "n n"]:
    r"""A Haar-random orthogonal `(n, n)` matrix: the sign-fixed QR factor of a standard Gaussian
    matrix (`orthonormal_columns`).

    **Arguments:**

    - `key`: a JAX PRNG key (the result is a JAX array, traceable under `jit`/`vmap`), or a NumPy
      `Generator` (the result is a NumPy float64 array drawn as `key.standard_normal((n, n))`,
      advancing that generator).
    - `n`: the size, a non-negative Python int (`n = 0` gives a `(0, 0)` matrix).
    - `dtype`: float dtype of the JAX result (default: JAX's default float); ignored for a NumPy
      `Generator`.

    **Returns:**

    An orthogonal `(n, n)` matrix $Q$, $Q^\top Q = I_n$ to rounding.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative Python int, got {n!r}.")
    if isinstance(key, np.random.Generator):
        if n == 0:
            return np.zeros((0, 0))
        return orthonormal_columns(key.standard_normal((n, n)))
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64) if dtype is None else dtype
    if n == 0:
        return jnp.zeros((0, 0), dtype)
    return orthonormal_columns(jax.random.normal(key, (n, n), dtype))
