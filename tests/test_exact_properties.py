"""Property tests of the closed forms in `jd.exact` over random parameters (hypothesis).

Each property is a fact the closed form must satisfy for *every* admissible parameter, checked
without any numerical ODE solve:

- single neuron (`single_neuron_from_target`): the initial condition is reproduced at t = 0;
  the imbalance δ = η_w a² − η_a‖w‖² is conserved; the curve satisfies the gradient-flow ODE
  (its time derivative by forward-mode AD equals the vector field at the same point);
- λ-balanced two-layer linear (`lambda_balanced`): the blocks at t = 0 are those of the
  initial weights; the conserved balance W2ᵀW2 − W1W1ᵀ = λI holds along the solution (seen
  through the blocks it implies: (W2W1)ᵀ(W2W1) = (W1ᵀW1)² + λW1ᵀW1 and
  (W2W1)(W2W1)ᵀ = (W2W2ᵀ)² − λW2W2ᵀ); the loss never increases.

Deterministic (`derandomize=True`) and small (`max_examples` ≤ 40) so the suite stays fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

import jaxdyn as jd

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def _vec(d, lo, hi):
    return st.lists(
        st.floats(lo, hi, allow_nan=False, allow_infinity=False), min_size=d, max_size=d
    ).map(lambda v: np.asarray(v, dtype=np.float64))


@st.composite
def single_neuron_params(draw):
    d = draw(st.integers(1, 3))
    beta_star = draw(_vec(d, -2.0, 2.0))
    w0 = draw(_vec(d, -1.5, 1.5))
    a0 = draw(st.floats(0.05, 2.0)) * draw(st.sampled_from([-1.0, 1.0]))
    eta_a = draw(st.floats(0.2, 3.0))
    eta_w = draw(st.floats(0.2, 3.0))
    t = draw(st.floats(0.0, 10.0))
    return beta_star, a0, w0, eta_a, eta_w, t


@jax.jit
def _state(beta_star, a0, w0, eta_a, eta_w, t):
    """(a, w) at the single time `t`, flattened to `(1 + d,)`."""
    a, w = jd.exact.single_neuron_from_target(beta_star, a0, w0, t[None], eta_a, eta_w)
    return jnp.concatenate([a, w[0]])


@jax.jit
def _state_and_rate(beta_star, a0, w0, eta_a, eta_w, t):
    return jax.jvp(lambda s: _state(beta_star, a0, w0, eta_a, eta_w, s), (t,), (jnp.ones_like(t),))


def _field(z, beta_star, eta_a, eta_w):
    """Gradient-flow vector field of L = ½‖aw − β*‖² (whitened data, up to a constant)."""
    a, w = z[0], z[1:]
    g = a * w - beta_star
    return np.concatenate([[-eta_a * w @ g], -eta_w * a * g])


@SETTINGS
@given(single_neuron_params())
def test_single_neuron_initial_condition(params):
    beta_star, a0, w0, eta_a, eta_w, _ = params
    z0 = np.asarray(_state(beta_star, a0, w0, eta_a, eta_w, jnp.asarray(0.0)))
    np.testing.assert_allclose(z0, np.concatenate([[a0], w0]), rtol=1e-13, atol=1e-14)


@SETTINGS
@given(single_neuron_params())
def test_single_neuron_conserves_imbalance(params):
    beta_star, a0, w0, eta_a, eta_w, t_end = params
    ts = jnp.linspace(0.0, max(t_end, 1e-3), 9)
    a, w = jd.exact.single_neuron_from_target(beta_star, a0, w0, ts, eta_a, eta_w)
    delta0 = float(jd.exact.imbalance(a0, w0, eta_a, eta_w))
    delta_t = np.asarray(jd.exact.imbalance(a, w, eta_a, eta_w))
    # δ is a difference of two terms: its rounding error is relative to their size
    size = np.asarray(eta_w * a**2 + eta_a * jnp.sum(w**2, axis=-1))
    assert np.all(np.abs(delta_t - delta0) <= 1e-12 * (1.0 + size)), (delta0, delta_t)


@SETTINGS
@given(single_neuron_params())
def test_single_neuron_satisfies_ode(params):
    beta_star, a0, w0, eta_a, eta_w, t = params
    z, dz = _state_and_rate(beta_star, a0, w0, eta_a, eta_w, jnp.asarray(t))
    z, dz = np.asarray(z), np.asarray(dz)
    f = _field(z, beta_star, eta_a, eta_w)
    scale = 1.0 + np.max(np.abs(f))
    assert np.max(np.abs(dz - f)) <= 1e-12 * scale, (dz, f)


# ---------------------------------------------------------------------------------------------
# λ-balanced two-layer linear network

N_SAMPLES = 8
TS = jnp.linspace(0.0, 10.0, 11)


def _task(seed, d, o):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(N_SAMPLES, N_SAMPLES)))
    X = np.sqrt(N_SAMPLES) * Q[:, :d]  # XᵀX/n = I_d
    Y = X @ rng.normal(size=(d, o)) + 0.3 * Q[:, d:] @ rng.normal(size=(N_SAMPLES - d, o))
    return X, Y


@st.composite
def lambda_balanced_params(draw):
    d, h, o = draw(st.sampled_from([(3, 3, 3), (4, 2, 2), (2, 2, 3)]))
    lam = draw(st.floats(-3.0, 3.0))
    scale = draw(st.floats(0.05, 1.0))
    seed = draw(st.integers(0, 2**16))
    return d, h, o, lam, scale, seed


def _solve_lb(params):
    d, h, o, lam, scale, seed = params
    X, Y = _task(seed, d, o)
    m = jd.init.lambda_balanced(jax.random.key(seed), d, h, o, lam, scale)
    sol = jd.exact.lambda_balanced(m.W1, m.W2, X, Y, TS)
    return np.asarray(m.W1), np.asarray(m.W2), sol


@SETTINGS
@given(lambda_balanced_params())
def test_lambda_balanced_initial_blocks(params):
    W1, W2, sol = _solve_lb(params)
    lam = params[3]
    assert sol.result == jd.RESULTS.successful
    tol = 1e-10 * (1.0 + abs(lam))
    np.testing.assert_allclose(sol.product[0], W2 @ W1, atol=tol)
    np.testing.assert_allclose(sol.gram_in[0], W1.T @ W1, atol=tol)
    np.testing.assert_allclose(sol.gram_out[0], W2 @ W2.T, atol=tol)
    assert abs(float(sol.lam) - lam) <= 1e-12 * (1.0 + abs(lam))


@SETTINGS
@given(lambda_balanced_params())
def test_lambda_balanced_conserves_balance(params):
    _, _, sol = _solve_lb(params)
    lam = float(sol.lam)
    P = np.asarray(sol.product)
    Gi = np.asarray(sol.gram_in)
    Go = np.asarray(sol.gram_out)
    PtP = np.einsum("tod,toe->tde", P, P)
    PPt = np.einsum("tod,tpd->top", P, P)
    rhs_in = Gi @ Gi + lam * Gi
    rhs_out = Go @ Go - lam * Go
    scale = (
        1.0
        + np.max(np.abs(Gi @ Gi))
        + np.max(np.abs(Go @ Go))
        + abs(lam) * (np.max(np.abs(Gi)) + np.max(np.abs(Go)))
    )
    assert np.max(np.abs(PtP - rhs_in)) <= 1e-9 * scale
    assert np.max(np.abs(PPt - rhs_out)) <= 1e-9 * scale


@SETTINGS
@given(lambda_balanced_params())
def test_lambda_balanced_loss_non_increasing(params):
    _, _, sol = _solve_lb(params)
    loss = np.asarray(sol.loss)
    assert np.all(np.isfinite(loss))
    assert np.all(np.diff(loss) <= 1e-12 * (1.0 + loss[0]))
