r"""Exact learning dynamics of two-layer linear networks.

- Saxe, McClelland, Ganguli (2014), "Exact solutions to the nonlinear dynamics of learning in
  deep linear neural networks" (ICLR 2014, arXiv:1312.6120): aligned zero-balanced modes
  (`saxe_modes`).
- Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe (2024), "From Lazy to Rich: Exact
  Learning Dynamics in Deep Linear Networks" (ICLR 2025, arXiv:2409.14623): the λ-balanced
  matrix Riccati solution (`lambda_balanced`), its aligned scalar form
  (`lambda_balanced_mode`), reversal learning (`reversal_time`) and the finite-width NTK
  (`ntk_two_layer_linear`, `ntk_from_solution`). Theorem, lemma and equation numbers of
  Dominé et al. refer to the ICLR 2025 version.

Conventions (jaxdyn): rows of `X (n, d)` are samples, `Y (n, o)`,
$L = \frac{1}{2n}\sum_i \|W_2W_1x_i - y_i\|^2$ and gradient flow $\tau\,\dot W = -\nabla_W L$
(learning rate $1/\tau$). The papers' $\tilde\Sigma_{yx}$ is `Y.T @ X / n` here.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from .._checks import is_concrete
from .._results import RESULTS
from ..data._whitening import check_whitened, whitening_tol
from ..init._linear import split_singular_values

__all__ = [
    "LambdaBalancedSolution",
    "lambda_balanced",
    "saxe_modes",
    "lambda_balanced_mode",
    "reversal_time",
    "ntk_two_layer_linear",
    "ntk_from_solution",
]

# Numerical knobs of the stable form (see `lambda_balanced`'s docstring).
_PIVOT_TOL = 1e4  # × eps: a task mode whose B-column is this dependent is treated as unlearnable
_COND_FALLBACK = 1e3  # above this cond(B) the Fukumizu form is used at early times


def _float_dtype(*xs):
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jax.dtypes.canonicalize_dtype(jnp.float64)
    return dt


class LambdaBalancedSolution(eqx.Module):
    r"""Exact trajectory of a λ-balanced two-layer linear network, as returned by
    `lambda_balanced`: the blocks of $QQ^\top(t)$, $Q = [W_1^\top; W_2]$.

    **Fields:**

    - `ts`: save times, shape `(T,)`.
    - `product`: network function $W_2W_1(t)$, shape `(T, o, d)`.
    - `gram_in`: input-side representation $W_1^\top W_1(t)$, shape `(T, d, d)`.
    - `gram_out`: output-side representation $W_2W_2^\top(t)$, shape `(T, o, o)`.
    - `loss`: the MSE $\frac{1}{2n}\sum_i\|W_2W_1x_i - y_i\|^2$ at each time, shape `(T,)`.
    - `lam`: the conserved imbalance λ (scalar).
    - `fallback`: `(T,)` bool, where the Fukumizu form (early times, ill-conditioned `B`) was
      used instead of the stable form.
    - `result`: a `jaxdyn.RESULTS` item: `successful`; `outside_domain` when the inputs are
      outside the solution's domain (not whitened, not λ-balanced, non-finite, negative or
      infinite times, or τ ≤ 0; checked inside `jit`, so also for traced inputs, where no
      `ValueError` can be raised); `solver_failed` when valid inputs gave non-finite output
      (the Cholesky factorisation or triangular solve failed). Under `vmap`, one item per
      member.
    """

    ts: Float[Array, " T"]
    product: Float[Array, "T o d"]
    gram_in: Float[Array, "T d d"]
    gram_out: Float[Array, "T o o"]
    loss: Float[Array, " T"]
    lam: Float[Array, ""]
    fallback: Bool[Array, " T"]
    result: RESULTS


def _w(a, m, x):
    r"""$e^{-ax}(e^{mx} - 1)/m$ (→ $x e^{-ax}$ as $m \to 0$) with no overflow, for $a \ge 0$.

    Exact whenever $a \ge m$; where $a < m$ (only reached with a coefficient that is zero)
    the positive exponent is clipped to 0 so the result stays finite.
    """
    mx = m * x
    m_safe = jnp.where(m == 0, 1.0, m)
    small = jnp.exp(-a * x) * jnp.where(m == 0, x, jnp.expm1(jnp.minimum(mx, 1.0)) / m_safe)
    large = (jnp.exp(jnp.minimum((m - a) * x, 0.0)) - jnp.exp(-a * x)) / m_safe
    return jnp.where(mx <= 1.0, small, large)


def _j(m, x):
    """(e^{mx} - 1)/m with the m → 0 limit x (may overflow: Fukumizu form only)."""
    m_safe = jnp.where(m == 0, 1.0, m)
    return jnp.where(m == 0, x, jnp.expm1(m * x) / m_safe)


def _cd(s, lam):
    r"""$c = \cos\theta$, $d = \sin\theta$ with $\cos 2\theta = -\lambda/2\omega$,
    $\sin 2\theta = s/\omega$, computed without cancellation (digest §2.3)."""
    om = jnp.sqrt(s**2 + lam**2 / 4)
    om_safe = jnp.where(om > 0, om, 1.0)
    big = jnp.where(om > 0, (2 * om + jnp.abs(lam)) / (4 * om_safe), 0.5)
    small = jnp.where(om > 0, s**2 / (om_safe * (2 * om + jnp.abs(lam))), 0.5)
    c = jnp.sqrt(jnp.where(lam >= 0, small, big))
    d = jnp.sqrt(jnp.where(lam >= 0, big, small))
    return om, c, d


def _balance_tol(dtype) -> float:
    """Tolerance of the λ-balance check, relative to 1 + max|W2ᵀW2| + max|W1W1ᵀ|: 10·√ε, the
    same as the whitening check's (`jaxdyn.data.whitening_tol`)."""
    return whitening_tol(dtype)


