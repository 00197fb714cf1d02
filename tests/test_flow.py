"""`jd.gradient_flow` and `jd.gradient_descent`: conservation laws, autodiff, jit/vmap, batched
solves, the gradient-descent limit, argument checking, failure reporting and data moments."""

from __future__ import annotations

import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import flow_dopri8, make_whitened, rel_err

import jaxdyn as jd

TIGHT = dict(solver=diffrax.Dopri8(), rtol=1e-11, atol=1e-12)


def _gaussian_data(seed, n, d, o=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal(n) if o is None else rng.standard_normal((n, o))
    return rng, jnp.asarray(X), jnp.asarray(Y)


def _layer_lr(model, eta1, eta2):
    """Per-layer scalar learning rates `(η_W1, η_W2)` as a pytree of the model's type.

    (`jd.TwoLayerLinear(W1=0.5, W2=1.5)` itself is refused by the constructor, which wants
    matrices, so the scalar leaves are swapped in with `eqx.tree_at`.)"""
    return eqx.tree_at(lambda m: (m.W1, m.W2), model, (jnp.asarray(eta1), jnp.asarray(eta2)))


# ---------------------------------------------------------------------------------------------
# 2. Conservation laws along the numerical flow


def test_delta_conserved_single_neuron_nonwhitened():
    # notes C1: d = 5, n = 20, Gaussian data, η_a = 0.7, η_w = 1.9, T = 50
    rng, X, y = _gaussian_data(1, 20, 5)
    model = jd.SingleNeuron(jnp.asarray(0.3), jnp.asarray(0.5 * rng.standard_normal(5)))
    lr = jd.SingleNeuron(a=0.7, w=1.9)
    traj = flow_dopri8(model, X, y, jnp.linspace(0.0, 50.0, 101), lr)
    assert traj.result == jd.RESULTS.successful
    delta = np.asarray(jd.metrics.conserved(traj.model, lr))
    assert delta.shape == (101,)
    assert np.max(np.abs(delta - delta[0])) <= 1e-9
    # the flow really moved, and the η-weighted combination is the one that is conserved
    assert rel_err(traj.model.w[-1], traj.model.w[0]) > 0.1
    unweighted = np.asarray(jd.metrics.conserved(traj.model))
    assert np.max(np.abs(unweighted - unweighted[0])) > 1e-3


@pytest.mark.parametrize("etas", [(1.0, 1.0), (0.5, 1.5)])
def test_balance_conserved_two_layer_linear(etas):
    # notes C18: h = 4, o = 2, d = 3, n = 10; W2ᵀW2 − W1W1ᵀ (η-weighted) conserved
    rng, X, Y = _gaussian_data(2, 10, 3, o=2)
    model = jd.TwoLayerLinear(0.5 * rng.standard_normal((4, 3)), 0.5 * rng.standard_normal((2, 4)))
    lr = _layer_lr(model, *etas)
    traj = flow_dopri8(model, X, Y, jnp.linspace(0.0, 30.0, 31), lr)
    assert traj.result == jd.RESULTS.successful
    Q = np.asarray(jd.metrics.conserved(traj.model, lr))
    assert Q.shape == (31, 4, 4)
    assert np.max(np.abs(Q - Q[0])) <= 1e-9
    assert traj.loss[-1] < 0.9 * traj.loss[0]


def test_per_unit_imbalance_conserved_relu():
    # notes C20, in the flow limit: bias-free ReLU net, inputs on the sphere, unequal layer rates
    rng = np.random.default_rng(3)
    n, d, h = 40, 5, 6
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    teacher = jd.TwoLayer(rng.standard_normal((2, d)), np.array([[1.0, -1.0]]))
    Y = np.asarray(jax.vmap(teacher)(jnp.asarray(X)))
    model = jd.TwoLayer(0.7 * rng.standard_normal((h, d)), 0.7 * rng.standard_normal((1, h)))
    lr = _layer_lr(model, 0.8, 1.3)
    traj = jd.gradient_flow(model, (X, Y), jnp.linspace(0.0, 10.0, 21), lr=lr, **TIGHT)
    assert traj.result == jd.RESULTS.successful
    dk = np.asarray(jd.metrics.conserved(traj.model, lr))
    assert dk.shape == (21, h)
    assert np.max(np.abs(dk - dk[0])) <= 1e-9
    # the activation pattern changed along the way, so the kinks were really crossed
    pre0 = X @ np.asarray(traj.model.W1[0]).T
    preT = X @ np.asarray(traj.model.W1[-1]).T
    assert np.any(np.sign(pre0) != np.sign(preT))


# ---------------------------------------------------------------------------------------------
# 4. Autodiff through the solve; jit and vmap

BETA0 = jnp.array([0.3, -0.2, 0.1])
ETA = (0.7, 1.3)
TS_GRAD = jnp.array([0.0, 1.0, 3.0])


def _functional(delta, X, y):
    model = jd.init.single_neuron(BETA0, delta, *ETA)
    traj = jd.gradient_flow(
        model,
        (X, y),
        TS_GRAD,
        lr=jd.SingleNeuron(a=ETA[0], w=ETA[1]),
        solver=diffrax.Dopri8(),
        rtol=1e-12,
        atol=1e-14,
        max_steps=4096,
    )
    return traj.loss[1] + traj.loss[-1]


def test_grad_through_flow_matches_finite_differences():
    rng, X, y = _gaussian_data(4, 15, 3)
    F = jax.jit(_functional)
    dF = jax.jit(jax.grad(_functional, argnums=(0, 1, 2)))
    V = jnp.asarray(rng.standard_normal(X.shape))
    u = jnp.asarray(rng.standard_normal(y.shape))
    for delta in (-0.8, 0.0, 1.5):
        delta = jnp.asarray(delta)
        g_delta, g_X, g_y = dF(delta, X, y)
        assert np.isfinite(g_delta) and np.all(np.isfinite(g_X)) and np.all(np.isfinite(g_y))
        h = 1e-4
        fd = (F(delta + h, X, y) - F(delta - h, X, y)) / (2 * h)
        assert abs(g_delta - fd) <= 1e-6 * abs(fd), (float(delta), float(g_delta), float(fd))
        # directional derivative w.r.t. the data (X and y together)
        fd_data = (F(delta, X + h * V, y + h * u) - F(delta, X - h * V, y - h * u)) / (2 * h)
        ad_data = jnp.sum(g_X * V) + jnp.sum(g_y * u)
        assert abs(ad_data - fd_data) <= 1e-6 * abs(fd_data)


JIT_FLOW = eqx.filter_jit(jd.gradient_flow)


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)  # strongly typed: one jit cache entry for all


