"""The stacked solve's hand-written MSE gradients (`_rows_grad`, members on the trailing axis)
against `jax.grad` of the loss on the data, member by member, and a stacked flow through
them against the per-member (vmap) flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._flow import SMALL_CONTRACTION, _moments, _rows_grad, _rows_loss, _rows_matmul

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
    Sxx, Sxy, syy = _moments(X, Y.reshape(X.shape[0], -1))  # as gradient_flow: Y always 2-D
    member = jax.tree_util.tree_map(lambda x: x[0], models)
    grad = _rows_grad(member, models, Sxx, Sxy)
    assert grad is not None
    # the loss on the same layout: the direct MSE on the data, member by member
    loss = _rows_loss(member, models, Sxx, Sxy, syy)
    assert loss is not None
    direct = jax.vmap(jd.mse_loss, in_axes=(0, None))(models, (X, Y))
    np.testing.assert_allclose(loss(_trailing(models)), direct, rtol=1e-11, atol=1e-14)
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
    assert _rows_loss(m, m, Sxx, Sxy, 0.0) is None


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


@pytest.mark.parametrize("kind", ["single_neuron", "two_layer", "custom_loss"])
def test_stacked_outputs_are_the_saved_states_and_their_loss(kind):
    """The stacked solve's outputs, assembled on the contiguous (T, P, B) layout (loss from the
    hand-written moments formula, or the member loss vmapped, one transpose to (B, T, ...)):
    per member equal to a solve of that member alone, and `loss` the direct loss of each saved
    state."""
    X, Y = _data(10, 3, 1, 4)
    y = Y[:, 0]
    keys = jax.random.split(jax.random.key(5), 3)
    loss = "mse"
    if kind == "single_neuron":
        models = jax.vmap(
            lambda k: jd.SingleNeuron(0.5 + jax.random.uniform(k), jnp.full(3, 0.2))
        )(keys)
        direct = jd.mse_loss
    else:
        models = jax.vmap(
            lambda k: jd.TwoLayer(
                0.3 * jax.random.normal(k, (4, 3)), 0.3 * jnp.ones((1, 4)), activation="tanh"
            )
        )(keys)
        direct = jd.mse_loss
        if kind == "custom_loss":

            def loss(m, data):
                Xd, yd = data
                return jnp.mean(jnp.abs(jax.vmap(m)(Xd)[:, 0] - yd) ** 3) / 3

            direct = loss
    ts = jnp.linspace(0.0, 3.0, 7)
    kw = dict(lr=0.7, rtol=1e-10, atol=1e-10, loss=loss)
    a = jd.gradient_flow(models, (X, y), ts, batch="stacked", **kw)
    assert a.loss.shape == (3, 7) and np.all(np.asarray(a.status) == 0)
    want = jax.vmap(jax.vmap(direct, in_axes=(0, None)), in_axes=(0, None))(a.model, (X, y))
    np.testing.assert_allclose(a.loss, want, rtol=1e-11, atol=1e-15)
    for i in range(3):
        one = jd.gradient_flow(jax.tree_util.tree_map(lambda x: x[i], models), (X, y), ts, **kw)
        for u, v in zip(
            jax.tree_util.tree_leaves(one.model),
            jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[i], a.model)),
            strict=True,
        ):
            assert u.shape == v.shape
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-8)


@pytest.mark.parametrize("kind", ["single_neuron", "two_layer"])
def test_stacked_stop_at_loss_fires_at_the_worst_member(kind):
    """The stacked event (the loss from the moments on the contiguous layout, or the member
    loss vmapped for other models) fires when the largest member loss reaches the threshold;
    later saves hold the state at the event."""
    X, Y = _data(8, 2, 1, 6)
    y = X @ jnp.array([1.0, -0.5])
    if kind == "single_neuron":
        models = jd.SingleNeuron(jnp.array([0.1, 0.3, 0.6]), jnp.full((3, 2), 0.1))
    else:
        k = jax.random.split(jax.random.key(2), 3)
        models = jax.vmap(
            lambda k: jd.TwoLayer(
                0.5 * jax.random.normal(k, (3, 2)), 0.5 * jnp.ones((1, 3)), activation="tanh"
            )
        )(k)
    ts = jnp.linspace(0.0, 20.0, 41)
    kw = dict(batch="stacked", rtol=1e-11, atol=1e-11)
    free = jd.gradient_flow(models, (X, y), ts, **kw)
    worst = np.max(np.asarray(free.loss), axis=0)  # non-increasing along the flow
    threshold = float(worst[-1] + 0.1 * (worst[0] - worst[-1]))
    traj = jd.gradient_flow(models, (X, y), ts, stop_at_loss=threshold, **kw)
    assert np.all(np.asarray(traj.status) == jd.result_index(jd.RESULTS.event_occurred))
    t_hit = float(traj.stats["t_final"][0])
    assert 0 < t_hit < 20
    after = np.asarray(ts) >= t_hit
    held = np.asarray(traj.loss)[:, after]  # (members, saves after the event)
    assert held.shape[1] >= 2
    np.testing.assert_allclose(np.max(held, axis=0), threshold, rtol=1e-7)
    assert np.all(np.max(np.asarray(traj.loss)[:, ~after], axis=0) > threshold)
    # before the event, the same states as the free run
    np.testing.assert_allclose(
        np.asarray(traj.loss)[:, ~after], np.asarray(free.loss)[:, ~after], rtol=1e-8
    )