def _check_inputs(W1_0, W2_0, X, Y, ts, tau):
    if W1_0.ndim != 2 or W2_0.ndim != 2 or W2_0.shape[1] != W1_0.shape[0]:
        raise ValueError(
            f"`W1_0, W2_0` must have shapes (h, d) and (o, h); got {W1_0.shape}, {W2_0.shape}."
        )
    h, d = W1_0.shape
    o = W2_0.shape[0]
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"`X` must have shape (n, d={d}), got {X.shape}.")
    if Y.ndim != 2 or Y.shape != (X.shape[0], o):
        raise ValueError(f"`Y` must have shape (n={X.shape[0]}, o={o}) or (n,), got {Y.shape}.")
    if ts.ndim != 1:
        raise ValueError(f"`ts` must be 1-D, got shape {ts.shape}.")
    if is_concrete(X, Y):
        if not (np.all(np.isfinite(np.asarray(X))) and np.all(np.isfinite(np.asarray(Y)))):
            raise ValueError("`X` and `Y` must be finite (found NaN or inf).")
    check_whitened(X, name="X", purpose="the exact λ-balanced solution")
    if is_concrete(W1_0, W2_0):
        A, B = np.asarray(W1_0), np.asarray(W2_0)
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
            raise ValueError("`W1_0, W2_0` must be finite.")
        G2, G1 = B.T @ B, A @ A.T
        # Zero units (a narrower net padded with `jaxdyn.init.mask_width`) are exempt.
        live = (np.sum(A**2, axis=1) + np.sum(B**2, axis=0)) > 0
        D = (G2 - G1)[np.ix_(live, live)]
        lam = float(np.mean(np.diag(D))) if D.size else 0.0
        err = float(np.max(np.abs(D - lam * np.eye(D.shape[0])))) if D.size else 0.0
        size = 1.0 + float(np.max(np.abs(G2))) + float(np.max(np.abs(G1)))
        if not err <= _balance_tol(A.dtype) * size:
            raise ValueError(
                "`W1_0, W2_0` must be λ-balanced, W2_0ᵀW2_0 − W1_0W1_0ᵀ = λ I_h "
                f"(max deviation from λ·I is {err:.3g} at λ = {lam:.6g}); "
                "see `jaxdyn.init.lambda_balanced`."
            )
    if is_concrete(ts) and ts.shape[0] > 0 and not np.all(np.asarray(ts) >= 0):
        raise ValueError("`ts` must be non-negative.")
    if is_concrete(tau) and not float(tau) > 0:
        raise ValueError(f"`tau` must be positive, got {tau!r}.")


