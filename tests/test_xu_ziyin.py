"""The Xu–Ziyin exact finite-width solution (`jd.exact.xu_ziyin`) against scipy DOP853 and
against `jd.gradient_flow`, its invariants, regimes, edge cases and bad input."""

import diffrax
import equinox as eqx
import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)

C_FLOW = -0.8  # the flow's data have c < 0; γ of both signs covers both signs of c·γ
H = 1024  # the flow batch is built at this width with the extra units masked (zero)
T_MAX = 40.0  # in units of 1/K∞ (κ is chosen per point so that K∞ = 1)

# (width, ‖u0‖, ‖w0‖, γ, η_w/η_u, init): every regime, widths 1 … 1024, strong imbalance of
# the weights and of the rates, tiny and huge init, γ < 0, and a zero-initial-output init.
POINTS = [
    (1, 1e-3, 1e-3, 1.0, 1.0, "random"),  # saddle, tiny init
    (3, 0.5, 0.5, 1.0, 1.0, "random"),  # balanced feature learning
    (16, 4.0, 4.0, 0.5, 1.0, "aligned"),  # disalignment (|o0| > |c|)
    (128, 1.0, 1e-2, 1.0, 1.0, "random"),  # rescaling (first layer ≈ 0)
    (1024, 10.0, 10.0, 1 / 32, 1.0, "random"),  # kernel, huge init
    (2, 0.7, 0.7, -1.0, 1.0, "random"),  # γ < 0
    (64, 1e-4, 1e-4, 2.0, 0.01, "random"),  # saddle, rate imbalance
    (256, 0.05, 1.0, 1.0, 1e4, "random"),  # strong rate imbalance
    (512, 3.0, 3.0, 1.0, 1.0, "antisymmetric"),  # o0 = 0, large ρ: kernel (lazy limit)
    (1024, 1e-3, 2.0, -0.5, 1.0, "random"),  # strong weight imbalance, γ < 0
    (7, 2.0, 0.5, 1.0, 4.0, "random"),
    (32, 30.0, 30.0, 1 / 64, 1.0, "aligned"),  # huge init, disalignment
    (1, 1.0, 1.0, 1.0, 1.0, "random"),
    (1000, 0.3, 0.3, 1.0, 0.3, "random"),
    (5, 1e-5, 3.0, 1.0, 1.0, "random"),  # readout ≈ 0: rescaling of w
    (300, 1.0, 1.0, -2.0, 1.0, "aligned"),  # γ < 0, disalignment
]


def _init(i, d, nu, nw, kind):
    rng = np.random.default_rng(100 + i)
    u = rng.normal(size=d)
    w = rng.normal(size=d)
    if kind == "aligned":
        w = u + 0.3 * w
    if kind == "antisymmetric" and d >= 2:
        h = d // 2
        u[h : 2 * h] = u[:h]
        w[h : 2 * h] = -w[:h]
        if d % 2:
            u[-1] = 0.0
    return nu * u / np.linalg.norm(u), nw * w / np.linalg.norm(w)


def _rates(u0, w0, c, gamma, ratio):
    """(η_u, η_w) with η_w/η_u = ratio and K∞ = 2κ|γ|D = 1 (NumPy, from the notes' §A.2)."""
    th = np.sqrt(ratio)
    rho = abs(gamma) / 2 * (th * (u0 @ u0) + (w0 @ w0) / th)
    o0 = gamma * (u0 @ w0)
    kappa = 1.0 / (2 * abs(gamma) * np.sqrt(c * c + rho * rho - o0 * o0))
    return kappa / th, kappa * th


def _scipy(u0, w0, ts, c, gamma, eta_u, eta_w):
    d = u0.shape[0]

    def f(t, y):
        u, w = y[:d], y[d:]
        r = gamma * (u @ w) - c
        return np.concatenate([-eta_u * gamma * r * w, -eta_w * gamma * r * u])

    sol = solve_ivp(
        f,
        (0.0, ts[-1]),
        np.concatenate([u0, w0]),
        method="DOP853",
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    )
    assert sol.success
    return sol.y[:d].T, sol.y[d:].T


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _pad(v):
    return np.pad(v, (0, H - v.shape[0]))


