"""Smoke tests of the benchmark scripts: `--quick`/`--tiny` runs, one JSON object per stdout
line.

Each script runs as a subprocess (as a user would run it). The `--quick` runs take ~20-30 s each
on 2 busy cores and are marked slow (deselect with `-m 'not slow'`); the work–precision `--tiny`
run (one module-scoped run shared by its tests) and the helpers of `benchmarks/_common.py` are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_quick(script: str) -> list[dict]:
    proc = _run(script, "--quick")
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines, "no output on stdout"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{script}: stdout line is not JSON: {line[:200]!r}")
    assert all(isinstance(r, dict) and "method" in r for r in records)
    methods = [r["method"] for r in records]
    assert methods[0] == "machine" and methods[-1] == "ratios", methods
    assert "traj/s" in proc.stderr  # the human-readable table
    return records


@pytest.mark.slow
def test_single_neuron_quick():
    records = _run_quick("single_neuron.py")
    ratios = records[-1]
    assert ratios["batched_over_scipy_loop"] > 0
    batched = next(r for r in records if r["method"] == "jaxdyn_batched")
    assert batched["all_successful"] and batched["traj_per_s"] > 0


@pytest.mark.slow
def test_sweep_quick():
    records = _run_quick("sweep.py")
    by = {r["method"]: r for r in records}
    for key in ("sweep_over_scipy_loop", "sweep_over_per_point_jit_loop"):
        assert by["ratios"][key] > 0
    assert by["sweep"]["all_successful"]
    assert by["sweep"]["recompiled"] is False and by["sweep"]["compiles_during_timed"] == 0
    assert by["memory"]["chunk_size"] >= 1
    assert by["scipy_loop_DOP853"]["max_abs_dev_vs_sweep"] < 1e-4


@pytest.mark.slow
def test_relu_flow_quick():
    records = _run_quick("relu_flow.py")
    by = {r["method"]: r for r in records}
    default = by["default"]
    assert default["all_successful"] and default["t_final"] == 10.0
    assert default["max_abs_err"] <= 1e-5 and default["forced_steps"] > 0
    assert by["plain_adaptive"]["all_successful"] is False  # the failure of issue 10
    assert by["gd_same_accuracy"]["max_abs_err"] <= 2 * default["max_abs_err"]
    assert by["ratios"]["default_over_gd_same_accuracy"] > 0


# --------------------------------------------------------------------------------------------
# work_precision.py --tiny (one run shared by the tests below) and the _common helpers


@pytest.fixture(scope="module")
def work_precision(tmp_path_factory):
    png = tmp_path_factory.mktemp("wp") / "wp.png"
    # two XLA CPU devices: the sharded rows run too
    proc = _run("work_precision.py", "--tiny", "--host-devices", "2", "--png", str(png))
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    return records, proc.stderr, png


def test_work_precision_records(work_precision):
    records, _, _ = work_precision
    assert records[0]["method"] == "machine"
    runs = [r for r in records if "family" in r]
    families = {r["family"] for r in runs}
    assert families == {
        "jaxdyn_stacked",
        "jaxdyn_vmap",
        "jaxdyn_sharded",
        "diffrax_vmap",
        "scipy_stacked",
        "scipy_loop",
    }
    assert records[0]["n_devices"] == 2
    assert {r["problem"] for r in runs} == {"single_neuron", "lambda_balanced"}
    for r in runs:
        assert r["time_s"] > 0 and r["max_err"] >= 0 and r["n_traj"] == 16
        f32 = r["solver"].partition("@")[0].endswith("-f32")  # "Tsit5-f32", "Tsit5-f32@8"
        assert r["dtype"] == ("float32" if f32 else "float64")
        assert r["tol"] in ((1e-4, 1e-5) if f32 else (1e-6, 1e-9))
    # the float32 solves: stacked and sharded only, at their own tolerances, and as accurate
    # as float32 and the tolerance allow against the float64 closed form
    f32_runs = [r for r in runs if r["dtype"] == "float32"]
    assert {(r["family"], r["tol"]) for r in f32_runs if r["problem"] == "single_neuron"} == {
        (fam, tol) for fam in ("jaxdyn_stacked", "jaxdyn_sharded") for tol in (1e-4, 1e-5)
    }
    assert all(r["all_successful"] and 0 < r["max_err"] < 1e-3 for r in f32_runs)
    # the members in blocks of 8 (two stacked solves, one after the other): stacked rows only,
    # every member as well controlled as in one solve
    blocked = [r for r in runs if "@" in r["solver"]]
    assert {(r["problem"], r["family"], r["solver"]) for r in blocked} == {
        (p, "jaxdyn_stacked", "Dopri8@8") for p in ("single_neuron", "lambda_balanced")
    }
    assert all(r["all_successful"] for r in blocked)
    assert all(r["max_err"] < 1e-6 for r in blocked if r["tol"] == 1e-9)
    loops = [r for r in runs if r["family"] == "scipy_loop"]
    assert all(r["extrapolated"] and r["timed_members"] == 2 for r in loops)
    stacked = [r for r in runs if r["family"] in ("jaxdyn_stacked", "jaxdyn_sharded")]
    assert all(r["all_successful"] for r in stacked)
    assert all(r["devices"] == 2 for r in stacked if r["family"] == "jaxdyn_sharded")
    # max-norm control: the tight solve is accurate for every member
    assert all(r["max_err"] < 1e-6 for r in stacked if r["tol"] == 1e-9)


def test_work_precision_ratios_and_png(work_precision):
    records, stderr, png = work_precision
    ratios = [r for r in records if r["method"] == "ratios"]
    assert len(ratios) == 2
    for rr in ratios:
        others = {"jaxdyn_vmap", "diffrax_vmap", "scipy_stacked", "scipy_loop"}
        assert set(rr["ratios"]) == others | {"jaxdyn_sharded"}
        assert set(rr["ratios_vs_sharded"]) == others | {"jaxdyn_stacked"}
        for row in [*rr["ratios"].values(), *rr["ratios_vs_sharded"].values()]:
            assert all(v is None or v > 0 for v in row.values())
            assert all(k.startswith("1e-") for k in row)
    assert "at equal error" in stderr and "extrapolated" in stderr
    assert "/ jaxdyn_sharded at equal error" in stderr
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_equal_accuracy_interpolation():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _common import equal_accuracy, interp_loglog
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    pts = [(1e-4, 1.0), (1e-8, 100.0)]
    assert interp_loglog(pts, 1e-6) == pytest.approx(10.0)  # log-log midpoint
    assert interp_loglog(pts, 1e-9) is None and interp_loglog(pts, 1e-3) is None
    assert interp_loglog([(1e-6, 2.0), (1e-6, 1.0)], 1e-6) == 1.0
    curves = {
        "ref": {"A": pts},
        "base": {"X": [(1e-4, 30.0), (1e-8, 3000.0)], "Y": [(1e-5, 5.0), (1e-7, 50.0)]},
    }
    row = equal_accuracy(curves, "ref", [1e-3, 1e-6])["base"]
    assert row["1e-03"] is None
    assert row["1e-06"] == pytest.approx(min(300.0, np.sqrt(5.0 * 50.0)) / 10.0)


@pytest.mark.slow
def test_paper_grids_tiny():
    proc = _run("paper_grids.py", "--tiny")
    assert proc.returncode == 0, proc.stderr[-4000:]
    by = {r["method"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert by["jaxdyn_flow"]["grid_s_extrapolated"] > 0 and by["jaxdyn_flow"]["timed_points"] == 1
    assert by["numpy_gd"]["step_s"] > 0 and by["ratios"]["gd_over_flow"] > 0
    assert "on a" in proc.stderr and "core CPU" in proc.stderr


def test_paper_grids_lambda_tiny():
    proc = _run("paper_grids.py", "--tiny", "--parts", "lambda")
    assert proc.returncode == 0, proc.stderr[-4000:]
    by = {r["method"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert "jaxdyn_flow" not in by  # only the λ-balanced part
    # the λ-balanced grid: every method's final-state error against the closed form
    assert by["lambda_flow"]["all_successful"] and by["lambda_flow"]["max_rel_err"] < 1e-7
    gd = by["lambda_numpy_gd"]
    assert gd["timed_nets"] == 2 and gd["steps_per_net"] == 4000
    # GD is a first-order discretisation of the flow: halving lr about halves its error
    assert 0.8 < gd["observed_order"] < 1.2
    assert gd["max_rel_err"] > by["lambda_flow"]["max_rel_err"]
    assert gd["steps_for_flow_accuracy"] > gd["steps_per_net"]
    # explicit Euler on the Riccati equation converges to the same closed form (first order)
    assert by["lambda_numpy_riccati"]["max_rel_err"] < 0.1
    assert by["lambda_ratios"]["gd_over_flow"] > 0
    assert "Dominé et al." in proc.stderr


@pytest.mark.slow
def test_gpu_batch_tiny(tmp_path):
    proc = _run("gpu_batch.py", "--tiny", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    by = {r["method"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert by["work_precision"]["rc"] == 0
    for part, n in (("single_neuron_sweep", 64), ("lambda_width_sweep", 72)):
        assert by[part]["n_traj"] == n and by[part]["traj_per_s"] > 0
        assert by[part]["device"] and by[part]["backend"] == "cpu"
