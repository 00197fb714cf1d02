r"""Exact gradient-flow solution of the finite-width one-hidden-layer linear network on
latent-variable data, its invariants and its phase diagram.

Xu & Ziyin (2024/2025), "Three mechanisms of feature learning in a linear network"
(arXiv:2401.07085; v2 title "... in the exact solution of a latent variable model"; ICLR 2025).

Setting. Data $x = z\,a$ ($\|a\| = 1$, $\mathbb E z^2 = 1$), $y = c z + \varepsilon$; network
$f(x) = \gamma\,u^\top W x$ of width $d$ with output multiplier $\gamma$; loss
$L = \tfrac12\mathbb E(f - y)^2$; gradient flow with layer learning rates
$\dot u = -\eta_u\partial_u L$, $\dot W = -\eta_W\partial_W L$. Only $w := W a$ moves
($W(I - aa^\top)$ is frozen), and with the residual $r = \gamma\,u\cdot w - c$

$$\dot u = -\eta_u\gamma r\,w, \qquad \dot w = -\eta_w\gamma r\,u .$$

The closed form used here (derivation: jaxdyn notes `xu_ziyin_and_spectral.md` §A.2, tagged
[D]: derived by us and checked against ODE solves; the paper's own notation and theorem
statements could not be retrieved) reduces the flow at any width to one scalar $\sigma(t)$:
with $\tilde u = u/\sqrt{\eta_u}$, $\tilde w = w/\sqrt{\eta_w}$, $\kappa = \sqrt{\eta_u\eta_w}$,

$$\tilde u(t) = \tilde u_0\cosh\sigma + \tilde w_0\sinh\sigma,\qquad
  \tilde w(t) = \tilde w_0\cosh\sigma + \tilde u_0\sinh\sigma,$$

and $X = e^{2\sigma}$ obeys the constant-coefficient Riccati equation
$\dot X = 2\kappa\gamma(-\gamma A X^2 + cX + \gamma B)$, $X(0) = 1$,
$A = \kappa\|\tilde u_0 + \tilde w_0\|^2/4$, $B = \kappa\|\tilde u_0 - \tilde w_0\|^2/4$.

The network itself is a `jaxdyn.MLP`: `jd.MLP((W, u[None, :]), multipliers=(1.0, gamma),
activation="linear")` computes exactly $\gamma\,u^\top W x$ (the multipliers get no gradient),
and the layer learning rates are the pytree `jd.MLP((eta_w, eta_u), multipliers=(0.0, 0.0),
activation="linear")` that `jd.gradient_flow(..., lr=...)` and `jd.gradient_descent` take
unchanged; `xu_ziyin_network` builds both.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real

from .._checks import check_ts, is_concrete
from .._models import MLP

__all__ = [
    "XU_ZIYIN_REGIMES",
    "XuZiyinConstants",
    "XuZiyinSolution",
    "xu_ziyin",
    "xu_ziyin_constants",
    "xu_ziyin_exponents",
    "xu_ziyin_imbalance",
    "xu_ziyin_network",
    "xu_ziyin_ntk_ratio",
    "xu_ziyin_phase",
    "xu_ziyin_regime",
]

#: Regime names, indexed by the integer codes `xu_ziyin_regime` and `xu_ziyin_phase` return.
XU_ZIYIN_REGIMES: tuple[str, ...] = ("kernel", "balanced", "rescaling", "saddle", "disalignment")


class XuZiyinSolution(eqx.Module):
    r"""Exact trajectory of the Xu–Ziyin model, as returned by `xu_ziyin`.

    **Fields:**

    Leading batch axes `(…)` of the inputs come first in every field.

    - `ts`: save times `(…, T)`.
    - `u`: readout $u(t)$, shape `(T, d)`.
    - `w`: effective first layer $w(t) = W(t)a$, shape `(T, d)`.
    - `output`: the output coefficient $\gamma\,u\cdot w$ (so $f(x) = $ `output`$\cdot z$),
      shape `(T,)`.
    - `ntk`: the scalar NTK with layer learning rates,
      $K = \gamma^2(\eta_u\|w\|^2 + \eta_w\|u\|^2)$ (the residual obeys $\dot r = -K r$),
      shape `(T,)`.
    - `sigma`: the reduced coordinate $\sigma(t)$ ($X = e^{2\sigma}$), shape `(T,)`.
    """

    ts: Float[Array, "*batch T"]
    u: Float[Array, "*batch T d"]
    w: Float[Array, "*batch T d"]
    output: Float[Array, "*batch T"]
    ntk: Float[Array, "*batch T"]
    sigma: Float[Array, "*batch T"]


class XuZiyinConstants(eqx.Module):
    r"""The scalars that fix an Xu–Ziyin trajectory, as returned by `xu_ziyin_constants`.

    **Fields:**

    - `rho`: $\rho = \tfrac{|\gamma|}{2}(\theta\|u_0\|^2 + \|w_0\|^2/\theta)$,
      $\theta = \sqrt{\eta_w/\eta_u}$ (the scale).
    - `o0`: the initial output coefficient $o_0 = \gamma\,u_0\cdot w_0$ ($|o_0| \le \rho$).
    - `zeta`: $o_0/\rho \in [-1, 1]$.
    - `imbalance`: the conserved $m = \|u\|^2/\eta_u - \|w\|^2/\eta_w$.
    - `imbalance_fraction`: $\iota = m/(\|u_0\|^2/\eta_u + \|w_0\|^2/\eta_w) \in [-1, 1]$
      (±1: one layer carries everything in rescaled units).
    - `D`: $\sqrt{c^2 + \rho^2 - o_0^2}$.
    - `kappa`: $\kappa = \sqrt{\eta_u\eta_w}$.
    - `ntk0`: the initial NTK $K_0 = 2\kappa|\gamma|\rho$.
    - `ntk_inf`: the final NTK $K_\infty = 2\kappa|\gamma| D$, also the late-time rate of
      $|r(t)|$.
    - `ntk_ratio`: $K_\infty/K_0 = D/\rho$.
    - `sigma_inf`: $\sigma(\infty) = \tfrac12\ln\frac{c + D}{\rho + o_0}$ (`inf` when the
      flow never reaches the target: $\rho + o_0 = 0$, $c > 0$).
    """

    rho: Float[Array, "..."]
    o0: Float[Array, "..."]
    zeta: Float[Array, "..."]
    imbalance: Float[Array, "..."]
    imbalance_fraction: Float[Array, "..."]
    D: Float[Array, "..."]
    kappa: Float[Array, "..."]
    ntk0: Float[Array, "..."]
    ntk_inf: Float[Array, "..."]
    ntk_ratio: Float[Array, "..."]
    sigma_inf: Float[Array, "..."]


def _check_positive(name, x):
    if is_concrete(x):
        v = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"`{name}` must be positive and finite, got {x}.")


def _check_finite(name, x):
    if is_concrete(x):
        v = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`{name}` must be finite, got {x}.")


def _check_pair(u0, w0):
    u0 = jnp.asarray(u0)
    w0 = jnp.asarray(w0)
    if u0.ndim < 1:
        raise ValueError(f"`u0` must have shape (..., d), got {u0.shape}.")
    if w0.shape != u0.shape:
        raise ValueError(
            f"`w0` must have the shape of `u0` {u0.shape} (w = W a, one entry per hidden "
            f"unit), got {w0.shape}."
        )
    if u0.shape[-1] < 1:
        raise ValueError("`u0` must have at least one hidden unit (width d ≥ 1).")
    dtype = jnp.result_type(u0, w0, float)
    u0, w0 = u0.astype(dtype), w0.astype(dtype)
    _check_finite("u0", u0)
    _check_finite("w0", w0)
    return u0, w0


def _reduced(u0, w0, gamma, eta_u, eta_w):
    """Rescaled quantities (γ ≥ 0 after flipping u); leading axes broadcast."""
    g = jnp.abs(gamma)
    sgn = jnp.where(gamma < 0, -1.0, 1.0)
    su, sw = jnp.sqrt(eta_u), jnp.sqrt(eta_w)
    ut = sgn[..., None] * u0 / su[..., None]
    wt = w0 / sw[..., None]
    p0, q0 = ut + wt, ut - wt
    kappa = su * sw
    A = kappa * jnp.sum(p0 * p0, -1) / 4
    B = kappa * jnp.sum(q0 * q0, -1) / 4
    return g, sgn, su, sw, ut, wt, p0, q0, kappa, A, B


def _log_x_minus_one(t, A, B, c, g, kappa):
    r"""$\ln(X(t) - 1)$ on the increasing branch ($c \ge \gamma(A - B)$, $X$ from 1 up to
    $X_+$), in log space so that nothing overflows: with $G = X_+ - 1$, $h = 1 - X_-$,
    $X - 1 = (1 - e^{-\lambda t})/(1/G + e^{-\lambda t}/h)$."""
    gA, gB = g * A, g * B
    D = jnp.hypot(c, 2 * jnp.sqrt(gA) * jnp.sqrt(gB))  # no overflow of 4γ²AB
    lam = 2 * kappa * g * D
    cpos = c >= 0
    Dc = D + jnp.abs(c)  # D + c for c ≥ 0, D − c for c < 0: no cancellation
    Dc_safe = jnp.where(Dc > 0, Dc, 1.0)
    gA_safe = jnp.where(gA > 0, gA, 1.0)
    # |X₋| = (D − c)/(2γA) and γA·h = γA + (D − c)/2, each in the form without cancellation.
    xm = jnp.where(cpos, 2 * gB / Dc_safe, jnp.where(gA > 0, Dc / (2 * gA_safe), jnp.inf))
    den = gA + jnp.where(cpos, 2 * gA * (gB / Dc_safe), Dc / 2)
    num = c - (gA - gB)  # = c − o₀ ≥ 0 on this branch
    log_h = jnp.log1p(xm)
    # ln(1/G) = ln(γA h) − ln(c − o₀)
    log_inv_G = jnp.log(den) - jnp.log(num)
    lt = lam * t
    log_one_minus_E = jnp.log(-jnp.expm1(-lt))
    general = log_one_minus_E - jnp.logaddexp(log_inv_G, -lt - log_h)
    # D = 0 on this branch only for A = 0 and c = 0: X = 1 + 2κγ²B t (λ = 0).
    degenerate = jnp.log(2 * kappa * g * gB * t)
    out = jnp.where(D > 0, general, degenerate)
    return jnp.where(t > 0, out, -jnp.inf)  # X(0) = 1 exactly


def _sigma(t, A, B, c, g, kappa):
    """σ(t) for γ ≥ 0 (any sign of c and of the initial residual)."""
    up = c >= g * (A - B)  # residual r₀ ≤ 0: X increases
    A1, B1, c1 = jnp.where(up, A, B), jnp.where(up, B, A), jnp.where(up, c, -c)
    half_log_x = 0.5 * jnp.logaddexp(0.0, _log_x_minus_one(t, A1, B1, c1, g, kappa))
    sig = jnp.where(up, half_log_x, -half_log_x)  # 1/X solves the swapped Riccati equation
    return jnp.where(g > 0, sig, 0.0)


def _evolve(a0, b0, s):
    r"""$a_0\cosh s + b_0\sinh s$ for vectors `a0, b0 (…, d)` and `s (…, T)` → `(…, T, d)`,
    without cancellation at small $s$ and without overflow at large $|s|$ (where one of
    $a_0 \pm b_0$ vanishes)."""
    s = s[..., None]
    a0, b0 = a0[..., None, :], b0[..., None, :]
    small = jnp.abs(s) <= 1.0
    s_small = jnp.where(small, s, 0.0)
    near = a0 * jnp.cosh(s_small) + b0 * jnp.sinh(s_small)
    s_big = jnp.clip(jnp.where(small, 1.0, s), -700.0, 700.0)
    plus, minus = a0 + b0, a0 - b0
    far = 0.5 * (
        jnp.where(plus == 0, 0.0, plus * jnp.exp(s_big))
        + jnp.where(minus == 0, 0.0, minus * jnp.exp(-s_big))
    )
    return jnp.where(small, near, far)


@jax.jit
def _solve(u0, w0, ts, c, gamma, eta_u, eta_w) -> XuZiyinSolution:
    """The closed form after validation (one compiled program per shape)."""
    g, sgn, su, sw, ut, wt, p0, q0, kappa, A, B = _reduced(u0, w0, gamma, eta_u, eta_w)
    sig = _sigma(ts, A[..., None], B[..., None], c[..., None], g[..., None], kappa[..., None])
    u = sgn[..., None, None] * su[..., None, None] * _evolve(ut, wt, sig)
    w = sw[..., None, None] * _evolve(wt, ut, sig)
    output = gamma[..., None] * jnp.sum(u * w, -1)
    ntk = gamma[..., None] ** 2 * (
        eta_u[..., None] * jnp.sum(w * w, -1) + eta_w[..., None] * jnp.sum(u * u, -1)
    )
    ts_out = jnp.broadcast_to(ts, sig.shape)
    return XuZiyinSolution(ts=ts_out, u=u, w=w, output=output, ntk=ntk, sigma=sig)


def xu_ziyin(
    u0: Real[ArrayLike, "..."],
    w0: Real[ArrayLike, "..."],
    ts: Real[ArrayLike, " T"] | Sequence[float],
    *,
    c: Real[ArrayLike, "..."],
    gamma: Real[ArrayLike, "..."] = 1.0,
    eta_u: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> XuZiyinSolution:
    r"""Exact gradient-flow trajectory of $f = \gamma\,u^\top W x$ on latent-variable data
    $x = z a$, $y = cz + \varepsilon$, at any finite width $d \ge 1$.

    Solves $\dot u = -\eta_u\gamma r w$, $\dot w = -\eta_w\gamma r u$, $r = \gamma u\cdot w - c$
    (module docstring) through the scalar $\sigma(t)$, whose Riccati equation has the closed
    form $Y(t) = Y(0)e^{-\lambda t}$, $Y = (X - X_+)/(X - X_-)$, $\lambda = 2\kappa|\gamma|D$.
    It is evaluated in log space on the branch where $X$ grows from 1 (for the other branch
    $1/X$, which solves the same equation with $(A, B, c) \to (B, A, -c)$), so it is exact
    for every sign of $c$, of $\gamma$ (γ < 0 is γ > 0 with $u \to -u$) and of the imbalance,
    stays finite for arbitrarily long times and for large or tiny scales, and covers the
    edge cases $A = 0$ ($\tilde u_0 = -\tilde w_0$: for $c > 0$ the weights decay to the
    saddle at 0 and never fit, for $c = 0$ they decay algebraically), $B = 0$ and $\gamma = 0$
    (nothing moves).

    With a finite sample $\{z_\mu\}$ the flow on `jd.data.latent_variable` data is this
    solution with $c \to \hat c = \sum z_\mu y_\mu/\sum z_\mu^2$ and time multiplied by
    $S_{zz} = \overline{z^2}$ (see `jd.data.latent_statistics`); for the network itself use
    `xu_ziyin_network`.

    **Arguments:**

    - `u0`: initial readout, shape `(d,)` (or `(..., d)`: leading axes broadcast with the
      scalars).
    - `w0`: initial effective first layer $w_0 = W_0 a$, shape of `u0`.
    - `ts`: save times `(T,)`, starting at 0, strictly increasing.
    - `c`: the target coefficient $y = cz + \varepsilon$ (any sign).
    - `gamma`: output multiplier γ (any sign).
    - `eta_u`, `eta_w`: layer learning rates (> 0).

    **Returns:**

    A `XuZiyinSolution` with `u (…, T, d)`, `w (…, T, d)`, `output (…, T)`, `ntk (…, T)`,
    `sigma (…, T)`.

    **Raises:** `ValueError` naming the argument for mismatched shapes, non-finite inputs,
    non-positive learning rates or bad `ts` (value checks skipped for traced inputs).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    u0, w0 = _check_pair(u0, w0)
    ts = check_ts(ts)
    for name, v in (("c", c), ("gamma", gamma)):
        _check_finite(name, v)
    _check_positive("eta_u", eta_u)
    _check_positive("eta_w", eta_w)
    dtype = u0.dtype
    args = (jnp.asarray(v, dtype) for v in (c, gamma, eta_u, eta_w))
    return _solve(u0, w0, ts.astype(dtype), *args)


