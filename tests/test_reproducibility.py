"""A point's result does not depend on how the sweep was run: chunk size, device count, shard.

Points are computed in blocks of the full grid (`Experiment.block_size`), one block per batched
solve, so a stacked solve's shared step control only couples the points of one block. These
tests compare *bitwise* (same machine, same jaxlib)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CODE = """
    import json, sys, numpy as np, jax
    jax.config.update("jax_enable_x64", True)
    import jaxdyn as jd
    from jaxdyn.experiments import get_experiment

    name, config, grid = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    exp = get_experiment(name, **config)
    devs = jax.devices()
    runs = {
        "8 devices, auto chunk": dict(devices=devs),
        "8 devices, chunk 4096": dict(devices=devs, chunk_size=4096),
        "1 device, auto chunk": dict(devices=devs[:1]),
        "1 device, chunk 1 (one block)": dict(devices=devs[:1], chunk_size=1),
        "2 devices, chunk 1000": dict(devices=devs[:2], chunk_size=1000),
    }
    out = {"n_devices": len(devs)}
    for label, kw in runs.items():
        ds = jd.sweep(exp, grid, progress=False, **kw)
        out[label] = {k: np.asarray(ds[k].values).tolist() for k in ("status", *sys.argv[4:])}
        out[label]["attrs"] = [int(ds.attrs["chunk_size"]), int(ds.attrs["block_size"])]
    # Three shards on 3 devices, merged: the same grid once more.
    parts = [jd.sweep(exp, grid, progress=False, devices=devs[:3], shard=(i, 3)) for i in range(3)]
    import xarray as xr
    flat = xr.concat(parts, dim="point")
    out["3 shards"] = {k: np.asarray(flat[k].values).tolist() for k in ("status", *sys.argv[4:])}
    print(json.dumps(out))
"""


def _run(name, config, grid, variables):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=8 "
        "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CODE), name, json.dumps(config), json.dumps(grid)]
        + variables,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_all_identical(out, variables):
    assert out.pop("n_devices") == 8
    ref_label = "1 device, auto chunk"
    ref = out[ref_label]
    sizes = {tuple(r["attrs"]) for r in out.values() if "attrs" in r}
    assert len({c for c, _ in sizes}) >= 3  # really different chunk sizes …
    assert len({b for _, b in sizes}) == 1  # … and one block size
    for label, got in out.items():
        for v in ("status", *variables):
            a = np.asarray(got[v], dtype=float).reshape(-1)
            b = np.asarray(ref[v], dtype=float).reshape(-1)
            np.testing.assert_array_equal(a, b, err_msg=f"{v}: {label} vs {ref_label}")
    assert (np.asarray(ref["status"]) == 0).all()


def test_single_neuron_stacked_is_bitwise_independent_of_chunks_devices_and_shards():
    """The stacked mode (one shared step control per block) on 1, 2, 3 (shards) and 8 fake
    CPU devices with four chunk sizes: bit-identical `a`, `beta` and kernel distance."""
    variables = ["a", "beta", "kernel_distance"]
    grid = {"delta": np.linspace(-2, 2, 300).tolist(), "scale": [0.05, 0.5], "lr_ratio": [1.0]}
    out = _run("single-neuron", {"t_max": 6.0, "n_t": 7, "mode": "stacked"}, grid, variables)
    _assert_all_identical(out, variables)


@pytest.mark.slow  # ≈ 130 s; the single-neuron variant above runs in CI
def test_lambda_balanced_is_bitwise_independent_of_chunks_devices_and_shards():
    variables = ["loss", "exact_deviation"]
    grid = {"lam": np.linspace(-2, 2, 70).tolist(), "scale": [0.5], "seed": [0, 1]}
    out = _run("lambda-balanced", {"t_max": 4.0, "n_t": 5}, grid, variables)
    _assert_all_identical(out, variables)
