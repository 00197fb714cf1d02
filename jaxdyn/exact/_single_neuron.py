r"""Exact gradient-flow trajectories of the single-neuron linear network $f(x) = a\,w^\top x$.

Setting (the exactly solvable case of Kunin et al. 2024, §3): loss
$L = \frac{1}{2n}\sum_i (a w^\top x_i - y_i)^2$, whitened inputs $X^\top X / n = I_d$, so
$\nabla_\beta L = \beta - \beta^*$ with $\beta^* = X^\top y / n$; layer learning rates
$\dot a = -\eta_a \partial_a L$, $\dot w = -\eta_w \nabla_w L$; conserved imbalance
$\delta = \eta_w a^2 - \eta_a\|w\|^2$.

The trajectory is evaluated through a linearising change of variables (derivation: jaxdyn notes
`kunin_get_rich_quick.md` §2.1, tagged [D], derived by us and checked against ODE solves; it is
not the paper's own hyperbolic-angle parametrisation) that covers every sign of δ with one
formula and no branches.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Real

from .._checks import check_data, check_ts, is_concrete
from .._results import RESULTS
from ..data._whitening import check_whitened
from ..metrics._metrics import imbalance

__all__ = [
    "single_neuron",
    "single_neuron_from_target",
    "single_neuron_limit",
    "single_neuron_beta",
    "whitened_target",
]


def whitened_target(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"] | Float[ArrayLike, "n 1"],
    *,
    check: bool = True,
) -> Float[Array, " d"]:
    r"""The target $\beta^* = X^\top y / n$ of whitened data, after checking $X^\top X/n = I_d$.

    The check is `jaxdyn.data.check_whitened` (tolerance `jaxdyn.data.whitening_tol`,
    $10\sqrt{\varepsilon}$ of the dtype: 1.5e-7 in float64). It is skipped for traced inputs
    (under `jit`/`vmap`), where it cannot be evaluated before compiling, or when
    `check=False`.

    **Arguments:**

    - `X`: inputs `(n, d)`, rows are samples, whitened.
    - `y`: targets `(n,)` (or `(n, 1)`).
    - `check`: whether to run the whitening check.

    **Returns:**

    $\beta^*$, shape `(d,)`.

    **Raises:** `ValueError` naming `X` if it is not whitened (including n < d), or on shape
    mismatches and non-finite data.
    """
    X, Y2, vector_y = check_data((X, y), "data (X, y)")
    if not vector_y and Y2.shape[1] != 1:
        raise ValueError(f"`y` must have shape (n,) for a single neuron, got {Y2.shape}.")
    n = X.shape[0]
    if check:
        check_whitened(X, name="X", purpose="the exact single-neuron solution")
    return X.T @ Y2[:, 0] / n


def _phi(p, q, t):
    r"""$(e^{-pt} - e^{-qt})/(q - p)$ for $p, q \ge 0$, without overflow or cancellation.

    $(1 - e^{-z})/z$ is a Taylor series for $z < 10^{-3}$ (truncation error < 2e-18), so that
    its derivative stays exact too: the quotient form's derivative is 0/0 for tiny $z$.
    """
    lo = jnp.minimum(p, q)
    gap = jnp.abs(q - p)
    z = gap * t
    series = z < 1e-3
    safe = jnp.where(series, 1.0, z)
    zs = jnp.where(series, z, 0.0)
    poly = 1 - zs / 2 * (1 - zs / 3 * (1 - zs / 4 * (1 - zs / 5)))
    ratio = jnp.where(series, poly, -jnp.expm1(-safe) / safe)  # (1 − e^{−z})/z
    return jnp.exp(-lo * t) * t * ratio


def _solve(beta_star, a0, w0, eta_a, eta_w, ts):
    """Core closed form; all inputs are arrays, ts shape (T,). Returns a (T,), w (T, d)."""
    dtype = jnp.result_type(beta_star, a0, w0, eta_a, eta_w, ts)
    delta = imbalance(a0, w0, eta_a, eta_w)
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
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"] | Float[ArrayLike, "n 1"],
    a0: Real[ArrayLike, ""],
    w0: Real[ArrayLike, " _d"],
    ts: Real[ArrayLike, " T"],
    eta_a: Real[ArrayLike, ""] = 1.0,
    eta_w: Real[ArrayLike, ""] = 1.0,
) -> tuple[Float[Array, " T"], Float[Array, "T d"]]:
    r"""Closed-form gradient-flow trajectory $(a(t), w(t))$ of $f(x) = a\,w^\top x$ on
    whitened data.

    Valid for every sign of $\delta = \eta_w a_0^2 - \eta_a\|w_0\|^2$ (upstream δ > 0, balanced
    δ = 0, downstream δ < 0, where `a` may change sign) and any layer learning rates.

    **Formula** [D] (derivation: jaxdyn notes §2.1, Eqs. 2.4–2.6): with $\beta^* = X^\top y/n$,
    let $(P, Q)$ solve the linear system
    $$\frac{d}{dt}\begin{pmatrix}P\\ Q\end{pmatrix} =
    \begin{pmatrix}0 & \eta_w\beta^*\\ \eta_a\beta^{*\top} & \delta\end{pmatrix}
    \begin{pmatrix}P\\ Q\end{pmatrix},\qquad (P, Q)(0) = (w_0, a_0);$$
    then $(w, a)(t) = (P, Q)(t)/\sqrt{N(t)}$ with $N(t) = 1 + 2\eta_w\int_0^t Q(\tau)^2\,d\tau$.
    The system reduces to 2×2 along $\hat\beta^*$ (eigenvalues
    $\lambda_\pm = (\delta \pm \sqrt{\delta^2 + 4\eta_a\eta_w\|\beta^*\|^2})/2$), and every
    exponential is rescaled by $e^{-\lambda_+ t}$, so nothing overflows for any $t$ and any
    $|\delta|$ up to ~1e300.

    **Arguments:**

    - `X`: inputs `(n, d)` with $X^\top X/n = I_d$ (rows are samples; checked with
      `jaxdyn.data.check_whitened` when concrete).
    - `y`: targets `(n,)`.
    - `a0`: initial readout (scalar).
    - `w0`: initial first layer `(d,)`.
    - `ts`: save times `(T,)`, starting at 0 and strictly increasing (under `jit` any
      non-negative times are accepted unchecked).
    - `eta_a`, `eta_w`: layer learning rates (positive).

    **Returns:**

    `(a, w)` with shapes `(T,)` and `(T, d)`.

    **Raises:** `ValueError` if `X` is not whitened (including n < d), on shape mismatches,
    non-finite data, or non-positive learning rates (value checks on concrete inputs only).

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3: the exact solutions of the
        single-neuron model for whitened inputs (the paper writes them per sign of δ with a
        hyperbolic-angle parametrisation; the single linear form used here is our derivation,
        jaxdyn notes §2.1 [D], checked against ODE solves to ≤ 1e-8 relative error).
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


