"""The `jaxdyn` command line: user errors are one line with exit code 2; outputs are kept."""

import os

import numpy as np
import pytest
from click.testing import CliRunner

import jaxdyn as jd
from jaxdyn.cli import main, parse_axis_values

SMALL = [
    "--delta=-2:2:5",
    "--scale=0.05",
    "--lr_ratio=1",
    "--config",
    "t_max=5.0",
    "--config",
    "n_t=11",
    "--no-progress",
]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_parse_axis_values_forms():
    np.testing.assert_allclose(parse_axis_values("delta", "-3:3:401"), np.linspace(-3, 3, 401))
    np.testing.assert_allclose(parse_axis_values("s", "log:0.01:1:3"), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(parse_axis_values("s", "-1,0.5,2"), [-1, 0.5, 2])


def test_list_and_info():
    r = invoke("list")
    assert r.exit_code == 0 and "single-neuron" in r.output and "--delta" in r.output
    r = invoke("info")
    assert r.exit_code == 0 and "jax " in r.output and "device 0" in r.output


def test_sweep_writes_dataset_and_plot(tmp_path):
    out, png = tmp_path / "s.nc", tmp_path / "s.png"
    r = invoke("sweep", "single-neuron", *SMALL, "--out", str(out), "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert "worst deviation from the exact solution" in r.output
    ds = jd.load_sweep(out)
    np.testing.assert_allclose(ds["delta"].values, np.linspace(-2, 2, 5))
    assert ds["loss"].sizes["t"] == 11
    assert png.stat().st_size > 10_000
    # Never overwritten without --force (exit 2, one line, file untouched).
    mtime = os.path.getmtime(out)
    r = invoke("sweep", "single-neuron", *SMALL, "--out", str(out))
    assert r.exit_code == 2 and "exists" in r.output and os.path.getmtime(out) == mtime
    r = invoke("sweep", "single-neuron", *SMALL, "--out", str(out), "--force")
    assert r.exit_code == 0
    # Heatmap of any variable over two axes at a chosen time.
    r = invoke(
        "plot",
        str(out),
        "--var",
        "loss",
        "--x",
        "delta",
        "--y",
        "t",
        "--out",
        str(tmp_path / "h.png"),
    )
    assert r.exit_code == 0 and (tmp_path / "h.png").exists()
    r = invoke(
        "plot",
        str(out),
        "--var",
        "kernel_distance",
        "--t",
        "2.0",
        "--out",
        str(tmp_path / "k.png"),
    )
    assert r.exit_code == 0 and (tmp_path / "k.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "nope"], "unknown experiment 'nope'"),
        (["sweep", "single-neuron", "--width=1:2:2"], "unknown axis 'width'"),
        (["sweep", "single-neuron", "--delta=-3:3"], "is not a range"),
        (["sweep", "single-neuron", "--delta=a,b"], "is not a range"),
        (["sweep", "single-neuron", "--delta=,"], "empty or invalid"),
        (["sweep", "single-neuron", "--delta=1:2:0"], "num must be"),
        (["sweep", "single-neuron", "--out", "/nonexistent/dir/x.nc"], "not a writable"),
        (["sweep", "single-neuron", "--out", "x.txt"], "must end in .nc or .zarr"),
        (["sweep", "single-neuron", "--shard", "3/2"], "shard"),
        (["sweep", "single-neuron", "--chunk-size", "0"], "chunk-size"),
        (["sweep", "single-neuron", "--dtype", "int8"], "--dtype"),
        (["sweep", "single-neuron", "--config", "bogus=1"], "--config"),
        (["plot", "missing.nc"], "does not exist"),
        (["merge", "out.nc", "missing.zarr"], "does not exist"),
        (["plot", "missing.nc", "--var", "nope"], "does not exist"),
        (["sweep", "single-neuron", "--dtype", "float16"], "--dtype must be float64 or float32"),
        (["sweep", "single-neuron", "--out", "old.nc"], "old.nc exists; pass --force"),
        (["sweep", "single-neuron", "--plot", "old.png"], "old.png exists; pass --force"),
        (["sweep", "single-neuron", "--plot", "f.jpg"], "--plot 'f.jpg' must end in .png"),
        (["sweep", "single-neuron", "--chunk-size", "abc"], "'abc' is not a valid integer"),
        (["sweep", "--help", "nope"], "unknown experiment 'nope'"),
        (["plot", "old.nc", "--t", "abc"], "'abc' is not a valid float"),
        (["plot", "old.nc", "--out", "f.jpg"], "--out 'f.jpg' must end in .png"),
        (["plot", "old.nc", "--out", "old.png"], "old.png exists; pass --force"),
        (["plot"], "Missing argument 'FILE'"),
        (["bogus"], "No such command 'bogus'"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.nc").write_bytes(b"")
    (tmp_path / "old.png").write_bytes(b"")
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxdyn: error:"), r.output
    assert message in lines[0]
    assert "Traceback" not in r.output


def test_sweep_with_a_list_valued_config(tmp_path):
    """`--config KEY=[…]` (a list) used to fail with "unhashable type" in the registry cache."""
    out = tmp_path / "lb.nc"
    args = [
        "sweep",
        "lambda-balanced",
        "--lam=-1,1",
        "--scale=0.5",
        "--config",
        "sv=[2.0,1.0,0.5,0.25]",
        "--config",
        "t_max=2.0",
        "--config",
        "n_t=5",
        "--no-progress",
        "--out",
        str(out),
    ]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    ds = jd.load_sweep(out)
    assert ds.attrs["task_singular_values"] == "2,1,0.5,0.25"
    assert (ds["status"] == 0).all()
    # The same list again is a cache hit (same Experiment object, no rebuild).
    from jaxdyn.experiments import get_experiment

    cfg = {"sv": [2.0, 1.0, 0.5, 0.25], "t_max": 2.0, "n_t": 5}
    assert get_experiment("lambda-balanced", **cfg) is get_experiment("lambda-balanced", **cfg)


def test_engine_errors_name_the_cli_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("sweep", "single-neuron", *SMALL, "--out", "x.nc", "--resume")
    assert r.exit_code == 2 and "--resume: resume works with a .zarr output only" in r.output
    r = invoke("sweep", "single-neuron", *SMALL, "--shard", "99/100")
    assert r.exit_code == 2 and "--shard:" in r.output and "empty" in r.output


# --------------------------------------------------------------------------------------------
# `jaxdyn plot`: log-spaced axes on a log scale, --t within the saved times, named choices


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A 3 × 3 single-neuron sweep (δ linear, scale log-spaced), saved times 0 … 5."""
    out = tmp_path_factory.mktemp("plot") / "s.nc"
    args = [
        "sweep",
        "single-neuron",
        "--delta=-1:1:3",
        "--scale=log:0.01:1:3",
        "--lr_ratio=1",
        "--config",
        "t_max=5.0",
        "--config",
        "n_t=11",
        "--no-progress",
        "--out",
        str(out),
    ]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return out


def test_heatmap_log_axis_and_nearest_time(small_sweep):
    ds = jd.load_sweep(small_sweep)
    ax = jd.plot.heatmap(ds, var="loss", x="delta", y="scale", t=2.1)
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    assert "scale (log scale)" == ax.get_ylabel() and ax.get_xlabel() == "delta"
    # Cells centred on the grid points: geometric mid-points on the log axis, linear on δ.
    coords = ax.collections[0].get_coordinates()
    np.testing.assert_allclose(coords[:, 0, 1], 10.0 ** np.array([-2.5, -1.5, -0.5, 0.5]))
    np.testing.assert_allclose(coords[0, :, 0], [-1.5, -0.5, 0.5, 1.5])
    # The title names the saved time shown (nearest to the one asked for) and the fixed axes.
    assert ax.get_title() == "loss (lr_ratio = 1, t = 2 [nearest saved to 2.1])"
    np.testing.assert_array_equal(
        ax.collections[0].get_array().reshape(3, 3),
        ds["loss"].sel(t=2.0, lr_ratio=1.0).transpose("scale", "delta").values,
    )
    ax = jd.plot.heatmap(ds, var="loss", x="delta", y="scale", t=2.0)
    assert ax.get_title() == "loss (lr_ratio = 1, t = 2)"
    jd.plot.pyplot().close("all")


@pytest.mark.parametrize(
    "values, log",
    [
        (np.geomspace(1e-3, 1, 7), True),
        (np.geomspace(1e-3, 1, 7)[::-1], True),
        ([1.0, 2.0, 4.0], True),
        ([4.0, 1.0, 2.0], True),
        ([0.01, 0.1, 1.0], True),
        ([1.0, 2.0], False),  # two values: no ratio to check
        (np.linspace(-3, 3, 7), False),
        (np.linspace(1, 3, 3), False),
        ([0.0, 1.0, 2.0], False),
        ([-4.0, -2.0, -1.0], False),
        ([1.0, 1.0, 1.0], False),
        ([1.0, 2.0, 4.0 * (1 + 1e-6)], False),
        ([1.0, 2.0, 4.0 * (1 + 1e-12)], True),
    ],
)
def test_log_spaced_axes(values, log):
    from jaxdyn.plot import _is_log_spaced

    assert _is_log_spaced(np.asarray(values)) is log


@pytest.mark.parametrize(
    "args, message",
    [
        (["--t", "50"], "--t 50 is outside the saved times 0 … 5"),
        (["--t", "-0.5"], "--t -0.5 is outside the saved times 0 … 5"),
        (["--t", "nan"], "--t nan is outside the saved times 0 … 5"),
        (["--var", "nope"], "--var 'nope' is not a variable of the sweep; choices: "),
        (
            ["--x", "nope"],
            "--x 'nope' is not an axis of 'kernel_distance'; choices: delta, scale,",
        ),
        (["--var", "loss", "--y", "nope"], "--y 'nope' is not an axis of 'loss'; choices: "),
        (["--x", "delta", "--y", "delta"], "--x and --y are both 'delta'"),
        (["--var", "exact_deviation", "--t", "1"], "'exact_deviation' has no time axis"),
        (["--var", "exact_deviation", "--x", "t"], "--x 't' is not an axis of 'exact_deviation'"),
        (["--var", "loss", "--y", "t", "--t", "1"], "'loss' is drawn over t"),
    ],
)
def test_plot_errors(small_sweep, args, message, tmp_path):
    r = invoke("plot", str(small_sweep), *args, "--out", str(tmp_path / "p.png"))
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxdyn: error:"), r.output
    assert message in lines[0], r.output
    assert not (tmp_path / "p.png").exists()


def test_plot_log_axis_and_time_through_the_cli(small_sweep, tmp_path):
    png = tmp_path / "loss.png"
    args = ["--var", "loss", "--x", "delta", "--y", "scale", "--t", "5", "--out", str(png)]
    r = invoke("plot", str(small_sweep), *args)
    assert r.exit_code == 0, r.output
    assert png.stat().st_size > 10_000
    # Without --var/--x/--y/--t: the experiment's own figure, next to the file.
    r = invoke("plot", str(small_sweep))
    assert r.exit_code == 0 and os.path.exists(str(small_sweep).replace(".nc", ".png")), r.output


def test_heatmap_refuses_a_flat_layout():
    import xarray as xr

    ds = xr.Dataset({"loss": ("point", np.zeros(4))}, attrs={"axes": "delta,scale"})
    with pytest.raises(ValueError, match="merge the shards first"):
        jd.plot.heatmap(ds, var="loss")


# --------------------------------------------------------------------------------------------
# `jaxdyn sweep NAME --help`: the experiment's axes and config keys, as `jaxdyn list -v NAME`


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "lambda-balanced", "--help"],
        ["sweep", "--help", "lambda-balanced"],
        ["sweep", "--delta", "-1:1:3", "-h", "--out", "x.nc", "lambda-balanced", "--force"],
    ],
)
def test_sweep_help_shows_the_experiment(args):
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "--chunk-size" in r.output and "Usage: " in r.output  # the sweep options
    listed = invoke("list", "-v", "lambda-balanced").output.strip().splitlines()
    assert len(listed) > 10 and "    config keys (--config KEY=VALUE):" in listed
    help_lines = r.output.splitlines()
    start = help_lines.index(listed[0])
    assert help_lines[start : start + len(listed)] == listed  # the same lines, unwrapped
    assert any("sv = None; domain: None or > 0; task singular values" in ln for ln in listed)


def test_sweep_help_without_experiment():
    r = invoke("sweep", "--help")
    assert r.exit_code == 0 and "--chunk-size" in r.output
    assert "config keys (--config KEY=VALUE):" not in r.output
    assert "jaxdyn sweep EXPERIMENT --help" in r.output


# --------------------------------------------------------------------------------------------
# Tolerances float32 cannot meet


@pytest.fixture
def float32_restored():
    """`--dtype float32` switches float64 off process-wide; switch it back afterwards."""
    import jax

    yield
    jax.config.update("jax_enable_x64", True)


def test_float32_with_default_tolerances_is_refused(float32_restored, monkeypatch):
    """The default rtol (1e-10) is below float32's 10·eps (1.2e-6): exit 2 naming rtol, before
    anything compiles (the check is the engine's `SweepError(argument="config")`)."""

    def boom(self):
        pytest.fail(f"{self.name}: compiled before the tolerances were checked against the dtype")

    monkeypatch.setattr(jd.Experiment, "jitted", property(boom))
    r = invoke("sweep", "single-neuron", *SMALL, "--dtype", "float32")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxdyn: error: --config"), r.output
    assert "rtol" in lines[0] and "Traceback" not in r.output
