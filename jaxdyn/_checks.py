"""Input validation shared by the public API.

Checks on *values* run only on concrete (non-traced) inputs, before anything is compiled;
under `jit`/`grad`/`vmap` only shapes are checked (see DESIGN.md, "Conventions").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when no leaf of `xs` is a JAX tracer."""
    tracer = jax.core.Tracer  # pyright: ignore[reportAttributeAccessIssue]
    return not any(isinstance(leaf, tracer) for leaf in jax.tree_util.tree_leaves(xs))


def check_data(data, name: str = "data"):
    """Validate `data = (X, Y)`; return `(X, Y2)` with `Y2` of shape `(n, o)` and a flag
    saying whether `Y` was 1-D."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(f"`{name}` must be a tuple (X, Y), got {type(data).__name__}.")
    X, Y = data
    X = jnp.asarray(X)
    Y = jnp.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"`{name}`: X must have shape (n, d), got {X.shape}.")
    if Y.ndim not in (1, 2):
        raise ValueError(f"`{name}`: Y must have shape (n,) or (n, o), got {Y.shape}.")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"`{name}`: X has {X.shape[0]} samples but Y has {Y.shape[0]} (shapes {X.shape} "
            f"and {Y.shape})."
        )
    if X.shape[0] == 0:
        raise ValueError(f"`{name}` has no samples.")
    if not jnp.issubdtype(X.dtype, jnp.inexact) or not jnp.issubdtype(Y.dtype, jnp.inexact):
        dtype = jnp.result_type(float)
        X, Y = X.astype(dtype), Y.astype(dtype)
    if is_concrete(X, Y):
        if not bool(np.all(np.isfinite(np.asarray(X)))):
            raise ValueError(f"`{name}`: X contains NaN or inf.")
        if not bool(np.all(np.isfinite(np.asarray(Y)))):
            raise ValueError(f"`{name}`: Y contains NaN or inf.")
    vector_y = Y.ndim == 1
    return X, (Y[:, None] if vector_y else Y), vector_y


def check_ts(ts, name: str = "ts"):
    """Validate save times: 1-D, at least two entries, starting at 0, strictly increasing."""
    ts = jnp.asarray(ts)
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    if ts.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {ts.shape}.")
    if ts.shape[0] < 2:
        raise ValueError(
            f"`{name}` must hold at least two times (0 and a final time > 0), got {ts.shape[0]}."
        )
    if is_concrete(ts):
        t = np.asarray(ts)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"`{name}` contains NaN or inf.")
        if t[0] != 0:
            raise ValueError(f"`{name}` must start at 0, got ts[0] = {t[0]}.")
        if np.any(np.diff(t) <= 0):
            i = int(np.argmax(np.diff(t) <= 0))
            raise ValueError(
                f"`{name}` must be strictly increasing (ts[{i}] = {t[i]}, ts[{i + 1}] = "
                f"{t[i + 1]}); a zero or negative time span is not allowed."
            )
    return ts


def check_finite_tree(tree, name: str):
    if is_concrete(tree):
        for leaf in jax.tree_util.tree_leaves(tree):
            if not bool(np.all(np.isfinite(np.asarray(leaf)))):
                raise ValueError(f"`{name}` contains NaN or inf.")