def lambda_balanced(
    W1_0: Float[ArrayLike, "h d"],
    W2_0: Float[ArrayLike, "o _h"],
    X: Float[ArrayLike, "n d"],
    Y: Float[ArrayLike, "n _o"] | Float[ArrayLike, " n"],
    ts: Real[ArrayLike, " T"],
    tau: Real[ArrayLike, ""] = 1.0,
) -> LambdaBalancedSolution:
    r"""Exact gradient-flow trajectory of a λ-balanced two-layer linear network.

    For $f(x) = W_2W_1x$ trained on whitened inputs ($X^\top X/n = I_d$) by
    $\tau\dot W = -\nabla_W L$ from weights with $W_2^\top W_2 - W_1W_1^\top = \lambda I_h$,
    $Q = [W_1^\top; W_2]$ obeys the Riccati equation
    $$\tau\,\tfrac{d}{dt}QQ^\top = FQQ^\top + QQ^\top F - (QQ^\top)^2,\qquad
    F = \begin{bmatrix}-\tfrac{\lambda}{2}I_d & \tilde\Sigma_{yx}^\top\\
    \tilde\Sigma_{yx} & \tfrac{\lambda}{2}I_o\end{bmatrix}.$$
    With the eigenvectors $O = [O^+, O^-, O_\perp]$ of $F$ (eigenvalues
    $\omega_\alpha = \sqrt{\tilde s_\alpha^2 + \lambda^2/4}$, $-\omega_\alpha$ and
    $\mu_\perp = \mathrm{sgn}(o-d)\lambda/2$) and $K = O^\top Q_0 = [B^\top; C^\top; D^\top]$,
    the exact solution (in Fukumizu's 1998 form) is
    $$QQ^\top(t) = Oe^{\Lambda x}K\,[I + K^\top J(x) K]^{-1}K^\top e^{\Lambda x}O^\top,\qquad
    x = t/\tau,\ J = (e^{2\Lambda x} - I)(2\Lambda)^{-1}.$$

    It is evaluated in a numerically stable form: right-multiplying by
    $T(x) = [\,B_P(B_P^\top B_P)^{-1}e^{-\Omega_P x},\ N e^{-\nu x}\,]$ — pivot modes $P$ (task
    modes whose column of $B$ is independent of the earlier, faster ones), $N$ an orthonormal
    basis of the hidden directions not seen by them, $\nu = \max(\mu_\perp, 0)$ — leaves
    $QQ^\top = Z M^{-1} Z^\top$ with every exponent non-positive, so it is finite at any
    $t$ and any λ, and $M$ is factorised by Cholesky (no explicit inverse). For
    $h = \min(d, o)$ and invertible $B$ this is exactly the paper's form; it also covers
    ([D], our extension, checked against ODE solves):

    - the wider admissible shapes `h > min(d, o)` (then `h - min(d, o)` extra hidden
      directions follow the ⊥ block, growing at rate $\mu_\perp \geq 0$);
    - narrow nets `h < min(d, o)` (the `h` fastest modes present in $Q_0$ are learned);
    - singular $B$ (square net at λ = 0 with sign det $W_2W_1(0) \ne$ sign det
      $\tilde\Sigma_{yx}$, λ = 0 reversal learning): the unlearnable modes stay on the stable
      manifold, giving the saddle the ODE converges to.

    When $B$ is ill-conditioned but not singular (cond > 1e3: e.g. square nets with a
    wrong-sign mode at tiny |λ|), the stable form loses accuracy at early times, so there
    the Fukumizu form is used instead, up to $x(\omega_{max}+\omega_{min}) = \ln\mathrm{cond}(B)$
    (chosen per time with `jnp.where`; see `fallback`). Its error grows like
    $\epsilon\,e^{2\omega_{max}x}$, so expect about $\epsilon\,\mathrm{cond}(B)^{2\omega_{max}
    /(\omega_{max}+\omega_{min})}$ relative error around the switch (≈1e-8 at cond = 1e6 with
    a moderate spread of ω; worse for cond ≳ 1e8, i.e. |λ| ≲ 1e-8 with wrong-sign modes).

    **Arguments:**

    - `W1_0`: first layer at t = 0, shape `(h, d)`.
    - `W2_0`: second layer at t = 0, shape `(o, h)`; with `W1_0` λ-balanced,
      $W_2^\top W_2 - W_1W_1^\top = \lambda I_h$ (zero units, as padded by
      `jaxdyn.init.mask_width`, are exempt).
    - `X`: inputs, shape `(n, d)`, rows are samples, whitened: `X.T @ X / n == I_d`
      (checked with `jaxdyn.data.check_whitened` when concrete).
    - `Y`: targets, shape `(n, o)` or `(n,)`.
    - `ts`: non-negative save times, shape `(T,)`.
    - `tau`: time constant τ = 1/learning rate (positive).

    **Returns:**

    A `LambdaBalancedSolution` with `product`, `gram_in`, `gram_out`, `loss` at every time and
    its `result` (`jaxdyn.RESULTS.successful`, or `outside_domain` / `solver_failed`).

    **Raises:** `ValueError` (when the inputs are concrete) if `X` is not whitened,
    `W1_0, W2_0` are not λ-balanced, or on shape mismatches, non-finite data, negative times
    or τ ≤ 0. For traced inputs the same conditions are reported in `result` instead.
    Jittable and vmappable.

    ??? cite "Reference"

        Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe 2024, *From Lazy to Rich: Exact
        Learning Dynamics in Deep Linear Networks*, ICLR 2025, arXiv:2409.14623, Theorem 4.3 /
        Eqs. (13)–(15) (the λ-balanced solution) and Lemma 4.2 (eigendecomposition of F).
        Fukumizu 1998, *Effect of batch learning in multilayer neural networks* (ICONIP 1998),
        for the form $e^{Fx}Q_0[I + Q_0^\top J Q_0]^{-1}Q_0^\top e^{Fx}$ used at early times.
        Braun, Dominé, Fitzgerald, Saxe 2022, *Exact learning dynamics of deep linear networks
        with prior knowledge*, NeurIPS 2022, for the λ = 0 case. The pivoted stable form is our
        derivation (jaxdyn notes, Dominé digest §2.5 [D]).
    """
    W1_0 = jnp.asarray(W1_0)
    W2_0 = jnp.asarray(W2_0)
    dtype = _float_dtype(W1_0, W2_0, X, Y)
    W1_0 = W1_0.astype(dtype)
    W2_0 = W2_0.astype(dtype)
    X = jnp.asarray(X, dtype)
    Y = jnp.asarray(Y, dtype)
    if Y.ndim == 1:
        Y = Y[:, None]
    ts = jnp.asarray(ts, dtype)
    _check_inputs(W1_0, W2_0, X, Y, ts, tau)
    # Pad the time axis to a power of two (≥ 64 for small nets) so that calls with different
    # numbers of save times share one compiled program.
    T = ts.shape[0]
    T_min = 64 if (d_o := X.shape[1] + Y.shape[1]) <= 32 else 8 if d_o > 128 else 16
    T_pad = max(T_min, 1 << max(T - 1, 0).bit_length())
    ts_pad = jnp.concatenate([ts, jnp.zeros((T_pad - T,), dtype)])
    sol = _lambda_balanced(W1_0, W2_0, X, Y, ts_pad, jnp.asarray(tau, dtype))
    return jax.tree.map(lambda a: a[:T] if a.ndim > 0 else a, sol)