def test_jit_and_vmap_match_separate_calls():
    rng, X, y = _gaussian_data(5, 12, 3)
    ts = jnp.linspace(0.0, 5.0, 11)
    lr = jd.SingleNeuron(a=_f64(0.7), w=_f64(1.3))
    kwargs = dict(lr=lr, **TIGHT)
    deltas = jnp.array([-2.0, 0.0, 0.5, 4.0])
    models = jax.vmap(lambda dl: jd.init.single_neuron(BETA0, dl, 0.7, 1.3))(deltas)
    members = [jax.tree_util.tree_map(lambda x, i=i: x[i], models) for i in range(4)]

    eager = jd.gradient_flow(members[0], (X, y), ts, **kwargs)
    per_member = [JIT_FLOW(m, (X, y), ts, **kwargs) for m in members]
    # one program vs eager pre/post-processing: rounding differs, and adaptive step control
    # amplifies it to the solver tolerance (rtol 1e-11), not beyond
    for field in ("a", "w"):
        assert rel_err(getattr(per_member[0].model, field), getattr(eager.model, field)) <= 1e-9
    assert rel_err(per_member[0].loss, eager.loss) <= 1e-9

    vmapped = jax.jit(jax.vmap(lambda m: jd.gradient_flow(m, (X, y), ts, **kwargs)))(models)
    assert vmapped.model.w.shape == (4, 11, 3)
    for i, tr in enumerate(per_member):
        assert rel_err(vmapped.model.a[i], tr.model.a) <= 1e-9
        assert rel_err(vmapped.model.w[i], tr.model.w) <= 1e-9
        assert rel_err(vmapped.loss[i], tr.loss) <= 1e-9
        # every member kept its own adaptive steps
        assert abs(int(vmapped.stats["num_steps"][i]) - int(tr.stats["num_steps"])) <= 2
    assert len({int(s) for s in vmapped.stats["num_steps"]}) > 1


# ---------------------------------------------------------------------------------------------
# 5. Batched (stacked) solve


