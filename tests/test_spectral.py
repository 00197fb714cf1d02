"""Spectral metrics (`jd.metrics.spectral_norm`, `stable_rank`, `alignment_ratio`,
`features`, `feature_updates`, `weight_updates`, `loglog_slope`) and the `spectral`
coordinate-check experiment (Yang, Simon & Bernstein 2023; notes §D.B)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn.experiments import spectral

M = jd.metrics


def test_spectral_norm_exact_and_krylov():
    W = jax.random.normal(jax.random.key(0), (300, 200))
    exact = np.linalg.svd(np.asarray(W), compute_uv=False)[0]
    assert np.isclose(float(M.spectral_norm(W)), exact, rtol=1e-12)
    est = float(M.spectral_norm(W, iterations=16))
    assert exact * (1 - 1e-6) <= est <= exact * (1 + 1e-12)  # never above, close
    # Low rank (a batch-of-5 update): exact.
    A = jax.random.normal(jax.random.key(1), (300, 5)) @ jax.random.normal(
        jax.random.key(2), (5, 400)
    )
    assert np.isclose(
        float(M.spectral_norm(A, iterations=4)), np.linalg.norm(np.asarray(A), 2), rtol=1e-12
    )
    # Stacks keep their leading axes.
    S = jnp.stack([W, 2 * W])
    assert np.allclose(M.spectral_norm(S), [exact, 2 * exact], rtol=1e-12)
    with pytest.raises(ValueError, match="`iterations` must be None or a positive int"):
        M.spectral_norm(W, iterations=0)
    with pytest.raises(ValueError, match="`W` must be a matrix"):
        M.spectral_norm(jnp.ones(3))


def test_spectral_norms_of_models_and_updates():
    m = jd.init.mlp(jax.random.key(3), (5, 7, 4), "sp")
    norms = M.spectral_norms(m)  # unchanged behaviour: stored weights, layer order
    assert len(norms) == 2
    for n, W in zip(norms, m.layers, strict=True):
        assert np.isclose(float(n), np.linalg.norm(np.asarray(W), 2), rtol=1e-12)
    m2 = jax.tree.map(lambda a: 3 * a, m)
    upd = M.spectral_norms(m2, m)
    assert np.allclose([float(u) for u in upd], [2 * float(n) for n in norms], rtol=1e-12)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), m, m2)  # (T=2, …) against T=0
    upd_t = M.spectral_norms(stacked, m)
    assert upd_t[0].shape == (2,) and float(upd_t[0][0]) == 0.0
    with pytest.raises(ValueError, match="`reference` must have the same structure"):
        M.spectral_norms(m, jd.init.mlp(jax.random.key(3), (5, 7, 7, 4)))


def test_batch_one_sgd_identities():
    """Notes §D.B 2: one SGD step on one input has stable rank 1, alignment 1 and
    ‖ΔW_l‖_* = η_l‖∂L/∂(m_l W_l h_{l-1})‖‖m_l h_{l-1}‖ … (1e-10)."""
    p = jd.parametrization.Spectral()
    w = (6, 20, 20, 3)
    m = jd.init.mlp(jax.random.key(4), w, p, activation="tanh")
    X = jax.random.normal(jax.random.key(5), (1, 6))
    Y = jax.random.normal(jax.random.key(6), (1, 3))
    lr = p.lr(m, 0.2)
    tr = jd.gradient_descent(m, (X, Y), 1, lr=lr)
    m1 = jax.tree.map(lambda a: a[1], tr.model)
    hs = (X,) + M.features(m, X)
    g = jax.grad(lambda mm: jd.mse_loss(mm, (X, Y)))(m)
    for i, (W0, W1) in enumerate(zip(m.layers, m1.layers, strict=True)):
        dW = W1 - W0
        assert abs(float(M.stable_rank(dW)) - 1) < 1e-10
        assert abs(float(M.alignment_ratio(dW, hs[i])) - 1) < 1e-10
        # ΔW = −η ∇W L and ∇W L is rank one: ‖∇W L‖_* = ‖∇W L‖_F.
        assert np.isclose(
            float(M.spectral_norm(dW)),
            float(lr.layers[i]) * float(jnp.linalg.norm(g.layers[i])),
            rtol=1e-10,
        )
    with pytest.raises(ValueError, match="must share m"):
        M.alignment_ratio(jnp.ones((3, 4)), jnp.ones((2, 5)))


@pytest.mark.slow  # ≈ 8 s (compile); keeps the new tests' default run ≤ 60 s
def test_features_and_updates():
    m = jd.init.mlp(jax.random.key(7), (4, 9, 8, 2), jd.parametrization.NTK(), activation="tanh")
    X = jax.random.normal(jax.random.key(8), (5, 4))
    hs = M.features(m, X)
    assert [h.shape for h in hs] == [(5, 9), (5, 8), (5, 2)]
    h1 = jnp.tanh(m.multipliers[0] * X @ m.layers[0].T)
    assert np.allclose(hs[0], h1, rtol=1e-14)
    assert np.allclose(hs[-1], jax.vmap(m)(X), rtol=1e-13)
    tr = jd.gradient_descent(m, (X, jnp.ones((5, 2))), 3, lr=0.1)
    fu = M.feature_updates(m, tr.model, X)  # model0 unbatched, model_t time-stacked
    wu = M.weight_updates(m, tr.model)
    assert fu.shape == wu.shape == (4, 3) and np.all(fu[0] == 0) and np.all(wu[0] == 0)
    hT = M.features(jax.tree.map(lambda a: a[-1], tr.model), X)
    assert np.isclose(
        float(fu[-1, 1]), float(jnp.sqrt(jnp.mean((hT[1] - hs[1]) ** 2))), rtol=1e-13
    )
    W0, WT = m.layers[1], tr.model.layers[1][-1]
    assert np.isclose(
        float(wu[-1, 1]),
        np.linalg.norm(np.asarray(WT - W0), 2) / np.linalg.norm(np.asarray(W0), 2),
        rtol=1e-12,
    )
    # Other layered models.
    two = jd.TwoLayer(m.layers[0], m.layers[1][:2, :], activation="tanh")
    assert [h.shape for h in M.features(two, X)] == [(5, 9), (5, 2)]
    with pytest.raises(TypeError, match="`model` must be an MLP, DeepLinear"):
        M.features(jd.SingleNeuron(jnp.ones(()), jnp.ones(4)), X)
    with pytest.raises(ValueError, match="same type"):
        M.feature_updates(m, two, X)


def test_loglog_slope():
    x = jnp.array([64.0, 128, 256, 512])
    y = jnp.stack([3 * x**0.5, 2 * x**-1.0, jnp.full(4, 7.0)])
    assert np.allclose(M.loglog_slope(x, y), [0.5, -1.0, 0.0], atol=1e-13)
    assert np.allclose(M.loglog_slope(x, y.T, axis=0), [0.5, -1.0, 0.0], atol=1e-13)
    assert np.isnan(float(M.loglog_slope(x, jnp.array([1.0, -1, 1, 1]))))
    with pytest.raises(ValueError, match="`x` must be 1-D"):
        M.loglog_slope(x, jnp.ones(3))


def test_experiment_structure(tmp_path):
    """A tiny sweep: the Dataset's variables, dims and coordinates, the slopes, the plot."""
    tiny = dict(
        widths=(16, 32),
        hidden_layers=1,
        d_in=8,
        d_out=2,
        batch=4,
        iterations=None,
        slope_min_width=0,
    )
    exp = spectral.make(**tiny)
    ds = jd.sweep(exp, {"seed": [0]}, progress=False)
    assert list(ds["parametrization"].values) == ["sp", "ntk", "mup", "spectral"]
    assert list(ds["width"].values) == [16, 32] and list(ds["layer"].values) == [1, 2]
    for v in ("feature_update", "weight_update"):
        assert ds[v].dims == ("lr", "seed", "parametrization", "width", "layer")
        assert np.all(np.isfinite(ds[v].values)) and np.all(ds[v].values > 0)
        assert ds[f"{v}_slope"].dims == ("lr", "seed", "parametrization", "layer")
        med = spectral.slopes(ds, v)
        assert np.allclose(med.values, ds[f"{v}_slope"].values[:, 0], atol=1e-12)  # one seed
    assert int(ds["status"].values.max()) == 0
    # μP at its base width is SP: identical columns at width = base_width (here 16).
    exp16 = spectral.make(**tiny, base_width=16)
    ds16 = jd.sweep(exp16, {"seed": [0]}, progress=False)
    a = ds16["feature_update"].sel(width=16)
    assert np.array_equal(a.sel(parametrization="mup").values, a.sel(parametrization="sp").values)
    assert "spectral coordinate check" in exp.summary(ds)
    out = tmp_path / "spectral.png"
    exp.plot(ds, out)
    assert out.stat().st_size > 10_000
    with pytest.raises(jd.SweepError, match="at least two distinct widths"):
        spectral.make(widths=(64,))
    with pytest.raises(jd.SweepError, match="config optimizer='lion'"):
        spectral.make(optimizer="lion")
    with pytest.raises(jd.SweepError, match="slope_min_width=256 leaves 1 of widths"):
        spectral.make(widths=(64, 128, 256))
    with pytest.raises(ValueError, match="`min_width`=64 leaves fewer than two widths"):
        spectral.slopes(ds, min_width=64)


