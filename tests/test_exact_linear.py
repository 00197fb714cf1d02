"""Tests for jaxdyn.exact.linear (Dominé et al. 2024 λ-balanced solution; Saxe et al. 2014)
and the λ-balanced initialiser jaxdyn._init_linear.lambda_balanced.

References are the checks of the digest notes/domine_lazy_to_rich.md §8 (items cited inline).
The reference trajectory is scipy's DOP853 (rtol = atol = 1e-12) on the weight ODE.
"""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from jaxdyn.exact import (  # noqa: E402
    LambdaBalancedSolution,
    lambda_balanced,
    lambda_balanced_mode,
    ntk_from_solution,
    ntk_two_layer_linear,
    reversal_time,
    saxe_modes,
)
from jaxdyn.init import lambda_balanced as init_lb  # noqa: E402

# ----------------------------------------------------------------------------- helpers


def kernel_distance(K0, K1):
    """1 − ⟨K0, K1⟩ / (‖K0‖‖K1‖) (local copy; the library's lives in jaxdyn.metrics)."""
    K0, K1 = np.asarray(K0), np.asarray(K1)
    return 1.0 - np.sum(K0 * K1) / (np.linalg.norm(K0) * np.linalg.norm(K1))


def make_task(seed, n, d, o, svals):
    """Whitened X (n, d) (XᵀX/n = I) and Y (n, o) with YᵀX/n = U diag(svals) Vᵀ plus a
    residual orthogonal to X's columns (so the loss has a non-zero floor)."""
    rng = np.random.default_rng(seed)
    Qx, _ = np.linalg.qr(rng.normal(size=(n, n)))
    X = np.sqrt(n) * Qx[:, :d]
    U, _ = np.linalg.qr(rng.normal(size=(o, o)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    r = min(d, o)
    Syx = U[:, :r] @ np.diag(svals) @ V[:, :r].T
    E = Qx[:, d:] @ rng.normal(size=(n - d, o)) * 0.3
    Y = X @ Syx.T + E
    return X, Y


def ode_weights(W1, W2, X, Y, ts, tau=1.0):
    """DOP853 reference for τ dW/dt = −∇L, L = (1/2n)Σ‖W2W1x − y‖²."""
    W1, W2, X, Y = (np.asarray(a) for a in (W1, W2, X, Y))
    if Y.ndim == 1:
        Y = Y[:, None]
    n = X.shape[0]
    h, d = W1.shape
    o = W2.shape[0]
    Sxx, Syx = X.T @ X / n, Y.T @ X / n

    def f(t, z):
        A = z[: h * d].reshape(h, d)
        B = z[h * d :].reshape(o, h)
        E = Syx - B @ A @ Sxx
        return np.concatenate([(B.T @ E).ravel(), (E @ A.T).ravel()]) / tau

    z0 = np.concatenate([W1.ravel(), W2.ravel()])
    sol = solve_ivp(f, (0.0, ts[-1]), z0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=ts)
    assert sol.success
    A = sol.y[: h * d].T.reshape(-1, h, d)
    B = sol.y[h * d :].T.reshape(-1, o, h)
    return A, B


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def admissible(d, h, o, lam):
    if h > max(d, o):
        return lam == 0
    if h > d:
        return lam >= 0
    if h > o:
        return lam <= 0
    return True


# (d, h, o): square, d > o, d < o, narrow (h < min), and the wider admissible shapes.
SHAPES = [(3, 3, 3), (5, 3, 3), (3, 3, 5), (4, 2, 3), (2, 4, 5), (5, 4, 2), (3, 5, 2)]
LAMS = [-5.0, -2.0, -1e-6, 0.0, 1e-6, 0.7, 3.0, 5.0]


# ----------------------------------------------------------------------------- exact vs ODE


def test_exact_matches_ode_random_configs():
    """Digest §8 items 1, 4, 5, 7: exact solution vs DOP853 on ≥ 20 configurations."""
    ts = np.linspace(0.0, 30.0, 61)
    rng = np.random.default_rng(0)
    n = 8
    count = converged = 0
    worst = 0.0
    for si, (d, h, o) in enumerate(SHAPES):
        lams = [lam for lam in LAMS if admissible(d, h, o, lam)]
        extra = float(rng.uniform(-5, 5))  # one random λ ∈ [−5, 5], sign made admissible
        extra = abs(extra) if h > d else -abs(extra) if h > o else extra
        lams = np.array(lams + ([extra] if h <= max(d, o) else []))
        B = len(lams)
        ms = [init_lb(jax.random.key(10 * si + b), d, h, o, lams[b], 0.4) for b in range(B)]
        tasks = [
            make_task(100 * si + b, n, d, o, rng.uniform(0.8, 2.0, min(d, o))) for b in range(B)
        ]
        Xs = [t[0] for t in tasks]
        Ys = [t[1] for t in tasks]
        W1s = [np.asarray(m.W1) for m in ms]
        W2s = [np.asarray(m.W2) for m in ms]
        sols = [lambda_balanced(W1s[b], W2s[b], Xs[b], Ys[b], ts) for b in range(B)]
        for b in range(B):
            A, Bw = ode_weights(W1s[b], W2s[b], Xs[b], Ys[b], ts)
            lam = lams[b]
            # λ-balance is conserved along the ODE (item 1).
            drift = np.einsum("toh,tok->thk", Bw, Bw) - np.einsum("thd,tkd->thk", A, A)
            assert np.max(np.abs(drift - lam * np.eye(h))) <= 1e-9
            prod = Bw @ A
            gi = np.einsum("thd,the->tde", A, A)
            go = np.einsum("toh,tph->top", Bw, Bw)
            errs = (
                rel_err(sols[b].product, prod),
                rel_err(sols[b].gram_in, gi),
                rel_err(sols[b].gram_out, go),
            )
            worst = max(worst, *errs)
            assert max(errs) <= 1e-7, (d, h, o, lam, errs)
            assert abs(float(sols[b].lam) - lam) <= 1e-12 * (1 + abs(lam))
            # The trajectory reaches the global minimum when ts covers the slowest rate (digest
            # §2.5: 2ω_min, and ω_min − μ_⊥ for the ⊥ block), except for square nets at λ ≈ 0,
            # which may start on the wrong-det-sign side (§2.4).
            Syx = Ys[b].T @ Xs[b] / n
            om = np.sqrt(np.linalg.svd(Syx, compute_uv=False) ** 2 + lam**2 / 4)
            rate = min(2 * om.min(), om.min() - np.sign(o - d) * lam / 2)
            if h >= min(d, o) and not (d == o and abs(lam) < 0.1) and rate * ts[-1] > 40:
                assert rel_err(prod[-1], Syx) <= 1e-6
                converged += 1
            count += 1
    assert count >= 20 and converged >= 15


def test_loss_field_and_eager_call():
    d, h, o, n = 5, 3, 3, 8
    X, Y = make_task(3, n, d, o, [1.5, 1.0, 0.9])
    m = init_lb(jax.random.key(3), d, h, o, -1.3, 0.2)
    ts = jnp.linspace(0.0, 10.0, 11)
    sol = lambda_balanced(m.W1, m.W2, X, Y, ts, tau=2.0)
    assert isinstance(sol, LambdaBalancedSolution)
    assert sol.product.shape == (11, o, d)
    assert sol.gram_in.shape == (11, d, d) and sol.gram_out.shape == (11, o, o)
    direct = 0.5 * np.mean(
        np.sum((X @ np.asarray(sol.product).transpose(0, 2, 1) - Y) ** 2, -1), -1
    )
    np.testing.assert_allclose(sol.loss, direct, rtol=1e-12, atol=1e-14)
    assert np.all(np.diff(np.asarray(sol.loss)) <= 1e-12)  # gradient flow decreases the loss
    # tau rescales time (lr = 1/tau).
    sol1 = lambda_balanced(m.W1, m.W2, X, Y, ts / 2.0)
    np.testing.assert_allclose(sol.product, sol1.product, rtol=0, atol=1e-13)
    # Y of shape (n,) is accepted for o = 1.
    m1 = init_lb(jax.random.key(4), 4, 1, 1, 0.5, 0.3)
    X1, Y1 = make_task(4, n, 4, 1, [1.2])
    s1 = lambda_balanced(m1.W1, m1.W2, X1, Y1[:, 0], ts)
    A, Bw = ode_weights(m1.W1, m1.W2, X1, Y1[:, 0], np.asarray(ts))
    assert rel_err(s1.product, Bw @ A) <= 1e-8


def test_vmap_over_lambda_through_init_and_solution():
    d, h, o = 3, 3, 3
    X, Y = make_task(5, 8, d, o, [2.0, 1.2, 0.8])
    Syx = Y.T @ X / 8
    ts = jnp.array([0.0, 1.0, 1e4])

    @jax.jit
    def final(lam):
        m = init_lb(jax.random.key(0), d, h, o, lam, 0.1, aligned_to=Syx)
        return lambda_balanced(m.W1, m.W2, X, Y, ts).product[-1]

    out = jax.vmap(final)(jnp.array([-3.0, 0.0, 0.5, 4.0]))
    np.testing.assert_allclose(out, np.broadcast_to(Syx, out.shape), atol=1e-12)


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize("d,o", [(3, 3), (5, 3), (3, 5)])
def test_long_time_values(d, o):
    """Item 8: W2W1(∞) = Σ̃yx, W1ᵀW1(∞) = Ṽ(Ω − λ/2)Ṽᵀ, W2W2ᵀ(∞) = Ũ(Ω + λ/2)Ũᵀ."""
    n, h = 8, min(d, o)
    s = np.array([2.0, 1.1, 0.6])[: min(d, o)]
    X, Y = make_task(11, n, d, o, s)
    Syx = Y.T @ X / n
    U, sv, Vt = np.linalg.svd(Syx)
    r = min(d, o)
    for lam in [-50.0, -2.0, 0.0, 2.0, 50.0]:
        m = init_lb(jax.random.key(7), d, h, o, lam, 0.3, aligned_to=Syx)
        sol = lambda_balanced(m.W1, m.W2, X, Y, jnp.array([0.0, 1e4]))
        om = np.sqrt(sv**2 + lam**2 / 4)
        gi = Vt[:r].T @ np.diag(om - lam / 2) @ Vt[:r]
        go = U[:, :r] @ np.diag(om + lam / 2) @ U[:, :r].T
        tol = 1e-11 * (1 + abs(lam))
        np.testing.assert_allclose(sol.product[-1], Syx, atol=tol)
        np.testing.assert_allclose(sol.gram_in[-1], gi, atol=tol)
        np.testing.assert_allclose(sol.gram_out[-1], go, atol=tol)


def test_no_overflow_large_time_and_lambda():
    """Stable form: finite and converged at t = 1e4 and |λ| = 1e3 (all exponents ≤ 0)."""
    for d, h, o in [(3, 3, 3), (5, 3, 3), (3, 3, 5), (2, 4, 5)]:
        X, Y = make_task(21, 8, d, o, np.array([1.7, 1.0, 0.5])[: min(d, o)])
        Syx = Y.T @ X / 8
        for lam in [-1e3, 0.0, 1e3]:
            if not admissible(d, h, o, lam):
                continue
            m = init_lb(jax.random.key(1), d, h, o, lam, 0.5)
            W1, W2 = _wrong_sign(m, Syx, wrong=False) if d == o else (m.W1, m.W2)
            ts = jnp.array([0.0, 1e-3, 1.0, 100.0, 1e4])
            sol = lambda_balanced(W1, W2, X, Y, ts)
            for a in (sol.product, sol.gram_in, sol.gram_out, sol.loss):
                assert np.all(np.isfinite(a))
            om = np.sqrt(np.linalg.svd(Syx, compute_uv=False) ** 2 + lam**2 / 4)
            if (om.min() - np.sign(o - d) * lam / 2) * 1e4 > 40:  # else still "delayed rich"
                np.testing.assert_allclose(sol.product[-1], Syx, atol=1e-9)
            np.testing.assert_allclose(sol.product[0], W2 @ W1, atol=1e-10 * (1 + abs(lam)))


def _ntk_kd(d, h, o, lam, X, Y, scale=0.3, T=1e4):
    m = init_lb(jax.random.key(2), d, h, o, lam, scale)
    sol = lambda_balanced(m.W1, m.W2, X, Y, jnp.array([0.0, T]))
    K = ntk_from_solution(sol, X)
    return kernel_distance(K[0], K[-1])


def test_lazy_limit_kernel_distance_square():
    """Items 14/15: at fixed product scale the NTK moves less and less as |λ| grows."""
    d = h = o = 3
    X, Y = make_task(31, 8, d, o, [2.0, 1.3, 0.7])
    for sign in (1.0, -1.0):
        kds = [_ntk_kd(d, h, o, sign * lam, X, Y) for lam in (0.5, 2.0, 8.0, 32.0, 128.0)]
        assert all(b < a for a, b in zip(kds, kds[1:])), kds
        assert kds[-1] < 1e-6
    assert _ntk_kd(d, h, o, 0.0, X, Y) > 10 * _ntk_kd(d, h, o, 8.0, X, Y)


def test_architecture_asymmetry():
    """Item 16: a funnel is lazy only for λ → +∞, an inverted funnel only for λ → −∞."""
    Xf, Yf = make_task(41, 8, 5, 3, [2.0, 1.2, 0.8])
    kd_pos = _ntk_kd(5, 3, 3, 20.0, Xf, Yf, scale=0.2)
    kd_neg = _ntk_kd(5, 3, 3, -20.0, Xf, Yf, scale=0.2)
    assert kd_pos < 1e-3 and kd_neg > 100 * kd_pos
    Xi, Yi = make_task(42, 8, 3, 5, [2.0, 1.2, 0.8])
    kd_pos = _ntk_kd(3, 3, 5, 20.0, Xi, Yi, scale=0.2)
    kd_neg = _ntk_kd(3, 3, 5, -20.0, Xi, Yi, scale=0.2)
    assert kd_neg < 1e-3 and kd_pos > 100 * kd_neg


def test_aligned_network_matches_mode_solution():
    """Item 9: a task-aligned matrix network stays diagonal in (Ũ, Ṽ) and follows the
    scalar closed form per mode."""
    d, h, o = 5, 3, 3
    s = np.array([2.0, 1.0, 0.5])
    X, Y = make_task(51, 8, d, o, s)
    Syx = Y.T @ X / 8
    U, sv, Vt = np.linalg.svd(Syx)
    ts = np.linspace(0.0, 12.0, 25)
    for lam in [-2.0, 0.0, 2.0]:
        m = init_lb(jax.random.key(5), d, h, o, lam, 0.05, aligned_to=Syx)
        sol = lambda_balanced(m.W1, m.W2, X, Y, ts)
        A = np.einsum("ok,tod,dj->tkj", U[:, :3], np.asarray(sol.product), Vt[:3].T)
        modes = np.asarray(lambda_balanced_mode(sv, 0.05, lam, ts))
        np.testing.assert_allclose(np.diagonal(A, axis1=1, axis2=2), modes, atol=1e-10)
        off = A - np.einsum("tk,kj->tkj", np.diagonal(A, axis1=1, axis2=2), np.eye(3))
        assert np.max(np.abs(off)) < 1e-10


# ----------------------------------------------------------------------------- scalar modes


def _mode_ode(s, a0, lam, ts, tau=1.0):
    f = lambda t, a: np.sqrt(lam**2 + 4 * a**2) * (s - a) / tau
    sol = solve_ivp(f, (0, ts[-1]), [a0], method="DOP853", rtol=1e-12, atol=1e-13, t_eval=ts)
    return sol.y[0]


def test_mode_closed_form_vs_ode():
    """Item 9: τ ȧ = sqrt(λ² + 4a²)(s − a), all signs of λ and of a0."""
    ts = np.linspace(0.0, 8.0, 81)
    for lam in [-5.0, -2.0, -0.5, 0.0, 0.5, 2.0, 5.0]:
        for a0 in [0.01, 0.7, 3.0, -0.4]:
            a = np.asarray(lambda_balanced_mode(1.3, a0, lam, ts, tau=1.5))
            ref = _mode_ode(1.3, a0, lam, ts, tau=1.5)
            np.testing.assert_allclose(a, ref, atol=1e-10 * max(1.3, abs(a0)))
    # broadcasting: (T, *broadcast(s, a0, lam))
    out = lambda_balanced_mode(jnp.array([1.0, 2.0]), 0.1, jnp.array([[0.0], [1.0], [-1.0]]), ts)
    assert out.shape == (81, 3, 2)


def test_saxe_limit():
    """Item 10: at λ = 0 the closed form is Saxe et al.'s sigmoid; no overflow at t = 1e4."""
    s = jnp.array([0.5, 1.0, 3.0])
    a0 = jnp.array([1e-3, 0.2, 1.0])
    ts = jnp.linspace(0.0, 6.0, 61)
    x = np.asarray(ts)[:, None]
    naive = np.asarray(s) * np.exp(2 * np.asarray(s) * x)
    naive = naive / (np.exp(2 * np.asarray(s) * x) - 1 + np.asarray(s) / np.asarray(a0))
    np.testing.assert_allclose(saxe_modes(s, a0, ts), naive, rtol=1e-13)
    np.testing.assert_allclose(lambda_balanced_mode(s, a0, 0.0, ts), naive, rtol=1e-12)
    far = saxe_modes(s, a0, jnp.array([1e4]), tau=0.5)
    np.testing.assert_allclose(far[0], s, rtol=1e-15)
    np.testing.assert_allclose(saxe_modes(0.0, 0.5, ts), 0.5 / (1 + ts), rtol=1e-14)


def test_lazy_limit_mode():
    """Item 11: |a(t) − (s + (a0 − s)e^{−|λ|t})| = O(1/|λ|) for both signs of λ."""
    s, a0 = 2.0, 0.01
    errs = {}
    for lam in [100.0, 1000.0, -100.0, -1000.0]:
        ts = np.linspace(0.0, 10.0 / abs(lam), 2001)
        a = np.asarray(lambda_balanced_mode(s, a0, lam, ts))
        lazy = s + (a0 - s) * np.exp(-abs(lam) * ts)
        errs[lam] = np.max(np.abs(a - lazy))
        assert errs[lam] <= 1.0 / abs(lam)
        assert np.all(np.isfinite(lambda_balanced_mode(s, a0, lam, jnp.array([1e4]))))
    assert errs[1000.0] < errs[100.0] / 10 and errs[-1000.0] < errs[-100.0] / 10


def test_reversal_time_vs_ode():
    """Item 18: a mode converged to s and then trained on −s crosses 0 at
    t* = (τ/2ω) ln(1 + 2ω/|λ|)."""
    s, tau = 1.3, 0.7
    for lam in [1e-3, 0.1, 1.0, -1.0, 5.0]:

        def f(t, a):
            return np.sqrt(lam**2 + 4 * a**2) * (-s - a) / tau

        ev = lambda t, a: a[0]
        ev.terminal = True
        sol = solve_ivp(f, (0, 100.0), [s], method="DOP853", rtol=1e-12, atol=1e-14, events=ev)
        t_ode = sol.t_events[0][0]
        np.testing.assert_allclose(reversal_time(s, lam, tau), t_ode, rtol=1e-8)
        # and the closed form crosses zero there (a0 = −s against target s is the mirror image)
        t_star = float(reversal_time(s, lam, tau))
        a = lambda_balanced_mode(s, -s, lam, jnp.array([0.999 * t_star, 1.001 * t_star]), tau)
        assert a[0] < 0 < a[1]
    assert np.isinf(reversal_time(s, 0.0))


def test_reversal_learning_matrix():
    """Item 18: from a converged state, reversal fails at λ = 0 (W2W1 → 0, the saddle) and
    succeeds at λ ≠ 0."""
    d = h = o = 3
    X, Y = make_task(61, 8, d, o, [1.8, 1.2, 0.6])
    Syx = Y.T @ X / 8
    ts = jnp.array([0.0, 2.0, 5.0, 1e4])
    for lam in [0.0, 0.5, -2.0]:
        m = init_lb(jax.random.key(6), d, h, o, lam, 0.2, aligned_to=Syx)
        conv = lambda_balanced(m.W1, m.W2, X, Y, jnp.array([0.0, 1e4]))
        # Rebuild converged weights (Theorem 5.2): W1 = S1 Vᵀ, W2 = U S2 with R = I.
        U, sv, Vt = np.linalg.svd(np.asarray(conv.product[-1]))
        s1 = np.sqrt((np.sqrt(lam**2 + 4 * sv**2) - lam) / 2)
        s2 = np.sqrt((np.sqrt(lam**2 + 4 * sv**2) + lam) / 2)
        W1, W2 = np.diag(s1) @ Vt, U @ np.diag(s2)
        rev = lambda_balanced(W1, W2, X, -Y, ts)
        assert np.all(np.isfinite(rev.product))
        # ODE only up to t = 5: at λ = 0 it starts on the saddle's stable manifold, and rounding
        # (balance drift ~1e-13) lets it escape later.
        ref_A, ref_B = ode_weights(W1, W2, X, -Y, np.asarray(ts[:3]))
        assert rel_err(rev.product[:3], ref_B @ ref_A) < 1e-7
        if lam == 0.0:
            assert np.max(np.abs(rev.product[-1])) < 1e-8  # W2W1 → 0: never reverses
            assert np.max(np.abs(ref_B[-1] @ ref_A[-1])) < 0.1 * np.max(np.abs(Syx))
        else:
            np.testing.assert_allclose(rev.product[-1], -Syx, atol=1e-10)


# ----------------------------------------------------------------------------- obstruction


def _wrong_sign(m, Syx, wrong=True):
    """Square net with sign det W2W1(0) ≠ sign det Σ̃yx (or = when wrong=False)."""
    W1 = np.asarray(m.W1)
    same = np.sign(np.linalg.det(np.asarray(m.W2) @ W1)) == np.sign(np.linalg.det(Syx))
    if same == wrong:
        W1 = W1 @ np.diag([-1.0] + [1.0] * (W1.shape[1] - 1))  # keeps W1W1ᵀ, flips det
    return W1, np.asarray(m.W2)


def test_square_wrong_determinant_sign():
    """Item 22: square, λ = 0, sign det W2W1(0) ≠ sign det Σ̃yx: the exact solution and the ODE
    both converge to the saddle with the weakest mode unlearned; no NaN. With λ ≠ 0 (down to
    1e-6) the mode crosses zero and the net reaches Σ̃yx, exact = ODE."""
    d = h = o = 3
    s = np.array([1.6, 1.1, 0.8])
    X, Y = make_task(71, 8, d, o, s)
    Syx = Y.T @ X / 8
    # ODE reference only to t = 20: the ODE drifts off λ = 0 by ~1e-13 and then escapes the
    # saddle on a time scale ~ ln(1e13)/(2 s_min).
    ts = np.linspace(0.0, 20.0, 41)
    m = init_lb(jax.random.key(8), d, h, o, 0.0, 0.3)
    W1, W2 = _wrong_sign(m, Syx)
    sol = lambda_balanced(W1, W2, X, Y, np.append(ts, 1e4))
    assert np.all(np.isfinite(sol.product))
    A, Bw = ode_weights(W1, W2, X, Y, ts)
    assert rel_err(sol.product[:-1], Bw @ A) < 1e-7
    for P, tol in ((np.asarray(sol.product[-1]), 1e-10), (Bw[-1] @ A[-1], 1e-4)):
        sv = np.linalg.svd(P, compute_uv=False)
        np.testing.assert_allclose(sv[:2], s[:2], rtol=tol)
        assert sv[2] < tol
    for lam in [1e-6, -1e-6, 0.1, 1.0]:
        m = init_lb(jax.random.key(8), d, h, o, lam, 0.3)
        W1, W2 = _wrong_sign(m, Syx)
        ts2 = np.linspace(0.0, 40.0, 41)
        sol = lambda_balanced(W1, W2, X, Y, ts2)
        A, Bw = ode_weights(W1, W2, X, Y, ts2)
        assert rel_err(sol.product, Bw @ A) < 1e-7, lam
        assert rel_err(sol.gram_in, np.einsum("thd,the->tde", A, A)) < 1e-7
        np.testing.assert_allclose(sol.product[-1], Syx, atol=1e-9)


# ----------------------------------------------------------------------------- NTK


def test_ntk_formula_matches_jacobian():
    """Item 12: Kronecker NTK = J Jᵀ (sample-major ordering) and τ df/dt = −(1/n) K (f − y)."""
    d, h, o, n = 4, 3, 2, 5
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(h, d)), rng.normal(size=(o, h))
    X = rng.normal(size=(n, d))

    def f(params):
        A, B = params
        return (X @ A.T @ B.T).reshape(-1)  # row i*o + k

    J = jax.jit(jax.jacfwd(f))((jnp.asarray(W1), jnp.asarray(W2)))
    Jm = jnp.concatenate([J[0].reshape(n * o, -1), J[1].reshape(n * o, -1)], axis=1)
    K = ntk_two_layer_linear(jnp.asarray(W1), jnp.asarray(W2), jnp.asarray(X))
    np.testing.assert_allclose(K, Jm @ Jm.T, atol=1e-12)

    # function-space dynamics along the exact solution (finite differences in time)
    Xw, Yw = make_task(81, 8, 4, 3, [1.4, 0.9, 0.7])
    m = init_lb(jax.random.key(9), 4, 2, 3, 0.8, 0.4)
    t0, dt = 1.0, 1e-5
    sol = lambda_balanced(m.W1, m.W2, Xw, Yw, jnp.array([t0 - dt, t0, t0 + dt]))
    fvals = np.einsum("nd,tod->tno", Xw, np.asarray(sol.product)).reshape(3, -1)
    dfdt = (fvals[2] - fvals[0]) / (2 * dt)
    Kt = ntk_from_solution(sol, Xw)[1]
    assert Kt.shape == (24, 24)
    rhs = -(Kt @ (fvals[1] - Yw.reshape(-1))) / 8
    np.testing.assert_allclose(dfdt, rhs, atol=1e-7)


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize(
    "d,h,o,lam",
    [
        (3, 3, 3, 2.0),
        (5, 3, 3, -1.0),
        (2, 4, 5, 1.5),
        (5, 4, 2, -2.0),
        (3, 5, 2, 0.0),
        (4, 2, 3, 3.0),
    ],
)
def test_init_balanced_and_product(d, h, o, lam):
    m = init_lb(jax.random.key(0), d, h, o, lam, 0.7)
    assert m.W1.shape == (h, d) and m.W2.shape == (o, h)
    D = m.W2.T @ m.W2 - m.W1 @ m.W1.T
    np.testing.assert_allclose(D, lam * np.eye(h), atol=1e-13)
    sv = np.linalg.svd(m.W2 @ m.W1, compute_uv=False)[: min(d, h, o)]
    assert np.all(sv >= 0.35 - 1e-12) and np.all(sv <= 1.05 + 1e-12)


def test_init_aligned_and_traced():
    Syx = np.diag([3.0, 2.0, 1.0])[:, :3] @ np.eye(3)
    m = init_lb(jax.random.key(1), 3, 3, 3, -0.5, 0.2, aligned_to=Syx)
    U, sv, Vt = np.linalg.svd(Syx)
    np.testing.assert_allclose(U.T @ m.W2 @ m.W1 @ Vt.T, 0.2 * np.eye(3), atol=1e-14)
    f = jax.jit(jax.vmap(lambda lam, sc: init_lb(jax.random.key(2), 5, 3, 3, lam, sc)))
    lams = jnp.array([-1.0, 0.0, 2.0])
    ms = f(lams, jnp.array([0.1, 0.2, 0.3]))
    D = jnp.einsum("boh,bok->bhk", ms.W2, ms.W2) - jnp.einsum("bhd,bkd->bhk", ms.W1, ms.W1)
    np.testing.assert_allclose(D, lams[:, None, None] * np.eye(3), atol=1e-13)
    assert init_lb(jax.random.key(0), 3, 3, 3, 1.0, 0.5, dtype=jnp.float32).W1.dtype == jnp.float32


def test_init_errors():
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="lam"):
        init_lb(k, 3, 4, 5, -1.0, 1.0)  # h > d forces lam >= 0
    with pytest.raises(ValueError, match="lam"):
        init_lb(k, 5, 4, 3, 1.0, 1.0)  # h > o forces lam <= 0
    with pytest.raises(ValueError, match="lam"):
        init_lb(k, 2, 4, 3, 0.5, 1.0)  # h > max(d, o) forces lam == 0
    with pytest.raises(ValueError, match="aligned_to"):
        init_lb(k, 3, 3, 2, 0.0, 1.0, aligned_to=np.ones((3, 3)))