def test_batched_solve_matches_vmap_and_members():
    rng, X, y = _gaussian_data(6, 12, 3)
    ts = jnp.linspace(0.0, 5.0, 11)
    B = 4
    deltas = jnp.array([-2.0, 0.0, 0.5, 4.0])
    eta_a = jnp.array([0.5, 0.7, 1.0, 2.0])
    eta_w = jnp.array([1.5, 1.3, 1.0, 0.4])
    models = jax.vmap(lambda dl, ea, ew: jd.init.single_neuron(BETA0, dl, ea, ew))(
        deltas, eta_a, eta_w
    )
    lr_b = jd.SingleNeuron(a=eta_a, w=eta_w)
    opts = TIGHT

    stacked = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch=True, **opts)
    # batch axis first, exactly like jax.vmap
    assert stacked.ts.shape == (B, 11)
    assert stacked.model.a.shape == (B, 11) and stacked.model.w.shape == (B, 11, 3)
    assert stacked.loss.shape == (B, 11)
    assert stacked.status.shape == (B,)
    assert stacked.stats["t_final"].shape == (B,)
    assert np.all(np.asarray(stacked.status) == 0)

    vmapped = jax.jit(
        jax.vmap(
            lambda m, ea, ew: jd.gradient_flow(
                m, (X, y), ts, lr=jd.SingleNeuron(a=ea, w=ew), **opts
            )
        )
    )(models, eta_a, eta_w)
    assert jax.tree_util.tree_structure(vmapped) == jax.tree_util.tree_structure(stacked)
    for leaf_s, leaf_v in zip(
        jax.tree_util.tree_leaves(eqx.filter(stacked, eqx.is_inexact_array)),
        jax.tree_util.tree_leaves(eqx.filter(vmapped, eqx.is_inexact_array)),
        strict=True,
    ):
        assert leaf_s.shape == leaf_v.shape
    assert rel_err(stacked.model.a, vmapped.model.a) <= 1e-8
    assert rel_err(stacked.model.w, vmapped.model.w) <= 1e-8
    assert rel_err(stacked.loss, vmapped.loss) <= 1e-8

    for i in range(B):
        member = jax.tree_util.tree_map(lambda x, i=i: x[i], models)
        lr_i = jd.SingleNeuron(a=eta_a[i], w=eta_w[i])
        tr = JIT_FLOW(member, (X, y), ts, lr=lr_i, **opts)
        assert rel_err(stacked.model.a[i], tr.model.a) <= 1e-8
        assert rel_err(stacked.model.w[i], tr.model.w) <= 1e-8
        # per-member learning rates matter: δ_i is conserved with the member's own rates
        d_i = np.asarray(jd.metrics.conserved(tr.model, lr_i))
        assert np.max(np.abs(d_i - float(deltas[i]))) <= 1e-8


@pytest.mark.slow
def test_batched_scalar_lr():
    rng, X, y = _gaussian_data(7, 12, 3)
    models = jax.vmap(lambda dl: jd.init.single_neuron(BETA0, dl))(jnp.array([-1.0, 1.0]))
    tr = jd.gradient_flow(models, (X, y), jnp.array([0.0, 1.0]), lr=0.5, batch=True)
    assert tr.model.a.shape == (2, 2) and np.all(np.asarray(tr.status) == 0)
    with pytest.raises(ValueError, match="`lr`"):
        jd.gradient_flow(
            models, (X, y), jnp.array([0.0, 1.0]), lr=jd.SingleNeuron(1.0, 1.0), batch=True
        )


# ---------------------------------------------------------------------------------------------
# 6. Gradient descent and its flow limit


def test_gradient_descent_converges_linearly_to_flow():
    rng, X, y = _gaussian_data(8, 10, 3)
    model = jd.SingleNeuron(jnp.asarray(0.6), jnp.asarray(0.5 * rng.standard_normal(3)))
    eta = (0.7, 1.3)
    horizon = 2.0
    steps_sizes = (0.02, 0.01, 0.005)
    # flow with lr = η at physical times t = k·h on the finest grid (contains the coarser ones)
    fine = steps_sizes[-1]
    n_fine = round(horizon / fine)
    ts = jnp.arange(n_fine + 1) * fine
    flow = flow_dopri8(model, X, y, ts, jd.SingleNeuron(a=eta[0], w=eta[1]))
    errs = []
    for h in steps_sizes:
        steps = round(horizon / h)
        gd = jd.gradient_descent(
            model, (X, y), steps, lr=jd.SingleNeuron(a=h * eta[0], w=h * eta[1])
        )
        assert gd.result == jd.RESULTS.successful
        np.testing.assert_array_equal(gd.ts, np.arange(steps + 1))
        stride = round(h / fine)
        a_ref = flow.model.a[::stride]
        w_ref = flow.model.w[::stride]
        errs.append(
            max(
                float(jnp.max(jnp.abs(gd.model.a - a_ref))),
                float(jnp.max(jnp.abs(gd.model.w - w_ref))),
            )
        )
    assert errs[0] > errs[1] > errs[2]
    for coarse, finer in zip(errs, errs[1:]):
        assert 1.7 <= coarse / finer <= 2.3, errs
    assert errs[-1] < 1e-2


