"""Smoke tests of the benchmark scripts: `--quick` runs, one JSON object per stdout line.

Each script runs as a subprocess (as a user would run it), ~20-30 s each on 2 busy cores, so
both are marked slow (deselect with `-m 'not slow'`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run_quick(script: str) -> list[dict]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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


def test_single_neuron_quick():
    records = _run_quick("single_neuron.py")
    ratios = records[-1]
    assert ratios["batched_over_scipy_loop"] > 0
    batched = next(r for r in records if r["method"] == "jaxdyn_batched")
    assert batched["all_successful"] and batched["traj_per_s"] > 0


def test_sweep_quick():
    records = _run_quick("sweep.py")
    by = {r["method"]: r for r in records}
    for key in ("sweep_over_scipy_loop", "sweep_over_per_point_jit_loop"):
        assert by["ratios"][key] > 0
    assert by["sweep"]["all_successful"]
    assert by["sweep"]["recompiled"] is False and by["sweep"]["compiles_during_timed"] == 0
    assert by["memory"]["chunk_size"] >= 1
    assert by["scipy_loop_DOP853"]["max_abs_dev_vs_sweep"] < 1e-4


def test_relu_flow_quick():
    records = _run_quick("relu_flow.py")
    by = {r["method"]: r for r in records}
    default = by["default"]
    assert default["all_successful"] and default["t_final"] == 10.0
    assert default["max_abs_err"] <= 1e-5 and default["forced_steps"] > 0
    assert by["plain_adaptive"]["all_successful"] is False  # the failure of issue 10
    assert by["gd_same_accuracy"]["max_abs_err"] <= 2 * default["max_abs_err"]
    assert by["ratios"]["default_over_gd_same_accuracy"] > 0
