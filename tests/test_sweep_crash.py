"""Crash-safe sweep outputs: atomic store creation, the resume identity, Ctrl-C keeping the
finished (and in-flight) chunks, write failures keeping the results in a recovery file."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from conftest import chunks_done, cli_sweep_args, cli_sweep_reference, sigint_reaches_children

import jaxdyn as jd
from jaxdyn import SweepError
from jaxdyn._sweep import _dataset, _engine
from jaxdyn._sweep._sinks import zarr_store
from jaxdyn._sweep._sinks.base import clean_leftovers, temp_sibling

jax.config.update("jax_enable_x64", True)

NOT_RUN = jd.result_index(jd.RESULTS.not_run)
GRID = {"x": np.linspace(0.0, 1.0, 10), "y": [1.0, 2.0]}  # 20 points, 5 chunks of 4


def twice(x, y):
    return {"v": 2.0 * x * y, "w": jnp.stack([x, y, x + y])}


def run_code(code, *, x64=True, timeout=300):
    """Run `code` in a fresh interpreter (CPU, one device); return the finished process."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1" if x64 else "0")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PRELUDE = """
    import os, signal, sys
    import jax.numpy as jnp, numpy as np
    import jaxdyn as jd

    def twice(x, y):
        return {"v": 2.0 * x * y, "w": jnp.stack([x, y, x + y])}

    GRID = {"x": np.linspace(0.0, 1.0, 10), "y": [1.0, 2.0]}
"""


# --------------------------------------------------------------------------------------------
# 1. Atomic store creation


def test_store_killed_while_being_created_restarts_cleanly(tmp_path):
    """SIGKILL after the store is written under its temporary name, before the rename: no
    store at `out`, and `resume` starts over (removing the dead process's temporary store)."""
    store = tmp_path / "s.zarr"
    proc = run_code(
        PRELUDE
        + f"""
    from jaxdyn._sweep._sinks import zarr_store
    zarr_store._move_into_place = lambda tmp, path: os.kill(os.getpid(), signal.SIGKILL)
    jd.sweep(twice, GRID, chunk_size=4, progress=False, out={str(store)!r})
    """
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not store.exists()
    leftovers = [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    assert len(leftovers) == 1 and (tmp_path / leftovers[0] / "chunk_done").exists()
    got = jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, resume=True)
    assert os.listdir(tmp_path) == ["s.zarr"]  # the leftover is gone
    ref = jd.sweep(twice, GRID, chunk_size=4, progress=False)
    xr.testing.assert_identical(got.drop_attrs(), ref.drop_attrs())
    xr.testing.assert_identical(jd.load_sweep(store).drop_attrs(), ref.drop_attrs())


def test_interrupt_during_creation_leaves_nothing(tmp_path, monkeypatch):
    store = tmp_path / "s.zarr"

    def boom(tmp, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr_store, "_move_into_place", boom)
    with pytest.raises(KeyboardInterrupt):
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store)
    assert os.listdir(tmp_path) == []


def test_unreadable_store_is_a_clear_error_then_force_works(tmp_path):
    store = tmp_path / "s.zarr"
    jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, max_chunks=2)
    shutil.rmtree(store / "chunk_done")  # what a kill mid-creation used to leave
    with pytest.raises(SweepError, match="not a readable sweep store.*force") as e:
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, resume=True)
    assert e.value.argument == "out"
    (store / "zarr.json").write_text("{not json")
    with pytest.raises(SweepError, match="not a readable sweep store"):
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, resume=True)
    got = jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, force=True)
    assert (got["status"] == 0).all() and int(jd.load_sweep(store).attrs["complete"]) == 1


def test_force_replaces_a_store_atomically(tmp_path):
    store = tmp_path / "s.zarr"
    jd.sweep(twice, {"x": [5.0], "y": [1.0]}, progress=False, out=store)
    got = jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, force=True)
    xr.testing.assert_identical(jd.load_sweep(store).drop_attrs(), got.drop_attrs())
    assert os.listdir(tmp_path) == ["s.zarr"]


def test_leftovers_of_live_processes_and_other_hosts_are_kept(tmp_path):
    out = str(tmp_path / "s.zarr")
    mine = temp_sibling(out)  # this (live) process
    dead = mine.rsplit("-", 1)[0] + "-999999999"
    other = out + ".tmp-otherhost-1"
    for p in (mine, dead, other):
        os.mkdir(p)
    assert clean_leftovers(out) == [dead]
    assert os.path.isdir(mine) and os.path.isdir(other) and not os.path.exists(dead)


# --------------------------------------------------------------------------------------------
# 2. The resume identity