def _batch(c):
    """Every point at width H (extra units zero), rates for target `c`: (U0, W0, γ, η_u, η_w)."""
    rows = []
    for i, (d, nu, nw, gamma, ratio, kind) in enumerate(POINTS):
        u0, w0 = _init(i, d, nu, nw, kind)
        eta_u, eta_w = _rates(u0, w0, c, gamma, ratio)
        rows.append((_pad(u0), _pad(w0), gamma, eta_u, eta_w))
    return tuple(np.array(col) for col in zip(*rows, strict=True))


@pytest.fixture(scope="module")
def points():
    U0, W0, g, eu, ew = _batch(C_FLOW)
    ts = np.linspace(0.0, T_MAX, 41)
    kw = dict(c=C_FLOW, gamma=g, eta_u=eu, eta_w=ew)
    return dict(
        U0=U0,
        W0=W0,
        gamma=g,
        eta_u=eu,
        eta_w=ew,
        ts=ts,
        d=np.array([p[0] for p in POINTS]),
        exact=jd.exact.xu_ziyin(U0, W0, ts, **kw),  # one batched call; zero units stay 0
        consts=jd.exact.xu_ziyin_constants(U0, W0, **kw),
    )


@pytest.fixture(scope="module")
def flow(points):
    """One stacked Dopri8 solve (rtol 1e-11) of all points, padded to width H."""
    X, Y = jd.data.latent_variable_sample(jax.random.key(0), 6, c=C_FLOW, noise_std=0.4)
    p = points
    models, lr = jd.exact.xu_ziyin_network(
        p["U0"], p["W0"][:, :, None], gamma=p["gamma"], eta_u=p["eta_u"], eta_w=p["eta_w"]
    )
    traj = jd.gradient_flow(
        models,
        (X, Y),
        p["ts"],
        lr=lr,
        solver=diffrax.Dopri8(),
        rtol=1e-11,
        atol=1e-16,
        batch="stacked",
        max_steps=100_000,
    )
    return dict(traj=traj, models=models, lr=lr, X=X)


def test_points_span_every_regime(points):
    k = points["consts"]
    codes = jd.exact.xu_ziyin_regime(C_FLOW, k.rho, k.o0, k.imbalance_fraction)
    assert set(np.asarray(codes).tolist()) == set(range(len(jd.exact.XU_ZIYIN_REGIMES)))
    assert set(points["d"].tolist()) >= {1, 1024}
    assert len(POINTS) >= 15


@pytest.mark.parametrize("c", [C_FLOW, 1.7])
def test_exact_matches_scipy_dop853(points, c):
    ts = points["ts"]
    U0, W0, g, eu, ew = _batch(c)
    ex = (
        points["exact"]
        if c == C_FLOW
        else jd.exact.xu_ziyin(U0, W0, ts, c=c, gamma=g, eta_u=eu, eta_w=ew)
    )
    for i, d in enumerate(points["d"]):
        U, W = _scipy(U0[i, :d], W0[i, :d], ts, c, g[i], eu[i], ew[i])
        assert _rel(ex.u[i, :, :d], U) <= 1e-8, d
        assert _rel(ex.w[i, :, :d], W) <= 1e-8, d
        assert np.all(np.asarray(ex.u[i, :, d:]) == 0)


def test_exact_matches_gradient_flow(points, flow):
    traj, ex = flow["traj"], points["exact"]
    assert np.all(np.asarray(traj.status) == 0)
    u = np.asarray(traj.model.layers[1][:, :, 0, :])
    w = np.asarray(traj.model.layers[0][:, :, :, 0])
    for i, d in enumerate(points["d"]):
        assert _rel(u[i], ex.u[i]) <= 1e-8, d
        assert _rel(w[i], ex.w[i]) <= 1e-8, d
        assert np.all(u[i, :, d:] == 0) and np.all(w[i, :, d:] == 0)  # masked units stay 0
    # the output reaches c; `output` and `ntk` are γu·w and γ²(η_u‖w‖² + η_w‖u‖²)
    np.testing.assert_allclose(np.asarray(ex.output[:, -1]), C_FLOW, atol=1e-10)
    g, eu, ew = (points[k][:, None] for k in ("gamma", "eta_u", "eta_w"))
    K = g**2 * (eu * np.sum(np.asarray(ex.w) ** 2, -1) + ew * np.sum(np.asarray(ex.u) ** 2, -1))
    np.testing.assert_allclose(np.asarray(ex.ntk), K, rtol=1e-12)