def test_gradient_descent_time_convention():
    # GD with lr = hη saves step k at t = k; the flow with the same lr at the same ts is its
    # limit, and equals the flow with lr = η at t = k·h (time rescaling)
    rng, X, y = _gaussian_data(9, 10, 3)
    model = jd.SingleNeuron(jnp.asarray(0.6), jnp.asarray(0.5 * rng.standard_normal(3)))
    h = 0.01
    gd = jd.gradient_descent(model, (X, y), 100, lr=jd.SingleNeuron(a=h * 0.7, w=h * 1.3))
    fl_steps = flow_dopri8(model, X, y, gd.ts, jd.SingleNeuron(a=h * 0.7, w=h * 1.3))
    fl_phys = flow_dopri8(model, X, y, h * gd.ts, jd.SingleNeuron(a=0.7, w=1.3))
    assert rel_err(fl_steps.model.w, fl_phys.model.w) <= 1e-9
    assert rel_err(gd.model.w, fl_steps.model.w) <= 5 * h


def test_gradient_descent_save_every_and_optax():
    rng, X, y = _gaussian_data(10, 10, 3)
    model = jd.SingleNeuron(jnp.asarray(0.6), jnp.asarray(0.5 * rng.standard_normal(3)))
    full = jd.gradient_descent(model, (X, y), 20, lr=0.05)
    every = jd.gradient_descent(model, (X, y), 20, lr=0.05, save_every=5)
    np.testing.assert_array_equal(every.ts, [0.0, 5.0, 10.0, 15.0, 20.0])
    np.testing.assert_allclose(every.model.w, full.model.w[::5], rtol=1e-14)
    assert int(every.stats["num_steps"]) == 20

    adam = jd.gradient_descent(model, (X, y), 30, lr=1.0, optimizer=optax.adam(1e-2))
    assert isinstance(adam, jd.Trajectory)
    assert adam.result == jd.RESULTS.successful
    assert adam.model.w.shape == (31, 3) and adam.loss.shape == (31,)
    # same iterates as running Optax by hand
    opt = optax.adam(1e-2)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = opt.init(params)
    loss = lambda p: jd.mse_loss(eqx.combine(p, static), (X, y))
    for _ in range(30):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(adam.model.w[-1], params.w, rtol=1e-10)
    np.testing.assert_allclose(adam.model.a[-1], params.a, rtol=1e-10)
    assert adam.loss[-1] < adam.loss[0]


# ---------------------------------------------------------------------------------------------
# 7. Argument errors, raised before anything is solved or compiled