def single_neuron_from_target(
    beta_star: Float[ArrayLike, " d"],
    a0: Real[ArrayLike, ""],
    w0: Real[ArrayLike, " _d"],
    ts: Real[ArrayLike, " T"],
    eta_a: Real[ArrayLike, ""] = 1.0,
    eta_w: Real[ArrayLike, ""] = 1.0,
) -> tuple[Float[Array, " T"], Float[Array, "T d"]]:
    r"""The closed form of `single_neuron` given the whitened target $\beta^* = X^\top y/n$
    directly (no data, no whitening check, no value checks): the form a sweep uses, where the
    data are fixed and only $(a_0, w_0, \eta_a, \eta_w)$ vary (traced).

    Same formula as `single_neuron` [D]: $(w, a)(t) = (P, Q)(t)/\sqrt{N(t)}$ with
    $\tfrac{d}{dt}(P, Q) = \begin{pmatrix}0 & \eta_w\beta^*\\ \eta_a\beta^{*\top} & \delta
    \end{pmatrix}(P, Q)$ and $N(t) = 1 + 2\eta_w\int_0^t Q^2$.

    **Arguments:**

    - `beta_star`: $X^\top y/n$ of whitened data, `(d,)`.
    - `a0`: initial readout (scalar).
    - `w0`: initial first layer `(d,)`.
    - `ts`: non-negative save times `(T,)`.
    - `eta_a`, `eta_w`: layer learning rates (positive; not checked here).

    **Returns:**

    `(a, w)` with shapes `(T,)` and `(T, d)`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 (exact single-neuron
        solutions); the form evaluated is our derivation, jaxdyn notes §2.1 [D].
    """
    beta_star = jnp.asarray(beta_star)
    w0 = jnp.asarray(w0)
    if w0.shape != beta_star.shape:
        raise ValueError(f"`w0` must have shape {beta_star.shape} (d,), got {w0.shape}.")
    dtype = jnp.result_type(beta_star, a0, w0, eta_a, eta_w, ts, float)

    def cast(v):
        return jnp.asarray(v).astype(dtype)

    return _solve(cast(beta_star), cast(a0), cast(w0), cast(eta_a), cast(eta_w), cast(ts))


