"""The chunk loop: batched, sharded, chunked, resumable phase-diagram sweeps -> `xarray.Dataset`.

The grid (a cartesian product of named axes) is flattened in C order, optionally cut to one
shard (`shard=(i, N)`, for cluster array jobs), padded to a multiple of the chunk size (itself a
multiple of the device count), and every chunk is ONE call of the experiment's jitted batched
function with its inputs sharded over a 1-D device mesh (`jax.sharding.NamedSharding`). All
chunks have the same shape, so the program compiles once per sweep (and not again for a second
sweep with the same chunk shape).

Planning lives in `_plan.py` (grid, shard, chunk sizes), outputs in `_sinks/` (memory, NetCDF,
Zarr behind `AbstractSink`), Dataset assembly, `load` and `merge` in `_dataset.py`, compile
caches in `_cache.py`. This module only walks the chunks.

Outputs:

- in memory / NetCDF: the grid-shaped Dataset (one dimension per axis, plus the experiment's
  trailing dimensions such as `t`);
- Zarr: a *flat* store (dimension `point`, one coordinate variable per axis) written chunk by
  chunk, so an interrupted sweep resumes where it stopped (`resume=True`) without redoing or
  losing finished chunks; `load(path)` returns the grid-shaped Dataset. Shards are written the
  same way and joined with `merge`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import jax
import numpy as np
import xarray as xr

from .._results import RESULTS, STATUS_DTYPE, result_index
from ._cache import fingerprint, memo
from ._dataset import fill_value, flat_dataset, sweep_attrs
from ._errors import SweepError
from ._experiment import Experiment
from ._plan import AxisValues, Plan, axis_dtype, block_size_for, plan
from ._sinks import make_sink, write_recovery
from ._sinks.base import AbstractSink, BufferedSink, available_memory, format_bytes, host_bytes

__all__ = ["set_name_resolver", "sweep", "sweep_function"]

#: `status` of a grid point that has not been computed yet.
STATUS_NOT_RUN = result_index(RESULTS.not_run)
#: `status` of a computed point when the experiment reports none of its own.
STATUS_SUCCESSFUL = result_index(RESULTS.successful)

# Set by `jaxdyn.experiments` when it is imported (the engine never imports the registry).
_name_resolver: Callable[[str], Experiment] | None = None


def set_name_resolver(resolver: Callable[[str], Experiment]) -> None:
    """Let `sweep` accept registered experiment names (called by `jaxdyn.experiments`, so the
    engine never imports the registry).

    **Arguments:**

    - `resolver`: `resolver(name) -> Experiment`.

    **Returns:** `None`.
    """
    global _name_resolver
    _name_resolver = resolver


def _as_experiment(experiment_or_fn: Any, grid: Mapping[str, Any] | None) -> Experiment:
    if isinstance(experiment_or_fn, Experiment):
        return experiment_or_fn
    if isinstance(experiment_or_fn, str):
        if _name_resolver is None:
            raise SweepError(
                f"no experiment registry is loaded to look up {experiment_or_fn!r}; "
                "import jaxdyn.experiments or pass an Experiment"
            )
        return _name_resolver(experiment_or_fn)
    if callable(experiment_or_fn):
        fn = cast(Callable[..., Mapping[str, Any]], experiment_or_fn)
        # A plain per-point function: its axes are the grid's. One Experiment per (function,
        # axis names, values of the globals and closure cells it reads), so repeated sweeps
        # of the same function reuse its compiled program, and a changed global retraces.
        if not grid:
            raise SweepError("sweeping a plain function needs a grid naming all its arguments")
        names = tuple(grid)
        key = ("sweep_function", names, fingerprint(fn))
        return memo(fn, key, lambda: sweep_function(fn, grid))
    raise TypeError(
        f"`experiment_or_fn` must be an Experiment, a name or a function, got "
        f"{type(experiment_or_fn).__name__}."
    )


def sweep_function(
    fn: Callable[..., Mapping[str, Any]],
    axes: Mapping[str, AxisValues],
    *,
    dims: Mapping[str, tuple[str, ...]] | None = None,
    coords: Mapping[str, Any] | None = None,
    name: str | None = None,
    integer_axes: Sequence[str] | frozenset[str] | set[str] = (),
) -> Experiment:
    """Make an `Experiment` from a per-point function `fn(**scalars) -> dict of arrays`.

    `fn` is `jax.vmap`-ed over the grid points.

    **Arguments:**

    - `fn`: the per-point function; its keyword arguments are the axis names, each a scalar.
    - `axes`: the default grid, axis name -> 1-D values.
    - `dims`: variable name -> names of its trailing dimensions (default `"<var>_dim<i>"`).
    - `coords`: coordinate values for those dimensions.
    - `name`: the experiment's name (default: `fn.__name__`).
    - `integer_axes`: axes whose values are integers.

    **Returns:**

    The `Experiment`. Each call makes a new one (with its own compiled program); keep it to
    sweep it again without recompiling.
    """
    names = list(axes)

    def run(points):
        return jax.vmap(lambda p: dict(fn(**p)))({k: points[k] for k in names})

    return Experiment(
        name=name or getattr(fn, "__name__", "function"),
        run=run,
        axes=axes,
        dims=dict(dims or {}),
        coords=coords or {},
        integer_axes=frozenset(integer_axes),
    )


def sweep(
    experiment_or_fn: Experiment | str | Callable[..., Mapping[str, Any]],
    grid: Mapping[str, AxisValues] | None = None,
    *,
    chunk_size: int | np.integer | None = None,
    block_size: int | np.integer | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    memory_budget: float | int = 2**30,
    max_chunks: int | None = None,
) -> xr.Dataset:
    """Run an experiment over a grid of hyperparameters; return an `xarray.Dataset`.

    **Arguments:**

    - `experiment_or_fn`: an `Experiment`, a registered name (`"single-neuron"`, …), or a plain
      per-point function `fn(**scalars) -> dict of arrays` whose arguments are the grid's axes
      (it is `jax.vmap`-ed; use `sweep_function` to name its output dimensions).
    - `grid`: axis name -> 1-D values; axes not given keep the experiment's defaults. Unknown
      axes and empty axes raise `SweepError` (a `ValueError`).
    - `chunk_size`: points per compiled call; default from `memory_budget` and the bytes a
      grid point needs. Rounded up to a multiple of the block size times the device count,
      after clamping to the experiment's `max_chunk_per_device` times the device count.
    - `block_size`: points per block, the batch one solve sees (default: the experiment's
      `block_size`; see "Reproducibility" below). Changing it changes results at the
      solver-tolerance level; it is recorded in the attrs and a store resumes only with
      the same block size.
    - `devices`: devices of the 1-D mesh the chunks are sharded over (default: all devices of
      the default backend).
    - `progress`: show a progress bar (chunks done, ETA).
    - `out`: optional `.nc` (written at the end; on an interrupt the finished chunks are
      written with `status` = `RESULTS.not_run` for the rest) or `.zarr` (written chunk by
      chunk, resumable, host memory independent of the grid size).
    - `resume`: continue a partly written Zarr store instead of starting over.
    - `force`: overwrite an existing `out`.
    - `shard`: `(i, N)`: run only the i-th of N contiguous slices of the flattened grid (for
      array jobs); the result is flat (dimension `point`); join shards with `merge`.
    - `memory_budget`: device memory per device, in bytes, for the automatic chunk size.
    - `max_chunks`: stop after this many chunks (for testing interrupts); the store stays
      resumable.

    **Returns:**

    The Dataset: one coordinate per grid axis plus the experiment's trailing dimensions, a
    variable per recorded quantity, `status` (int8: the index of a `jaxdyn.RESULTS` item, its
    `meaning` attr is `jaxdyn.status_meaning()`; `RESULTS.not_run` for points not computed),
    and attrs recording experiment, solver, tolerances, dtype, versions, device kind, chunk
    and block size. A shard or an unfinished sweep returns the flat layout. With a `.zarr`
    output the Dataset is the store opened lazily (dask-backed, as `load_sweep` returns it).

    **Raises:**

    `SweepError` for a bad grid, block or chunk size, shard or output (an existing path
    without `force`, a directory where the `.nc` file should be, a directory where no file
    can be created, an output another sweep is writing, a store of a different sweep or one
    that cannot be read), for a tolerance the dtype cannot meet, and for an in-memory or
    `.nc` result larger than the available host memory (or a `.nc` file larger than the
    free disk space), naming the estimated size — all before anything compiles. If the
    output cannot be written *after* computing (a full disk, …), the results not in the
    output are written to a recovery file `<out name>.recovered-<pid>.nc` (in the temporary
    directory, else the working directory) and the `SweepError` names it; that Dataset is
    also in its `dataset` attribute (`recovery_path`: the file, or `None`).

    !!! note "Reproducibility"

        Points are computed in **blocks** of `block_size` consecutive grid points (C order of
        the full grid); one block is one batched solve (a stacked solve shares its step
        control across the block). A point's result therefore depends only on its block:
        the same sweep gives bit-identical results with any chunk size, on any number of
        devices, and in any shard (on the same machine and jaxlib). The attrs record
        `block_size`; passing another one is the one way to change that grouping.

    !!! note "Ctrl-C"

        The first Ctrl-C stops the sweep after the chunk in flight, which is kept (on CPU a
        chunk runs inside the call that starts it; on an accelerator the wait for it stops at
        once and an unfinished chunk is dropped); a second Ctrl-C stops at once. Every
        finished chunk is kept: in a Zarr store (resume it), in a NetCDF file (flat,
        `complete = 0`), and in the `KeyboardInterrupt`'s `dataset` attribute (flat, the rest
        `RESULTS.not_run`).

    !!! note "Compile caches"

        The compiled program belongs to the `Experiment`, so sweeping the same experiment
        object again with a grid of the same chunk shape does not recompile (the grid's
        values are traced). A **plain function** is wrapped in an `Experiment` cached per
        function, axis names and the values of the globals and closure cells the function
        reads (`jaxdyn._sweep._cache.fingerprint`): sweeping it again reuses the program,
        and changing such a global traces it again. A global read only by another function
        it calls, or a mutated object, is not seen: pass such values as a grid axis, or call
        `sweep_function` for a fresh `Experiment`.
    """
    experiment = _as_experiment(experiment_or_fn, grid)
    sink = make_sink(out, resume=resume, force=force)  # a bad output fails before any compile
    try:
        return _run(
            experiment,
            grid,
            sink,
            out=out,
            chunk_size=chunk_size,
            block_size=block_size,
            devices=devices,
            progress=progress,
            shard=shard,
            memory_budget=memory_budget,
            max_chunks=max_chunks,
        )
    finally:
        sink.close()


def _run(
    experiment: Experiment,
    grid: Mapping[str, AxisValues] | None,
    sink: AbstractSink,
    *,
    out: str | os.PathLike | None,
    chunk_size: int | np.integer | None,
    block_size: int | np.integer | None,
    devices: Sequence[Any] | None,
    progress: bool,
    shard: tuple[int, int] | None,
    memory_budget: float | int,
    max_chunks: int | None,
) -> xr.Dataset:
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise SweepError("no devices given", argument="devices")
    platform = str(devs[0].platform)
    _check_tolerances(experiment)

    def plan_for(chunk: int | np.integer | None) -> Plan:
        return plan(
            experiment,
            grid,
            n_dev=len(devs),
            platform=platform,
            chunk_size=chunk,
            block_size=block_size,
            shard=shard,
            memory_budget=memory_budget,
        )

    # The smallest chunk first (no memory probe, which compiles): the output shapes and the
    # space check come before anything is compiled.
    p = plan_for(1)
    mesh = jax.sharding.Mesh(np.array(devs), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    program = _blocked_program(experiment, p.block, mesh)
    # Template of the outputs, from one abstract evaluation (no compile).
    template = program.eval_shape(
        {
            k: jax.ShapeDtypeStruct((p.chunk,), axis_dtype(experiment, k), sharding=sharding)
            for k in p.grid
        },
        jax.ShapeDtypeStruct((p.chunk // p.block,), np.bool_, sharding=sharding),
    )
    spec = {name: (tuple(s.shape[1:]), np.dtype(s.dtype)) for name, s in template.items()}
    # `status` is always present: `not_run` until a point has run (experiments may report
    # their own).
    spec["status"] = ((), np.dtype(STATUS_DTYPE))
    _check_space(sink, p, spec, out)
    p = plan_for(chunk_size)
    default_block = block_size_for(experiment, platform)
    note = "" if p.block == default_block else f"set by the caller (default {default_block})"
    attrs = sweep_attrs(experiment, p.grid, shard, devs, p.chunk, p.block, note)

    # Ctrl-C is deferred from here on: the store is created whole, the chunk in flight is
    # kept, and the interrupt is raised between chunks (or at the end).
    with _DeferredInterrupt() as ctrl_c:
        return _chunks(
            experiment, p, sink, spec, attrs, program, sharding, out, progress, max_chunks, ctrl_c
        )


def _chunks(
    experiment: Experiment,
    p: Plan,
    sink: AbstractSink,
    spec: Mapping[str, Any],
    attrs: Mapping[str, Any],
    program: Any,
    sharding: jax.sharding.Sharding,
    out: str | os.PathLike | None,
    progress: bool,
    max_chunks: int | None,
    ctrl_c: _DeferredInterrupt,
) -> xr.Dataset:
    """Prepare the sink, run the chunks still to do, finish the sink."""
    try:
        done = sink.prepare(experiment, p, spec, attrs)
    except OSError as e:  # nothing computed yet: nothing to recover
        raise SweepError(f"cannot create {out}: {e}", argument="out") from e
    todo = [c for c in range(p.n_chunks) if not done[c]]
    if max_chunks is not None:
        todo = todo[:max_chunks]

    def rows_of(c: int, res: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
        a, b = p.bounds(c)
        off = p.offset(c)
        rows = {name: _to_host(v)[off : off + b - a] for name, v in res.items()}
        if "status" not in rows:
            rows["status"] = np.full(b - a, STATUS_SUCCESSFUL, STATUS_DTYPE)
        return rows

    def store(c: int, res: Mapping[str, jax.Array]) -> None:
        rows = rows_of(c, res)
        try:
            sink.write_chunk(c, rows)
        except OSError as err:  # keep this chunk's rows: the others are in the sink
            raise _recovered(_chunk_dataset(experiment, p, c, rows, attrs), out, err, c) from err
        done[c] = True

    bar = _progress(progress, p.n_chunks, int(done.sum()), experiment.name)
    pending: tuple[int, Mapping[str, jax.Array]] | None = None  # dispatched, not yet stored
    try:
        for c in todo:
            if ctrl_c.hit:
                raise KeyboardInterrupt
            batch = {
                k: _global_array(
                    np.asarray(p.chunk_values(c, k), axis_dtype(experiment, k)), sharding
                )
                for k in p.grid
            }
            live = _global_array(p.live(c), sharding)
            pending = (c, program(batch, live))
            _wait(pending[1], ctrl_c)
            c_done, pending = pending, None
            store(*c_done)
            if bar is not None:
                bar.update(1)
        if ctrl_c.hit:  # during the last chunk: it is kept, the interrupt still stops
            raise KeyboardInterrupt
    except KeyboardInterrupt as e:
        if pending is not None and _ready(pending[1]):
            try:  # the in-flight chunk had finished: keep it
                store(*pending)
            except BaseException:  # noqa: BLE001 - a second Ctrl-C, a failed write: drop it
                pass
        try:
            sink.abort()
        except OSError as err:
            raise _recovered(sink.partial(), out, err, None) from err
        e.dataset = sink.partial()  # pyright: ignore[reportAttributeAccessIssue]
        e.add_note(f"jaxdyn.sweep: {int(done.sum())} of {p.n_chunks} chunks done")
        raise
    except SweepError:
        raise
    except BaseException:
        sink.abort()
        raise
    finally:
        if bar is not None:
            bar.close()

    complete = bool(done.all())
    try:
        result = sink.finish(complete)
    except OSError as err:
        if not isinstance(sink, BufferedSink):  # every chunk is already in the store
            raise SweepError(
                f"cannot finish {out}: {err}; every computed chunk is in the store "
                "(continue with resume to record its completion)",
                argument="out",
            ) from err
        raise _recovered(sink.result(complete), out, err, None) from err
    if ctrl_c.hit:  # while finishing: everything is kept, the interrupt still stops
        e = KeyboardInterrupt()
        e.dataset = result  # pyright: ignore[reportAttributeAccessIssue]
        e.add_note(f"jaxdyn.sweep: {int(done.sum())} of {p.n_chunks} chunks done")
        raise e
    return result


def _blocked_program(experiment: Experiment, block: int, mesh: jax.sharding.Mesh) -> Any:
    """The compiled program of one chunk: `program(points, live)` with `points` (chunk,)
    arrays sharded over the mesh and `live` one flag per block; on each device the local
    points are cut into blocks of `block` and `experiment.run` is applied to one block after
    another (`jax.lax.map`), skipping dead blocks (their rows are fill values). Cached per
    experiment, block and devices, so a second sweep of the same shapes does not recompile.
    """

    def build() -> Any:
        from jax.extend.core import jaxpr_as_fun
        from jax.sharding import PartitionSpec as P

        spec = {
            k: jax.ShapeDtypeStruct((block,), axis_dtype(experiment, k)) for k in experiment.axes
        }
        # Trace `run` once, here: the blocks call its jaxpr (no second trace for the shapes).
        closed, out = jax.make_jaxpr(experiment.run, return_shape=True)(spec)
        run_flat = jaxpr_as_fun(closed)
        out_tree = jax.tree.structure(out)

        def run(pts: Mapping[str, jax.Array]) -> Any:
            return jax.tree.unflatten(out_tree, run_flat(*jax.tree.leaves(pts)))

        def dead(_: Any) -> Any:
            return jax.tree.map(lambda s: jax.numpy.full(s.shape, _fill(s.dtype), s.dtype), out)

        def per_device(points: Mapping[str, jax.Array], live: jax.Array) -> Any:
            blocks = {k: v.reshape(-1, block) for k, v in points.items()}

            def one(args: Any) -> Any:
                pts, alive = args
                return jax.lax.cond(alive, run, dead, pts)

            res = jax.lax.map(one, (blocks, live))
            return jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), res)

        return jax.jit(
            jax.shard_map(
                per_device,
                mesh=mesh,
                in_specs=(P("batch"), P("batch")),
                out_specs=P("batch"),
                check_vma=False,
            )
        )

    key = ("blocked", block, tuple((d.platform, d.id) for d in mesh.devices.flat))
    return memo(experiment, key, build)


def _fill(dtype: Any) -> Any:
    return STATUS_NOT_RUN if dtype == STATUS_DTYPE else fill_value(dtype)


def _check_tolerances(experiment: Experiment) -> None:
    """An experiment's `rtol` (from its attrs) below what the float dtype can meet is refused:
    10·eps (1.2e-6 in float32, 2.2e-15 in float64). Below that an adaptive solver can only
    fail or take its smallest steps, and the points would be labelled as if solved to it."""
    rtol = experiment.attrs.get("rtol")
    if not isinstance(rtol, int | float) or isinstance(rtol, bool):
        return
    dtype = jax.numpy.result_type(float)
    floor = 10 * float(np.finfo(dtype).eps)
    if rtol < floor:
        raise SweepError(
            f"config rtol={rtol:g} is below what {np.dtype(dtype).name} can meet "
            f"(rtol ≥ 10·eps = {floor:.2g}); raise rtol or use float64",
            argument="config",
        )


def _check_space(
    sink: AbstractSink, p: Plan, spec: Mapping[str, Any], out: str | os.PathLike | None
) -> None:
    """Refuse, before compiling, a buffered result (in memory, `.nc`) larger than the host's
    available memory, and a `.nc` file larger than the free disk space; warn when a `.zarr`
    store's uncompressed size exceeds the free space."""
    need = host_bytes(p, spec)
    if sink.buffered:
        avail = available_memory()
        if avail is not None and need > avail:
            raise SweepError(
                f"the result of this sweep needs about {format_bytes(need)} of host memory "
                f"({p.n_points} points), more than the {format_bytes(avail)} available; "
                "write it to a .zarr store (streamed to disk chunk by chunk) or run it in "
                "shards (shard=(i, N) / --shard i/N)",
                argument="out",
            )
    if sink.path is not None:
        import shutil
        import warnings

        parent = os.path.dirname(os.path.abspath(sink.path)) or "."
        try:
            free = shutil.disk_usage(parent).free
        except OSError:
            return
        if need > free:
            msg = (
                f"{out} needs about {format_bytes(need)} (uncompressed), more than the "
                f"{format_bytes(free)} free on its filesystem"
            )
            if sink.buffered:
                raise SweepError(msg, argument="out")
            warnings.warn(msg + " (Zarr compresses: it may still fit)", stacklevel=4)