@jax.jit
def _lambda_balanced(W1_0, W2_0, X, Y, ts, tau) -> LambdaBalancedSolution:
    dtype = W1_0.dtype
    h, d = W1_0.shape
    o = W2_0.shape[0]
    n = X.shape[0]
    r = min(d, o)
    p = abs(d - o)
    eps = jnp.finfo(dtype).eps

    Syx = Y.T @ X / n
    # λ from the units that are not identically zero: a width-h net embedded at a larger width
    # with zero extra units (`jaxdyn.init.mask_width`) has 0 instead of λ on those diagonal
    # entries, and such units never move, so they must not dilute λ. (Every unit of a
    # λ-balanced net with λ ≠ 0 is non-zero, ‖w1_k‖² + ‖w2_k‖² ≥ |λ|.)
    live = (jnp.sum(W1_0**2, axis=1) + jnp.sum(W2_0**2, axis=0)) > 0
    n_live = jnp.maximum(jnp.sum(live), 1).astype(dtype)
    lam = jnp.sum(jnp.where(live, jnp.diag(W2_0.T @ W2_0 - W1_0 @ W1_0.T), 0.0)) / n_live

    # Eigendecomposition of F (digest §2.3).
    U, s, Vt = jnp.linalg.svd(Syx, full_matrices=True)
    V = Vt.T
    Ut, Vtl = U[:, :r], V[:, :r]
    om, c, dd = _cd(s, lam)
    Op = jnp.concatenate([Vtl * c, Ut * dd], axis=0)
    Om = jnp.concatenate([-Vtl * dd, Ut * c], axis=0)
    if d > o:
        Operp = jnp.concatenate([V[:, r:], jnp.zeros((o, p), dtype)], axis=0)
        mu = -lam / 2
    elif o > d:
        Operp = jnp.concatenate([jnp.zeros((d, p), dtype), U[:, r:]], axis=0)
        mu = lam / 2
    else:
        Operp = jnp.zeros((d + o, 0), dtype)
        mu = jnp.zeros((), dtype)
    O = jnp.concatenate([Op, Om, Operp], axis=1)  # (d+o, d+o), orthogonal
    rates = jnp.concatenate([om, -om, jnp.broadcast_to(mu, (p,))])
    Q0 = jnp.concatenate([W1_0.T, W2_0], axis=0)  # (d+o, h)
    K = O.T @ Q0  # rows: B^T (r), C^T (r), D^T (p)
    Bm = K[:r].T  # (h, r), columns b_alpha, modes sorted by decreasing omega

    # Pivoted Gram–Schmidt over the modes in order of decreasing omega.
    # Scale of Q0 (not of B: in λ = 0 reversal learning B itself is zero up to rounding).
    bscale = jnp.maximum(jnp.linalg.norm(Q0, ord=2), jnp.finfo(dtype).tiny)
    Qb = jnp.zeros((h, r), dtype)
    mask = []
    for j in range(r):
        v = Bm[:, j]
        v = v - Qb @ (Qb.T @ v)
        v = v - Qb @ (Qb.T @ v)
        nv = jnp.linalg.norm(v)
        ok = nv > _PIVOT_TOL * eps * bscale
        Qb = Qb.at[:, j].set(jnp.where(ok, v / jnp.where(ok, nv, 1.0), 0.0))
        mask.append(ok)
    mask = jnp.stack(mask) if r > 0 else jnp.zeros((0,), bool)
    Rb = jnp.triu(Qb.T @ Bm)
    both = mask[:, None] & mask[None, :]
    Rt = jnp.where(both, Rb, jnp.eye(r, dtype=dtype))
    TP = solve_triangular(Rt, Qb.T, lower=False).T  # (h, r); b_j^T TP[:, c] = δ_jc on pivots
    # Condition of the pivot block (rest modes replaced by the largest pivot scale).
    diag_scale = jnp.where(mask, 0.0, bscale)
    sv = jnp.linalg.svd(Rt * both + jnp.diag(diag_scale), compute_uv=False)
    condB = sv[0] / jnp.maximum(sv[-1], jnp.finfo(dtype).tiny) if r > 0 else jnp.ones((), dtype)
    # Hidden directions orthogonal to the pivots' span, among the live units (a zero unit adds
    # nothing to QQᵀ; keeping it would put e^{-2νx} on M's diagonal, which underflows).
    ev, evec = jnp.linalg.eigh(jnp.diag(live.astype(dtype)) - Qb @ Qb.T)
    maskN = ev > 0.5
    Nb = evec * maskN[None, :]
    Tb = jnp.concatenate([TP, Nb], axis=1)  # (h, r + h)
    cmask = jnp.concatenate([mask, maskN])
    nu_N = jnp.maximum(mu, 0.0)
    nu = jnp.concatenate([om, jnp.broadcast_to(nu_N, (h,))])
    Abar = K @ Tb  # (d+o, r+h)
    # Pivot rows are exactly [I, 0] (B_P^T T_P = I, B_P^T N = 0): set them exactly, so that
    # rounding is never multiplied by a growing exponential.
    top = jnp.where(mask[:, None], jnp.eye(r, r + h, dtype=dtype), Abar[:r])
    Abar = jnp.concatenate([top, Abar[r:]], axis=0)
    G0 = Tb.T @ Tb
    Mmask = jnp.diag(1.0 - cmask.astype(dtype))

    om_max = jnp.max(om) if r > 0 else jnp.zeros((), dtype)
    om_min = jnp.min(om) if r > 0 else jnp.zeros((), dtype)
    use_fallback = condB > _COND_FALLBACK
    x_switch = jnp.log(jnp.maximum(condB, 1.0)) / jnp.maximum(
        om_max + om_min, jnp.finfo(dtype).tiny
    )
    Imat = jnp.eye(h, dtype=dtype)

    def stable(x):
        Z = Abar * jnp.exp(jnp.minimum(rates[:, None] - nu[None, :], 0.0) * x)
        asum = nu[:, None] + nu[None, :]
        W = _w(asum[None, :, :], 2 * rates[:, None, None], x)  # (d+o, r+h, r+h)
        M = G0 * jnp.exp(-asum * x) + jnp.einsum("ic,id,icd->cd", Abar, Abar, W) + Mmask
        return Z, M

    def fukumizu(x):
        x = jnp.minimum(x, x_switch)
        Z = K * jnp.exp(rates * x)[:, None]
        M = Imat + (K.T * _j(2 * rates, x)[None, :]) @ K
        return Z, M

    def qqt(Z, M):
        L = jnp.linalg.cholesky(0.5 * (M + M.T))
        Yz = solve_triangular(L, (O @ Z).T, lower=True)
        return Yz.T @ Yz

    def at_time(t):
        x = t / tau
        fb = use_fallback & (x < x_switch)
        P_s = qqt(*stable(x))
        P_f = qqt(*fukumizu(x))
        P = jnp.where(fb, P_f, P_s)
        return P, fb

    P, fb = jax.vmap(at_time)(ts)
    gram_in = P[:, :d, :d]
    product = P[:, d:, :d]
    gram_out = P[:, d:, d:]
    const = 0.5 * jnp.sum(Y**2) / n - 0.5 * jnp.sum(Syx**2)
    loss = 0.5 * jnp.sum((product - Syx) ** 2, axis=(1, 2)) + const

    # Domain checks that also run on traced inputs (the eager ones raise ValueError first).
    white_err = jnp.max(jnp.abs(X.T @ X / n - jnp.eye(d, dtype=dtype)))
    G2, G1 = W2_0.T @ W2_0, W1_0 @ W1_0.T
    both_live = live[:, None] & live[None, :]
    bal_err = jnp.max(jnp.where(both_live, jnp.abs(G2 - G1 - lam * Imat), 0.0))
    bal_size = 1.0 + jnp.max(jnp.abs(G2)) + jnp.max(jnp.abs(G1))
    in_domain = (
        (white_err <= whitening_tol(dtype))
        & (bal_err <= _balance_tol(dtype) * bal_size)
        & jnp.all(jnp.isfinite(Y))
        & jnp.all(ts >= 0)
        & jnp.all(jnp.isfinite(ts))
        & (tau > 0)
    )
    finite = jnp.all(jnp.isfinite(P)) & jnp.all(jnp.isfinite(loss)) & jnp.isfinite(lam)
    result = RESULTS.where(finite, RESULTS.successful, RESULTS.solver_failed)  # pyright: ignore
    result = RESULTS.where(in_domain, result, RESULTS.outside_domain)
    return LambdaBalancedSolution(
        ts=ts,
        product=product,
        gram_in=gram_in,
        gram_out=gram_out,
        loss=loss,
        lam=lam,
        fallback=fb,
        result=result,
    )