def single_neuron_beta(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"] | Float[ArrayLike, "n 1"],
    a0: Real[ArrayLike, ""],
    w0: Real[ArrayLike, " _d"],
    ts: Real[ArrayLike, " T"],
    eta_a: Real[ArrayLike, ""] = 1.0,
    eta_w: Real[ArrayLike, ""] = 1.0,
) -> Float[Array, "T d"]:
    r"""The end-to-end map $\beta(t) = a(t)\,w(t)$ of the closed form `single_neuron`.

    [D] Equivalently $\beta(t) = P(t)Q(t)/N(t)$ in the notation of `single_neuron`.

    **Arguments:**

    As `single_neuron`.

    **Returns:**

    $\beta(t)$, shape `(T, d)`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 (β = a w, the function-space
        view of the single neuron); derivation: jaxdyn notes §2.1, Eq. 2.5 [D].
    """
    a, w = single_neuron(X, y, a0, w0, ts, eta_a, eta_w)
    return a[:, None] * w


def single_neuron_limit(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"] | Float[ArrayLike, "n 1"],
    a0: Real[ArrayLike, ""],
    w0: Real[ArrayLike, " _d"],
    eta_a: Real[ArrayLike, ""] = 1.0,
    eta_w: Real[ArrayLike, ""] = 1.0,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    max_steps: int = 256,
    throw: bool = True,
) -> Float[Array, " d"] | tuple[Float[Array, " d"], RESULTS]:
    r"""The interpolant $\beta_\infty = \lim_{t\to\infty} a(t)w(t)$ that gradient flow reaches
    when $n < d$: the implicit bias of the single neuron as a function of δ.

    **Characterisation** [D] (derivation: jaxdyn notes §4): $\dot w = -\eta_w a X^\top r/n$
    stays in the row space of $X$, so $w_\infty = w_0 + X^\top\nu$; δ is conserved, so
    $a_\infty = \operatorname{sign}(a_0)\sqrt{(\delta + \eta_a\|w_\infty\|^2)/\eta_w}$; and
    $X a_\infty w_\infty = y$. These $n$ equations in ν are solved by Newton's method
    (Optimistix), after flipping $(a_0, w_0) \to -(a_0, w_0)$ if $a_0 < 0$ (β is unchanged).
    This is the minimisation statement of the paper,
    $$\beta_\infty = \arg\min_{X\beta = y}\;
    q_\delta(\|\beta\|) - \nabla q_\delta(\beta_0)^\top\beta,$$
    a Bregman divergence from $\beta_0$ (gradient flow as a time-warped mirror flow), with, for
    $\eta_a = \eta_w = 1$, $q_\delta(r) = (s - 2\delta)\sqrt{s + \delta}/(2\sqrt 2)$,
    $s = \sqrt{\delta^2 + 4r^2}$ (jaxdyn notes Eq. 4.1 [D], matching the authors' code).

    Valid for any data (no whitening needed), $n \le d$ with $X$ of full row rank, every
    δ ≥ 0, and δ < 0 as long as `a` does not change sign along the flow; when it does, the
    limit depends on the crossing and this function does not apply (jaxdyn notes §4.6, [D]).

    **Arguments:**

    - `X`: inputs `(n, d)`, rows are samples, $n \le d$.
    - `y`: targets `(n,)`.
    - `a0`: initial readout (non-zero scalar).
    - `w0`: initial first layer `(d,)`.
    - `eta_a`, `eta_w`: layer learning rates (positive).
    - `rtol`, `atol`, `max_steps`: configure the Newton solve.
    - `throw`: if `True` (default), a failed solve (not converged in `max_steps`, non-finite
      values, or `a0 = 0` under `jit`) raises at run time through `equinox.error_if`, which
      works under `jit`/`vmap` (under `vmap` it fires if any member fails) and honours
      `EQX_ON_ERROR` (e.g. `EQX_ON_ERROR=nan` for sweeps). If `False`, nothing is raised and the
      outcome is returned alongside the value.

    **Returns:**

    $\beta_\infty$, shape `(d,)`, if `throw=True`; otherwise `(beta_inf, result)` with `result`
    a `jaxdyn.RESULTS` item: `successful`, the solver's own failure (e.g. `max_steps_reached`),
    `solver_failed` (non-finite value from a nominally converged solve) or `outside_domain`
    (`a0 = 0`, a saddle). A failed `beta_inf` is not a valid interpolant.

    **Raises:** `ValueError` on shape mismatches, non-finite data, `n > d`, or a concrete
    `a0 = 0`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 (implicit bias of the single
        neuron in the underdetermined case, as the minimiser of a δ-dependent potential:
        gradient flow as a time-warped mirror flow). The root-finding characterisation is our
        derivation (jaxdyn notes §4, Eqs. 4.1–4.3 [D]).
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
    if n > d:  # shapes are static: checked under jit too
        raise ValueError(f"`X` has n = {n} > d = {d}: use the n ≥ d least-squares solution.")
    dtype = jnp.result_type(X, a0, w0, float)
    X = X.astype(dtype)
    yv = yv.astype(dtype)
    eta_a = jnp.asarray(eta_a, dtype)
    eta_w = jnp.asarray(eta_w, dtype)
    sigma = jnp.sign(a0).astype(dtype)
    # (a, w) -> (−a, −w) leaves β unchanged: work with a > 0.
    w0 = (sigma * w0).astype(dtype)
    delta = imbalance(a0, w0, eta_a, eta_w)

    def beta_of(nu):
        w = w0 + X.T @ nu
        a = jnp.sqrt(jnp.maximum(delta + eta_a * jnp.sum(w**2), 0.0) / eta_w)
        return a * w

    def residual(nu, args):
        return X @ beta_of(nu) - yv

    solver = optx.Newton(rtol=rtol, atol=atol)
    sol = optx.root_find(residual, solver, jnp.zeros(n, dtype), max_steps=max_steps, throw=False)
    beta_inf = beta_of(sol.value)
    result = RESULTS.promote(sol.result)
    finite = jnp.all(jnp.isfinite(beta_inf))
    result = RESULTS.where((result == RESULTS.successful) & ~finite, RESULTS.solver_failed, result)
    result = RESULTS.where(a0 == 0, RESULTS.outside_domain, result)
    if throw:
        return eqx.error_if(
            beta_inf,
            result != RESULTS.successful,
            "`jd.exact.single_neuron_limit`: the implicit-bias solve failed (not converged, "
            "non-finite, or a0 = 0); pass `throw=False` to get the result instead.",
        )
    return beta_inf, result
