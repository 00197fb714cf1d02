"""`jd.exact.single_neuron` / `single_neuron_limit` against tight numerical solves.

Reference solves: scipy DOP853 (rtol 1e-12, atol 1e-14) and `jd.gradient_flow` with Dopri8
(rtol 1e-11, atol 1e-12) and the per-layer lr pytree `jd.SingleNeuron(a=η_a, w=η_w)`.
Setting: L = (1/2n) Σ (a wᵀx_i − y_i)², whitened X (XᵀX/n = I), notes/kunin_get_rich_quick.md §2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import flow_dopri8, make_whitened, rel_err, scipy_single_neuron

import jaxdyn as jd

N_SAMPLES = 12  # one n for every case: the jitted flow compiles once per d
N_TIMES = 41
TOL = 1e-8


# (id, d, δ, η_a, η_w, geometry, ‖β0‖, T, noise-free targets)
# geometry: "rand" = random β0; "anti" = β0 (hence w0, a0 > 0) anti-aligned with β*, so for δ < 0
# the readout a must change sign.
CASES = [
    ("d1-pos", 1, 1.3, 1.0, 1.0, "rand", 0.5, 10.0, False),
    ("d1-neg-flip", 1, -0.8, 0.6, 1.7, "anti", 0.4, 10.0, False),
    ("d1-zero", 1, 0.0, 2.0, 0.5, "rand", 0.01, 30.0, False),
    ("d1-big-pos", 1, 1e3, 0.5, 2.0, "rand", 0.3, 0.5, False),
    ("d1-neg-long", 1, -1.0, 1.0, 1.0, "anti", 0.2, 2000.0, True),
    ("d2-pos", 2, 0.5, 0.7, 1.9, "rand", 0.3, 20.0, False),
    ("d2-neg-flip", 2, -2.0, 0.8, 1.3, "anti", 0.5, 20.0, False),
    ("d2-tiny-pos", 2, 1e-8, 1.5, 0.4, "rand", 0.05, 40.0, False),
    ("d2-tiny-neg", 2, -1e-8, 0.4, 1.5, "rand", 0.05, 40.0, False),
    ("d2-zero-small", 2, 0.0, 0.6, 1.5, "rand", 1e-3, 40.0, False),
    ("d2-big-neg", 2, -1e3, 1.2, 0.8, "rand", 0.5, 10.0, False),
    ("d2-big-pos", 2, 1e2, 1.0, 1.0, "rand", 0.2, 2.0, False),
    ("d2-neg-flip-big", 2, -30.0, 1.0, 2.0, "anti", 0.3, 10.0, False),
    ("d2-pos-long", 2, 3.0, 1.0, 1.0, "rand", 0.5, 1000.0, True),
    ("d10-pos", 10, 10.0, 1.0, 1.0, "rand", 0.4, 5.0, False),
    ("d10-neg", 10, -0.3, 1.3, 0.9, "rand", 0.3, 30.0, False),
    ("d10-neg-flip", 10, -5.0, 2.0, 0.5, "anti", 0.6, 30.0, False),
    ("d10-zero", 10, 0.0, 1.0, 1.0, "rand", 0.1, 40.0, False),
    ("d10-tiny-pos", 10, 1e-8, 0.9, 1.1, "rand", 0.2, 40.0, False),
    ("d10-big-pos", 10, 1e3, 1.0, 1.0, "rand", 0.5, 0.2, False),
    ("d10-big-neg-flip", 10, -1e3, 1.0, 1.0, "anti", 0.5, 5.0, False),
    ("d10-pos-long", 10, 0.05, 1.0, 1.0, "rand", 0.5, 2000.0, True),
    ("d10-uneq", 10, 2.0, 3.0, 0.3, "rand", 0.5, 20.0, False),
]


def _setup(case_index):
    _, d, delta, eta_a, eta_w, geom, r0, T, clean = CASES[case_index]
    rng = np.random.default_rng(1000 + case_index)
    X = make_whitened(rng, N_SAMPLES, d)
    beta_true = rng.standard_normal(d)
    beta_true /= np.linalg.norm(beta_true)
    y = X @ beta_true
    if not clean:
        y = y + 0.1 * rng.standard_normal(N_SAMPLES)
    beta_star = X.T @ y / N_SAMPLES
    if geom == "anti":
        direction = -beta_star / np.linalg.norm(beta_star)
        if d > 1:
            direction = direction + 0.2 * rng.standard_normal(d) / np.sqrt(d)
    else:
        direction = rng.standard_normal(d)
    beta0 = r0 * direction / np.linalg.norm(direction)
    model = jd.init.single_neuron(jnp.asarray(beta0), delta, eta_a, eta_w)
    # geometric save times resolve both the fast early phase (large |δ|) and the long tail
    ts = np.concatenate([[0.0], np.geomspace(T * 1e-4, T, N_TIMES - 1)])
    return X, y, beta_star, model, ts, eta_a, eta_w


def _distinct_d():
    return sorted({c[1] for c in CASES})


def test_case_coverage():
    deltas = np.array([c[2] for c in CASES])
    assert len(CASES) >= 20
    assert set(_distinct_d()) == {1, 2, 10}
    assert (deltas > 0).any() and (deltas < 0).any() and (deltas == 0).any()
    assert np.abs(deltas).max() >= 1e3
    assert ((np.abs(deltas) > 0) & (np.abs(deltas) <= 1e-8)).sum() >= 2
    assert any(c[3] != c[4] for c in CASES)


@pytest.mark.parametrize("case_index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_exact_matches_ode(case_index):
    name, d, delta, _, _, geom, _, T, clean = CASES[case_index]
    X, y, beta_star, model, ts, eta_a, eta_w = _setup(case_index)
    a0, w0 = model.a, model.w
    delta0 = float(jd.exact.imbalance(a0, w0, eta_a, eta_w))
    assert delta0 == pytest.approx(delta, rel=1e-10, abs=1e-14)

    a_ex, w_ex = jd.exact.single_neuron(X, y, a0, w0, ts, eta_a, eta_w)
    a_ex, w_ex = np.asarray(a_ex), np.asarray(w_ex)
    assert a_ex.shape == (N_TIMES,) and w_ex.shape == (N_TIMES, d)
    assert np.all(np.isfinite(a_ex)) and np.all(np.isfinite(w_ex))

    a_sp, w_sp = scipy_single_neuron(X, y, a0, w0, ts, eta_a, eta_w)
    lr = jd.SingleNeuron(a=jnp.asarray(eta_a), w=jnp.asarray(eta_w))
    traj = flow_dopri8(model, jnp.asarray(X), jnp.asarray(y), jnp.asarray(ts), lr)
    assert traj.result == jd.RESULTS.successful
    a_fl, w_fl = np.asarray(traj.model.a), np.asarray(traj.model.w)

    b_ex = a_ex[:, None] * w_ex
    for a_ref, w_ref, label in ((a_sp, w_sp, "scipy"), (a_fl, w_fl, "gradient_flow")):
        b_ref = a_ref[:, None] * w_ref
        errs = {
            "a": rel_err(a_ex, a_ref),
            "w": rel_err(w_ex, w_ref),
            "beta": rel_err(b_ex, b_ref),
        }
        assert max(errs.values()) <= TOL, (name, label, errs)

    # the conserved imbalance is exact along the closed form
    drift = np.abs(np.asarray(jd.exact.imbalance(a_ex, w_ex, eta_a, eta_w)) - delta0)
    assert drift.max() <= 1e-9 * max(1.0, abs(delta0))

    if geom == "anti" and delta < 0:
        # the reference really crosses a = 0, and so does the closed form
        assert a_sp[0] > 0 and a_sp[-1] < 0
        assert a_ex[0] > 0 and a_ex[-1] < 0
    if delta > 0:
        assert np.all(np.sign(a_ex) == np.sign(a_ex[0]))
    if clean:
        # long horizon: converged to β* at machine precision, loss ~ 0, nothing blew up
        assert np.max(np.abs(b_ex[-1] - beta_star)) <= 1e-12 * max(1.0, np.abs(beta_star).max())
        loss_T = 0.5 * np.mean((X @ b_ex[-1] - y) ** 2)
        assert loss_T <= 1e-24
        assert np.all(np.isfinite(np.asarray(traj.loss)))


def test_delta_zero_exact_init():
    # δ = 0 built by the initialiser: the closed form has no special branch to hit
    rng = np.random.default_rng(7)
    X = make_whitened(rng, 6, 3)
    y = X @ np.array([1.0, 0.5, -0.3])
    model = jd.init.single_neuron(jnp.array([0.02, -0.01, 0.03]), 0.0, 0.6, 1.5)
    assert abs(float(jd.exact.imbalance(model.a, model.w, 0.6, 1.5))) < 1e-16
    ts = np.linspace(0.0, 15.0, 31)
    a_ex, w_ex = jd.exact.single_neuron(X, y, model.a, model.w, ts, 0.6, 1.5)
    a_sp, w_sp = scipy_single_neuron(X, y, model.a, model.w, ts, 0.6, 1.5)
    assert rel_err(a_ex, a_sp) <= TOL and rel_err(w_ex, w_sp) <= TOL


def test_exact_is_jittable_and_vmappable():
    import jax

    rng = np.random.default_rng(3)
    X = jnp.asarray(make_whitened(rng, 8, 2))
    y = X @ jnp.array([1.0, -0.5])
    ts = jnp.linspace(0.0, 5.0, 6)
    deltas = jnp.array([-1.0, 0.0, 2.0])
    models = jax.vmap(lambda dl: jd.init.single_neuron(jnp.array([0.2, 0.1]), dl))(deltas)
    a_b, w_b = jax.jit(jax.vmap(lambda a, w: jd.exact.single_neuron(X, y, a, w, ts)))(
        models.a, models.w
    )
    for i in range(3):
        a_i, w_i = jd.exact.single_neuron(X, y, models.a[i], models.w[i], ts)
        np.testing.assert_allclose(a_b[i], a_i, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(w_b[i], w_i, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Domain errors


def test_exact_rejects_non_whitened():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = rng.standard_normal(20)
    with pytest.raises(ValueError, match="`X`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(3), np.linspace(0, 1, 3))
    # almost whitened but off by 1e-6: still refused
    Xw = make_whitened(rng, 20, 3)
    Xw[:, 0] *= 1 + 1e-6
    with pytest.raises(ValueError, match="`X`"):
        jd.exact.single_neuron(Xw, y, 1.0, np.ones(3), np.linspace(0, 1, 3))


def test_exact_rejects_underdetermined():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 5))
    y = rng.standard_normal(2)
    with pytest.raises(ValueError, match="`X`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(5), np.linspace(0, 1, 3))


def test_exact_rejects_bad_arguments():
    rng = np.random.default_rng(2)
    X = make_whitened(rng, 6, 2)
    y = rng.standard_normal(6)
    ts = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="`w0`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(3), ts)
    with pytest.raises(ValueError, match="`ts`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(2), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="`eta_a`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(2), ts, eta_a=-1.0)
    with pytest.raises(ValueError, match="`eta_w`"):
        jd.exact.single_neuron(X, y, 1.0, np.ones(2), ts, eta_w=0.0)


# ---------------------------------------------------------------------------------------------
# n < d: implicit bias (notes §4, checks C12, C14, C15, C23)

N_LIM, D_LIM = 2, 5
T_LONG = 3000.0


def _underdetermined(seed=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_LIM, D_LIM))
    y = rng.standard_normal(N_LIM)
    return rng, X, y


def _long_flow(a0, w0, X, y, eta_a, eta_w, n_saves=201):
    ts = np.concatenate([[0.0], np.geomspace(1e-2, T_LONG, n_saves - 1)])
    lr = jd.SingleNeuron(a=jnp.asarray(eta_a), w=jnp.asarray(eta_w))
    model = jd.SingleNeuron(jnp.asarray(a0), jnp.asarray(w0))
    traj = flow_dopri8(model, jnp.asarray(X), jnp.asarray(y), jnp.asarray(ts), lr)
    assert traj.result == jd.RESULTS.successful
    return traj


@pytest.mark.parametrize(
    "delta, eta_a, eta_w",
    [(0.0, 1.0, 1.0), (0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (0.5, 0.7, 1.9), (0.0, 2.0, 0.5)],
)
def test_limit_matches_long_flow(delta, eta_a, eta_w):
    rng, X, y = _underdetermined()
    w0 = 0.6 * rng.standard_normal(D_LIM)
    a0 = np.sqrt((delta + eta_a * w0 @ w0) / eta_w)
    beta_lim = np.asarray(jd.exact.single_neuron_limit(X, y, a0, w0, eta_a, eta_w))
    traj = _long_flow(a0, w0, X, y, eta_a, eta_w)
    beta_T = np.asarray(traj.model.a[-1] * traj.model.w[-1])
    # converged: interpolates, and the flow stopped moving
    assert np.max(np.abs(X @ beta_T - y)) < 1e-10
    assert np.max(np.abs(X @ beta_lim - y)) < 1e-12
    assert rel_err(beta_lim, beta_T) <= 1e-8
    # δ matters: the limit is not the min-norm interpolant (‖β0‖ is not small)
    assert rel_err(np.linalg.pinv(X) @ y, beta_T) > 1e-3


def test_limit_negative_delta_without_sign_change():
    # notes C23: δ = −0.5, w0 close to the min-norm interpolant's direction, so a stays > 0
    rng, X, y = _underdetermined()
    beta_mn = np.linalg.pinv(X) @ y
    delta = -0.5
    w0 = 1.2 * beta_mn / np.linalg.norm(beta_mn) + 0.1 * rng.standard_normal(D_LIM)
    a0 = np.sqrt(delta + w0 @ w0)
    traj = _long_flow(a0, w0, X, y, 1.0, 1.0, n_saves=401)
    assert np.all(np.asarray(traj.model.a) > 0)
    beta_T = np.asarray(traj.model.a[-1] * traj.model.w[-1])
    beta_lim = np.asarray(jd.exact.single_neuron_limit(X, y, a0, w0))
    assert rel_err(beta_lim, beta_T) <= 1e-8


def test_limit_lazy_end():
    # notes C14: δ → +∞ gives the interpolant closest to β0 in ℓ2
    rng, X, y = _underdetermined()
    beta0 = rng.standard_normal(D_LIM)
    beta0 *= 0.3 / np.linalg.norm(beta0)
    m = jd.init.single_neuron(jnp.asarray(beta0), 1e4)
    beta_lim = np.asarray(jd.exact.single_neuron_limit(X, y, m.a, m.w))
    expected = beta0 + np.linalg.pinv(X) @ (y - X @ beta0)
    assert rel_err(beta_lim, expected) <= 1e-3
    # and the gap closes as δ grows
    gaps = []
    for delta in (1e1, 1e2, 1e3):
        m = jd.init.single_neuron(jnp.asarray(beta0), delta)
        gaps.append(rel_err(np.asarray(jd.exact.single_neuron_limit(X, y, m.a, m.w)), expected))
    gaps.append(rel_err(beta_lim, expected))
    assert all(g2 < g1 for g1, g2 in zip(gaps, gaps[1:]))


def test_limit_small_balanced_init_is_min_norm():
    # notes C15: δ = 0 from a tiny β0 gives the minimum-norm interpolant X⁺y. The β0 term of the
    # potential r^{3/2} has gradient ∝ ‖β0‖^{1/2}, so the gap closes like sqrt(‖β0‖).
    rng, X, y = _underdetermined()
    direction = rng.standard_normal(D_LIM)
    direction /= np.linalg.norm(direction)
    beta_mn = np.linalg.pinv(X) @ y
    gaps = []
    for r0 in (1e-4, 1e-6, 1e-8):
        m = jd.init.single_neuron(jnp.asarray(r0 * direction), 0.0)
        beta_lim = np.asarray(jd.exact.single_neuron_limit(X, y, m.a, m.w))
        gaps.append(rel_err(beta_lim, beta_mn))
        assert gaps[-1] <= 10 * np.sqrt(r0)
    assert gaps[-1] <= 1e-3
    assert gaps[0] > gaps[1] > gaps[2]


def test_limit_sign_symmetry():
    # (a0, w0) → (−a0, −w0) leaves β and hence the limit unchanged
    rng, X, y = _underdetermined()
    w0 = 0.6 * rng.standard_normal(D_LIM)
    a0 = np.sqrt(0.5 + w0 @ w0)
    b1 = jd.exact.single_neuron_limit(X, y, a0, w0)
    b2 = jd.exact.single_neuron_limit(X, y, -a0, -w0)
    np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=1e-14)


def test_limit_rejects_overdetermined():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal(6)
    with pytest.raises(ValueError, match="`X`"):
        jd.exact.single_neuron_limit(X, y, 1.0, np.ones(3))


# ---------------------------------------------------------------------------------------------
# The implicit-bias solve reports its result (issue 8: no discarded solver result)


def _limit_setup():
    rng, X, y = _underdetermined()
    w0 = 0.6 * rng.standard_normal(D_LIM)
    a0 = np.sqrt(0.5 + w0 @ w0)
    return X, y, a0, w0


def test_limit_reports_success():
    X, y, a0, w0 = _limit_setup()
    beta, result = jd.exact.single_neuron_limit(X, y, a0, w0, throw=False)
    assert result == jd.RESULTS.successful
    np.testing.assert_array_equal(beta, jd.exact.single_neuron_limit(X, y, a0, w0))
    assert np.max(np.abs(X @ np.asarray(beta) - y)) < 1e-12


def test_limit_reports_failure_under_jit_and_vmap():
    import equinox as eqx
    import jax
    import optimistix as optx

    X, y, a0, w0 = _limit_setup()
    max_steps_reached = jd.RESULTS.promote(optx.RESULTS.nonlinear_max_steps_reached)
    # too few Newton steps: not converged, reported instead of returned as if valid
    _, result = jd.exact.single_neuron_limit(X, y, a0, w0, max_steps=1, throw=False)
    assert result == max_steps_reached

    @jax.jit
    def limit(a):
        return jd.exact.single_neuron_limit(X, y, a, w0, max_steps=1, throw=False)

    _, result = limit(jnp.asarray(a0))
    assert result == max_steps_reached

    # a0 = 0 (a saddle) cannot be refused eagerly under jit: it is reported per member
    batched = jax.jit(jax.vmap(lambda a: jd.exact.single_neuron_limit(X, y, a, w0, throw=False)))
    betas, results = batched(jnp.array([a0, 0.0, -a0]))
    np.testing.assert_array_equal(
        jd.status_code(results),
        [jd.result_index(r) for r in (jd.RESULTS.successful, jd.RESULTS.outside_domain)]
        + [jd.result_index(jd.RESULTS.successful)],
    )
    assert np.max(np.abs(X @ np.asarray(betas[0]) - y)) < 1e-12

    # throw=True (the default): the failure raises at run time, under jit and under vmap
    with pytest.raises(RuntimeError, match="implicit-bias solve failed"):
        eqx.filter_jit(lambda a: jd.exact.single_neuron_limit(X, y, a, w0))(jnp.asarray(0.0))
    with pytest.raises(RuntimeError):
        jax.jit(jax.vmap(lambda a: jd.exact.single_neuron_limit(X, y, a, w0)))(
            jnp.array([a0, 0.0])
        )
    with pytest.raises(RuntimeError, match="implicit-bias solve failed"):
        jd.exact.single_neuron_limit(X, y, a0, w0, max_steps=1)


def test_whitening_check_is_the_shared_one():
    # the tolerance is jd.data.whitening_tol (10√ε): a deviation well below it is accepted,
    # one above it refused, by the same check (and message) as every other closed form
    rng = np.random.default_rng(5)
    X = make_whitened(rng, 12, 3)
    y = rng.standard_normal(12)
    ts = np.linspace(0, 1, 3)
    tol = jd.data.whitening_tol(np.float64)
    ok = X.copy()
    ok[:, 0] *= 1 + 0.2 * tol  # max |XᵀX/n − I| ≈ 0.4 tol
    jd.exact.single_neuron(ok, y, 1.0, np.ones(3), ts)
    bad = X.copy()
    bad[:, 0] *= 1 + 2 * tol
    with pytest.raises(ValueError, match="`X` is not whitened"):
        jd.exact.single_neuron(bad, y, 1.0, np.ones(3), ts)
