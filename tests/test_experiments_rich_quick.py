"""The `hierarchy`, `filters` and `deep` experiments (Kunin et al. 2024 Fig. 6a–c) at small size:
one module-scoped sweep each, shared by the tests."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxdyn as jd


def _sweep(name, grid, **config):
    return jd.sweep(jd.experiments.get_experiment(name, **config), grid, progress=False)


@pytest.fixture(scope="module")
def hierarchy_ds():
    # the default two-level RHM (512 samples) at the largest default training-set size
    return _sweep(
        "hierarchy",
        {"train_size": [384], "alpha": [1.0, 10.0], "seed": [0, 1]},
        steps=400,
        every=200,
    )


@pytest.fixture(scope="module")
def filters_ds():
    pytest.importorskip("sklearn")
    return _sweep("filters", {"alpha": [0.1, 10.0], "seed": [0]}, steps=200, every=100, channels=8)


@pytest.fixture(scope="module")
def deep_ds():
    pytest.importorskip("sklearn")
    return _sweep(
        "deep",
        {"alpha": [0.3, 3.0], "tau": [1.0], "seed": [0]},
        width=16,
        depth=2,
        steps=50,
        every=25,
        n_probe=4,
    )


def test_hierarchy_upstream_generalises_better(hierarchy_ds):
    ds = hierarchy_ds
    assert (ds["status"].values == 0).all()
    assert ds["test_accuracy"].dims[-1] == "step"
    acc = ds["final_test_accuracy"].mean(("seed", "tau")).squeeze("train_size")
    # Kunin et al. 2024 Fig. 6c: upstream (α > 1) lowers the sample complexity, i.e. at a
    # fixed training-set size the test accuracy is higher than at α = 1
    assert float(acc.sel(alpha=10.0)) > float(acc.sel(alpha=1.0))
    assert float(acc.min()) > 1 / 8  # above chance
    assert float(ds["train_accuracy"].isel(step=-1).min()) > 0.95  # both (nearly) fit


def test_filters_smoother_upstream(filters_ds):
    ds = filters_ds
    assert (ds["status"].values == 0).all()
    s = ds["final_smoothness"].squeeze(("tau", "seed"))
    # Fig. 6b / 11: smooth first-layer filters for α = 10, noisy for α = 0.1
    assert float(s.sel(alpha=10.0)) < float(s.sel(alpha=0.1))
    # the score is scale-invariant: at initialisation (the same filters ÷ α) it is equal
    s0 = ds["smoothness"].isel(step=0).squeeze(("tau", "seed")).values
    np.testing.assert_allclose(s0[0], s0[1], rtol=1e-10)
    assert ds["filters"].shape[-3:] == (8, 5, 5)
    np.testing.assert_allclose(
        ds["filter_smoothness"].mean("filter"), ds["final_smoothness"], rtol=1e-10
    )


def test_deep_metrics(deep_ds):
    ds = deep_ds
    assert (ds["status"].values == 0).all()
    start = ds.isel(step=0)
    for var in ("kernel_distance", "layer_kernel_distance", "hamming", "param_distance"):
        np.testing.assert_allclose(start[var].values, 0.0, atol=1e-12)
        assert float(ds[var].min()) >= -1e-12
    for var in ("kernel_distance", "layer_kernel_distance", "hamming"):
        assert float(ds[var].max()) <= 1.0 + 1e-12
    assert ds["layer_kernel_distance"].sizes["layer"] == 3
    assert ds["hamming"].sizes["hidden"] == 2
    assert float(ds["kernel_distance"].isel(step=-1).min()) > 0
    from jaxdyn.experiments.deep import correlations

    r = correlations(ds)
    assert set(r) == {"hamming", "param_distance", "step"}


def test_deep_layer_kernels_sum_to_the_ntk():
    from jaxdyn.experiments.deep import layer_kernels

    net = jd.init.mlp(jax.random.key(0), [5, 4, 4, 3], "sp")
    X = jax.random.normal(jax.random.key(1), (6, 5))
    K = jax.jit(layer_kernels)(net, X)
    assert K.shape == (3, 18, 18)
    np.testing.assert_allclose(K.sum(0), jd.metrics.ntk(net, X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"synonyms": 9, "classes": 4}, "synonyms = 9 exceeds"),
        ({"synonyms": 8, "classes": 9}, "classes × synonyms"),
        ({"max_train": 500, "n_test": 100}, "max_train=500 \\+ n_test=100"),
        ({"steps": 100, "every": 30}, "every=30"),
    ],
)
def test_hierarchy_bad_settings(config, match):
    with pytest.raises(jd.SweepError, match=match):
        jd.experiments.get_experiment("hierarchy", **config)


def test_bad_axis_values_name_the_axis():
    exp = jd.experiments.get_experiment("hierarchy")
    for grid, name in (({"alpha": [0.0, 1.0]}, "alpha"), ({"tau": [-1.0]}, "tau")):
        with pytest.raises(jd.SweepError, match=name):
            jd.sweep(exp, grid, progress=False)
    with pytest.raises(jd.SweepError, match="train_size"):
        jd.sweep(exp, {"train_size": [385]}, progress=False)


def test_filters_bad_kernel():
    with pytest.raises(jd.SweepError, match="kernel=4"):
        jd.experiments.get_experiment("filters", kernel=4)
