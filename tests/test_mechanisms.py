"""The feature-learning mechanism metrics (`jd.metrics.layer_alignment`, `directional_change`,
`norm_ratio`, `layer_change`, `ntk_ratio`) on time-stacked trajectories, checked against the
Xu–Ziyin exact solution (alignment, disalignment, rescaling) and on other models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)


def _stacked(ex, gamma):
    """The exact solution as a time-stacked `jd.MLP` (W = w[:, None], readout u[None])."""
    model, _ = jd.exact.xu_ziyin_network(ex.u, ex.w[..., None], gamma=gamma)
    return model


@pytest.fixture(scope="module")
def runs():
    rng = np.random.default_rng(0)
    d, ts = 64, np.linspace(0.0, 30.0, 31)
    out = {}
    # alignment: small balanced init; disalignment: large init with u ∥ w (|o0| > |c|);
    # rescaling: first layer ≈ 0 (u dominant in rescaled units)
    u, w = rng.normal(size=d), rng.normal(size=d)
    for name, u0, w0 in (
        ("alignment", 0.05 * u / 8, 0.05 * w / 8),
        ("disalignment", 3 * u / 8, 3 * (u + 0.5 * w) / 8),
        ("rescaling", u / 8, 1e-3 * w / 8),
    ):
        ex = jd.exact.xu_ziyin(u0, w0, ts, c=1.0, gamma=1.0)
        model0, _ = jd.exact.xu_ziyin_network(u0, w0[:, None])
        out[name] = (ex, model0, _stacked(ex, 1.0))
    return out


def test_three_mechanisms_measured(runs):
    X, _ = jd.data.latent_variable_sample(jax.random.key(0), 3, c=1.0)
    ex, m0, mt = runs["alignment"]
    cos = np.asarray(jd.metrics.layer_alignment(mt))[:, 0]
    assert cos[0] < 0.3 and cos[-1] > 0.999  # u and w align (cos → sign c)
    kr = np.asarray(jd.metrics.ntk_ratio(m0, mt, X))
    np.testing.assert_allclose(kr, np.asarray(ex.ntk / ex.ntk[0]), rtol=1e-10)
    assert kr[-1] > 10  # the kernel grows

    ex, m0, mt = runs["disalignment"]
    cos = np.asarray(jd.metrics.layer_alignment(mt))[:, 0]
    assert cos[-1] < cos[0]  # rotated apart
    assert np.asarray(jd.metrics.ntk_ratio(m0, mt, X))[-1] < 1  # the kernel shrinks

    ex, m0, mt = runs["rescaling"]
    dc = np.asarray(jd.metrics.directional_change(m0, mt))  # (T, layer): W, u
    nr = np.asarray(jd.metrics.norm_ratio(m0, mt))
    assert dc.shape == (31, 2) and np.max(dc[:, 1]) < 1e-6  # u keeps its direction …
    nu = np.linalg.norm(np.asarray(ex.u), axis=1)
    np.testing.assert_allclose(nr[:, 1], nu / nu[0], rtol=1e-12)
    np.testing.assert_allclose(nr[:, 1], np.cosh(np.asarray(ex.sigma)), rtol=1e-3)  # … rescales
    assert nr[-1, 1] > 1.1
    lc = np.asarray(jd.metrics.layer_change(m0, mt))
    assert lc[-1, 0] > 10 * lc[-1, 1]  # the weak layer moves most, relative to its size


def test_metrics_definitions_and_batching():
    rng = np.random.default_rng(1)
    W1a, W2a = rng.normal(size=(5, 3)), rng.normal(size=(2, 5))
    W1b, W2b = 2 * W1a + 0.1 * rng.normal(size=(5, 3)), -W2a
    m0 = jd.TwoLayerLinear(W1a, W2a)
    mt = jd.TwoLayerLinear(np.stack([W1a, W1b]), np.stack([W2a, W2b]))  # (T=2, …)
    nr = np.asarray(jd.metrics.norm_ratio(m0, mt))
    np.testing.assert_allclose(nr[1], [np.linalg.norm(W1b) / np.linalg.norm(W1a), 1.0])
    dc = np.asarray(jd.metrics.directional_change(m0, mt))
    np.testing.assert_allclose(dc[0], 0.0, atol=1e-15)
    np.testing.assert_allclose(dc[1, 1], 2.0)  # W2 → −W2
    lc = np.asarray(jd.metrics.layer_change(m0, mt))
    np.testing.assert_allclose(lc[1, 1], 2.0)
    al = np.asarray(jd.metrics.layer_alignment(mt))
    s = lambda M: np.linalg.norm(M, 2)  # noqa: E731
    np.testing.assert_allclose(al[0, 0], s(W2a @ W1a) / (s(W2a) * s(W1a)), rtol=1e-12)
    # batch (B=3) of initial models against (B, T) trajectories
    mb0 = jd.TwoLayerLinear(np.stack([W1a] * 3), np.stack([W2a] * 3))
    mbt = jd.TwoLayerLinear(
        np.stack([np.stack([W1a, W1b])] * 3), np.stack([np.stack([W2a, W2b])] * 3)
    )
    assert jd.metrics.norm_ratio(mb0, mbt).shape == (3, 2, 2)
    X = rng.normal(size=(4, 3))
    kr = jd.metrics.ntk_ratio(mb0, mbt, X)
    assert kr.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(kr[:, 0]), 1.0)
    # a single neuron: layers (w, a); always aligned
    sn0 = jd.SingleNeuron(jnp.asarray(0.5), jnp.ones(3))
    snt = jd.SingleNeuron(jnp.array([0.5, 1.0]), jnp.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(jd.metrics.layer_alignment(snt)), 1.0)
    np.testing.assert_allclose(np.asarray(jd.metrics.norm_ratio(sn0, snt))[1], [1.0, 2.0])


def test_bad_input_names_the_argument():
    m0 = jd.TwoLayerLinear(np.ones((4, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="`model_t`"):
        jd.metrics.norm_ratio(m0, jd.TwoLayerLinear(np.ones((2, 5, 3)), np.ones((2, 2, 5))))
    with pytest.raises(ValueError, match="`model0`"):
        jd.metrics.directional_change(m0, jd.SingleNeuron(1.0, np.ones(3)))
    with pytest.raises(ValueError, match="`model`"):
        jd.metrics.layer_alignment(jd.DeepLinear((np.ones((2, 2)),)))
