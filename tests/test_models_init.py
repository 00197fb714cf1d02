"""Models (`jd.SingleNeuron`, `TwoLayerLinear`, `DeepLinear`, `TwoLayer`, `MLP`) and the
initialisers `jd.init.single_neuron` / `jd.init.two_layer` (notes §1.9 and check C21)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

ACTIVATION_REFS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "abs": np.abs,
    "linear": lambda z: z,
    "tanh": np.tanh,
}


@pytest.mark.parametrize("name", sorted(ACTIVATION_REFS))
def test_activation_names(name):
    rng = np.random.default_rng(0)
    W1, W2, x = rng.standard_normal((5, 3)), rng.standard_normal((2, 5)), rng.standard_normal(3)
    out = np.asarray(jd.TwoLayer(W1, W2, name)(jnp.asarray(x)))
    np.testing.assert_allclose(out, W2 @ ACTIVATION_REFS[name](W1 @ x), rtol=1e-13, atol=1e-15)
    mlp = jd.MLP((W1, rng.standard_normal((4, 5)), W2[:, :4]), activation=name)
    assert mlp(jnp.asarray(x)).shape == (2,)


def test_activation_callable_and_unknown():
    rng = np.random.default_rng(1)
    W1, W2, x = rng.standard_normal((4, 3)), rng.standard_normal((1, 4)), rng.standard_normal(3)
    out = jd.TwoLayer(W1, W2, jnp.sin)(jnp.asarray(x))
    np.testing.assert_allclose(out, W2 @ np.sin(W1 @ x), rtol=1e-13)
    with pytest.raises(ValueError, match="activation"):
        jd.TwoLayer(W1, W2, "swishy")
    with pytest.raises(ValueError, match="activation"):
        jd.MLP((W1, W2), activation="gelu-ish")
    with pytest.raises(ValueError, match="activation"):
        jd.init.two_layer(jax.random.PRNGKey(0), 3, 4, activation="nope")


def test_models_forward_and_linear_map():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(3)
    sn = jd.SingleNeuron(0.7, rng.standard_normal(3))
    assert float(sn(jnp.asarray(x))) == pytest.approx(0.7 * float(sn.w @ x), rel=1e-14)
    np.testing.assert_allclose(sn.linear_map(), 0.7 * np.asarray(sn.w)[None], rtol=1e-15)
    W1, W2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    tl = jd.TwoLayerLinear(W1, W2)
    np.testing.assert_allclose(tl(jnp.asarray(x)), W2 @ W1 @ x, rtol=1e-13)
    np.testing.assert_allclose(tl.linear_map(), W2 @ W1, rtol=1e-13)
    layers = (W1, rng.standard_normal((5, 4)), rng.standard_normal((2, 5)))
    dl = jd.DeepLinear(layers)
    np.testing.assert_allclose(dl(jnp.asarray(x)), layers[2] @ layers[1] @ W1 @ x, rtol=1e-13)
    np.testing.assert_allclose(dl.linear_map(), layers[2] @ layers[1] @ W1, rtol=1e-13)
    mlp = jd.MLP((W1, W2), multipliers=(2.0, 0.5), activation="linear")
    np.testing.assert_allclose(mlp(jnp.asarray(x)), W2 @ W1 @ x, rtol=1e-13)
    for bad in (
        lambda: jd.TwoLayerLinear(W1, rng.standard_normal((2, 5))),
        lambda: jd.TwoLayer(W1, rng.standard_normal((2, 5))),
        lambda: jd.DeepLinear((W1, rng.standard_normal((2, 5)))),
        lambda: jd.DeepLinear(()),
    ):
        with pytest.raises(ValueError):
            bad()


# ---------------------------------------------------------------------------------------------
# jd.init.single_neuron: a·w = β0 and η_w a² − η_a‖w‖² = δ


DELTAS = [-1e3, -37.5, -1.0, -1e-3, -1e-8, 0.0, 1e-8, 1e-3, 1.0, 37.5, 1e3]


@pytest.mark.parametrize("eta_a, eta_w", [(1.0, 1.0), (0.3, 2.5), (4.0, 0.2)])
def test_init_single_neuron_hits_beta_and_delta(eta_a, eta_w):
    rng = np.random.default_rng(3)
    for d in (1, 2, 10):
        for delta in DELTAS:
            beta0 = rng.standard_normal(d) * 10.0 ** rng.uniform(-3, 1)
            m = jd.init.single_neuron(jnp.asarray(beta0), delta, eta_a, eta_w)
            assert m.a.shape == () and m.w.shape == (d,)
            assert float(m.a) > 0
            beta = np.asarray(m.a * m.w)
            assert np.max(np.abs(beta - beta0)) <= 1e-12 * np.max(np.abs(beta0))
            got = float(jd.metrics.conserved(m, jd.SingleNeuron(a=eta_a, w=eta_w)))
            scale = max(1.0, abs(delta), eta_w * float(m.a) ** 2)
            assert abs(got - delta) <= 1e-12 * scale, (d, delta, got)


def test_init_single_neuron_sign_and_errors():
    beta0 = jnp.array([0.3, -0.4])
    m = jd.init.single_neuron(beta0, -0.5, sign=-1.0)
    assert float(m.a) < 0
    np.testing.assert_allclose(m.a * m.w, beta0, rtol=1e-14)
    # δ > 0 admits β0 = 0 (a0 = √(δ/η_w), w0 = 0)
    m0 = jd.init.single_neuron(jnp.zeros(2), 2.0, 1.0, 0.5)
    assert float(m0.a) == pytest.approx(2.0) and np.all(np.asarray(m0.w) == 0)
    with pytest.raises(ValueError, match="`beta0`"):
        jd.init.single_neuron(jnp.zeros(2), 0.0)
    with pytest.raises(ValueError, match="`beta0`"):
        jd.init.single_neuron(jnp.zeros(2), -1.0)
    with pytest.raises(ValueError, match="`beta0`"):
        jd.init.single_neuron(jnp.ones((2, 2)), 1.0)


def test_init_single_neuron_vmappable():
    deltas = jnp.array(DELTAS)
    models = jax.vmap(lambda dl: jd.init.single_neuron(jnp.array([0.2, 0.1, -0.3]), dl))(deltas)
    assert models.a.shape == (len(DELTAS),) and models.w.shape == (len(DELTAS), 3)
    got = np.asarray(jd.metrics.conserved(models))
    np.testing.assert_allclose(got, DELTAS, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# jd.init.two_layer: per-unit imbalance and scale (notes §5.3, check C21)


def test_init_two_layer_grid():
    # the authors' 17 × 17 grid: scale ∈ logspace(−1, 0.3), δ ∈ linspace(−1, 1)
    scales = jnp.logspace(-1, 0.3, 17)
    deltas = jnp.linspace(-1.0, 1.0, 17)
    S, D = [g.reshape(-1) for g in jnp.meshgrid(scales, deltas, indexing="ij")]
    key = jax.random.PRNGKey(0)
    nets = jax.vmap(lambda s, dl: jd.init.two_layer(key, 5, 8, 1, s, dl))(S, D)
    assert nets.W1.shape == (S.size, 8, 5) and nets.W2.shape == (S.size, 1, 8)
    a = np.abs(np.asarray(nets.W2[:, 0, :]))  # |a_k|
    wn = np.linalg.norm(np.asarray(nets.W1), axis=-1)  # ‖w_k‖
    np.testing.assert_allclose(
        a**2 - wn**2, np.broadcast_to(np.asarray(D)[:, None], a.shape), atol=1e-12
    )
    np.testing.assert_allclose(
        a * wn, np.broadcast_to(np.asarray(S)[:, None] ** 2, a.shape), rtol=1e-12
    )
    np.testing.assert_allclose(jd.metrics.conserved(nets), a**2 - wn**2, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("o", [1, 3])
def test_init_two_layer_symmetric_is_zero_function(o):
    key = jax.random.PRNGKey(1)
    net = jd.init.two_layer(key, 4, 6, o, scale=0.7, imbalance=0.3)
    X = jax.random.normal(jax.random.PRNGKey(2), (10, 4))
    out = jax.vmap(net)(X)
    assert out.shape == (10, o)
    assert float(jnp.max(jnp.abs(out))) < 1e-14
    # per-unit imbalance ‖W2[:, k]‖² − ‖W1[k]‖² and scale ‖W2[:, k]‖‖W1[k]‖ also for o > 1
    a = np.linalg.norm(np.asarray(net.W2), axis=0)
    wn = np.linalg.norm(np.asarray(net.W1), axis=1)
    np.testing.assert_allclose(a**2 - wn**2, 0.3, rtol=1e-12)
    np.testing.assert_allclose(a * wn, 0.49, rtol=1e-12)
    # not symmetric: f ≠ 0, same per-unit invariants
    net2 = jd.init.two_layer(key, 4, 5, o, scale=0.7, imbalance=0.3, symmetric=False)
    assert float(jnp.max(jnp.abs(jax.vmap(net2)(X)))) > 1e-3
    np.testing.assert_allclose(jd.metrics.conserved(net2), 0.3, rtol=1e-12)


def test_init_two_layer_errors_and_extremes():
    key = jax.random.PRNGKey(3)
    with pytest.raises(ValueError, match="`h`"):
        jd.init.two_layer(key, 3, 5)
    with pytest.raises(ValueError, match="`scale`"):
        jd.init.two_layer(key, 3, 4, scale=0.0)
    # large |δ|/scale² on either side: still exact, no overflow or cancellation
    for dl in (-1e6, 1e6):
        net = jd.init.two_layer(key, 3, 4, 1, scale=0.1, imbalance=dl)
        a = np.abs(np.asarray(net.W2[0]))
        wn = np.linalg.norm(np.asarray(net.W1), axis=1)
        np.testing.assert_allclose(a**2 - wn**2, dl, rtol=1e-12)
        np.testing.assert_allclose(a * wn, 0.01, rtol=1e-12)
