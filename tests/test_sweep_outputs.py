"""Bounded memory, locks, lazy loading and consolidated stores of `jd.sweep`'s outputs."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import jaxdyn as jd
from jaxdyn._sweep import _engine
from jaxdyn._sweep._sinks import make_sink
from jaxdyn._sweep._sinks.base import host_bytes

GRID = {"x": np.linspace(0.0, 1.0, 10), "y": [1.0, 2.0]}


def _exp():
    return jd.sweep_function(
        lambda x, y: {"v": 2.0 * x * y, "w": jnp.stack([x, y, x + y])},
        GRID,
        name="outputs",
    )


@pytest.mark.parametrize("out", [None, "big.nc"])
def test_a_result_too_large_for_memory_is_refused_before_compiling(tmp_path, out):
    """10¹⁰ points × 4 KB: the in-memory and NetCDF results are refused with the estimated
    size and a pointer to Zarr / shards, before the program is compiled."""
    exp = jd.sweep_function(lambda x, y: {"v": x * y * jnp.ones(500)}, GRID, name="huge")
    grid = {"x": np.arange(1e5), "y": np.arange(1e5)}
    compiles = []

    def listen(event, duration_secs, **kw):
        if "backend_compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    with pytest.raises(jd.SweepError, match=r"needs about 3\d.\d? TiB.*zarr.*shard") as e:
        jd.sweep(exp, grid, progress=False, out=None if out is None else tmp_path / out)
    assert e.value.argument == "out"
    assert compiles == []  # not even the memory probe of the automatic chunk size
    assert os.listdir(tmp_path) == []  # no file, no lock left behind


def test_host_bytes_counts_every_variable_and_axis():
    exp = _exp()
    p = _engine.plan(exp, None, n_dev=1)
    spec = {
        "v": ((), np.dtype("float64")),
        "w": ((3,), np.dtype("float64")),
        "status": ((), np.dtype("int8")),
    }
    assert host_bytes(p, spec) == 20 * (8 + 24 + 1 + 2 * 8)


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    """The output is locked while a sweep writes it (fcntl.flock on `<out>.lock`): a second
    sink for the same path is refused, naming this process; released, it is free again."""
    for name in ("s.zarr", "s.nc"):
        out = tmp_path / name
        first = make_sink(out)
        with pytest.raises(
            jd.SweepError, match=f"being written by another process.*pid {os.getpid()}"
        ):
            make_sink(out)
        first.close()
        assert not os.path.exists(f"{out}.lock")
        make_sink(out).close()


def test_zarr_result_is_lazy_consolidated_and_equal_to_the_in_memory_one(tmp_path):
    exp = _exp()
    store = tmp_path / "s.zarr"
    ref = jd.sweep(exp, None, progress=False, chunk_size=4)
    got = jd.sweep(exp, None, progress=False, chunk_size=4, out=store)
    import dask.array as da

    assert isinstance(got["w"].data, da.Array)  # nothing read yet
    assert isinstance(jd.load_sweep(store)["v"].data, da.Array)
    xr.testing.assert_identical(got.compute().drop_attrs(), ref.drop_attrs())
    meta = json.load(open(store / "zarr.json"))
    assert "consolidated_metadata" in meta and meta["consolidated_metadata"]
    assert int(got.attrs["complete"]) == 1 and not os.path.exists(f"{store}.lock")


def test_zarr_store_of_an_unfinished_sweep_marks_the_rest_not_run(tmp_path):
    exp = _exp()
    store = tmp_path / "p.zarr"
    part = jd.sweep(exp, None, progress=False, chunk_size=4, out=store, max_chunks=2)
    st = part["status"].values
    not_run = jd.result_index(jd.RESULTS.not_run)
    assert (st[:8] == 0).all() and (st[8:] == not_run).all()
    assert np.isnan(part["v"].values[8:]).all()
    # The coordinates of points not computed yet are there too.
    np.testing.assert_array_equal(part["x"].values, np.repeat(GRID["x"], 2))
