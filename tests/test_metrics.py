"""`jd.metrics`: empirical NTK against closed forms, kernel distance, conserved quantities and
relative change over trajectories, and the δ-dependence of the single-neuron kernel movement
(notes/kunin_get_rich_quick.md §3)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_whitened

import jaxdyn as jd

# ---------------------------------------------------------------------------------------------
# Empirical NTK


@pytest.mark.parametrize("eta_a, eta_w", [(1.0, 1.0), (0.7, 1.9)])
def test_ntk_single_neuron_formula(eta_a, eta_w):
    # notes Eq. 3.1: K = X (η_w a² I + η_a w wᵀ) Xᵀ
    rng = np.random.default_rng(0)
    n, d = 7, 4
    X = rng.standard_normal((n, d))
    a, w = 0.8, rng.standard_normal(d)
    model = jd.SingleNeuron(a, w)
    lr = jd.SingleNeuron(a=eta_a, w=eta_w)
    K = np.asarray(jd.metrics.ntk(model, X, lr=lr))
    M = eta_w * a**2 * np.eye(d) + eta_a * np.outer(w, w)
    expected = X @ M @ X.T
    assert K.shape == (n, n)
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-12)
    # no lr = unit rates; a scalar lr scales the kernel
    K1 = np.asarray(jd.metrics.ntk(model, X))
    np.testing.assert_allclose(K1, X @ (a**2 * np.eye(d) + np.outer(w, w)) @ X.T, rtol=1e-12)
    np.testing.assert_allclose(jd.metrics.ntk(model, X, lr=0.5), 0.5 * K1, rtol=1e-12)


def test_ntk_two_layer_linear_kronecker():
    # f(x) = W2 W1 x: K[(i,k),(j,l)] = δ_kl x_iᵀW1ᵀW1x_j + (W2W2ᵀ)_kl x_iᵀx_j, and jd.metrics.ntk
    # orders rows sample-major (row i·o + k), i.e. K = (X W1ᵀW1 Xᵀ) ⊗ I_o + (X Xᵀ) ⊗ W2W2ᵀ.
    rng = np.random.default_rng(1)
    n, d, h, o = 5, 3, 4, 2
    X = rng.standard_normal((n, d))
    W1 = rng.standard_normal((h, d))
    W2 = rng.standard_normal((o, h))
    K = np.asarray(jd.metrics.ntk(jd.TwoLayerLinear(W1, W2), X))
    assert K.shape == (n * o, n * o)
    sample_major = np.kron(X @ W1.T @ W1 @ X.T, np.eye(o)) + np.kron(X @ X.T, W2 @ W2.T)
    np.testing.assert_allclose(K, sample_major, rtol=1e-12, atol=1e-12)
    # the output-major form I⊗X W1ᵀW1 Xᵀ + W2W2ᵀ⊗XXᵀ is the same kernel, rows permuted
    output_major = np.kron(np.eye(o), X @ W1.T @ W1 @ X.T) + np.kron(W2 @ W2.T, X @ X.T)
    perm = np.array([k * n + i for i in range(n) for k in range(o)])
    np.testing.assert_allclose(K, output_major[np.ix_(perm, perm)], rtol=1e-12, atol=1e-12)
    # ordering check on the model outputs themselves: row i·o + k is output k of sample i
    J = jax.jacfwd(lambda W: jax.vmap(jd.TwoLayerLinear(W1, W))(X).reshape(-1))(jnp.asarray(W2))
    Jn = np.asarray(J).reshape(n * o, -1)
    np.testing.assert_allclose(Jn @ Jn.T, np.kron(X @ W1.T @ W1 @ X.T, np.eye(o)), rtol=1e-12)


def test_ntk_relu_two_layer_features():
    # bias-free ReLU net: K = Σ_k [relu(w_kᵀx) relu(w_kᵀx') + a_k² 1{w_kᵀx>0}1{w_kᵀx'>0} xᵀx']
    rng = np.random.default_rng(2)
    n, d, h = 6, 3, 5
    X = rng.standard_normal((n, d))
    W1 = rng.standard_normal((h, d))
    W2 = rng.standard_normal((1, h))
    K = np.asarray(jd.metrics.ntk(jd.TwoLayer(W1, W2, "relu"), X))
    pre = X @ W1.T
    act = np.maximum(pre, 0)
    gate = (pre > 0).astype(float)
    expected = act @ act.T + ((gate * W2[0] ** 2) @ gate.T) * (X @ X.T)
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-12)
    assert np.min(np.linalg.eigvalsh(K)) > -1e-10


# ---------------------------------------------------------------------------------------------
# Kernel distance, alignment, relative change, spectral norms


def _stack(cls, *arrays):
    """A model whose arrays carry a leading (time) axis, like `Trajectory.model`."""
    return jax.vmap(cls)(*arrays)


def _random_psd(rng, n):
    A = rng.standard_normal((n, n))
    return A @ A.T


def test_kernel_distance_properties():
    rng = np.random.default_rng(3)
    K0 = _random_psd(rng, 6)
    assert abs(float(jd.metrics.kernel_distance(K0, 3.0 * K0))) < 1e-15
    for _ in range(20):
        A, B = _random_psd(rng, 6), _random_psd(rng, 6)
        s_ab = float(jd.metrics.kernel_distance(A, B))
        assert 0.0 <= s_ab <= 1.0
        assert s_ab == pytest.approx(float(jd.metrics.kernel_distance(B, A)), abs=1e-15)
    # orthogonal PSD kernels are at distance 1
    e = np.eye(4)
    assert float(jd.metrics.kernel_distance(np.diag(e[0]), np.diag(e[1]))) == pytest.approx(1.0)
    # leading (time) axes broadcast
    Ks = np.stack([K0, 2 * K0, _random_psd(rng, 6)])
    S = np.asarray(jd.metrics.kernel_distance(K0, Ks))
    assert S.shape == (3,)
    np.testing.assert_allclose(S[:2], 0.0, atol=1e-15)
    assert S[2] == pytest.approx(float(jd.metrics.kernel_distance(K0, Ks[2])), rel=1e-14)


def test_alignment_and_spectral_norms():
    rng = np.random.default_rng(4)
    y = rng.standard_normal(5)
    assert float(jd.metrics.alignment(np.outer(y, y), y)) == pytest.approx(1.0, rel=1e-14)
    assert float(jd.metrics.alignment(np.outer(y, y), np.roll(y, 1))) < 1.0
    W1, W2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    norms = jd.metrics.spectral_norms(jd.TwoLayerLinear(W1, W2))
    assert len(norms) == 2
    assert float(norms[0]) == pytest.approx(np.linalg.norm(W1, 2), rel=1e-12)
    assert float(norms[1]) == pytest.approx(np.linalg.norm(W2, 2), rel=1e-12)


def _exact_traj(seed=5, d=3, delta=-0.7, eta=(0.7, 1.3), T=20.0, n_t=21):
    rng = np.random.default_rng(seed)
    X = make_whitened(rng, 8, d)
    y = X @ rng.standard_normal(d)
    m0 = jd.init.single_neuron(jnp.asarray(0.3 * rng.standard_normal(d)), delta, *eta)
    ts = np.linspace(0.0, T, n_t)
    a, w = jd.exact.single_neuron(X, y, m0.a, m0.w, ts, *eta)
    return X, y, m0, ts, jd.SingleNeuron(a, w)


def test_relative_change_over_trajectory():
    X, y, m0, ts, traj_model = _exact_traj()
    rc = np.asarray(jd.metrics.relative_change(m0, traj_model))
    assert rc.shape == ts.shape
    theta0 = np.concatenate([[float(m0.a)], np.asarray(m0.w)])
    theta = np.concatenate([np.asarray(traj_model.a)[:, None], np.asarray(traj_model.w)], axis=1)
    expected = np.linalg.norm(theta - theta0, axis=1) / np.linalg.norm(theta0)
    np.testing.assert_allclose(rc, expected, rtol=1e-12, atol=1e-15)
    assert rc[0] < 1e-15 and rc[-1] > 0.1
    # also for a two-layer net stacked along time
    rng = np.random.default_rng(6)
    W1s, W2s = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 1, 4))
    stacked = _stack(jd.TwoLayerLinear, W1s, W2s)
    first = jd.TwoLayerLinear(W1s[0], W2s[0])
    rc2 = np.asarray(jd.metrics.relative_change(first, stacked))
    num = [
        np.sqrt(np.sum((W1s[t] - W1s[0]) ** 2) + np.sum((W2s[t] - W2s[0]) ** 2)) for t in range(3)
    ]
    den = np.sqrt(np.sum(W1s[0] ** 2) + np.sum(W2s[0] ** 2))
    np.testing.assert_allclose(rc2, np.array(num) / den, rtol=1e-12)


def test_conserved_on_time_stacked_models():
    eta = (0.7, 1.3)
    X, y, m0, ts, traj_model = _exact_traj(eta=eta)
    lr = jd.SingleNeuron(a=eta[0], w=eta[1])
    delta = np.asarray(jd.metrics.conserved(traj_model, lr))
    assert delta.shape == ts.shape
    expected = eta[1] * np.asarray(traj_model.a) ** 2 - eta[0] * np.sum(
        np.asarray(traj_model.w) ** 2, axis=1
    )
    np.testing.assert_allclose(delta, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(delta, -0.7, rtol=1e-10)

    rng = np.random.default_rng(7)
    T, h, d, o = 3, 4, 3, 2
    W1s, W2s = rng.standard_normal((T, h, d)), rng.standard_normal((T, o, h))
    Q = np.asarray(jd.metrics.conserved(_stack(jd.TwoLayerLinear, W1s, W2s)))
    assert Q.shape == (T, h, h)
    for t in range(T):
        np.testing.assert_allclose(Q[t], W2s[t].T @ W2s[t] - W1s[t] @ W1s[t].T, rtol=1e-12)
    lr2 = eqx.tree_at(lambda m: (m.W1, m.W2), jd.TwoLayerLinear(W1s[0], W2s[0]), (0.5, 2.0))
    Q2 = np.asarray(jd.metrics.conserved(_stack(jd.TwoLayerLinear, W1s, W2s), lr2))
    np.testing.assert_allclose(
        Q2[1], 0.5 * W2s[1].T @ W2s[1] - 2.0 * W1s[1] @ W1s[1].T, rtol=1e-12
    )
    dk = np.asarray(jd.metrics.conserved(_stack(jd.TwoLayer, W1s, W2s)))
    assert dk.shape == (T, h)
    np.testing.assert_allclose(dk, np.sum(W2s**2, axis=1) - np.sum(W1s**2, axis=2), rtol=1e-12)
    layers = tuple(rng.standard_normal((T,) + s) for s in [(4, 3), (4, 4), (2, 4)])
    deep = jd.metrics.conserved(jax.vmap(lambda *ls: jd.DeepLinear(ls))(*layers))
    assert len(deep) == 2
    for l, Dl in enumerate(deep):
        Wl, Wn = layers[l], layers[l + 1]
        np.testing.assert_allclose(
            Dl, np.einsum("toh,tok->thk", Wn, Wn) - np.einsum("thd,tkd->thk", Wl, Wl), rtol=1e-12
        )
    with pytest.raises(TypeError, match="`model`"):
        jd.metrics.conserved(object())


# ---------------------------------------------------------------------------------------------
# Kernel movement S(0, ∞) of the single neuron vs δ (notes §3.5, check C10)

C10_DELTAS = [-10.0, -3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 3.0, 10.0]


def _kernel_distance_0_T(delta, T=400.0):
    # whitened d = 2, β* = e1, ‖β0‖ = 0.01 at 2 rad from β*, η_a = η_w = 1
    rng = np.random.default_rng(8)
    X = make_whitened(rng, 4, 2)
    y = X @ np.array([1.0, 0.0])
    beta0 = 0.01 * np.array([np.cos(2.0), np.sin(2.0)])
    m0 = jd.init.single_neuron(jnp.asarray(beta0), delta)
    a, w = jd.exact.single_neuron(X, y, m0.a, m0.w, np.array([0.0, T]))
    K0 = jd.metrics.ntk(jd.SingleNeuron(a[0], w[0]), X)
    KT = jd.metrics.ntk(jd.SingleNeuron(a[1], w[1]), X)
    S = float(jd.metrics.kernel_distance(K0, KT))
    # cross-check with the whitened trace form (notes Eq. 3.4)
    a0, w0, aT, wT = float(a[0]), np.asarray(w[0]), float(a[1]), np.asarray(w[1])
    M0 = a0**2 * np.eye(2) + np.outer(w0, w0)
    MT = aT**2 * np.eye(2) + np.outer(wT, wT)
    S_trace = 1 - np.trace(M0 @ MT) / np.sqrt(np.trace(M0 @ M0) * np.trace(MT @ MT))
    assert S == pytest.approx(S_trace, abs=1e-12)
    # the run has converged, so this is S(0, ∞)
    assert np.allclose(np.asarray(a[1] * w[1]), [1.0, 0.0], atol=1e-8)
    return S


def test_kernel_distance_monotone_in_delta():
    S = np.array([_kernel_distance_0_T(dl) for dl in C10_DELTAS])
    assert np.all((S >= 0) & (S <= 1))
    assert np.all(np.diff(S) < 0), dict(zip(C10_DELTAS, S))
    # strongly downstream moves the kernel a lot, strongly upstream is lazy
    assert S[0] > 0.5 and S[-1] < 1e-3
    # and S → 0 as δ → +∞
    S_big = [_kernel_distance_0_T(dl) for dl in (1e2, 1e3)]
    assert S_big[0] < S[-1] and S_big[1] < S_big[0] and S_big[1] < 1e-6