def _times(ts, tau, ndim):
    x = jnp.asarray(ts) / tau
    return x.reshape(x.shape + (1,) * ndim)


@jax.jit
def saxe_modes(
    s: Real[ArrayLike, "..."],
    a0: Real[ArrayLike, "..."],
    ts: Real[ArrayLike, " T"],
    tau: Real[ArrayLike, ""] = 1.0,
) -> Float[Array, "T ..."]:
    r"""Aligned mode strengths of a zero-balanced (λ = 0) two-layer linear network.

    $$a(t) = \frac{s\,e^{2st/\tau}}{e^{2st/\tau} - 1 + s/a_0},$$
    evaluated as $a = a_0 / (e^{-2sx} + a_0(1 - e^{-2sx})/s)$, $x = t/\tau$, which never
    overflows and has the $s \to 0$ limit $a_0/(1 + 2a_0x)$.

    **Arguments:**

    - `s`: task singular values ($\tilde s_\alpha \ge 0$), any shape.
    - `a0`: initial mode strengths ($a_0 > 0$), broadcasting with `s`.
    - `ts`: times, shape `(T,)`.
    - `tau`: time constant.

    **Returns:**

    Array of shape `(T, *broadcast(s, a0).shape)`.

    ??? cite "Reference"

        Saxe, McClelland, Ganguli 2014, *Exact solutions to the nonlinear dynamics of learning
        in deep linear neural networks*, ICLR 2014, arXiv:1312.6120, Eq. (7) (mode strength
        $u_f(t)$ from a small balanced initialisation). It is the λ → 0 limit of Dominé et al.
        2024, arXiv:2409.14623, Theorem 5.1 / Eq. (17).
    """
    s, a0 = jnp.broadcast_arrays(jnp.asarray(s, float), jnp.asarray(a0, float))
    x = _times(ts, tau, s.ndim)
    e = jnp.exp(-2 * s * x)
    s_safe = jnp.where(s == 0, 1.0, s)
    g = jnp.where(s == 0, 2 * x, -jnp.expm1(-2 * s * x) / s_safe)
    return a0 / (e + a0 * g)