def test_float32_run_cannot_resume_a_float64_store(tmp_path):
    store = repr(str(tmp_path / "s.zarr"))
    first = run_code(
        PRELUDE
        + f"""
    jd.sweep(twice, GRID, chunk_size=4, progress=False, out={store}, max_chunks=2)
    """,
        x64=True,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_code(
        PRELUDE
        + f"""
    try:
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out={store}, resume=True)
    except jd.SweepError as e:
        print("REFUSED", e)
    """,
        x64=False,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "REFUSED" in second.stdout and "different sweep" in second.stdout
    assert "dtype ('float64' stored, 'float32' now)" in second.stdout
    part = jd.load_sweep(tmp_path / "s.zarr")  # untouched: still float64, two chunks done
    assert part["v"].dtype == np.float64 and (part["status"].values != NOT_RUN).sum() == 8


def test_another_jaxdyn_version_cannot_resume(tmp_path, monkeypatch):
    store = tmp_path / "s.zarr"
    jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, max_chunks=1)
    monkeypatch.setattr(_dataset, "__version__", "99.0")
    with pytest.raises(SweepError, match=r"jaxdyn_version \(.* stored, '99.0' now\)"):
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, resume=True)
    with pytest.raises(SweepError, match=r"chunk \(4 stored, 2 now\)"):
        monkeypatch.undo()
        jd.sweep(twice, GRID, chunk_size=2, progress=False, out=store, resume=True)


# --------------------------------------------------------------------------------------------
# 3. Ctrl-C


def _interrupt_after_chunk(monkeypatch, n):
    """Ctrl-C arriving while chunk `n` (0-based) is being waited for, once it has finished."""
    real, calls = _engine._wait, []

    def wait(res, ctrl_c):
        real(res, ctrl_c)
        calls.append(1)
        if len(calls) == n + 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(_engine, "_wait", wait)


def test_ctrl_c_keeps_finished_and_in_flight_chunks_in_memory(monkeypatch):
    _interrupt_after_chunk(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt) as e:
        jd.sweep(twice, GRID, chunk_size=4, progress=False)
    part = e.value.dataset  # pyright: ignore[reportAttributeAccessIssue]
    st = part["status"].values
    assert (st[:8] == 0).all() and (st[8:] == NOT_RUN).all()
    ref = jd.sweep(twice, GRID, chunk_size=4, progress=False)
    np.testing.assert_array_equal(part["v"].values[:8], ref["v"].values.reshape(-1)[:8])
    assert any("2 of 5 chunks done" in n for n in e.value.__notes__)


@pytest.mark.parametrize("kind", ["zarr", "nc"])
def test_ctrl_c_keeps_the_in_flight_chunk_on_disk(tmp_path, monkeypatch, kind):
    out = tmp_path / f"s.{kind}"
    _interrupt_after_chunk(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=out)
    part = jd.load_sweep(out)
    st = part["status"].values
    assert (st[:12] == 0).all() and (st[12:] == NOT_RUN).all()
    assert [p for p in os.listdir(tmp_path) if p != out.name] == []
    if kind == "zarr":
        monkeypatch.undo()
        got = jd.sweep(twice, GRID, chunk_size=4, progress=False, out=out, resume=True)
        ref = jd.sweep(twice, GRID, chunk_size=4, progress=False)
        xr.testing.assert_identical(got.drop_attrs(), ref.drop_attrs())


def test_sigint_finishes_and_keeps_the_chunk_in_flight(tmp_path, monkeypatch):
    """A real SIGINT during chunk 1: the chunk is finished and kept, then KeyboardInterrupt."""
    out = tmp_path / "s.zarr"
    real, calls = _engine._wait, []

    def wait(res, ctrl_c):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled at once, by the sweep's handler
            assert ctrl_c.hit
        real(res, ctrl_c)

    monkeypatch.setattr(_engine, "_wait", wait)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=out)
    assert signal.getsignal(signal.SIGINT) is before and len(calls) == 2
    st = jd.load_sweep(out)["status"].values
    assert (st[:8] == 0).all() and (st[8:] == NOT_RUN).all()


