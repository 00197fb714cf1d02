"""`jd.train` (vmapped Optax loop with records) and `jd.init.rescale` (imbalance α, scale τ)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.monitoring as mon
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdyn as jd

D, H, O, N = 3, 5, 2, 8


def _data():
    X = jax.random.normal(jax.random.key(1), (N, D))
    Y = jax.random.normal(jax.random.key(2), (N, O))
    return X, Y


def _model(key):
    k1, k2 = jax.random.split(key)
    W1 = jax.random.normal(k1, (H, D)) / jnp.sqrt(D)
    W2 = jax.random.normal(k2, (O, H)) / jnp.sqrt(H)
    return jd.MLP((W1, W2), activation="tanh")


def _mse(m, d):
    X, Y = d
    return 0.5 * jnp.mean(jnp.sum((jax.vmap(m)(X) - Y) ** 2, axis=-1))


def _adamw(wd):
    return optax.adamw(1.0, b1=0.9, b2=0.98, weight_decay=wd)


def _one(alpha, tau, seed, wd, data):
    m, lr = jd.init.rescale(_model(jax.random.key(seed)), alpha=alpha, tau=tau, lr=0.05)
    return jd.train(
        m,
        _mse,
        _adamw,
        30,
        data=data,
        lr=lr,
        hyper=wd,
        every=10,
        record=lambda m: {"out": jax.vmap(m)(data[0])[:, 0]},
    )


def _trace_events():
    """A list that collects JAX trace events while registered (see `traced`)."""
    events = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            events.append(event)

    return events, listener


def test_vmapped_batch_equals_each_alone_and_does_not_recompile():
    data = _data()
    alphas = jnp.array([0.5, 1.0, 3.0])
    taus = jnp.array([1.0, 0.5, 2.0])
    seeds = jnp.array([0, 1, 2])
    wds = jnp.array([0.0, 0.1, 1.0])
    models, lrs = jax.vmap(
        lambda a, t, s: jd.init.rescale(_model(jax.random.key(s)), alpha=a, tau=t, lr=0.05)
    )(alphas, taus, seeds)
    batched = jax.jit(
        lambda ms, lr, wd: jd.train(
            ms,
            _mse,
            _adamw,
            30,
            data=data,
            lr=lr,
            hyper=wd,
            every=10,
            batch=True,
            record=lambda m: {"out": jax.vmap(m)(data[0])[:, 0]},
        )
    )(models, lrs, wds)
    assert batched.loss.shape == (3, 4) and batched.records["out"].shape == (3, 4, N)
    np.testing.assert_array_equal(batched.steps[0], [0, 10, 20, 30])
    alone_fn = jax.jit(lambda a, t, s, wd: _one(a, t, s, wd, data))
    events, listener = _trace_events()
    for i in range(3):
        if i == 1:  # compiled once by member 0: the other members' values reuse it
            mon.register_event_duration_secs_listener(listener)
        alone = alone_fn(alphas[i], taus[i], seeds[i], wds[i])
        np.testing.assert_allclose(batched.loss[i], alone.loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            batched.records["out"][i], alone.records["out"], rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            batched.model.model.layers[0][i], alone.model.model.layers[0], rtol=1e-10, atol=1e-12
        )
        # The output scale is a fixed multiplier: AdamW's weight decay leaves it alone.
        assert float(alone.model.scale) == float(taus[i])
    mon.unregister_event_duration_listener(listener)
    assert events == []  # new (α, τ, seed, weight decay) values: no new trace
    assert bool(jnp.all(batched.status == 0))
    assert float(batched.loss[0, -1]) < float(batched.loss[0, 0])


@pytest.mark.slow
def test_sgd_equals_gradient_descent():
    data = _data()
    m = _model(jax.random.key(0))
    out = jd.train(m, _mse, optax.sgd(1.0), 40, data=data, lr=0.3, every=40)
    ref = jd.gradient_descent(m, data, 40, lr=0.3, save_every=40)
    for a, b in zip(out.model.layers, ref.final_model.layers, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-12)


def test_minibatch_and_divergence_marked():
    data = _data()
    m = _model(jax.random.key(0))
    seen = []

    def minibatch(d, k):
        seen.append(k)
        i = jax.random.choice(jax.random.fold_in(jax.random.key(5), k), N, (4,), replace=False)
        return d[0][i], d[1][i]

    out = jd.train(m, _mse, optax.sgd(1.0), 20, data=data, lr=0.1, every=5, minibatch=minibatch)
    assert out.loss.shape == (5,) and int(out.status) == 0 and seen
    bad = jd.train(m, _mse, optax.sgd(1.0), 50, data=data, lr=1e6, every=10)
    assert int(bad.status) == jd.result_index(jd.RESULTS.nonfinite)


def test_train_bad_arguments():
    data = _data()
    m = _model(jax.random.key(0))
    with pytest.raises(ValueError, match="multiple of `every`"):
        jd.train(m, _mse, optax.sgd(1.0), 10, data=data, every=3)
    with pytest.raises(ValueError, match="`steps`"):
        jd.train(m, _mse, optax.sgd(1.0), 0, data=data)
    with pytest.raises(TypeError, match="loss_fn"):
        jd.train(m, None, optax.sgd(1.0), 10, data=data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`lr`"):
        jd.train(m, _mse, optax.sgd(1.0), 10, data=data, lr=float("nan"))
    with pytest.raises(ValueError, match="trainable"):
        jd.train(m, _mse, optax.sgd(1.0), 10, data=data, filter_spec=lambda x: False)


# --------------------------------------------------------------------------------------------
# jd.init.rescale


def test_rescale_conventions():
    W1 = jax.random.normal(jax.random.key(0), (H, D))
    W2 = jax.random.normal(jax.random.key(1), (O, H))
    net = jd.TwoLayer(W1, W2, "relu")
    s, lr = jd.init.rescale(net, alpha=4.0, tau=0.5, lr=0.2)
    assert isinstance(s, jd.init.Scaled)
    np.testing.assert_allclose(s.model.W1, W1 / 4.0)
    np.testing.assert_allclose(s.model.W2, W2 * 4.0)
    assert float(s.scale) == 0.5 and np.isclose(float(lr), 0.2 / 0.25)
    x = jnp.arange(D, dtype=W1.dtype)
    # ReLU is positively homogeneous: α leaves the function unchanged, τ multiplies it.
    np.testing.assert_allclose(s(x), 0.5 * net(x), rtol=1e-12)
    # Per-unit imbalance a_k² − ‖w_k‖² becomes α²a_k² − ‖w_k‖²/α².
    d0 = jnp.sum(W2**2, 0) - jnp.sum(W1**2, 1)
    d1 = jnp.sum(s.model.W2**2, 0) - jnp.sum(s.model.W1**2, 1)
    np.testing.assert_allclose(d1, 16 * jnp.sum(W2**2, 0) - jnp.sum(W1**2, 1) / 16)
    assert not np.allclose(d0, d1)
    # Traced α, τ: one batch of models, same structure for every value (incl. 1).
    ss, lrs = jax.vmap(lambda a, t: jd.init.rescale(net, alpha=a, tau=t))(
        jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0])
    )
    assert ss.model.W1.shape == (2, H, D) and ss.scale.shape == (2,)
    np.testing.assert_allclose(lrs, [1.0, 0.25])


def test_rescale_custom_where_and_errors():
    m = eqx.nn.MLP(D, O, 4, 2, key=jax.random.key(0))
    s, _ = jd.init.rescale(m, alpha=2.0)  # "auto": first and last eqx.nn.Linear
    np.testing.assert_allclose(s.model.layers[0].weight, m.layers[0].weight / 2)
    np.testing.assert_allclose(s.model.layers[0].bias, m.layers[0].bias / 2)
    np.testing.assert_allclose(s.model.layers[-1].weight, m.layers[-1].weight * 2)
    np.testing.assert_allclose(s.model.layers[1].weight, m.layers[1].weight)
    s2, _ = jd.init.rescale(m, alpha=2.0, first=lambda n: n.layers[0].weight, last=None)
    np.testing.assert_allclose(s2.model.layers[0].bias, m.layers[0].bias)
    np.testing.assert_allclose(s2.model.layers[-1].weight, m.layers[-1].weight)
    with pytest.raises(ValueError, match="`alpha`"):
        jd.init.rescale(m, alpha=0.0)
    with pytest.raises(ValueError, match="`tau`"):
        jd.init.rescale(m, tau=-1.0)
    with pytest.raises(ValueError, match="`alpha`"):
        jd.init.rescale(m, alpha=float("inf"))
    with pytest.raises(TypeError, match="first="):
        jd.init.rescale(eqx.nn.Linear(2, 2, key=jax.random.key(0)))


def test_traced_bad_settings_are_nan_never_numbers():
    # A concrete bad α / τ / lr raises (above); a traced one cannot, so it must poison the
    # point it belongs to (NaN model or lr, then `nonfinite`), never give a plausible number.
    data = _data()
    X = data[0]
    m = _model(jax.random.key(0))
    nan, inf = float("nan"), float("inf")
    good = (1.5, 0.5, 0.2)
    bad = [(0.0, 1, 1), (-1.5, 1, 1), (inf, 1, 1), (nan, 1, 1), (1, 0.0, 1), (1, -0.5, 1)]
    bad += [(1, inf, 1), (1, 1, 0.0), (1, 1, -0.2), (1, 1, inf), (1, 1, nan)]
    a, t, lr = (jnp.asarray(c, X.dtype) for c in zip(good, *bad, strict=True))

    def build(alpha, tau, lr):
        net, lr_t = jd.init.rescale(m, alpha=alpha, tau=tau, lr=lr)
        return jax.vmap(net)(X), lr_t

    f, lr_t = jax.jit(jax.vmap(build))(a, t, lr)
    net0, lr0 = jd.init.rescale(m, alpha=good[0], tau=good[1], lr=good[2])
    np.testing.assert_array_equal(f[0], jax.vmap(net0)(X))
    assert lr_t[0] == lr0
    finite = np.isfinite(f).all((1, 2)) & np.isfinite(lr_t)
    assert finite[0] and not finite[1:].any()

    def status(alpha, tau, lr):
        net, lr_t = jd.init.rescale(m, alpha=alpha, tau=tau, lr=lr)
        return jd.train(net, _mse, optax.sgd(1.0), 10, data=data, lr=lr_t, every=5).status

    st = np.asarray(jax.jit(jax.vmap(status))(a, t, lr))
    assert st[0] == 0 and (st[1:] == jd.result_index(jd.RESULTS.nonfinite)).all()
    # jd.train's own check (a finite lr) under jit: a traced inf / NaN lr is marked too
    for v in (inf, nan):
        out = jax.jit(lambda v: jd.train(m, _mse, optax.sgd(1.0), 10, data=data, lr=v))(v)
        assert int(out.status) == jd.result_index(jd.RESULTS.nonfinite)


def test_cross_entropy_loss_and_uniform_minibatch():
    X = jax.random.normal(jax.random.key(3), (N, D))
    y = jnp.arange(N) % O
    m = _model(jax.random.key(0))
    ref = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jax.vmap(m)(X), y))
    assert jd.cross_entropy_loss(m, (X, y)) == ref
    key = jax.random.key(4)
    mb = jd.uniform_minibatch(key, N, 5)
    Xb, yb = mb((X, y), jnp.int32(2))
    idx = jax.random.randint(jax.random.fold_in(key, 2), (5,), 0, N)
    np.testing.assert_array_equal(Xb, X[idx])
    np.testing.assert_array_equal(yb, y[idx])
    with pytest.raises(ValueError, match="`batch_size`"):
        jd.uniform_minibatch(key, N, 0)
    with pytest.raises(ValueError, match="`n`"):
        jd.uniform_minibatch(key, 0, 4)
    out = jd.train(
        m, jd.cross_entropy_loss, optax.sgd(1.0), 20, data=(X, y), lr=0.5, every=10, minibatch=mb
    )
    assert int(out.status) == 0 and out.loss[-1] < out.loss[0]
