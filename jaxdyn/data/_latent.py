r"""Latent-variable data $x = z\,a$, $y = c z + \varepsilon$ (one-dimensional data), the task of
the Xu–Ziyin exactly solvable model (`jaxdyn.exact.xu_ziyin`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from .._checks import is_concrete

__all__ = ["latent_statistics", "latent_variable", "latent_variable_sample"]

#: ‖a‖ = 1 and the rank-one check of `latent_statistics` hold to this many eps of the dtype.
_TOL_EPS = 1e4


def _tol(dtype) -> float:
    return _TOL_EPS * float(jnp.finfo(dtype).eps)


def _check_finite(name: str, x) -> None:
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"`{name}` contains NaN or inf.")


def latent_variable(
    z: Real[ArrayLike, "..."],
    a: Real[ArrayLike, "..."],
    c: Real[ArrayLike, "..."],
    noise: Real[ArrayLike, "..."] | None = None,
) -> tuple[Float[Array, "n d_in"], Float[Array, " n"]]:
    r"""Latent-variable data: inputs $x_\mu = z_\mu a$ on one line, labels
    $y_\mu = c z_\mu + \varepsilon_\mu$.

    Gradient flow of $f = \gamma u^\top W x$ on these data depends on them only through
    $\hat c = \sum_\mu z_\mu y_\mu/\sum_\mu z_\mu^2$ and $S_{zz} = \overline{z^2}$ (see
    `latent_statistics` and `jaxdyn.exact.xu_ziyin`).

    **Arguments:**

    - `z`: the latent values `(n,)`, not all zero.
    - `a`: the data direction `(d_in,)`, of unit norm ($d_\text{in} = 1$ allowed).
    - `c`: the target coefficient (a scalar).
    - `noise`: optional label noise ε `(n,)` (default 0).

    **Returns:**

    `(X, Y)` with `X (n, d_in)`, `Y (n,)`, as `jd.gradient_flow` takes them.

    **Raises:** `ValueError` naming the argument: `z`, `a` or `noise` of the wrong shape,
    `noise` with another number of samples than `z`, `a` not of unit norm, `z` all zero, a
    non-scalar `c`, or non-finite values.
    """
    z, a = jnp.asarray(z), jnp.asarray(a)
    dtype = jnp.result_type(z, a, float)
    z, a = z.astype(dtype), a.astype(dtype)
    if z.ndim != 1 or z.shape[0] == 0:
        raise ValueError(f"`z` must have shape (n,) with n ≥ 1, got {z.shape}.")
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"`a` must have shape (d_in,) with d_in ≥ 1, got {a.shape}.")
    c = jnp.asarray(c, dtype)
    if c.ndim != 0:
        raise ValueError(f"`c` must be a scalar, got shape {c.shape}.")
    for name, x in (("z", z), ("a", a), ("c", c)):
        _check_finite(name, x)
    if is_concrete(a):
        na = float(np.linalg.norm(np.asarray(a)))
        if abs(na - 1.0) > _tol(dtype):
            raise ValueError(f"`a` must have unit norm (the data direction), got ‖a‖ = {na:.6g}.")
    if is_concrete(z) and not np.any(np.asarray(z) != 0):
        raise ValueError("`z` must not be all zero (no signal to learn).")
    y = c * z
    if noise is not None:
        noise = jnp.asarray(noise, dtype)
        if noise.shape != z.shape:
            raise ValueError(
                f"`noise` must have one entry per sample, shape {z.shape} like `z`, got "
                f"{noise.shape}."
            )
        _check_finite("noise", noise)
        y = y + noise
    return z[:, None] * a[None, :], y


def latent_variable_sample(
    key: PRNGKeyArray,
    n: int,
    *,
    c: Real[ArrayLike, ""],
    d_in: int = 1,
    noise_std: float = 0.0,
    exact_moments: bool = True,
) -> tuple[Float[Array, "n d_in"], Float[Array, " n"]]:
    r"""A random latent-variable data set: $z_\mu \sim N(0, 1)$, a random unit direction
    $a$, $y = cz + \varepsilon$, $\varepsilon \sim N(0, \sigma^2)$.

    With `exact_moments=True` the sample has exactly the population moments the closed form
    assumes: $z$ is rescaled to $\overline{z^2} = 1$ and the noise is projected orthogonal
    to $z$, so $\hat c = c$ and gradient flow on the data is `jd.exact.xu_ziyin` with this
    `c` and unchanged time.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `n`: number of samples (≥ 1; ≥ 2 for noise with `exact_moments`).
    - `c`: the target coefficient.
    - `d_in`: input dimension (≥ 1; the direction is $a = e_1$ for `d_in = 1`).
    - `noise_std`: label-noise standard deviation (≥ 0).
    - `exact_moments`: as above.

    **Returns:**

    `(X, Y)` with `X (n, d_in)`, `Y (n,)`.

    **Raises:** `ValueError` naming `n`, `d_in` or `noise_std` when out of range.
    """
    for name, v, lo in (("n", n, 1), ("d_in", d_in, 1)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise ValueError(f"`{name}` must be an integer ≥ {lo}, got {v!r}.")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"`noise_std` must be finite and ≥ 0, got {noise_std}.")
    if exact_moments and noise_std > 0 and n < 2:
        raise ValueError(
            f"`n` = {n}: noise orthogonal to z (exact_moments=True) needs n ≥ 2 samples."
        )
    kz, ka, ke = jax.random.split(key, 3)
    dtype = jnp.result_type(float)
    z = jax.random.normal(kz, (n,), dtype)
    a = jax.random.normal(ka, (d_in,), dtype)
    a = a / jnp.linalg.norm(a) if d_in > 1 else jnp.ones((1,), dtype)
    eps = noise_std * jax.random.normal(ke, (n,), dtype)
    if exact_moments:
        z = z / jnp.sqrt(jnp.mean(z * z))
        eps = eps - z * jnp.dot(z, eps) / jnp.dot(z, z)
    return latent_variable(z, a, c, eps)


def latent_statistics(
    X: Real[ArrayLike, "..."], Y: Real[ArrayLike, "..."]
) -> tuple[Float[Array, " d_in"], Float[Array, ""], Float[Array, ""]]:
    r"""Recover $(a, \hat c, S_{zz})$ from latent-variable data, checking that it is of that
    form (all inputs on one line through 0).

    With $X = z a^\top$: $a$ is the unit direction (sign fixed by the largest $|x|$ sample),
    $z = Xa$, $S_{zz} = \overline{z^2}$ and $\hat c = \overline{zy}/S_{zz}$. Gradient flow on
    `(X, Y)` is then `jd.exact.xu_ziyin(..., c=ĉ)` at time $S_{zz}\,t$.

    **Arguments:**

    - `X`: inputs `(n, d_in)`.
    - `Y`: labels `(n,)` or `(n, 1)`.

    **Returns:**

    `(a, c_hat, s_zz)`.

    **Raises:** `ValueError` naming `X` when it is all zero or not rank one (not
    latent-variable data: the model is then not the one-dimensional one `xu_ziyin` solves),
    naming `Y` for a wrong shape or sample count.
    """
    X = jnp.asarray(X)
    dtype = jnp.result_type(X, float)
    X = X.astype(dtype)
    Y = jnp.asarray(Y, dtype)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"`X` must have shape (n, d_in) with n ≥ 1, got {X.shape}.")
    if Y.ndim == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.ndim != 1 or Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"`Y` must have shape (n,) or (n, 1) with n = {X.shape[0]} (the samples of X), got "
            f"{Y.shape}."
        )
    _check_finite("X", X)
    _check_finite("Y", Y)
    i = jnp.argmax(jnp.sum(X * X, axis=1))
    a = X[i] / jnp.linalg.norm(X[i])
    z = X @ a
    if is_concrete(X):
        Xn = np.asarray(X)
        scale = float(np.max(np.abs(Xn)))
        if scale == 0:
            raise ValueError("`X` is all zero: latent-variable data need z ≠ 0.")
        resid = float(np.max(np.abs(Xn - np.outer(np.asarray(z), np.asarray(a)))))
        if resid > _tol(dtype) * scale:
            raise ValueError(
                "`X` is not latent-variable data x = z·a (its rows do not lie on one line "
                f"through 0: off-line residual {resid:.3g} relative to max|X| = {scale:.3g})."
            )
    s_zz = jnp.mean(z * z)
    return a, jnp.mean(z * Y) / s_zz, s_zz