def test_exact_input_errors():
    d, h, o = 3, 3, 3
    X, Y = make_task(91, 6, d, o, [1.0, 0.8, 0.5])
    m = init_lb(jax.random.key(0), d, h, o, 1.0, 0.5)
    ts = jnp.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="`X`"):
        lambda_balanced(m.W1, m.W2, 2 * X, Y, ts)
    with pytest.raises(ValueError, match="W1_0, W2_0"):
        lambda_balanced(m.W1 * 1.1, m.W2, X, Y, ts)
    with pytest.raises(ValueError, match="W1_0, W2_0"):
        lambda_balanced(m.W1, m.W2[:, :2], X, Y, ts)
    with pytest.raises(ValueError, match="`Y`"):
        lambda_balanced(m.W1, m.W2, X, Y[:, :2], ts)
    with pytest.raises(ValueError, match="`ts`"):
        lambda_balanced(m.W1, m.W2, X, Y, -ts - 1)


@pytest.mark.slow
def test_matches_jaxdyn_gradient_flow():
    """The exact solution agrees with jaxdyn's Diffrax gradient flow (lr = 1/τ)."""
    import jaxdyn

    if not hasattr(jaxdyn, "gradient_flow"):
        pytest.skip("jaxdyn.gradient_flow not available")
    d, h, o = 5, 3, 3
    X, Y = make_task(101, 8, d, o, [1.7, 1.1, 0.9])
    m = init_lb(jax.random.key(11), d, h, o, -1.5, 0.3)
    ts = jnp.linspace(0.0, 10.0, 21)
    tau = 2.0
    traj = jaxdyn.gradient_flow(m, (X, Y), ts, lr=1.0 / tau, rtol=1e-12, atol=1e-12)
    sol = lambda_balanced(m.W1, m.W2, X, Y, ts, tau=tau)
    prod = traj.model.W2 @ traj.model.W1
    assert rel_err(sol.product, prod) < 1e-10
    gi = jnp.einsum("thd,the->tde", traj.model.W1, traj.model.W1)
    assert rel_err(sol.gram_in, gi) < 1e-10
    np.testing.assert_allclose(sol.loss, traj.loss, rtol=1e-10)