@pytest.fixture
def no_solve(monkeypatch):
    """Any attempt to reach Diffrax fails the test: errors must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("diffeqsolve reached: the argument check came too late")

    monkeypatch.setattr(diffrax, "diffeqsolve", boom)


def _sn(d=3):
    return jd.SingleNeuron(jnp.asarray(0.5), jnp.full((d,), 0.2))


def _xy(n=10, d=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


TS = np.array([0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    "kind, call, exc, name",
    [
        ("rows", lambda X, y: jd.gradient_flow(_sn(), (X, y[:-1]), TS), ValueError, "`data`"),
        ("input dim", lambda X, y: jd.gradient_flow(_sn(4), (X, y), TS), ValueError, "`model`"),
        (
            "outputs",
            lambda X, y: jd.gradient_flow(_sn(), (X, np.stack([y, y], 1)), TS),
            ValueError,
            "`model`",
        ),
        (
            "outputs two-layer",
            lambda X, y: jd.gradient_flow(
                jd.TwoLayerLinear(np.ones((4, 3)), np.ones((2, 4))), (X, y), TS
            ),
            ValueError,
            "`model`",
        ),
        (
            "nan X",
            lambda X, y: jd.gradient_flow(_sn(), (np.where(X > 1, np.nan, X), y), TS),
            ValueError,
            "`data`",
        ),
        (
            "inf Y",
            lambda X, y: jd.gradient_flow(_sn(), (X, np.where(y > 1, np.inf, y)), TS),
            ValueError,
            "`data`",
        ),
        (
            "nan model",
            lambda X, y: jd.gradient_flow(jd.SingleNeuron(np.nan, np.ones(3)), (X, y), TS),
            ValueError,
            "`model`",
        ),
        (
            "ts decreasing",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), [0.0, 2.0, 1.0]),
            ValueError,
            "`ts`",
        ),
        (
            "ts repeated",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), [0.0, 1.0, 1.0]),
            ValueError,
            "`ts`",
        ),
        ("ts start", lambda X, y: jd.gradient_flow(_sn(), (X, y), [1.0, 2.0]), ValueError, "`ts`"),
        ("ts single", lambda X, y: jd.gradient_flow(_sn(), (X, y), [0.0]), ValueError, "`ts`"),
        (
            "ts 2-D",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), np.zeros((2, 2))),
            ValueError,
            "`ts`",
        ),
        (
            "lr structure",
            lambda X, y: jd.gradient_flow(
                _sn(), (X, y), TS, lr=jd.TwoLayerLinear(np.ones((1, 3)), np.ones((1, 1)))
            ),
            TypeError,
            "`lr`",
        ),
        (
            "lr dict",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), TS, lr={"a": 1.0}),
            TypeError,
            "`lr`",
        ),
        (
            "lr negative",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), TS, lr=-0.1),
            ValueError,
            "`lr`",
        ),
        (
            "lr negative leaf",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), TS, lr=jd.SingleNeuron(a=1.0, w=-1.0)),
            ValueError,
            "`lr`",
        ),
        (
            "lr leaf shape",
            lambda X, y: jd.gradient_flow(
                _sn(), (X, y), TS, lr=jd.SingleNeuron(a=1.0, w=np.ones(4))
            ),
            ValueError,
            "`lr`",
        ),
        ("data not pair", lambda X, y: jd.gradient_flow(_sn(), X, TS), TypeError, "`data`"),
        (
            "max_steps",
            lambda X, y: jd.gradient_flow(_sn(), (X, y), TS, max_steps=0),
            ValueError,
            "`max_steps`",
        ),
        (
            "batch axes",
            lambda X, y: jd.gradient_flow(
                jd.SingleNeuron(np.ones(2), np.ones((3, 3))), (X, y), TS, batch=True
            ),
            ValueError,
            "`model`",
        ),
        (
            "batch lr without batch axis",
            lambda X, y: jd.gradient_flow(
                jd.SingleNeuron(np.ones(2), np.ones((2, 3))),
                (X, y),
                TS,
                lr=jd.SingleNeuron(1.0, 1.0),
                batch=True,
            ),
            ValueError,
            "`lr`",
        ),
        (
            "gd steps",
            lambda X, y: jd.gradient_descent(_sn(), (X, y), 0, lr=0.1),
            ValueError,
            "`steps`",
        ),
        (
            "gd lr negative",
            lambda X, y: jd.gradient_descent(_sn(), (X, y), 5, lr=-0.1),
            ValueError,
            "`lr`",
        ),
        (
            "gd lr structure",
            lambda X, y: jd.gradient_descent(_sn(), (X, y), 5, lr={"w": 1.0}),
            TypeError,
            "`lr`",
        ),
        (
            "gd rows",
            lambda X, y: jd.gradient_descent(_sn(), (X[:-1], y), 5, lr=0.1),
            ValueError,
            "`data`",
        ),
    ],
)
def test_argument_errors(no_solve, kind, call, exc, name):
    X, y = _xy()
    with pytest.raises(exc, match=name):
        call(X, y)


# ---------------------------------------------------------------------------------------------
# Failure reporting and stop_at_loss events


def test_stiff_flow_reports_max_steps():
    rng, X, y = _gaussian_data(11, 10, 3)
    model = jd.SingleNeuron(jnp.asarray(0.6), jnp.asarray(0.5 * rng.standard_normal(3)))
    ts = jnp.array([0.0, 1e-11, 1e-10, 1e-6, 1.0, 2.0])
    start = time.perf_counter()
    traj = jd.gradient_flow(model, (X, y), ts, lr=1e9, max_steps=1000)
    elapsed = time.perf_counter() - start
    assert traj.result == jd.RESULTS.max_steps_reached
    assert int(traj.status) == jd.result_index(jd.RESULTS.max_steps_reached)
    assert int(traj.stats["num_steps"]) == 1000
    assert elapsed < 60
    _check_nan_after_failure(traj, ts)


@pytest.mark.slow
def test_stiff_flow_keeps_saves_before_failure():
    # with a small dt0 the solver does advance before running out of steps (t ≈ 3e-6): the
    # saves it passed are kept and correct, everything after is NaN
    rng, X, y = _gaussian_data(11, 10, 3)
    model = jd.SingleNeuron(jnp.asarray(0.6), jnp.asarray(0.5 * rng.standard_normal(3)))
    ts = jnp.array([0.0, 1e-11, 1e-10, 1e-6, 1.0, 2.0])
    traj = jd.gradient_flow(model, (X, y), ts, lr=1e9, max_steps=1000, dt0=1e-12)
    assert int(traj.status) == jd.result_index(jd.RESULTS.max_steps_reached)
    first_bad = _check_nan_after_failure(traj, ts)
    assert first_bad == 4
    ok = jd.gradient_flow(model, (X, y), ts[:first_bad], lr=1e9, dt0=1e-12)
    assert ok.result == jd.RESULTS.successful
    np.testing.assert_allclose(traj.loss[:first_bad], ok.loss, rtol=1e-6)
    np.testing.assert_allclose(traj.model.w[:first_bad], ok.model.w, rtol=1e-6)


def _check_nan_after_failure(traj, ts):
    loss = np.asarray(traj.loss)
    bad = ~np.isfinite(loss)
    assert bad.any() and not bad[0]
    first_bad = int(np.argmax(bad))
    assert np.all(bad[first_bad:])  # NaN only after the failure, and from then on
    assert np.all(np.isnan(np.asarray(traj.model.w)[first_bad:]))
    assert np.all(np.isfinite(np.asarray(traj.model.w)[:first_bad]))
    assert float(traj.stats["t_final"]) < float(ts[first_bad])
    return first_bad


def test_stop_at_loss_event():
    rng = np.random.default_rng(12)
    X = make_whitened(rng, 8, 3)
    y = X @ np.array([1.0, 0.5, -0.3])  # noise-free: the loss goes to 0
    model = jd.init.single_neuron(jnp.array([0.05, 0.1, 0.02]), 0.3, 0.7, 1.3)
    lr = jd.SingleNeuron(a=0.7, w=1.3)
    ts = jnp.linspace(0.0, 50.0, 51)
    L0 = float(jd.mse_loss(model, (X, y)))
    threshold = 1e-2 * L0
    traj = jd.gradient_flow(model, (X, y), ts, lr=lr, stop_at_loss=threshold, **TIGHT)
    assert traj.result == jd.RESULTS.event_occurred
    assert int(traj.status) == jd.result_index(jd.RESULTS.event_occurred)
    t_hit = float(traj.stats["t_final"])
    assert 0 < t_hit < 50
    # the exact solution at the reported hitting time sits on the threshold
    a_ex, w_ex = jd.exact.single_neuron(X, y, model.a, model.w, jnp.array([0.0, t_hit]), *ETA)
    L_hit = float(jd.mse_loss(jd.SingleNeuron(a_ex[1], w_ex[1]), (X, y)))
    assert L_hit == pytest.approx(threshold, rel=1e-8)
    loss = np.asarray(traj.loss)
    before = np.asarray(ts) < t_hit
    assert np.all(loss[before] > threshold)
    # after the event the state is held at the hitting time
    after = ~before
    assert after.sum() >= 2
    np.testing.assert_allclose(loss[after], threshold, rtol=1e-8)
    w_after = np.asarray(traj.model.w)[after]
    np.testing.assert_array_equal(w_after, np.broadcast_to(w_after[0], w_after.shape))
    np.testing.assert_allclose(w_after[0], w_ex[1], rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# 8. Data moments: only XᵀX/n, XᵀY/n, YᵀY/n matter for linear models; `loss` is the MSE


# both kinds in the full suite only (≈ 40 s each on CI's cores): the MSE's invariance to
# duplicated samples is the moments formula, which test_flow_rows checks against jd.mse_loss
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["single", "two-layer-linear"])
def test_duplicated_samples_same_trajectory_and_mse(kind):
    rng = np.random.default_rng(13)
    n, d = 9, 3
    X = rng.standard_normal((n, d))
    if kind == "single":
        Y = rng.standard_normal(n)
        model = jd.SingleNeuron(jnp.asarray(0.4), jnp.asarray(0.3 * rng.standard_normal(d)))
    else:
        Y = rng.standard_normal((n, 2))
        model = jd.TwoLayerLinear(
            0.4 * rng.standard_normal((4, d)), 0.4 * rng.standard_normal((2, 4))
        )
    ts = jnp.linspace(0.0, 10.0, 11)
    t1 = flow_dopri8(model, X, Y, ts, 1.0)
    X2, Y2 = np.concatenate([X, X]), np.concatenate([Y, Y])
    t2 = flow_dopri8(model, X2, Y2, ts, 1.0)
    for l1, l2 in zip(
        jax.tree_util.tree_leaves(eqx.filter(t1.model, eqx.is_array)),
        jax.tree_util.tree_leaves(eqx.filter(t2.model, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_allclose(l1, l2, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(t1.loss, t2.loss, rtol=1e-10)
    assert t1.loss[-1] < 0.9 * t1.loss[0]
    # `loss` is the direct MSE (1/2n) Σ ‖f(x_i) − y_i‖² along the whole trajectory
    direct = jax.vmap(lambda m: jd.mse_loss(m, (X, Y)))(t1.model)
    scale = float(np.mean(np.asarray(Y) ** 2))
    np.testing.assert_allclose(t1.loss, direct, rtol=1e-10, atol=1e-14 * scale)
    by_hand = [
        0.5
        * np.mean(
            np.sum(
                (
                    np.asarray(
                        jax.vmap(jax.tree_util.tree_map(lambda x, k=k: x[k], t1.model))(
                            jnp.asarray(X)
                        )
                    ).reshape(n, -1)
                    - np.asarray(Y).reshape(n, -1)
                )
                ** 2,
                axis=1,
            )
        )
        for k in (0, 5, 10)
    ]
    np.testing.assert_allclose(np.asarray(t1.loss)[[0, 5, 10]], by_hand, rtol=1e-10)


def test_trajectory_fields():
    rng, X, y = _gaussian_data(14, 10, 3)
    traj = jd.gradient_flow(_sn(), (X, y), TS)
    assert isinstance(traj, jd.Trajectory)
    assert traj.ts.shape == (3,) and traj.loss.shape == (3,)
    assert traj.model.a.shape == (3,) and traj.model.w.shape == (3, 3)
    assert set(traj.stats) >= {"num_steps", "num_accepted_steps", "num_rejected_steps", "t_final"}
    assert float(traj.stats["t_final"]) == 2.0
    assert int(traj.status) == 0
    np.testing.assert_array_equal(traj.final_model.w, traj.model.w[-1])
    np.testing.assert_array_equal(traj.model.w[0], _sn().w)


# ---------------------------------------------------------------------------------------------
# Batch modes, tolerances with a custom controller, solver attrs, the result vocabulary


# ≈ 75 s (six solves, each compiled); CI keeps test_batched_solve_matches_vmap_and_members
# and test_flow_rows' stacked-vs-per-member tests, the full suite runs this one too.
@pytest.mark.slow
def test_batch_modes_agree_and_vmap_keeps_own_results():
    rng, X, y = _gaussian_data(11, 12, 3)
    ts = jnp.linspace(0.0, 4.0, 9)
    deltas = jnp.array([-1.5, 0.0, 2.0])
    models = jax.vmap(lambda dl: jd.init.single_neuron(BETA0, dl))(deltas)
    lr_b = jd.SingleNeuron(a=jnp.array([0.5, 1.0, 2.0]), w=jnp.array([1.0, 1.0, 0.5]))
    st = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch="stacked", **TIGHT)
    st_true = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch=True, **TIGHT)
    vm = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch="vmap", **TIGHT)
    auto = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch="auto", **TIGHT)
    assert np.array_equal(np.asarray(st.model.w), np.asarray(st_true.model.w))
    assert vm.model.w.shape == st.model.w.shape == (3, 9, 3)
    assert vm.status.shape == (3,) and np.all(np.asarray(vm.status) == 0)
    assert rel_err(vm.model.w, st.model.w) <= 1e-9
    assert rel_err(vm.loss, st.loss) <= 1e-9
    # CPU: "auto" is the stacked solve, bit for bit
    assert jd.resolve_batch("auto") == "stacked"
    assert np.array_equal(np.asarray(auto.model.w), np.asarray(st.model.w))
    # scalar lr under vmap is shared by every member
    vm1 = jd.gradient_flow(models, (X, y), ts, lr=0.5, batch="vmap", **TIGHT)
    st1 = jd.gradient_flow(models, (X, y), ts, lr=0.5, batch="stacked", **TIGHT)
    assert rel_err(vm1.model.a, st1.model.a) <= 1e-9
    # per-member adaptive steps under vmap: step counts may differ between members
    assert vm.stats["num_steps"].shape == (3,)


def test_vmap_mode_reports_each_members_failure():
    rng, X, y = _gaussian_data(12, 12, 3)
    ts = jnp.linspace(0.0, 10.0, 3)
    models = jax.vmap(lambda dl: jd.init.single_neuron(BETA0, dl))(jnp.array([0.0, 0.0]))
    lr_b = jd.SingleNeuron(a=jnp.array([1.0, 1e7]), w=jnp.array([1.0, 1e7]))
    vm = jd.gradient_flow(models, (X, y), ts, lr=lr_b, batch="vmap", max_steps=200)
    status = np.asarray(vm.status)
    assert status[0] == 0
    assert status[1] == jd.result_index(jd.RESULTS.max_steps_reached)
    assert np.all(np.isfinite(np.asarray(vm.model.w[0])))


def test_batch_mode_errors():
    rng, X, y = _gaussian_data(13, 6, 2)
    model = jd.init.single_neuron(jnp.array([0.1, 0.2]), 0.0)
    ts = jnp.array([0.0, 1.0])
    with pytest.raises(ValueError, match="`batch`"):
        jd.gradient_flow(model, (X, y), ts, batch="sideways")
    with pytest.raises(ValueError, match="`batch`"):
        jd.resolve_batch("stack")
    assert jd.resolve_batch(False) is None and jd.resolve_batch(True) == "stacked"
    assert jd.resolve_batch("vmap") == "vmap"


def test_tolerances_with_a_custom_controller_are_refused():
    rng, X, y = _gaussian_data(14, 6, 2)
    model = jd.init.single_neuron(jnp.array([0.1, 0.2]), 0.0)
    ts = jnp.array([0.0, 1.0])
    ctrl = diffrax.PIDController(rtol=1e-6, atol=1e-6)
    for kw in ({"rtol": 1e-10}, {"atol": 1e-10}, {"rtol": 1e-10, "atol": 1e-10}):
        with pytest.raises(ValueError, match="stepsize_controller"):
            jd.gradient_flow(model, (X, y), ts, stepsize_controller=ctrl, **kw)
    # the controller's own tolerances are used: same result as the default controller with them
    a = jd.gradient_flow(model, (X, y), ts, stepsize_controller=ctrl)
    b = jd.gradient_flow(
        model,
        (X, y),
        ts,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
    )
    assert np.array_equal(np.asarray(a.model.w), np.asarray(b.model.w))
    # defaults are 1e-8 each: None and the explicit value give the same solve
    c = jd.gradient_flow(model, (X, y), ts)
    d = jd.gradient_flow(model, (X, y), ts, rtol=1e-8, atol=1e-8)
    assert np.array_equal(np.asarray(c.model.w), np.asarray(d.model.w))


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_tolerances_raise(name, value):
    rng, X, y = _gaussian_data(15, 6, 2)
    model = jd.init.single_neuron(jnp.array([0.1, 0.2]), 0.0)
    with pytest.raises(ValueError, match=f"`{name}`"):
        jd.gradient_flow(model, (X, y), jnp.array([0.0, 1.0]), **{name: value})


def test_describe_solver_from_objects():
    import optimistix as optx

    attrs = jd.describe_solver(diffrax.Dopri8(), rtol=1e-10, atol=1e-12, batch="auto")
    assert attrs == {
        "solver": "diffrax.Dopri8 + PIDController(max norm)",
        "rtol": 1e-10,
        "atol": 1e-12,
        "mode": "stacked",
    }
    ctrl = diffrax.PIDController(
        rtol=1e-6, atol=1e-7, dtmin=0.01, force_dtmin=True, norm=optx.max_norm
    )
    attrs = jd.describe_solver(diffrax.Tsit5(), ctrl)
    assert attrs == {
        "solver": "diffrax.Tsit5 + PIDController(max norm, dtmin forced)",
        "rtol": 1e-6,
        "atol": 1e-7,
    }
    assert jd.describe_solver()["solver"] == "diffrax.Tsit5 + PIDController(max norm)"
    assert jd.describe_solver(diffrax.Euler(), diffrax.ConstantStepSize())["solver"] == (
        "diffrax.Euler + ConstantStepSize"
    )


def test_results_vocabulary():
    # jaxdyn's RESULTS extends Diffrax's: inherited items keep their indices, new ones follow
    n_diffrax = len(diffrax.RESULTS._name_to_item)
    assert jd.result_index(jd.RESULTS.successful) == 0
    assert jd.result_index(diffrax.RESULTS.max_steps_reached) == jd.result_index(
        jd.RESULTS.max_steps_reached
    )
    assert jd.result_index(jd.RESULTS.not_run) == n_diffrax
    meaning = jd.status_meaning()
    for name in ("successful", "max_steps_reached", "nonfinite", "event_occurred", "not_run"):
        assert f"{jd.result_index(getattr(jd.RESULTS, name))} {name}" in meaning
    # a trajectory's result is a jaxdyn RESULTS item, and status is its index (also under vmap)
    rng, X, y = _gaussian_data(16, 6, 2)
    model = jd.init.single_neuron(jnp.array([0.1, 0.2]), 0.0)
    tr = jd.gradient_flow(model, (X, y), jnp.array([0.0, 1.0]))
    assert tr.result == jd.RESULTS.successful
    assert int(tr.status) == 0 and tr.status.dtype == jnp.int8
    codes = jax.vmap(
        lambda p: jd.status_code(jd.RESULTS.where(p, jd.RESULTS.not_run, jd.RESULTS.successful))
    )(jnp.array([True, False]))
    assert codes.tolist() == [jd.result_index(jd.RESULTS.not_run), 0]


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.5])
def test_nonfinite_or_negative_lr_is_refused(lr):
    rng, X, y = _gaussian_data(17, 6, 2)
    model = jd.init.single_neuron(jnp.array([0.1, 0.2]), 0.0)
    ts = jnp.array([0.0, 1.0])
    with pytest.raises(ValueError, match="`lr`"):
        jd.gradient_flow(model, (X, y), ts, lr=lr)
    with pytest.raises(ValueError, match="`lr`"):
        jd.gradient_flow(model, (X, y), ts, lr=jd.SingleNeuron(a=1.0, w=jnp.array([1.0, lr])))