def _chunk_dataset(
    experiment: Experiment,
    p: Plan,
    c: int,
    rows: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The flat Dataset of one chunk's rows (kept in a recovery file when its write failed)."""
    a, b = p.bounds(c)
    return flat_dataset(experiment, p.rows(a, b), rows, {**attrs, "complete": 0})


def _recovered(
    ds: xr.Dataset, out: str | os.PathLike | None, err: OSError, chunk: int | None
) -> SweepError:
    """The `SweepError` for an output that could not be written after computing: `ds` (the
    results the output does not hold) is kept in a recovery file (named in the message) and
    in the error's `dataset` attribute."""
    path = write_recovery(ds, None if out is None else os.fspath(out))
    kept = (
        f"kept in {path} (jaxdyn.load_sweep reads it)"
        if path is not None
        else "no recovery file could be written either; they are in this error's "
        "`dataset` attribute"
    )
    if chunk is None:
        what = f"cannot write {out}: {err}; the results are {kept}"
    else:
        what = (
            f"cannot write chunk {chunk} to {out}: {err}; the chunks before it are in {out} "
            f"(continue with resume), this chunk's results are {kept}"
        )
    e = SweepError(what, argument="out")
    e.dataset = ds  # pyright: ignore[reportAttributeAccessIssue]
    e.recovery_path = path  # pyright: ignore[reportAttributeAccessIssue]
    return e


# --------------------------------------------------------------------------------------------
# Device transfers and progress


def _global_array(values: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Place a host array (identical on every process) on the mesh, sharded along the batch.

    Works for one process and for multi-process runs (`jax.distributed.initialize`), where each
    process provides the slices of its own devices."""
    return jax.make_array_from_callback(values.shape, sharding, lambda idx: values[idx])


def _to_host(x: jax.Array) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _leaves(res: Mapping[str, jax.Array]) -> list[Any]:
    return [v for v in jax.tree_util.tree_leaves(res) if isinstance(v, jax.Array)]


def _ready(res: Mapping[str, jax.Array]) -> bool:
    return all(v.is_ready() for v in _leaves(res))


class _DeferredInterrupt:
    """While the chunk loop runs, the first Ctrl-C (SIGINT) only sets `hit`: the loop then
    keeps the chunk in flight if it has finished (on CPU a chunk runs inside the call that
    dispatches it, so it always has) and raises `KeyboardInterrupt`; on an accelerator
    `_wait` stops waiting at once. A second Ctrl-C raises at once. Installed only in the main
    thread, over Python's default handler (a handler of the user's is left alone)."""

    def __enter__(self) -> _DeferredInterrupt:
        self.hit = False
        self._old: Any = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        print(
            "jaxdyn: interrupted; stopping after the chunk in flight (Ctrl-C again: at once)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _wait(res: Mapping[str, jax.Array], ctrl_c: _DeferredInterrupt) -> None:
    """Wait for a dispatched chunk by polling, stopping at once (`KeyboardInterrupt`) on
    Ctrl-C: an asynchronous backend does not make Ctrl-C wait for the chunk."""
    pause = 1e-4
    while not _ready(res):
        if ctrl_c.hit:
            raise KeyboardInterrupt
        time.sleep(pause)
        pause = min(2 * pause, 0.02)


def _progress(progress: bool, total: int, initial: int, name: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"{name} chunks", unit="chunk")