@jax.jit
def lambda_balanced_mode(
    s: Real[ArrayLike, "..."],
    a0: Real[ArrayLike, "..."],
    lam: Real[ArrayLike, "..."],
    ts: Real[ArrayLike, " T"],
    tau: Real[ArrayLike, ""] = 1.0,
) -> Float[Array, "T ..."]:
    r"""Aligned mode strength $a(t)$ of a λ-balanced two-layer linear network.

    Solves $\tau\dot a = \sqrt{\lambda^2 + 4a^2}\,(s - a)$ in the closed form
    $$a(t) = \frac{p^2 s - pm\lambda e - m^2 s e^2}{2\omega e + p^2(1-e) + m^2(e - e^2)},$$
    $e = e^{-2\omega t/\tau}$, $\omega = \sqrt{s^2 + \lambda^2/4}$, $p = c\sigma_1 + d\sigma_2$,
    $m = -d\sigma_1 + c\sigma_2$, $c = \sqrt{(1 - \lambda/2\omega)/2}$,
    $d = \sqrt{(1 + \lambda/2\omega)/2}$, with $\sigma_{2,1}(0)^2 = (\sqrt{\lambda^2+4a_0^2}
    \pm\lambda)/2$ and $\mathrm{sgn}\,\sigma_1 = \mathrm{sgn}\,a_0$ (this rational form is our
    rewriting [D], jaxdyn notes, Dominé digest §3; the paper writes it as
    $a(t) = a(0) + \gamma(t;\lambda)(s - a(0))$). Every exponent is non-positive (no
    overflow). Valid for every λ (λ = 0 gives `saxe_modes`; a0 < 0 at λ = 0 decays to the
    saddle a = 0; a0 < 0 at λ ≠ 0 crosses zero, see `reversal_time`).

    **Arguments:**

    - `s`: task singular values (> 0), any shape.
    - `a0`: initial mode strengths, broadcasting with `s`.
    - `lam`: imbalance λ, broadcasting with `s`.
    - `ts`: times, shape `(T,)`.
    - `tau`: time constant.

    **Returns:**

    Array of shape `(T, *broadcast(s, a0, lam).shape)`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, ICLR 2025, arXiv:2409.14623, Theorem 5.1 /
        Eqs. (16)–(17) (singular-value dynamics of a task-aligned λ-balanced network).
    """
    s, a0, lam = jnp.broadcast_arrays(
        jnp.asarray(s, float), jnp.asarray(a0, float), jnp.asarray(lam, float)
    )
    om, c, d = _cd(s, lam)
    sig1, sig2 = split_singular_values(jnp.abs(a0), lam)
    sig1 = jnp.where(a0 >= 0, 1.0, -1.0) * sig1
    pp = c * sig1 + d * sig2
    mm = -d * sig1 + c * sig2
    x = _times(ts, tau, s.ndim)
    e = jnp.exp(-2 * om * x)
    one_m_e = -jnp.expm1(-2 * om * x)
    num = pp**2 * s - pp * mm * lam * e - mm**2 * s * e**2
    den = 2 * om * e + pp**2 * one_m_e + mm**2 * e * one_m_e
    return num / den