def test_wait_stops_at_once_on_ctrl_c():
    """On an asynchronous backend Ctrl-C does not wait for the chunk in flight."""
    x = jnp.ones((1500, 1500))
    f = jax.jit(lambda x: x @ x @ x @ x @ x)
    f(x).block_until_ready()  # compile
    t0 = time.perf_counter()
    res = {"v": f(x)}
    if res["v"].is_ready():
        pytest.skip("this backend ran the call synchronously")
    ctrl_c = _engine._DeferredInterrupt()
    ctrl_c.hit = True
    with pytest.raises(KeyboardInterrupt):
        _engine._wait(res, ctrl_c)
    waited = time.perf_counter() - t0
    assert not res["v"].is_ready()  # it stopped before the chunk finished
    res["v"].block_until_ready()
    assert waited < 0.5 * (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# 4. Write failures


@pytest.fixture
def recovery_dir(tmp_path, monkeypatch):
    d = tmp_path / "recovery"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_failed_final_netcdf_write_keeps_the_results(tmp_path, monkeypatch, recovery_dir):
    out = tmp_path / "out" / "s.nc"
    out.parent.mkdir()
    real = xr.Dataset.to_netcdf

    def to_netcdf(self, path=None, *args, **kwargs):
        if path is not None and ".tmp-" in os.fspath(path):
            with open(path, "wb") as f:  # half a file, then the disk is full
                f.write(b"\x89HDF")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    with pytest.raises(SweepError, match="No space left.*results are kept in") as e:
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=out)
    path = e.value.recovery_path  # pyright: ignore[reportAttributeAccessIssue]
    assert path in str(e.value) and os.path.dirname(path) == str(recovery_dir)
    assert os.path.basename(path) == f"s.nc.recovered-{os.getpid()}.nc"
    assert os.listdir(out.parent) == []  # neither the output nor a temporary file
    ref = jd.sweep(twice, GRID, chunk_size=4, progress=False)
    xr.testing.assert_identical(jd.load_sweep(path).drop_attrs(), ref.drop_attrs())
    xr.testing.assert_identical(
        e.value.dataset.drop_attrs(),  # pyright: ignore[reportAttributeAccessIssue]
        ref.drop_attrs(),
    )


def test_failed_chunk_write_to_zarr_keeps_the_results(tmp_path, monkeypatch, recovery_dir):
    store = tmp_path / "s.zarr"
    real = zarr_store.ZarrSink.write_chunk

    def write_chunk(self, c, rows):
        if c == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, c, rows)

    monkeypatch.setattr(zarr_store.ZarrSink, "write_chunk", write_chunk)
    with pytest.raises(SweepError, match="cannot write chunk 2.*are in .*kept in") as e:
        jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store)
    ref = jd.sweep(twice, GRID, chunk_size=4, progress=False)
    flat_ref = ref["v"].values.reshape(-1)
    # The failed chunk (points 8..11) is in the recovery file; chunks 0 and 1 in the store.
    rec = jd.load_sweep(e.value.recovery_path)  # pyright: ignore[reportAttributeAccessIssue]
    assert rec.sizes["point"] == 4 and (rec["status"].values == 0).all()
    np.testing.assert_array_equal(rec["v"].values, flat_ref[8:12])
    part = jd.load_sweep(store)
    st = part["status"].values
    assert (st[:8] == 0).all() and (st[8:] == NOT_RUN).all()
    np.testing.assert_array_equal(part["v"].values[:8], flat_ref[:8])
    monkeypatch.undo()
    got = jd.sweep(twice, GRID, chunk_size=4, progress=False, out=store, resume=True)
    xr.testing.assert_identical(got.drop_attrs(), ref.drop_attrs())


def test_directory_in_the_way_is_refused_before_compiling(tmp_path):
    traces = []

    def fn(x):
        traces.append(1)
        return {"v": x}

    (tmp_path / "d.nc").mkdir()
    for force in (False, True):
        with pytest.raises(SweepError, match="is a directory") as e:
            jd.sweep(fn, {"x": [1.0]}, progress=False, out=tmp_path / "d.nc", force=force)
        assert e.value.argument == "out"
    assert traces == [] and os.listdir(tmp_path / "d.nc") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_is_refused_before_compiling(tmp_path):
    traces = []

    def fn(x):
        traces.append(1)
        return {"v": x}

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        for name in ("s.nc", "s.zarr"):
            with pytest.raises(SweepError, match="not a writable directory"):
                jd.sweep(fn, {"x": [1.0]}, progress=False, out=ro / name)
    finally:
        ro.chmod(0o700)
    assert traces == [] and os.listdir(ro) == []


@pytest.mark.slow
def test_cli_ctrl_c_keeps_chunks_and_resumes_identically(tmp_path):
    store = tmp_path / "c.zarr"
    args = cli_sweep_args(store)
    with sigint_reaches_children():
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        seen = chunks_done(store)
        if seen >= 3:
            break
        time.sleep(0.05)
    interrupted = proc.poll() is None
    if interrupted:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    kept = int(xr.open_zarr(store, consolidated=False)["chunk_done"].sum())
    if interrupted:
        assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
        assert "continue with --resume" in err and seen <= kept < 20
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref = cli_sweep_reference()
    got = jd.load_sweep(store)
    assert (got["status"] == 0).all()
    np.testing.assert_array_equal(got["a"].values, ref["a"].values)