# ----------------------------------------------------------------------------- result


def test_result_successful_and_reported_under_jit_and_vmap():
    """`LambdaBalancedSolution.result`: successful on valid input; for traced input outside
    the domain (not whitened, not balanced, NaN) the solution reports `outside_domain`."""
    import jaxdyn as jd

    d, h, o = 3, 3, 3
    X, Y = make_task(95, 8, d, o, [1.5, 1.0, 0.7])
    m = init_lb(jax.random.key(12), d, h, o, 0.8, 0.3)
    ts = jnp.linspace(0.0, 5.0, 6)
    sol = lambda_balanced(m.W1, m.W2, X, Y, ts)
    assert sol.result == jd.RESULTS.successful

    f = jax.jit(lambda W1, W2, X: lambda_balanced(W1, W2, X, Y, ts))
    assert f(m.W1, m.W2, X).result == jd.RESULTS.successful
    assert f(m.W1, m.W2, 2 * X).result == jd.RESULTS.outside_domain  # not whitened, traced

    W1s = jnp.stack([m.W1, m.W1.at[0, 0].set(jnp.nan), 1.1 * m.W1, m.W1])
    W2s = jnp.stack([m.W2] * 4)
    tss = jnp.stack([ts, ts, ts, ts.at[-1].set(jnp.inf)])
    g = jax.jit(jax.vmap(lambda W1, W2, t: lambda_balanced(W1, W2, X, Y, t)))
    sols = g(W1s, W2s, tss)
    ok, out = jd.result_index(jd.RESULTS.successful), jd.result_index(jd.RESULTS.outside_domain)
    np.testing.assert_array_equal(jd.status_code(sols.result), [ok, out, out, out])
    np.testing.assert_allclose(sols.product[0], sol.product, rtol=1e-13, atol=1e-15)


def test_whitening_check_is_the_shared_one():
    import jaxdyn as jd

    d, h, o = 3, 3, 3
    X, Y = make_task(96, 8, d, o, [1.5, 1.0, 0.7])
    m = init_lb(jax.random.key(13), d, h, o, 0.8, 0.3)
    ts = jnp.linspace(0.0, 1.0, 3)
    tol = jd.data.whitening_tol(np.float64)
    ok = X.copy()
    ok[:, 0] *= 1 + 0.2 * tol
    assert lambda_balanced(m.W1, m.W2, ok, Y, ts).result == jd.RESULTS.successful
    bad = X.copy()
    bad[:, 0] *= 1 + 2 * tol
    with pytest.raises(ValueError, match="`X` is not whitened"):
        lambda_balanced(m.W1, m.W2, bad, Y, ts)
