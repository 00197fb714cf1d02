"""Built-in experiments of Kunin et al. 2024: single-neuron and relu-lazy-rich."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn.experiments import get_experiment, names
from jaxdyn.experiments.single_neuron import kernel_distance_whitened, whitened_data

jax.config.update("jax_enable_x64", True)


def test_registry_lists_the_design_experiments():
    for name in ("single-neuron", "relu-lazy-rich"):
        assert name in names()
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


@pytest.mark.parametrize("d", [1, 3])
def test_whitened_kernel_distance_equals_the_empirical_ntk_one(d):
    X, _ = whitened_data(8, d, np.eye(d)[0])
    X = jnp.asarray(X)
    rng = np.random.default_rng(d)
    m0 = jd.SingleNeuron(rng.normal(), rng.normal(size=d))
    m1 = jd.SingleNeuron(rng.normal(), rng.normal(size=d))
    lr = jd.SingleNeuron(0.6, 1.7)
    ref = jd.metrics.kernel_distance(jd.metrics.ntk(m0, X, lr), jd.metrics.ntk(m1, X, lr))
    got = kernel_distance_whitened(m0.a, m0.w, m1.a, m1.w, 0.6, 1.7)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_single_neuron_lr_ratio_symmetry():
    """β(t) and the kernel depend on (η_a, η_w) only through η_a·η_w (notes C26(ii))."""
    exp = get_experiment("single-neuron", t_max=8.0, n_t=17)
    ds = jd.sweep(
        exp,
        {"delta": [-1.0, 0.0, 1.5], "scale": [0.1], "lr_ratio": [0.25, 1.0, 4.0]},
        progress=False,
    )
    beta = ds["beta"].values  # (delta, scale, ratio, t, component)
    np.testing.assert_allclose(beta[:, :, 0], beta[:, :, 1], atol=1e-8)
    np.testing.assert_allclose(beta[:, :, 2], beta[:, :, 1], atol=1e-8)
    assert float(ds["exact_deviation"].max()) < 1e-7


def test_relu_lazy_rich_small_grid_and_width_axis():
    exp = get_experiment("relu-lazy-rich", d=4, n=12, n_test=32, max_width=8, t_max=20.0, n_t=9)
    ds = jd.sweep(
        exp,
        {"scale": [0.2, 2.0], "delta": [-0.5, 0.5], "width": [4, 8], "seed": [0]},
        progress=False,
    )
    assert (ds["status"] == 0).all()
    assert ds["kernel_distance"].dims == ("scale", "delta", "width", "seed", "t")
    # Symmetric init: f ≡ 0, so the initial loss is the same for every point.
    l0 = ds["loss"].isel(t=0).values
    np.testing.assert_allclose(l0, l0.flat[0], rtol=1e-12)
    # Lazy at large scale: the kernel moves far less than at small scale.
    kd = ds["kernel_distance"].isel(t=-1, seed=0)
    assert float(kd.sel(scale=2.0).max()) < float(kd.sel(scale=0.2).max())
    # Per-unit conserved δ_k stays put (its drift bounds the error of the forced small steps).
    assert float(ds["delta_drift"].max()) < 1e-4
