r"""Exact gradient-flow trajectories of the single-neuron linear network $f(x) = a\,w^\top x$.

Reference: D. Kunin, A. Raventós, C. Dominé, F. Chen, D. Klindt, A. Saxe, S. Ganguli,
"Get rich quick: exact solutions reveal how unbalanced initializations promote rapid feature
learning", NeurIPS 2024, arXiv:2406.06158 (§3, single neuron; Theorems on the δ > 0, δ = 0 and
δ < 0 solutions). The form implemented here is the linearising change of variables of the jaxdyn
notes (`notes/kunin_get_rich_quick.md`, Eqs. 2.4–2.6, tagged [D]: derived, not the paper's own
hyperbolic-angle form), which covers every sign of δ with a single formula and no branches.

Setting (the paper's exactly solvable case): loss $L = \frac{1}{2n}\sum_i (a w^\top x_i - y_i)^2$,
whitened inputs $X^\top X / n = I_d$, so $\nabla_\beta L = \beta - \beta^*$ with
$\beta^* = X^\top y / n$; layer learning rates $\dot a = -\eta_a \partial_a L$,
$\dot w = -\eta_w \nabla_w L$; conserved imbalance $\delta = \eta_w a^2 - \eta_a\|w\|^2$.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_data, check_ts, is_concrete

__all__ = [
    "single_neuron",
    "single_neuron_limit",
    "single_neuron_beta",
    "imbalance",
    "whitened_target",
]


def imbalance(a0: ArrayLike, w0: ArrayLike, eta_a: ArrayLike = 1.0, eta_w: ArrayLike = 1.0):
    r"""The conserved imbalance $\delta = \eta_w a^2 - \eta_a \|w\|^2$.

    Kunin et al. 2024 (arXiv:2406.06158), §3; jaxdyn notes Eq. 1.5.
    """
    a0 = jnp.asarray(a0)
    w0 = jnp.asarray(w0)
    return eta_w * a0**2 - eta_a * jnp.sum(w0**2, axis=-1)


def _whitening_tol(dtype) -> float:
    return float(np.sqrt(np.finfo(dtype).eps))


def whitened_target(X: ArrayLike, y: ArrayLike, *, check: bool = True) -> Float[Array, " d"]:
    r"""$\beta^* = X^\top y / n$ for whitened data; raises `ValueError` if $X^\top X/n \neq I_d$.

    The tolerance is $\sqrt{\varepsilon}$ of the data's dtype (1.5e-8 in float64). The check is
    skipped for traced inputs (under `jit`/`vmap`), where it cannot be evaluated before compile.
    """
    X, Y2, vector_y = check_data((X, y), "data (X, y)")
    if not vector_y and Y2.shape[1] != 1:
        raise ValueError(f"`y` must have shape (n,) for a single neuron, got {Y2.shape}.")
    n, d = X.shape
    if check and is_concrete(X):
        if n < d:
            raise ValueError(
                f"`X` has n = {n} < d = {d} samples, so XᵀX/n cannot be the identity: the "
                "closed-form trajectory needs whitened inputs. Use "
                "`jd.exact.single_neuron_limit` for the n < d limit, or `jd.gradient_flow`."
            )
        Xn = np.asarray(X)  # NumPy: inside a jit trace, X.T @ X would be a tracer
        G = Xn.T @ Xn / n
        err = float(np.max(np.abs(G - np.eye(d))))
        if err > _whitening_tol(X.dtype):
            raise ValueError(
                f"`X` is not whitened: max |XᵀX/n − I| = {err:.3g}. The exact single-neuron "
                "solution holds for XᵀX/n = I_d only; use `jd.gradient_flow` for general data."
            )
    return X.T @ Y2[:, 0] / n


def _phi(p, q, t):
    r"""$(e^{-pt} - e^{-qt})/(q - p)$ for $p, q \ge 0$, without overflow or cancellation."""
    lo = jnp.minimum(p, q)
    gap = jnp.abs(q - p)
    z = gap * t
    safe = jnp.where(z > 0, z, 1.0)
    ratio = jnp.where(z > 0, -jnp.expm1(-safe) / safe, 1.0)  # (1 − e^{−z})/z
    return jnp.exp(-lo * t) * t * ratio


def _solve(beta_star, a0, w0, eta_a, eta_w, ts):
    """Core closed form; all inputs are arrays, ts shape (T,). Returns a (T,), w (T, d)."""
    dtype = jnp.result_type(beta_star, a0, w0, eta_a, eta_w, ts)
    delta = eta_w * a0**2 - eta_a * jnp.sum(w0**2)
    s = jnp.linalg.norm(beta_star)
    s_safe = jnp.where(s > 0, s, 1.0)
    bhat = jnp.where(s > 0, beta_star / s_safe, 0.0)
    x0 = jnp.dot(bhat, w0)
    w_perp = w0 - x0 * bhat
    # Symmetrised 2×2 generator [[0, g], [g, δ]] acting on (√η_a x, √η_w Q) (notes Eq. 2.6).
    g = jnp.sqrt(eta_a * eta_w) * s
    D = jnp.sqrt(delta**2 + 4 * g**2)
    # D ± δ computed without cancellation.
    big = D + jnp.abs(delta)
    small = jnp.where(big > 0, 4 * g**2 / jnp.where(big > 0, big, 1.0), 0.0)
    Dp = jnp.where(delta >= 0, big, small)  # D + δ
    Dm = jnp.where(delta >= 0, small, big)  # D − δ
    lam_p = Dp / 2  # ≥ 0, the growing eigenvalue
    D_safe = jnp.where(D > 0, D, 1.0)
    # Eigenvector of +: (c, d_) with c = sqrt((D−δ)/2D), d_ = sqrt((D+δ)/2D); at D = 0 (δ = 0,
    # β* = 0) the generator is zero and any basis works.
    c = jnp.where(D > 0, jnp.sqrt(Dm / (2 * D_safe)), 1.0)
    d_ = jnp.where(D > 0, jnp.sqrt(Dp / (2 * D_safe)), 0.0)
    xt0 = jnp.sqrt(eta_a) * x0
    qt0 = jnp.sqrt(eta_w) * a0
    alpha = c * xt0 + d_ * qt0  # component on the growing mode
    gamma = -d_ * xt0 + c * qt0  # component on the decaying mode

    t = ts
    E = jnp.exp(-lam_p * t)  # e^{−λ₊ t} ≤ 1
    F = jnp.exp(-D * t)  # e^{−(λ₊ − λ₋) t}
    # Everything below is multiplied by E (and N by E²): all exponents are non-positive.
    x_hat = (alpha * c - gamma * d_ * F) / jnp.sqrt(eta_a)
    q_hat = (alpha * d_ + gamma * c * F) / jnp.sqrt(eta_w)
    N_hat = (
        E**2
        + 2 * (alpha * d_) ** 2 * _phi(0.0, 2 * lam_p, t)
        + 4 * alpha * gamma * c * d_ * _phi(D, 2 * lam_p, t)
        + 2 * (gamma * c) ** 2 * _phi(2 * D, 2 * lam_p, t)
    )
    root = jnp.sqrt(N_hat)
    a = q_hat / root
    w = (x_hat[:, None] * bhat[None, :] + E[:, None] * w_perp[None, :]) / root[:, None]
    return a.astype(dtype), w.astype(dtype)


def single_neuron(
    X: ArrayLike,
    y: ArrayLike,
    a0: ArrayLike,
    w0: ArrayLike,
    ts: ArrayLike,
    eta_a: ArrayLike = 1.0,
    eta_w: ArrayLike = 1.0,
) -> tuple[Float[Array, " T"], Float[Array, "T d"]]:
    r"""Closed-form gradient-flow trajectory $(a(t), w(t))$ of $f(x) = a\,w^\top x$.

    Valid for every sign of $\delta = \eta_w a_0^2 - \eta_a\|w_0\|^2$ (upstream δ > 0, balanced
    δ = 0, downstream δ < 0, where `a` may change sign) and any layer learning rates.

    **Method** (Kunin et al. 2024, §3; derivation in the jaxdyn notes, Eqs. 2.4–2.6 [D]):
    with $\beta^* = X^\top y/n$, the linear system
    $\tfrac{d}{dt}(P, Q) = \begin{pmatrix}0 & \eta_w\beta^*\\ \eta_a\beta^{*\top} & \delta
    \end{pmatrix}(P, Q)$, $(P, Q)(0) = (w_0, a_0)$, and
    $(w, a)(t) = (P, Q)(t)/\sqrt{N(t)}$, $N(t) = 1 + 2\eta_w\int_0^t Q^2$. The linear system
    reduces to 2×2 along $\hat\beta^*$; every exponential is rescaled by $e^{-\lambda_+ t}$ so
    nothing overflows for any $t$ and $|\delta|$ up to ~1e300.

    **Arguments:**

    - `X`: inputs `(n, d)` with $X^\top X/n = I_d$ (whitened; checked, tolerance √ε).
    - `y`: targets `(n,)`.
    - `a0`: initial readout (scalar); `w0`: initial first layer `(d,)`.
    - `ts`: times `(T,)`, starting at 0 and increasing (any non-negative times are accepted
      under `jit`).
    - `eta_a`, `eta_w`: layer learning rates (positive).

    **Returns:**

    `(a, w)` with shapes `(T,)` and `(T, d)`.

    **Raises:** `ValueError` if `X` is not whitened (including n < d), on shape mismatches,
    non-finite data, or non-positive learning rates.
    """
    beta_star = whitened_target(X, y)
    ts = check_ts(ts)
    a0 = jnp.asarray(a0)
    w0 = jnp.asarray(w0)
    if a0.ndim != 0:
        raise ValueError(f"`a0` must be a scalar, got shape {a0.shape}.")
    if w0.shape != beta_star.shape:
        raise ValueError(f"`w0` must have shape {beta_star.shape} (d,), got {w0.shape}.")
    eta_a = jnp.asarray(eta_a)
    eta_w = jnp.asarray(eta_w)
    for name, v in (("eta_a", eta_a), ("eta_w", eta_w)):
        if v.ndim != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}.")
        if is_concrete(v) and not float(v) > 0:
            raise ValueError(f"`{name}` must be positive, got {float(v)}.")
    if is_concrete(a0, w0) and not (np.isfinite(a0) and np.all(np.isfinite(w0))):
        raise ValueError("`a0`/`w0` contain NaN or inf.")
    dtype = jnp.result_type(beta_star, a0, w0, float)
    return _solve(
        beta_star.astype(dtype),
        a0.astype(dtype),
        w0.astype(dtype),
        eta_a.astype(dtype),
        eta_w.astype(dtype),
        ts.astype(dtype),
    )


def single_neuron_beta(X, y, a0, w0, ts, eta_a=1.0, eta_w=1.0) -> Float[Array, "T d"]:
    r"""The end-to-end map $\beta(t) = a(t) w(t)$ from `single_neuron`."""
    a, w = single_neuron(X, y, a0, w0, ts, eta_a, eta_w)
    return a[:, None] * w


def single_neuron_limit(
    X: ArrayLike,
    y: ArrayLike,
    a0: ArrayLike,
    w0: ArrayLike,
    eta_a: ArrayLike = 1.0,
    eta_w: ArrayLike = 1.0,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    max_steps: int = 256,
) -> Float[Array, " d"]:
    r"""The interpolant $\beta_\infty = \lim_{t\to\infty} a(t)w(t)$ reached by gradient flow when
    $n < d$ (implicit bias as a function of δ; Kunin et al. 2024, §3.3).

    **Characterisation** (jaxdyn notes §4 [D]): $\dot w = -\eta_w a X^\top r/n$ stays in the row
    space of $X$, so $w_\infty = w_0 + X^\top\nu$; δ is conserved, so
    $a_\infty = \operatorname{sign}(a_0)\sqrt{(\delta + \eta_a\|w_\infty\|^2)/\eta_w}$; and
    $X a_\infty w_\infty = y$. The multiplier ν minimises the strictly convex dual
    $G(\nu) = \frac{(\delta + \eta_a\|w_0 + X^\top\nu\|^2)_+^{3/2}}{3\eta_a\sqrt{\eta_w}}
    - \nu^\top y$ (after flipping $(a_0, w_0) \to -(a_0, w_0)$ if $a_0 < 0$, which leaves β
    unchanged), which we minimise with Newton's method (Optimistix). This is the
    Bregman/mirror-flow statement of the paper: $\beta_\infty = \arg\min_{X\beta = y}
    q_\delta(\|\beta\|) - \nabla q_\delta(\beta_0)^\top\beta$.

    Valid for any data (no whitening needed), n < d with X of full row rank, every δ ≥ 0, and
    δ < 0 as long as `a` does not change sign along the flow (when it does, the limit depends
    on the crossing and this function does not apply: notes §4.6).

    **Arguments:** as `single_neuron`, without `ts`; `rtol`, `atol`, `max_steps` configure the
    Newton solve.

    **Returns:** $\beta_\infty$, shape `(d,)`.
    """
    X, Y2, vector_y = check_data((X, y), "data (X, y)")
    if not vector_y and Y2.shape[1] != 1:
        raise ValueError(f"`y` must have shape (n,), got {Y2.shape}.")
    yv = Y2[:, 0]
    n, d = X.shape
    a0 = jnp.asarray(a0)
    w0 = jnp.asarray(w0)
    if a0.ndim != 0 or w0.shape != (d,):
        raise ValueError(
            f"`a0` must be a scalar and `w0` of shape ({d},); got {a0.shape}, {w0.shape}."
        )
    if is_concrete(a0) and float(a0) == 0:
        raise ValueError("`a0` must be non-zero (a0 = 0 with w0 = 0 is a saddle).")
    if is_concrete(X) and n > d:
        raise ValueError(f"`X` has n = {n} > d = {d}: use the n ≥ d least-squares solution.")
    dtype = jnp.result_type(X, a0, w0, float)
    X = X.astype(dtype)
    yv = yv.astype(dtype)
    eta_a = jnp.asarray(eta_a, dtype)
    eta_w = jnp.asarray(eta_w, dtype)
    sigma = jnp.sign(a0).astype(dtype)
    # (a, w) -> (−a, −w) leaves β unchanged: work with a > 0.
    w0 = (sigma * w0).astype(dtype)
    delta = eta_w * a0**2 - eta_a * jnp.sum(w0**2)

    def beta_of(nu):
        w = w0 + X.T @ nu
        a = jnp.sqrt(jnp.maximum(delta + eta_a * jnp.sum(w**2), 0.0) / eta_w)
        return a * w

    def residual(nu, args):
        return X @ beta_of(nu) - yv

    solver = optx.Newton(rtol=rtol, atol=atol)
    sol = optx.root_find(residual, solver, jnp.zeros(n, dtype), max_steps=max_steps, throw=False)
    return beta_of(sol.value)
