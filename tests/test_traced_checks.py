"""Checks that guard a result also hold when the value is traced (issue 9, item 1).

For every assumption of a `jd.init` function: a concrete bad value raises `ValueError` naming
the argument; under `jax.vmap`/`jax.jit` the bad member is NaN (never a plausible wrong value)
and a good member of the same batch is bit-identical to the eager result. And `jd.metrics`
functions accept time-stacked models (one kernel per save time).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

KEY = jax.random.key(0)


def _leaves(tree):
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))


def _member(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, tree)


def _all_nan(tree):
    return all(bool(jnp.all(jnp.isnan(x))) for x in _leaves(tree))


def _identical(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# jd.init.lambda_balanced: admissibility of λ, sign and finiteness of scale
# ---------------------------------------------------------------------------------------------


def test_lambda_balanced_eager_raises_naming_argument():
    with pytest.raises(ValueError, match="lam"):
        jd.init.lambda_balanced(KEY, 2, 3, 2, 1.0, 0.5)  # h > max(d, o) forces λ = 0
    with pytest.raises(ValueError, match="lam >= 0"):
        jd.init.lambda_balanced(KEY, 2, 3, 4, -1.0, 0.5)
    with pytest.raises(ValueError, match="`scale`"):
        jd.init.lambda_balanced(KEY, 2, 2, 2, 0.0, -0.5)
    with pytest.raises(ValueError, match="`lam` must be finite"):
        jd.init.lambda_balanced(KEY, 2, 2, 2, float("nan"), 0.5)
    with pytest.raises(ValueError, match="`h`"):
        jd.init.lambda_balanced(KEY, 2, 0, 2, 0.0, 0.5)


def test_lambda_balanced_traced_lam_gives_nan_member():
    lam = jnp.array([0.0, 1.0, -1.0])  # d = o = 2, h = 3: only λ = 0 is admissible
    models = jax.vmap(lambda l: jd.init.lambda_balanced(KEY, 2, 3, 2, l, 0.5))(lam)
    _identical(_member(models, 0), jd.init.lambda_balanced(KEY, 2, 3, 2, 0.0, 0.5))
    assert _all_nan(_member(models, 1)) and _all_nan(_member(models, 2))
    jitted = jax.jit(lambda l: jd.init.lambda_balanced(KEY, 2, 3, 2, l, 0.5))
    assert _all_nan(jitted(1.0))
    _identical(jitted(0.0), jd.init.lambda_balanced(KEY, 2, 3, 2, 0.0, 0.5))


def test_lambda_balanced_traced_scale_gives_nan_member():
    scale = jnp.array([0.5, -0.5, jnp.nan])
    models = jax.vmap(lambda s: jd.init.lambda_balanced(KEY, 3, 2, 2, 0.3, s))(scale)
    _identical(_member(models, 0), jd.init.lambda_balanced(KEY, 3, 2, 2, 0.3, 0.5))
    assert _all_nan(_member(models, 1)) and _all_nan(_member(models, 2))


def test_lambda_balanced_error_if_on_request():
    """The documented opt-in: `eqx.error_if` on the admissibility mask raises under jit."""

    @jax.jit
    def checked(lam):
        m = jd.init.lambda_balanced(KEY, 2, 3, 2, lam, 0.5)
        ok = jd.init.lambda_balanced_admissible(lam, 3, 2, 2)
        return eqx.error_if(m, ~ok, "inadmissible lam")

    assert not _all_nan(checked(0.0))
    with pytest.raises(Exception, match="inadmissible lam"):
        jax.block_until_ready(checked(1.0))


def test_lambda_balanced_admissible_rejects_nonfinite():
    ok = jd.init.lambda_balanced_admissible(jnp.array([0.0, jnp.nan, 1.0]), 2, 2, 2)
    assert ok.tolist() == [True, False, True]


# ---------------------------------------------------------------------------------------------
# jd.init.lambda_balanced_at_width: (λ, width) admissibility and width range
# ---------------------------------------------------------------------------------------------


def _at_width(lam, width, **kw):
    return jd.init.lambda_balanced_at_width(KEY, lam, 0.5, width, d=2, o=2, max_width=3, **kw)


def test_lambda_balanced_at_width_eager_raises():
    with pytest.raises(ValueError, match="`width`"):
        _at_width(0.0, 4)
    with pytest.raises(ValueError, match="`width`"):
        _at_width(0.0, 0)
    with pytest.raises(ValueError, match="lam"):
        _at_width(1.0, 3)  # width 3 > max(d, o) = 2 needs λ = 0
    with pytest.raises(ValueError, match="`max_width`"):
        jd.init.lambda_balanced_at_width(KEY, 0.0, 0.5, 1, d=2, o=2, max_width=0)
    with pytest.raises(ValueError, match="`inadmissible`"):
        _at_width(0.0, 1, inadmissible="garbage")


@pytest.mark.parametrize("fill", ["zero", "nan"])
def test_lambda_balanced_at_width_traced(fill):
    lam = jnp.array([1.0, 1.0, 0.0, 1.0, 0.5])
    width = jnp.array([2, 3, 3, 4, 0])  # ok, inadmissible, ok, > max_width, < 1
    models = jax.vmap(lambda l, w: _at_width(l, w, inadmissible=fill))(lam, width)
    _identical(_member(models, 0), _at_width(1.0, 2))
    _identical(_member(models, 2), _at_width(0.0, 3))
    for i in (1, 3, 4):
        bad = _member(models, i)
        if fill == "nan":
            assert _all_nan(bad)
        else:
            assert all(float(jnp.abs(x).max()) == 0.0 for x in _leaves(bad))
    # a traced negative scale is NaN whatever `inadmissible` says
    neg = jax.jit(
        lambda s: jd.init.lambda_balanced_at_width(KEY, 0.0, s, 2, d=2, o=2, max_width=3)
    )
    assert _all_nan(neg(-1.0))


# ---------------------------------------------------------------------------------------------
# jd.init.single_neuron and readout_from_imbalance
# ---------------------------------------------------------------------------------------------


def test_single_neuron_eager_raises_naming_argument():
    b = jnp.array([0.3, -0.2])
    with pytest.raises(ValueError, match="`beta0`"):
        jd.init.single_neuron(jnp.zeros(2), -0.5)
    with pytest.raises(ValueError, match="`eta_a`"):
        jd.init.single_neuron(b, 0.5, eta_a=0.0)
    with pytest.raises(ValueError, match="`eta_w`"):
        jd.init.single_neuron(b, 0.5, eta_w=-1.0)
    with pytest.raises(ValueError, match="`sign`"):
        jd.init.single_neuron(b, 0.5, sign=0.0)
    with pytest.raises(ValueError, match="`delta`"):
        jd.init.single_neuron(b, float("inf"))
    with pytest.raises(ValueError, match="`beta0`"):
        jd.init.single_neuron(jnp.array([jnp.nan, 0.0]), 0.5)


def test_single_neuron_traced_bad_member_is_nan():
    b = jnp.array([[0.3, -0.2], [0.0, 0.0], [0.3, -0.2], [0.3, -0.2], [0.3, -0.2]])
    delta = jnp.array([0.5, -0.5, 0.5, 0.5, 0.5])
    eta_a = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0])
    eta_w = jnp.array([2.0, 1.0, 1.0, -1.0, 1.0])
    sign = jnp.array([-1.0, 1.0, 1.0, 1.0, 0.0])
    models = jax.vmap(jd.init.single_neuron)(b, delta, eta_a, eta_w, sign)
    _identical(_member(models, 0), jd.init.single_neuron(b[0], 0.5, 1.0, 2.0, -1.0))
    for i in range(1, 5):
        assert _all_nan(_member(models, i)), i


def test_readout_from_imbalance_checks():
    with pytest.raises(ValueError, match="`r2`"):
        jd.init.readout_from_imbalance(0.5, -1.0)
    with pytest.raises(ValueError, match="`eta_w`"):
        jd.init.readout_from_imbalance(0.5, 1.0, eta_w=0.0)
    f = jax.jit(jd.init.readout_from_imbalance)
    got = f(jnp.array([0.5, 0.5, 0.5]), jnp.array([1.0, -1.0, 1.0]), 1.0, jnp.array([1.0, 1, 0]))
    assert float(got[0]) == float(jd.init.readout_from_imbalance(0.5, 1.0))
    assert bool(jnp.isnan(got[1])) and bool(jnp.isnan(got[2]))


# ---------------------------------------------------------------------------------------------
# jd.init.two_layer, mask_width, pad_width
# ---------------------------------------------------------------------------------------------


def test_two_layer_eager_raises_naming_argument():
    with pytest.raises(ValueError, match="`scale`"):
        jd.init.two_layer(KEY, 3, 4, scale=0.0)
    with pytest.raises(ValueError, match="`scale`"):
        jd.init.two_layer(KEY, 3, 4, scale=-1.0)
    with pytest.raises(ValueError, match="`imbalance`"):
        jd.init.two_layer(KEY, 3, 4, scale=1.0, imbalance=float("nan"))
    with pytest.raises(ValueError, match="`d`"):
        jd.init.two_layer(KEY, 0, 4)


def test_two_layer_traced_scale_gives_nan_member():
    scale = jnp.array([0.7, 0.0, -1.0, 0.7])
    delta = jnp.array([0.3, 0.3, 0.3, jnp.inf])
    nets = jax.vmap(lambda s, dl: jd.init.two_layer(KEY, 3, 4, 1, s, dl))(scale, delta)
    _identical(_member(nets, 0), jd.init.two_layer(KEY, 3, 4, 1, 0.7, 0.3))
    for i in (1, 2, 3):
        assert _all_nan(_member(nets, i)), i


def test_mask_width_traced_out_of_range_is_nan():
    net = jd.init.two_layer(KEY, 3, 4, 1, 0.7, 0.3)
    masked = jax.vmap(lambda w: jd.init.mask_width(net, w))(jnp.array([2, 0, 5, -1]))
    _identical(_member(masked, 0), jd.init.mask_width(net, 2))
    for i in (1, 2, 3):
        assert _all_nan(_member(masked, i)), i
    with pytest.raises(ValueError, match="`max_width`"):
        jd.init.pad_width(net, 0)


# ---------------------------------------------------------------------------------------------
# jd.init.split_singular_values, lambda_balanced_converged, match_det_sign
# ---------------------------------------------------------------------------------------------


def test_split_singular_values_checks():
    with pytest.raises(ValueError, match="`s`"):
        jd.init.split_singular_values(jnp.array([1.0, -0.5]), 0.2)
    with pytest.raises(ValueError, match="`lam`"):
        jd.init.split_singular_values(jnp.array([1.0]), float("nan"))
    s1, s2 = jax.jit(jd.init.split_singular_values)(jnp.array([1.0, -0.5]), 0.2)
    e1, e2 = jd.init.split_singular_values(jnp.array([1.0]), 0.2)
    assert float(s1[0]) == float(e1[0]) and float(s2[0]) == float(e2[0])
    assert bool(jnp.isnan(s1[1])) and bool(jnp.isnan(s2[1]))


def test_lambda_balanced_converged_and_match_det_sign_checks():
    Syx = jnp.diag(jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="`Syx`"):
        jd.init.lambda_balanced_converged(KEY, jnp.ones((2, 3)), 0.0)
    with pytest.raises(ValueError, match="`lam`"):
        jd.init.lambda_balanced_converged(KEY, Syx, float("inf"))
    models = jax.vmap(lambda l: jd.init.lambda_balanced_converged(KEY, Syx, l))(
        jnp.array([0.5, jnp.nan])
    )
    _identical(_member(models, 0), jd.init.lambda_balanced_converged(KEY, Syx, 0.5))
    assert _all_nan(_member(models, 1))
    m = jd.init.lambda_balanced(KEY, 2, 2, 3, 0.0, 0.5)  # W2 (3, 2): not square
    with pytest.raises(ValueError, match="`Syx`"):
        jd.init.match_det_sign(m, Syx)
    with pytest.raises(TypeError, match="model"):
        jd.init.match_det_sign(jd.SingleNeuron(1.0, jnp.ones(2)), Syx)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# jd.metrics with time-stacked models
# ---------------------------------------------------------------------------------------------

X = jax.random.normal(jax.random.key(1), (5, 3))


def _stack(models):
    return jax.tree_util.tree_map(
        lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *models
    )


def _time_stacked(kind):
    if kind == "single":
        ms = [jd.init.single_neuron(jnp.array([0.3, -0.2, 0.1]) * (t + 1), 0.5) for t in range(4)]
    elif kind == "linear":
        ms = [jd.init.lambda_balanced(jax.random.key(t), 3, 2, 2, 0.5, 0.7) for t in range(4)]
    else:
        ms = [jd.init.two_layer(jax.random.key(t), 3, 4, 2, 0.7, 0.3) for t in range(4)]
    return _stack(ms)


@pytest.mark.parametrize("kind", ["single", "linear", "relu"])
def test_ntk_time_stacked_equals_per_time(kind):
    traj_model = _time_stacked(kind)
    K = jd.metrics.ntk(traj_model, X)
    o = 1 if kind == "single" else 2
    assert K.shape == (4, 5 * o, 5 * o)
    ref = jax.vmap(lambda m: jd.metrics.ntk(m, X))(traj_model)
    np.testing.assert_array_equal(np.asarray(K), np.asarray(ref))
    np.testing.assert_array_equal(
        np.asarray(K[2]), np.asarray(jd.metrics.ntk(_member(traj_model, 2), X))
    )
    # a (batch, time) stack, and kernel-target alignment over it
    bt = _stack([traj_model, traj_model])
    Kbt = jd.metrics.ntk(bt, X, lr=0.5)
    assert Kbt.shape == (2, 4, 5 * o, 5 * o)
    np.testing.assert_array_equal(np.asarray(Kbt[1]), np.asarray(0.5 * ref))
    Y = jnp.arange(5.0 * o)
    al = jd.metrics.alignment(K, Y)
    assert al.shape == (4,)
    np.testing.assert_allclose(al[1], jd.metrics.alignment(K[1], Y), rtol=1e-13)


def test_ntk_of_a_trajectory():
    """`ntk(traj.model, X)` of a real gradient-flow trajectory: one kernel per save time."""
    Xw = jnp.eye(3)[:2] * jnp.sqrt(2.0)
    m0 = jd.init.single_neuron(jnp.array([0.1, 0.2, 0.0]), 0.1)
    traj = jd.gradient_flow(m0, (Xw, jnp.array([1.0, -0.5])), jnp.linspace(0.0, 2.0, 5))
    K = jd.metrics.ntk(traj.model, Xw)
    assert K.shape == (5, 2, 2)
    ref = jax.vmap(lambda m: jd.metrics.ntk(m, Xw))(traj.model)
    np.testing.assert_array_equal(np.asarray(K), np.asarray(ref))


def test_spectral_norms_conserved_relative_change_time_stacked():
    sn = _time_stacked("single")
    assert jd.metrics.spectral_norms(sn) == ()  # w (T, d) is a vector per time, not a matrix
    net = _time_stacked("relu")
    norms = jd.metrics.spectral_norms(net)
    assert [n.shape for n in norms] == [(4,), (4,)]
    np.testing.assert_allclose(norms[0][1], jnp.linalg.norm(net.W1[1], ord=2), rtol=1e-13)
    lin = _time_stacked("linear")
    C = jd.metrics.conserved(lin)
    assert not isinstance(C, tuple)
    assert C.shape == (4, 2, 2)
    np.testing.assert_allclose(C[3], jd.metrics.conserved(_member(lin, 3)), rtol=1e-13)
    # relative_change: batched reference (B,) against a (B, T) stack
    m0 = _stack([_member(lin, 0), _member(lin, 1)])
    mt = _stack([lin, lin])
    rc = jd.metrics.relative_change(m0, mt)
    assert rc.shape == (2, 4)
    want = jd.metrics.relative_change(_member(lin, 1), lin)
    np.testing.assert_allclose(rc[1], want, rtol=1e-13)
    assert float(rc[0, 0]) == 0.0 and float(rc[1, 1]) == 0.0
