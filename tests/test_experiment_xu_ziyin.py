"""The `xu-ziyin` experiment on a small grid (widths 1 … 64 in one program): exact vs flow at
every point, the recorded variables, the plot and the config errors."""

import jax
import numpy as np
import pytest

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="module")
def ds():
    exp = jd.experiments.get_experiment("xu-ziyin", max_width=64, n_t=21)
    grid = {"width": np.array([1, 8, 64]), "scale": np.array([0.03, 0.5, 4.0])}
    return jd.sweep(exp, grid, progress=False)


def test_sweep_agrees_with_exact_solution(ds):
    assert np.all(ds["status"].values == 0)
    assert float(ds["exact_deviation"].max()) <= 1e-8
    assert float(ds["imbalance_drift"].max()) <= 1e-9
    kr, kt = ds["ntk_ratio_final"].values, ds["ntk_ratio_theory"].values
    np.testing.assert_allclose(kr, kt, rtol=1e-6)
    np.testing.assert_allclose(ds["ntk_ratio"].isel(t=-1).values, kt, rtol=1e-6)
    np.testing.assert_allclose(ds["output"].values, ds["output_exact"].values, atol=1e-8)
    # small init: saddle (K grows a lot); huge init: disalignment (K shrinks)
    reg = ds["regime"].sel(scale=0.03).values.ravel()
    names = ds.attrs["regimes"].split(",")
    assert all(names[r] == "saddle" for r in reg)
    assert np.all(kt[:, 0] > 5)
    big = ds.sel(scale=4.0)
    assert np.all(big["ntk_ratio_final"].values < 1)
    assert all(names[r] == "disalignment" for r in big["regime"].values.ravel())
    assert ds["layer_change"].dims[-1] == "layer"
    assert "xu-ziyin sweep: 9 nets, 9 ok" in jd.experiments.get_experiment(
        "xu-ziyin", max_width=64, n_t=21
    ).summary(ds)


def test_plot_writes_png(ds, tmp_path):
    exp = jd.experiments.get_experiment("xu-ziyin", max_width=64, n_t=21)
    exp.plot(ds, tmp_path / "xz.png")
    assert (tmp_path / "xz.png").stat().st_size > 10_000
    exp.plot(ds.isel(width=[0]), tmp_path / "one.png")  # one width: trajectories instead
    assert (tmp_path / "one.png").exists()


def test_config_and_axes():
    exp = jd.experiments.get_experiment("xu-ziyin", diagram="gamma-lr")
    assert exp.axes["gamma"].size > 1 and exp.axes["lr_ratio"].size > 1
    assert exp.axes["width"].tolist() == [256]
    default = jd.experiments.get_experiment("xu-ziyin")
    assert default.axes["width"].min() == 1 and default.axes["width"].max() >= 1024
    with pytest.raises(jd.SweepError, match="c="):
        jd.experiments.get_experiment("xu-ziyin", c=0.0)
    with pytest.raises(jd.SweepError, match="diagram"):
        jd.experiments.get_experiment("xu-ziyin", diagram="nope")
    with pytest.raises(jd.SweepError, match="width"):
        jd.sweep(jd.experiments.get_experiment("xu-ziyin", max_width=8), {"width": [16]})