def reversal_time(
    s: Real[ArrayLike, "..."],
    lam: Real[ArrayLike, "..."],
    tau: Real[ArrayLike, ""] = 1.0,
) -> Float[Array, "..."]:
    r"""Zero-crossing time of an aligned mode after the task is reversed ($s \to -s$).

    A mode converged to $a = s$ and then trained on $-s$ at imbalance λ ≠ 0 crosses $a = 0$ at
    $$t^* = \frac{\tau}{2\omega}\ln\!\left(1 + \frac{2\omega}{|\lambda|}\right),\qquad
    \omega = \sqrt{s^2 + \lambda^2/4}.$$
    It diverges like $(\tau/2s)\ln(2s/|\lambda|)$ as λ → 0 (at λ = 0 the mode never reverses:
    `inf`). This closed form is our derivation from `lambda_balanced_mode` [D] (jaxdyn notes,
    Dominé digest §6.2); the paper states the qualitative result.

    **Arguments:**

    - `s`: task singular values (> 0), any shape.
    - `lam`: imbalance λ, broadcasting with `s`.
    - `tau`: time constant.

    **Returns:**

    $t^*$, shape `broadcast(s, lam).shape`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, ICLR 2025, arXiv:2409.14623, App. D.2
        (reversal learning: it succeeds for every λ ≠ 0 and fails at λ = 0).
    """
    s = jnp.asarray(s, float)
    lam = jnp.asarray(lam, float)
    om = jnp.sqrt(s**2 + lam**2 / 4)
    return jnp.asarray(tau) / (2 * om) * jnp.log1p(2 * om / jnp.abs(lam))


