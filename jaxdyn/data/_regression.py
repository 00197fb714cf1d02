"""Whitened regression tasks (inputs with XᵀX/n = I_d exactly, noiseless linear targets)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import ArrayLike, Float

from ._orthogonal import haar_orthogonal, orthonormal_columns

__all__ = ["task_sequence", "whitened_inputs", "whitened_regression", "whitened_task"]


def _check_size(name: str, v, minimum: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {v!r}.")


def whitened_inputs(
    n: int, d: int, seed: int | np.random.Generator = 0, *, fix_signs: bool = True
) -> Float[np.ndarray, "n d"]:
    r"""Inputs $X$ `(n, d)` with $X^\top X/n = I_d$ to rounding: $\sqrt n$ times the orthonormal
    QR factor of a standard Gaussian `(n, d)` matrix (rows are samples). This is the whitening
    assumption of the closed forms (A1 of Dominé et al. 2024; Kunin et al. 2024, §3), checked by
    `check_whitened`.

    **Arguments:**

    - `n`: number of samples, `n >= d`.
    - `d`: input dimension, `d >= 1`.
    - `seed`: an int seed of `numpy.random.default_rng`, or a NumPy `Generator` to draw from
      (advancing it).
    - `fix_signs`: fix the QR factor's column signs (`orthonormal_columns`, default); `False`
      keeps LAPACK's signs (the data of the `single-neuron` experiment). Both are whitened.

    **Returns:**

    A float64 NumPy array `(n, d)`.
    """
    _check_size("d", d)
    _check_size("n", n)
    if n < d:
        raise ValueError(f"`n` = {n} must be >= `d` = {d}: XᵀX/n = I_d needs n ≥ d samples.")
    rng = np.random.default_rng(seed)
    return np.sqrt(n) * orthonormal_columns(rng.standard_normal((n, d)), fix_signs=fix_signs)


def whitened_regression(
    n: int,
    d: int,
    beta_star: Float[ArrayLike, " d"] | Sequence[float],
    seed: int | np.random.Generator = 0,
    *,
    fix_signs: bool = True,
) -> tuple[Float[np.ndarray, "n d"], Float[np.ndarray, " n"]]:
    r"""Whitened inputs (`whitened_inputs`) and noiseless scalar targets $y = X\beta^*$, so that
    $X^\top y/n = \beta^*$: the single-neuron task of Kunin et al. 2024, §3.

    **Arguments:**

    - `n`, `d`, `seed`, `fix_signs`: as for `whitened_inputs`.
    - `beta_star`: the target $\beta^*$, shape `(d,)`.

    **Returns:**

    `(X, y)`, float64 NumPy arrays of shapes `(n, d)` and `(n,)`.
    """
    beta = np.asarray(beta_star, dtype=float)
    if beta.shape != (d,):
        raise ValueError(f"`beta_star` must have shape (d,) = ({d},), got {beta.shape}.")
    X = whitened_inputs(n, d, seed, fix_signs=fix_signs)
    return X, X @ beta


def whitened_task(
    n: int,
    d: int,
    o: int,
    sv: Float[ArrayLike, " r"] | Sequence[float],
    seed: int = 0,
    det_sign: float | None = None,
) -> tuple[Float[np.ndarray, "n d"], Float[np.ndarray, "n o"], Float[np.ndarray, "o d"]]:
    r"""Whitened inputs and a noiseless linear task $Y = X\tilde\Sigma_{yx}^\top$ with
    $\tilde\Sigma_{yx} = Y^\top X/n = U\,\mathrm{diag}(s)\,V^\top$, $U, V$ Haar-random: the
    set-up of Dominé et al. 2024 (assumption A1, whitened inputs).

    **Arguments:**

    - `n`, `d`: samples and input dimension (`whitened_inputs(n, d, seed)`).
    - `o`: output dimension.
    - `sv`: the `min(d, o)` task singular values $s$.
    - `seed`: int seed; the inputs use `seed`, the singular vectors `seed + 1` (NumPy).
    - `det_sign`: for square tasks (`d == o`), ±1 fixes $\mathrm{sign}\det\tilde\Sigma_{yx}$ (by
      flipping the last column of $U$); `None` leaves it random.

    **Returns:**

    `(X (n, d), Y (n, o), Syx (o, d))` as float64 NumPy arrays.
    """
    _check_size("o", o)
    r = min(d, o)
    s = np.asarray(sv, float)
    if s.shape != (r,):
        raise ValueError(f"`sv` must have min(d, o) = {r} singular values, got {s.shape}.")
    if det_sign is not None and det_sign not in (-1, 1):
        raise ValueError(f"`det_sign` must be +1, -1 or None, got {det_sign!r}.")
    X = whitened_inputs(n, d, seed)
    rng = np.random.default_rng(seed + 1)
    U, V = haar_orthogonal(rng, o), haar_orthogonal(rng, d)
    if det_sign is not None and d == o and np.sign(np.linalg.det(U @ V.T)) != det_sign:
        U[:, -1] *= -1
    Syx = U[:, :r] @ np.diag(s) @ V[:, :r].T
    return X, X @ Syx.T, Syx


def task_sequence(
    d: int, sv: Float[ArrayLike, " d"] | Sequence[float], n_tasks: int, seed: int = 0
) -> Float[np.ndarray, "K d d"]:
    r"""A sequence of square task correlations $\tilde\Sigma_k = U_k\,\mathrm{diag}(s)\,V_k^\top$,
    $U_k, V_k$ Haar-random, each with $\det\tilde\Sigma_k > 0$ (so that at λ = 0 no task switch
    lands on a saddle's stable manifold): the continual-learning set-up of Dominé et al. 2024,
    App. D.1.

    **Arguments:**

    - `d`: the square size (inputs = outputs).
    - `sv`: the `d` singular values $s$ shared by every task.
    - `n_tasks`: number of tasks `K >= 1`.
    - `seed`: int seed (NumPy generator `seed + 100`, independent of `whitened_task(seed)`).

    **Returns:**

    A float64 NumPy array `(n_tasks, d, d)`.
    """
    _check_size("d", d)
    _check_size("n_tasks", n_tasks)
    s = np.asarray(sv, float)
    if s.shape != (d,):
        raise ValueError(f"`sv` must have d = {d} singular values, got {s.shape}.")
    rng = np.random.default_rng(seed + 100)
    out = []
    for _ in range(n_tasks):
        U, V = haar_orthogonal(rng, d), haar_orthogonal(rng, d)
        if np.linalg.det(U @ V.T) < 0:
            U[:, -1] *= -1
        out.append(U @ np.diag(s) @ V.T)
    return np.stack(out)
