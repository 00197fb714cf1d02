"""The stacked solve's hand-written MSE gradients (`_rows_grad`, members on the trailing axis)
against `jax.grad` of the loss on the data, member by member, and a stacked flow through
them against the per-member (vmap) flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._flow import SMALL_CONTRACTION, _moments, _rows_grad, _rows_matmul

jax.config.update("jax_enable_x64", True)


def _data(n, d, o, seed):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)))
    Y = jnp.asarray(rng.standard_normal((n, o)))
    return X, Y


def _trailing(tree):
    """Batch-first leaves (N, ...) -> members-last leaves (..., N)."""
    return jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, -1), tree)


def _check(models, X, Y):
    Sxx, Sxy, _ = _moments(X, Y.reshape(X.shape[0], -1))  # as gradient_flow: Y always 2-D
    grad = _rows_grad(jax.tree_util.tree_map(lambda x: x[0], models), models, Sxx, Sxy)
    assert grad is not None
    got = grad(_trailing(models))
    want = _trailing(jax.vmap(jax.grad(jd.mse_loss), in_axes=(0, None))(models, (X, Y)))
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("d", [1, 3, SMALL_CONTRACTION + 2])
def test_single_neuron_rows_gradient(d):
    X, Y = _data(11, d, 1, d)
    keys = jax.random.split(jax.random.key(d), 6)
    models = jax.vmap(lambda k: jd.SingleNeuron(jax.random.normal(k, ()), jnp.ones(d)))(keys)
    models = jd.SingleNeuron(models.a, models.w * jnp.arange(1.0, d + 1.0) - 0.3)
    _check(models, X, Y[:, 0])


@pytest.mark.parametrize(("d", "h", "o"), [(3, 5, 2), (4, 4, 4), (2, SMALL_CONTRACTION + 3, 1)])
def test_two_layer_linear_rows_gradient(d, h, o):
    X, Y = _data(13, d, o, h)
    k1, k2 = jax.random.split(jax.random.key(h))
    W1 = jax.random.normal(k1, (5, h, d))
    W2 = jax.random.normal(k2, (5, o, h))
    _check(jd.TwoLayerLinear(W1, W2), X, Y)


def test_rows_matmul_shared_and_batched_operands():
    rng = np.random.default_rng(0)
    for k in (2, SMALL_CONTRACTION + 1):
        A = jnp.asarray(rng.standard_normal((3, k, 7)))
        B = jnp.asarray(rng.standard_normal((k, 4, 7)))
        C = jnp.asarray(rng.standard_normal((k, 4)))
        want = jnp.einsum("ikb,kjb->ijb", A, B)
        np.testing.assert_allclose(_rows_matmul(A, B), want, rtol=1e-13)
        np.testing.assert_allclose(_rows_matmul(A, C), jnp.einsum("ikb,kj->ijb", A, C), rtol=1e-13)


def test_other_models_use_the_vmapped_gradient():
    m = jd.TwoLayer(jnp.ones((2, 3)), jnp.ones((1, 2)), activation="relu")
    X, Y = _data(5, 3, 1, 0)
    Sxx, Sxy, _ = _moments(X, Y)
    assert _rows_grad(m, m, Sxx, Sxy) is None


def test_stacked_flow_matches_per_member_flow():
    """Through the hand-written gradient (stacked) and through `jax.grad` (vmap), two
    different step sequences of the same ODE at rtol = atol = 1e-11: equal to ~1e-9."""
    X, Y = _data(9, 3, 2, 1)
    k1, k2 = jax.random.split(jax.random.key(3))
    models = jd.TwoLayerLinear(
        0.3 * jax.random.normal(k1, (4, 5, 3)), 0.3 * jax.random.normal(k2, (4, 2, 5))
    )
    ts = jnp.linspace(0.0, 5.0, 6)
    # per-member, per-layer rates
    e1, e2 = jnp.array([0.5, 1.0, 2.0, 1.5]), jnp.array([2.0, 1.0, 0.5, 1.0])
    lr = jd.TwoLayerLinear(
        e1[:, None, None] * jnp.ones_like(models.W1), e2[:, None, None] * jnp.ones_like(models.W2)
    )
    kw = dict(lr=lr, rtol=1e-11, atol=1e-11)
    a = jd.gradient_flow(models, (X, Y), ts, batch="stacked", **kw)
    b = jd.gradient_flow(models, (X, Y), ts, batch="vmap", **kw)
    assert np.all(np.asarray(a.status) == 0) and np.all(np.asarray(b.status) == 0)
    for x, y in zip(
        jax.tree_util.tree_leaves(a.model), jax.tree_util.tree_leaves(b.model), strict=True
    ):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-8)