def ntk_two_layer_linear(
    W1: Float[ArrayLike, "h d"],
    W2: Float[ArrayLike, "o h"],
    X: Float[ArrayLike, "n d"],
) -> Float[Array, "no no"]:
    r"""Exact neural tangent kernel of $f(x) = W_2W_1x$ on the inputs `X`.

    $$\Theta_{(i,k),(j,l)} = \delta_{kl}\,x_i^\top W_1^\top W_1 x_j + (W_2W_2^\top)_{kl}\,
    x_i^\top x_j,$$
    i.e. `kron(X W1ᵀW1 Xᵀ, I_o) + kron(X Xᵀ, W2W2ᵀ)`. Index ordering here is
    **sample-major**: row `i * o + k` is sample `i`, output `k`, matching `jax.jacfwd` of
    `vmap(model)(X).reshape(-1)` (the paper writes it output-major,
    `kron(I_o, ·) + kron(W2W2ᵀ, ·)`).

    **Arguments:**

    - `W1`: first layer, `(h, d)`.
    - `W2`: second layer, `(o, h)`.
    - `X`: inputs, `(n, d)`, rows are samples.

    **Returns:**

    The `(n·o, n·o)` kernel.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, ICLR 2025, arXiv:2409.14623, §4 (the
        finite-width NTK of a two-layer linear network, a function of $W_1^\top W_1$ and
        $W_2W_2^\top$ only).
    """
    W1 = jnp.asarray(W1)
    W2 = jnp.asarray(W2)
    return _ntk_from_grams(W1.T @ W1, W2 @ W2.T, X)


def _ntk_from_grams(gram_in, gram_out, X):
    X = jnp.asarray(X, gram_in.dtype)
    o = gram_out.shape[-1]
    Kin = X @ gram_in @ X.T
    Kxx = X @ X.T
    return jnp.kron(Kin, jnp.eye(o, dtype=gram_in.dtype)) + jnp.kron(Kxx, gram_out)


def ntk_from_solution(
    sol: LambdaBalancedSolution, X: Float[ArrayLike, "n d"]
) -> Float[Array, "T no no"]:
    r"""Exact NTK at every saved time of a `LambdaBalancedSolution`.

    The NTK of a two-layer linear net depends on the weights only through $W_1^\top W_1$ and
    $W_2W_2^\top$, so it follows from `sol.gram_in` and `sol.gram_out`:
    $\Theta(t) = W_1^\top W_1(t)$-kernel $\otimes I_o$ + $XX^\top \otimes W_2W_2^\top(t)$, with
    the ordering of `ntk_two_layer_linear` (sample-major).

    **Arguments:**

    - `sol`: a solution from `lambda_balanced`.
    - `X`: the inputs to evaluate the kernel on, `(n, d)`.

    **Returns:**

    Array of shape `(T, n·o, n·o)`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, ICLR 2025, arXiv:2409.14623, §4 (the exact
        NTK along the λ-balanced solution).
    """
    return _ntk_batch(sol.gram_in, sol.gram_out, jnp.asarray(X, sol.gram_in.dtype))


_ntk_batch = jax.jit(jax.vmap(_ntk_from_grams, in_axes=(0, 0, None)))