def test_slope_fit_range():
    """The per-point slopes use only the widths ≥ slope_min_width; `slopes` follows the
    sweep's attribute and can be told to fit every width."""
    exp = spectral.make(
        widths=(8, 16, 32), hidden_layers=1, d_in=4, d_out=2, batch=4, slope_min_width=16
    )
    ds = jd.sweep(exp, {"seed": [0]}, progress=False)
    assert ds.attrs["slope_min_width"] == 16
    sub = ds["weight_update"].isel(lr=0, seed=0).sel(width=[16, 32])
    by_hand = np.log(sub.sel(width=32) / sub.sel(width=16)) / np.log(2.0)
    got = ds["weight_update_slope"].isel(lr=0, seed=0)
    np.testing.assert_allclose(got.values, by_hand.values, rtol=1e-12)
    np.testing.assert_allclose(spectral.slopes(ds, "weight_update").isel(lr=0), got, rtol=1e-12)
    every = spectral.slopes(ds, "weight_update", min_width=0).isel(lr=0)
    assert not np.allclose(every.values, got.values)


@pytest.mark.slow
def test_coordinate_check_slopes():
    """Issue 11 / notes §D.B 5, 6, 8, 9, 10 on the experiment's defaults (widths 64…2048,
    slopes fitted over 256…2048, 4 seeds; ≈ 280 s of CPU): slopes of the median over seeds
    against width."""
    exp = spectral.make()
    ds = jd.sweep(exp, {"seed": [0, 1, 2, 3]}, progress=False)
    fu = spectral.slopes(ds, "feature_update").isel(lr=0)
    wu = spectral.slopes(ds, "weight_update").isel(lr=0)
    hidden = [2, 3]
    for p in ("mup", "spectral"):
        assert np.all(np.abs(fu.sel(parametrization=p, layer=hidden).values) <= 0.1)
        assert np.all(np.abs(wu.sel(parametrization=p, layer=hidden).values) <= 0.1)
    # Over every width (64…2048) the μP and spectral weight-update slopes tilt negative: the
    # updates' stable rank (≤ batch = 32) rises from ≈ 3 to its plateau ≈ 5 by n ≈ 256.
    every = spectral.slopes(ds, "weight_update", min_width=0).isel(lr=0)
    for p in ("mup", "spectral"):
        assert np.all(every.sel(parametrization=p, layer=hidden).values < -0.05)
    sr = ds["update_stable_rank"].isel(lr=0).median("seed").sel(parametrization="mup", layer=2)
    rise, plateau = (
        float(sr.sel(width=256) / sr.sel(width=64)),
        float(sr.max() / sr.sel(width=256)),
    )
    assert rise > 1.3 and plateau < 1.2 and float(sr.max()) <= 10  # notes §D.B 10
    assert np.all(fu.sel(parametrization="sp", layer=hidden).values > 0.15)
    assert float(fu.sel(parametrization="sp", layer=4)) > 0.6
    assert np.all(np.abs(fu.sel(parametrization="ntk", layer=hidden).values + 0.5) <= 0.1)
    assert np.all(np.abs(wu.sel(parametrization="ntk", layer=hidden).values + 0.5) <= 0.1)
