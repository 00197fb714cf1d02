"""Teacher–student data on the unit sphere and the hierarchical item/feature task."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._models import TwoLayer

__all__ = ["hierarchical_task", "sphere", "teacher_student"]


def sphere(key: PRNGKeyArray, n: int, d: int, dtype: Any = None) -> Float[Array, "n d"]:
    """`n` points drawn uniformly on the unit sphere in $\\mathbb{R}^d$ (normalised Gaussians).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `n`: number of points (`>= 1`).
    - `d`: dimension (`>= 1`).
    - `dtype`: float dtype (default: JAX's default float).

    **Returns:**

    A JAX array `(n, d)` whose rows have unit norm.
    """
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive Python int, got {v!r}.")
    dtype = jnp.result_type(float) if dtype is None else dtype
    x = jax.random.normal(key, (n, d), dtype)
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def teacher_student(
    key: PRNGKeyArray,
    n: int,
    n_test: int,
    d: int,
    units: int,
    dtype: Any = None,
    activation: str = "relu",
) -> tuple[Float[Array, "n d"], Float[Array, " n"], Float[Array, "m d"], Float[Array, " m"]]:
    r"""Train and test data labelled by a bias-free two-layer teacher
    $f^*(x) = \sum_k a_k\,\sigma(w_k^\top x)$ with `units` unit-norm $w_k$ and readouts
    $a_k = \pm 1$, inputs on the unit sphere, noiseless labels: the teacher–student set-up of
    Kunin et al. 2024, §5.

    **Arguments:**

    - `key`: a JAX PRNG key (split into inputs, test inputs, teacher weights, teacher readouts).
    - `n`, `n_test`: numbers of training and test samples.
    - `d`: input dimension.
    - `units`: teacher width.
    - `dtype`: float dtype (default: JAX's default float).
    - `activation`: the teacher's activation (a `jaxdyn.TwoLayer` activation name).

    **Returns:**

    `(X (n, d), y (n,), X_test (n_test, d), y_test (n_test,))`.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    kx, kt, kw, ka = jax.random.split(key, 4)
    W = sphere(kw, units, d, dtype)
    a = jnp.sign(jax.random.normal(ka, (units,), dtype))
    f = jax.vmap(TwoLayer(W, a[None, :], activation))
    X = sphere(kx, n, d, dtype)
    Xt = sphere(kt, n_test, d, dtype)
    return X, f(X)[:, 0], Xt, f(Xt)[:, 0]


def hierarchical_task() -> tuple[Float[np.ndarray, "8 8"], Float[np.ndarray, "8 8"]]:
    r"""The hierarchical 8-item task: one-hot items $X = \sqrt 8\,I_8$ (whitened,
    $X^\top X/n = I$) and 8 ±1/0 features `Y (items, features)` arranged as a binary tree —
    one feature shared by all items, one splitting them 4|4, two splitting each half 2|2, four
    splitting each pair 1|1 (Saxe et al. 2019; the transfer task of Dominé et al. 2024,
    App. D.3). Its task singular values are $1, 1, 1/\sqrt2, 1/\sqrt2, \tfrac12\times 4$.

    **Returns:**

    `(X, Y)`, float64 NumPy arrays `(8, 8)` each.
    """
    P = 8
    Y = np.zeros((P, 8))
    Y[:, 0] = 1.0
    Y[:, 1] = np.repeat([1.0, -1.0], 4)
    for j in range(2):
        Y[4 * j : 4 * j + 4, 2 + j] = np.repeat([1.0, -1.0], 2)
    for j in range(4):
        Y[2 * j : 2 * j + 2, 4 + j] = [1.0, -1.0]
    return np.sqrt(P) * np.eye(P), Y
