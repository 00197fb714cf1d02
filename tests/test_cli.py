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
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
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