def xu_ziyin_imbalance(
    u: Real[ArrayLike, "..."],
    w: Real[ArrayLike, "..."],
    eta_u: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> Float[Array, "..."]:
    r"""The conserved imbalance $m = \|u\|^2/\eta_u - \|w\|^2/\eta_w$ of the Xu–Ziyin flow.

    Constant along gradient flow with layer rates $(\eta_u, \eta_w)$ at every width (it is
    $\tilde p\cdot\tilde q$, and $\dot p \propto p$, $\dot q \propto -q$ with the same rate);
    under gradient descent it shrinks, $m_{k+1} = (1 - \kappa^2\gamma^2 r_k^2)m_k$.

    **Arguments:**

    - `u`: readouts `(..., d)` (e.g. a trajectory `(T, d)`).
    - `w`: effective first layers `(..., d)`, same shape.
    - `eta_u`, `eta_w`: layer learning rates (broadcast over the leading axes).

    **Returns:**

    $m$ over the leading axes.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    u, w = jnp.asarray(u), jnp.asarray(w)
    if u.shape != w.shape:
        raise ValueError(f"`w` must have the shape of `u` {u.shape}, got {w.shape}.")
    return jnp.sum(u * u, -1) / jnp.asarray(eta_u) - jnp.sum(w * w, -1) / jnp.asarray(eta_w)


def xu_ziyin_ntk_ratio(
    c: Real[ArrayLike, "..."], rho: Real[ArrayLike, "..."], o0: Real[ArrayLike, "..."]
) -> Float[Array, "..."]:
    r"""The closed-form final/initial NTK ratio $K_\infty/K_0 = \sqrt{c^2 + \rho^2 - o_0^2}/\rho$.

    Greater than 1 (alignment: the kernel grows) when $|c| > |o_0|$, smaller than 1
    (disalignment) when $|o_0| > |c|$; $\to 1$ in the kernel limit $\rho \to \infty$ with
    bounded $o_0$; $\approx |c|/\rho$ from a small initialisation.

    **Arguments:**

    - `c`: the target coefficient.
    - `rho`: the scale ρ (`XuZiyinConstants.rho`), > 0.
    - `o0`: the initial output coefficient $\gamma u_0\cdot w_0$, $|o_0| \le \rho$.

    **Returns:**

    $K_\infty/K_0$ (broadcast shape).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    c, rho, o0 = (jnp.asarray(v) for v in (c, rho, o0))
    return (
        jnp.hypot(c, jnp.sqrt(jnp.maximum(rho - o0, 0.0)) * jnp.sqrt(jnp.maximum(rho + o0, 0.0)))
        / rho
    )


@jax.jit
def _constants(u0, w0, c, gamma, eta_u, eta_w) -> XuZiyinConstants:
    g, _, _, _, ut, wt, _, _, kappa, A, B = _reduced(u0, w0, gamma, eta_u, eta_w)
    rho = g * (A + B)
    o0 = gamma * jnp.sum(u0 * w0, -1)
    D = jnp.hypot(c, jnp.sqrt(jnp.maximum(rho - o0, 0.0)) * jnp.sqrt(jnp.maximum(rho + o0, 0.0)))
    nu, nw = jnp.sum(ut * ut, -1), jnp.sum(wt * wt, -1)
    m = nu - nw
    safe = lambda x: jnp.where(x > 0, x, 1.0)  # noqa: E731
    # X₊ = (c + D)/(ρ + o₀) = 2γB/(D − c) (the latter for c < 0: no cancellation)
    xp = jnp.where(c >= 0, (c + D) / safe(rho + o0), 2 * g * B / safe(D - c))
    xp = jnp.where((c >= 0) & (rho + o0 <= 0), jnp.where(c > 0, jnp.inf, 1.0), xp)
    return XuZiyinConstants(
        rho=rho,
        o0=o0,
        zeta=o0 / safe(rho),
        imbalance=m,
        imbalance_fraction=m / safe(nu + nw),
        D=D,
        kappa=kappa,
        ntk0=2 * kappa * g * rho,
        ntk_inf=2 * kappa * g * D,
        ntk_ratio=D / safe(rho),
        sigma_inf=0.5 * jnp.log(xp),
    )


def xu_ziyin_constants(
    u0: Real[ArrayLike, "..."],
    w0: Real[ArrayLike, "..."],
    *,
    c: Real[ArrayLike, "..."],
    gamma: Real[ArrayLike, "..."] = 1.0,
    eta_u: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> XuZiyinConstants:
    r"""The scalars that decide the regime of an Xu–Ziyin initialisation: ρ, $o_0$, the
    imbalance, and the closed-form NTK ratio and final σ.

    Only $(c, \rho, o_0)$ set the regime (`xu_ziyin_regime`); the imbalance decides which
    layer moves. $K_\infty/K_0 = D/\rho$ and $\sigma_\infty = \frac12\ln X_+$ with
    $X_+ = (c + D)/(\rho + o_0)$ (the output converges to $c$ whenever $\rho + o_0 > 0$ or
    $c < 0$).

    **Arguments:**

    - `u0`, `w0`: initial readout and effective first layer, shape `(..., d)`.
    - `c`: the target coefficient.
    - `gamma`: output multiplier.
    - `eta_u`, `eta_w`: layer learning rates (> 0).

    **Returns:**

    A `XuZiyinConstants` (every field over the leading axes).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    u0, w0 = _check_pair(u0, w0)
    _check_positive("eta_u", eta_u)
    _check_positive("eta_w", eta_w)
    dtype = u0.dtype
    return _constants(u0, w0, *(jnp.asarray(v, dtype) for v in (c, gamma, eta_u, eta_w)))


def xu_ziyin_regime(
    c: Real[ArrayLike, "..."],
    rho: Real[ArrayLike, "..."],
    o0: Real[ArrayLike, "..."],
    imbalance_fraction: Real[ArrayLike, "..."] = 0.0,
    *,
    kernel_tol: float = 0.1,
    saddle_ratio: float = 0.1,
    imbalance_tol: float = 0.9,
) -> Int[Array, "..."]:
    r"""Regime of an Xu–Ziyin initialisation at finite size, from $(c, \rho, o_0)$ and the
    imbalance fraction ι; an index into `XU_ZIYIN_REGIMES`.

    In this order:

    - `4` **disalignment** if $|o_0| > |c|$: the initial output is too large and is cancelled
      by rotating $u$ and $w$ apart; the NTK decreases ($K_\infty < K_0$, exactly when
      $|o_0| > |c|$).
    - `3` **saddle** (alignment from a small init: a plateau, then both layers grow aligned)
      if $\rho \le$ `saddle_ratio`$\cdot|c|$.
    - `0` **kernel** if $K_\infty/K_0 - 1 \le$ `kernel_tol` (the NTK barely moves).
    - `2` **rescaling** if $|\iota| \ge$ `imbalance_tol` (feature learning where the dominant
      layer, in rescaled units, keeps its direction and only changes its norm).
    - `1` **balanced** feature learning (learning by alignment) otherwise.

    The thresholds are conventions for finite sizes; the exact statements behind them are
    $K_\infty/K_0 = \sqrt{1 + (c^2 - o_0^2)/\rho^2}$ and the limits of the notes' phase
    tables. The naming of the three mechanisms is our reading of the paper's abstract
    ([R] in the notes), tested against the flow in `tests/test_xu_ziyin.py`.

    **Arguments:**

    - `c`: target coefficient.
    - `rho`: the scale ρ (> 0).
    - `o0`: the initial output coefficient.
    - `imbalance_fraction`: ι of `XuZiyinConstants` (default 0: balanced).
    - `kernel_tol`, `saddle_ratio`, `imbalance_tol`: the thresholds above.

    **Returns:**

    Integer regime codes (broadcast shape).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    c, rho, o0, iota = (jnp.asarray(v) for v in (c, rho, o0, imbalance_fraction))
    ratio = xu_ziyin_ntk_ratio(c, rho, o0)
    code = jnp.where(jnp.abs(iota) >= imbalance_tol, 2, 1)
    code = jnp.where(ratio - 1 <= kernel_tol, 0, code)
    code = jnp.where(rho <= saddle_ratio * jnp.abs(c), 3, code)
    return jnp.where(jnp.abs(o0) > jnp.abs(c), 4, code).astype(jnp.int32)


def xu_ziyin_exponents(
    a: float | int,
    b_u: float | int,
    b_w: float | int,
    c_u: float | int = 0.0,
    c_w: float | int = 0.0,
) -> tuple[float, float, float]:
    r"""Width exponents of the Xu–Ziyin model under the scaling $\gamma = d^{-a}$,
    $u_i \sim N(0, d^{-2b_u})$, $w_i \sim N(0, d^{-2b_w})$, $\eta_u \propto d^{-c_u}$,
    $\eta_w \propto d^{-c_w}$.

    Returns $s = 1 - a - b_u - b_w$ ($\gamma\|u_0\|\|w_0\| \sim d^s$, the scale),
    $\delta = (c_u - c_w)/2 - b_u + b_w$ ($\|\tilde u_0\|/\|\tilde w_0\| \sim d^\delta$, the
    imbalance) and $e_\rho = s + |\delta|$ ($\rho \sim d^{e_\rho}$).

    Examples: NTP ($a = \tfrac12$) gives $(\tfrac12, 0, \tfrac12)$; SP (LeCun init, one
    global rate ∝ 1/d: $b_u = \tfrac12$, $c_u = c_w = 1$) $(\tfrac12, -\tfrac12, 1)$;
    mean field ($a = 1$, $c_u = c_w = -1$) and μP / the spectral parametrization
    ($b_u = 1$, $c_u = 1$, $c_w = -1$) $(0, 0, 0)$.

    **Arguments:**

    - `a`: output-multiplier exponent.
    - `b_u`, `b_w`: init-std exponents of the readout and the first layer.
    - `c_u`, `c_w`: learning-rate exponents.

    **Returns:**

    `(s, delta, e_rho)` as Python floats.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    s = 1.0 - a - b_u - b_w
    delta = (c_u - c_w) / 2.0 - b_u + b_w
    return s, delta, s + abs(delta)


def xu_ziyin_phase(
    a: float | int,
    b_u: float | int,
    b_w: float | int,
    c_u: float | int = 0.0,
    c_w: float | int = 0.0,
    *,
    tol: float = 1e-9,
) -> int:
    r"""Infinite-width regime of the Xu–Ziyin model from its width exponents (the notes'
    phase table, GF, $c = \Theta(1)$, i.i.d. Gaussian init); an index into
    `XU_ZIYIN_REGIMES`.

    With $(s, \delta, e_\rho)$ of `xu_ziyin_exponents`:

    - $s > \tfrac12$: `4` disalignment (divergent initial output; the NTK decreases, by
      $o_0^2/2\rho^2 \to 0$: lazy but disaligning);
    - $e_\rho > 0$, $s \le \tfrac12$: `0` kernel ($|K_\infty/K_0 - 1| = \Theta(d^{-2e_\rho})$);
    - $e_\rho = 0$, $\delta = 0$: `1` balanced feature learning
      ($K_\infty/K_0 \to \sqrt{1 + c^2/\rho^2}$, both layers move Θ(1));
    - $e_\rho = 0$, $\delta \ne 0$: `2` rescaling (the dominant layer keeps its direction);
    - $e_\rho < 0$: `3` saddle (both layers grow from ≈ 0).

    The table's formulas are derived and checked numerically ([D]); the names of the
    mechanisms are our reading of the paper ([R]). Note that the kernel phase by the NTK
    criterion can still move one layer by Θ(1) when $|\delta| > 0$ (the small layer moves as
    $d^{-e_\rho + |\delta|}$): report the per-layer changes too (`jd.metrics`).

    **Arguments:**

    - `a`, `b_u`, `b_w`, `c_u`, `c_w`: the exponents (see `xu_ziyin_exponents`).
    - `tol`: exponents within `tol` of a boundary count as on it.

    **Returns:**

    The regime code (a Python int).

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    s, delta, e_rho = xu_ziyin_exponents(a, b_u, b_w, c_u, c_w)
    if s > 0.5 + tol:
        return 4
    if e_rho > tol:
        return 0
    if e_rho < -tol:
        return 3
    return 1 if abs(delta) <= tol else 2


def xu_ziyin_network(
    u: Real[ArrayLike, "..."],
    W: Real[ArrayLike, "..."],
    *,
    gamma: Real[ArrayLike, "..."] = 1.0,
    eta_u: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> tuple[MLP, MLP]:
    r"""The Xu–Ziyin network $f(x) = \gamma\,u^\top W x$ as a `jaxdyn.MLP` and its
    layer-learning-rate pytree, ready for `jd.gradient_flow(model, data, ts, lr=lr)` and
    `jd.gradient_descent`.

    The model is `jd.MLP((W, u[..., None, :]), multipliers=(1, γ), activation="linear")`
    (layer 0 is $W$ `(d, d_in)`, layer 1 the readout `(1, d)`; the multipliers receive no
    gradient), the rates `jd.MLP((η_w, η_u), multipliers=(0, 0), activation="linear")`.
    Leading (batch) axes on `u`, `W` and the scalars are kept, so a batch of networks goes
    to `jd.gradient_flow(..., batch=...)` directly. On data $x = z a$ the flow of `W a` and
    `u` is `xu_ziyin` (use `w = W @ a`).

    **Arguments:**

    - `u`: readout `(..., d)`.
    - `W`: first layer `(..., d, d_in)`.
    - `gamma`: output multiplier.
    - `eta_u`, `eta_w`: layer learning rates (≥ 0).

    **Returns:**

    `(model, lr)`.

    ??? cite "Reference"

        Xu & Ziyin 2024, *Three mechanisms of feature learning in a linear network*,
        arXiv:2401.07085 (ICLR 2025): the exactly solvable latent-variable model and its
        mechanisms (abstract, §1). The closed form, invariants and formulas here are our
        derivation (jaxdyn notes `xu_ziyin_and_spectral.md` §A.2–A.3), checked against
        DOP853 and `jd.gradient_flow` solves in `tests/test_xu_ziyin.py`; the paper's own
        equation numbers could not be retrieved.
    """
    u, W = jnp.asarray(u), jnp.asarray(W)
    if W.ndim < 2 or W.shape[:-1] != u.shape:
        raise ValueError(
            f"`W` must have shape (..., d, d_in) with (..., d) = the shape of `u` {u.shape}, "
            f"got {W.shape}."
        )
    dtype = jnp.result_type(u, W, float)
    lead = u.shape[:-1]
    full = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype), lead)  # noqa: E731
    gamma, eta_u, eta_w = full(gamma), full(eta_u), full(eta_w)
    one = jnp.ones(lead, dtype)
    model = MLP((W.astype(dtype), u.astype(dtype)[..., None, :]), (one, gamma), "linear")
    zero = jnp.zeros(lead, dtype)
    mat = lead + ((1, 1) if lead else ())  # a batched leaf keeps its batch axis
    lr = MLP((eta_w.reshape(mat), eta_u.reshape(mat)), (zero, zero), "linear")
    return model, lr