def test_imbalance_conserved_along_flow(points, flow):
    traj = flow["traj"]
    u = traj.model.layers[1][:, :, 0, :]
    w = traj.model.layers[0][:, :, :, 0]
    eu, ew = points["eta_u"][:, None], points["eta_w"][:, None]
    m = np.asarray(jd.exact.xu_ziyin_imbalance(u, w, eu, ew))
    scale = (
        np.sum(points["U0"] ** 2, -1) / points["eta_u"]
        + np.sum(points["W0"] ** 2, -1) / (points["eta_w"])
    )
    assert np.all(np.max(np.abs(m - m[:, :1]), axis=1) / scale <= 1e-9)


def test_ntk_ratio_closed_form_vs_empirical_ntk(points, flow):
    traj, k = flow["traj"], points["consts"]
    final = jax.tree_util.tree_map(lambda a: a[:, -1], traj.model)
    emp = eqx.filter_vmap(lambda m0, mT, eta: jd.metrics.ntk_ratio(m0, mT, flow["X"], eta))(
        flow["models"], final, flow["lr"]
    )
    emp = np.asarray(emp)
    np.testing.assert_allclose(emp, np.asarray(k.ntk_ratio), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(k.ntk_inf), 1.0, rtol=1e-12)  # κ normalisation
    # the defining sign of disalignment: the NTK shrinks exactly when |o0| > |c|
    np.testing.assert_array_equal(emp < 1, np.abs(np.asarray(k.o0)) > abs(C_FLOW))
    # sigma_inf = ½ ln X₊ is where σ(t) goes
    p = points
    late = jd.exact.xu_ziyin(
        p["U0"],
        p["W0"],
        [0.0, 200.0],
        c=C_FLOW,
        gamma=p["gamma"],
        eta_u=p["eta_u"],
        eta_w=p["eta_w"],
    )
    np.testing.assert_allclose(
        np.asarray(late.sigma[:, -1]), np.asarray(k.sigma_inf), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("c", [1.0, -1.0, 0.0])
def test_edge_case_A_zero(c):
    """ũ0 = −w̃0 (A = 0): for c > 0 the flow decays to the saddle at 0, for c < 0 it fits,
    for c = 0 it decays algebraically; long times stay finite."""
    rng = np.random.default_rng(3)
    eta_u, eta_w = 0.5, 2.0
    u0 = rng.normal(size=5)
    w0 = -u0 * np.sqrt(eta_w / eta_u)
    ts = np.linspace(0.0, 8.0, 17)
    ex = jd.exact.xu_ziyin(u0, w0, ts, c=c, gamma=0.7, eta_u=eta_u, eta_w=eta_w)
    U, W = _scipy(u0, w0, ts, c, 0.7, eta_u, eta_w)
    assert _rel(ex.u, U) <= 1e-8 and _rel(ex.w, W) <= 1e-8
    late = jd.exact.xu_ziyin(u0, w0, [0.0, 1e3, 1e8], c=c, gamma=0.7, eta_u=eta_u, eta_w=eta_w)
    assert np.all(np.isfinite(np.asarray(late.u))) and np.all(np.isfinite(np.asarray(late.w)))
    if c < 0:
        np.testing.assert_allclose(float(late.output[-1]), c, rtol=1e-12)
    else:
        assert float(np.max(np.abs(np.asarray(late.u[-1])))) < 1e-3


def test_extreme_scales_long_times_and_gamma_zero():
    rng = np.random.default_rng(4)
    ts = [0.0, 1.0, 1e4, 1e12]
    for s in (1e-150, 1e-8, 1e8, 1e100):
        u0, w0 = s * rng.normal(size=8), s * rng.normal(size=8)
        ex = jd.exact.xu_ziyin(u0, w0, ts, c=-0.3, gamma=1.0)
        for f in (ex.u, ex.w, ex.output, ex.ntk, ex.sigma):
            assert np.all(np.isfinite(np.asarray(f))), s
        if s < 1e50:  # converged to c up to rounding at the scale ρ of the weights (ρ² < inf)
            rho = float(jd.exact.xu_ziyin_constants(u0, w0, c=-0.3).rho)
            assert abs(float(ex.output[-1]) + 0.3) <= 1e-12 * max(1.0, rho)
    u0, w0 = rng.normal(size=3), rng.normal(size=3)
    ex = jd.exact.xu_ziyin(u0, w0, [0.0, 5.0], c=1.0, gamma=0.0)
    np.testing.assert_array_equal(np.asarray(ex.u[-1]), u0)


def test_gradient_descent_imbalance_identity():
    """Under GD the imbalance shrinks exactly: m_{k+1} = (1 − κ²γ²r_k²) m_k, and the lr pytree
    of `xu_ziyin_network` is used unchanged by `jd.gradient_descent`."""
    rng = np.random.default_rng(5)
    d, gamma, eta_u, eta_w = 9, 0.8, 0.05, 0.2
    u0, W0 = rng.normal(size=d) * 0.5, rng.normal(size=(d, 1))
    X, Y = jd.data.latent_variable_sample(jax.random.key(1), 5, c=1.3)
    model, lr = jd.exact.xu_ziyin_network(u0, W0, gamma=gamma, eta_u=eta_u, eta_w=eta_w)
    traj = jd.gradient_descent(model, (X, Y), 6, lr=lr)
    u = np.asarray(traj.model.layers[1][:, 0, :])
    w = np.asarray(traj.model.layers[0][:, :, 0])
    m = np.asarray(jd.exact.xu_ziyin_imbalance(u, w, eta_u, eta_w))
    r = gamma * np.sum(u * w, -1) - 1.3
    kap2 = eta_u * eta_w
    np.testing.assert_allclose(m[1:], (1 - kap2 * gamma**2 * r[:-1] ** 2) * m[:-1], rtol=1e-12)


def test_phase_table_from_width_exponents():
    R = {n: i for i, n in enumerate(jd.exact.XU_ZIYIN_REGIMES)}
    assert jd.exact.xu_ziyin_exponents(0.5, 0, 0) == (0.5, 0.0, 0.5)  # NTP
    assert jd.exact.xu_ziyin_exponents(0, 0.5, 0, 1, 1) == (0.5, -0.5, 1.0)  # SP
    assert jd.exact.xu_ziyin_exponents(0, 1, 0, 1, -1) == (0.0, 0.0, 0.0)  # μP / spectral
    assert jd.exact.xu_ziyin_phase(0.5, 0, 0) == R["kernel"]
    assert jd.exact.xu_ziyin_phase(0, 0.5, 0, 1, 1) == R["kernel"]
    assert jd.exact.xu_ziyin_phase(1, 0, 0, -1, -1) == R["balanced"]  # mean field
    assert jd.exact.xu_ziyin_phase(0, 1, 0, 1, -1) == R["balanced"]  # μP
    assert jd.exact.xu_ziyin_phase(1, 0, 1, -1, -1) == R["rescaling"]  # first layer ≈ 0
    assert jd.exact.xu_ziyin_phase(0.5, 0.3, 0.3) == R["saddle"]  # NTP, small init b > 1/4
    assert jd.exact.xu_ziyin_phase(0.5, 0.25, 0.25) == R["balanced"]  # b = 1/4
    assert jd.exact.xu_ziyin_phase(0.5, -0.2, -0.2) == R["disalignment"]  # s > 1/2
    # the finite-size classifier agrees with the flow's measured kernel change
    assert int(jd.exact.xu_ziyin_regime(1.0, 100.0, 0.1)) == R["kernel"]
    assert int(jd.exact.xu_ziyin_regime(1.0, 1e-3, 0.0)) == R["saddle"]
    assert int(jd.exact.xu_ziyin_regime(1.0, 1.0, 0.0)) == R["balanced"]
    assert int(jd.exact.xu_ziyin_regime(1.0, 1.0, 0.0, 0.99)) == R["rescaling"]
    assert int(jd.exact.xu_ziyin_regime(1.0, 5.0, 2.0)) == R["disalignment"]
    np.testing.assert_allclose(float(jd.exact.xu_ziyin_ntk_ratio(1.0, 1.0, 0.0)), np.sqrt(2))


def test_cross_check_spectral_parametrization():
    """§C of the notes: Parametrization 1 (`jd.parametrization.Spectral`) on the Xu–Ziyin
    model, widths (1, d, 1), gives γ = 1, w_i ~ N(0, 1), u_i ~ N(0, 1/d²), η_w = d, η_u = 1/d:
    the balanced feature-learning point. Median Δw/w and |ΔK/K| are width independent and
    equal the analytic √((cosh σ∞ − 1)² + sinh² σ∞) = 0.4657 and √2 − 1 at c = 1."""
    c = 1.0
    p = jd.parametrization.get("spectral")
    s_inf = np.arcsinh(c) / 2
    dw_theory = np.sqrt((np.cosh(s_inf) - 1) ** 2 + np.sinh(s_inf) ** 2)
    widths = np.array([256, 1024, 4096, 16384])
    dws, dks = [], []
    model = p.init(jax.random.key(0), (1, 256, 1), activation="linear")  # the API, once
    lr = p.lr(model, 1.0)
    np.testing.assert_allclose([float(lr.layers[0]), float(lr.layers[1])], [256, 1 / 256])
    assert model.layers[0].shape == (256, 1) and model.layers[1].shape == (1, 256)
    for d in widths:
        sw, su = p.scalings((1, int(d), 1))  # input layer w (d × 1), readout u (1 × d)
        gamma = float(sw.multiplier * su.multiplier)
        eta_w, eta_u = float(sw.lr), float(su.lr)
        np.testing.assert_allclose([gamma, eta_w, eta_u], [1.0, d, 1.0 / d], rtol=1e-12)
        np.testing.assert_allclose([float(sw.std), float(su.std)], [1.0, 1.0 / d], rtol=1e-12)
        rng = np.random.default_rng(int(d))
        u0 = float(su.std) * rng.normal(size=(12, d))  # 12 seeds, batched
        w0 = float(sw.std) * rng.normal(size=(12, d))
        ex = jd.exact.xu_ziyin(u0, w0, [0.0, 60.0], c=c, gamma=gamma, eta_u=eta_u, eta_w=eta_w)
        w_end = np.asarray(ex.w[:, -1])
        dws.append(np.median(np.linalg.norm(w_end - w0, axis=1) / np.linalg.norm(w0, axis=1)))
        dks.append(np.median(np.abs(np.asarray(ex.ntk[:, -1] / ex.ntk[:, 0]) - 1)))
    dws, dks = np.array(dws), np.array(dks)
    assert abs(np.polyfit(np.log(widths), np.log(dws), 1)[0]) <= 0.05
    assert abs(np.polyfit(np.log(widths), np.log(dks), 1)[0]) <= 0.05
    np.testing.assert_allclose(dws[-2:], dw_theory, atol=0.02)
    np.testing.assert_allclose(dks[-2:], np.sqrt(2) - 1, rtol=0.03)


def test_bad_input_names_the_argument():
    u0, w0 = np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match="`w0`"):
        jd.exact.xu_ziyin(u0, np.ones(4), [0.0, 1.0], c=1.0)
    with pytest.raises(ValueError, match="`eta_u`"):
        jd.exact.xu_ziyin(u0, w0, [0.0, 1.0], c=1.0, eta_u=0.0)
    with pytest.raises(ValueError, match="`eta_w`"):
        jd.exact.xu_ziyin_constants(u0, w0, c=1.0, eta_w=-1.0)
    with pytest.raises(ValueError, match="`c`"):
        jd.exact.xu_ziyin(u0, w0, [0.0, 1.0], c=np.nan)
    with pytest.raises(ValueError, match="`ts`"):
        jd.exact.xu_ziyin(u0, w0, [0.0, 2.0, 1.0], c=1.0)
    with pytest.raises(ValueError, match="`u0`"):
        jd.exact.xu_ziyin(np.array([1.0, np.inf]), np.ones(2), [0.0, 1.0], c=1.0)
    with pytest.raises(ValueError, match="`W`"):
        jd.exact.xu_ziyin_network(u0, np.ones((4, 1)))
    with pytest.raises(ValueError, match="`w`"):
        jd.exact.xu_ziyin_imbalance(u0, np.ones(2))
