"""The one whitening check used by every closed form that needs XᵀX/n = I_d."""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import ArrayLike

from .._checks import is_concrete

__all__ = ["check_whitened", "whitening_error", "whitening_tol"]


def whitening_tol(dtype) -> float:
    r"""The tolerance of `check_whitened`: $10\sqrt{\varepsilon}$ of `dtype` (1.5e-7 in float64,
    3.5e-3 in float32), on $\max_{ij} |(X^\top X/n - I_d)_{ij}|$.

    **Arguments:**

    - `dtype`: a floating dtype.

    **Returns:**

    The tolerance as a Python float.
    """
    return 10.0 * math.sqrt(float(np.finfo(np.dtype(dtype)).eps))


def whitening_error(X: ArrayLike) -> float:
    r"""$\max_{ij} |(X^\top X/n - I_d)_{ij}|$ of concrete inputs `X (n, d)` (rows are samples),
    computed with NumPy.

    **Arguments:**

    - `X`: a concrete `(n, d)` array.

    **Returns:**

    The deviation as a Python float (`inf` for `n = 0`).
    """
    Xn = np.asarray(X)
    n, d = Xn.shape
    if n == 0:
        return math.inf
    return float(np.max(np.abs(Xn.T @ Xn / n - np.eye(d))))


def check_whitened(X: ArrayLike, *, name: str = "X", purpose: str = "the closed form") -> None:
    r"""Raise `ValueError` unless $X^\top X/n = I_d$ to `whitening_tol` (rows of `X` are samples).

    Every closed form in `jaxdyn.exact` that assumes whitened inputs calls this one check. It runs
    on concrete inputs only: for traced `X` (under `jit`/`vmap`) it cannot be evaluated before
    compiling and is skipped (the caller's docstring says what it then assumes).

    **Arguments:**

    - `X`: inputs `(n, d)`.
    - `name`: the argument name used in the error message.
    - `purpose`: what needs the whitening, for the error message.

    **Returns:**

    Nothing; raises `ValueError` naming `name` when the check fails.
    """
    if not is_concrete(X):
        return
    Xn = np.asarray(X)
    if Xn.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d), got {Xn.shape}.")
    n, d = Xn.shape
    if n < d:
        raise ValueError(
            f"`{name}` has n = {n} < d = {d} samples, so XᵀX/n cannot be the identity: "
            f"{purpose} needs whitened inputs."
        )
    err = whitening_error(Xn)
    dtype = Xn.dtype if np.issubdtype(Xn.dtype, np.floating) else np.float64
    if not err <= whitening_tol(dtype):
        raise ValueError(
            f"`{name}` is not whitened: max |XᵀX/n − I| = {err:.3g} "
            f"(tolerance {whitening_tol(dtype):.2g}); {purpose} holds for XᵀX/n = I_d only."
        )
