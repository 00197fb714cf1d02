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
from ._cache import memo
from ._dataset import fill_value, flat_dataset, grid_dataset, sweep_attrs
from ._errors import SweepError
from ._experiment import Experiment
from ._plan import AxisValues, axis_dtype, plan
from ._sinks import make_sink, write_recovery

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
        # axis names), so repeated sweeps of the same function reuse its compiled program.
        if not grid:
            raise SweepError("sweeping a plain function needs a grid naming all its arguments")
        names = tuple(grid)
        return memo(fn, ("sweep_function", names), lambda: sweep_function(fn, grid))
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
      grid point needs. Rounded up to a multiple of the device count, then clamped to the
      experiment's `max_chunk_per_device` times the device count.
    - `devices`: devices of the 1-D mesh the chunks are sharded over (default: all devices of
      the default backend).
    - `progress`: show a progress bar (chunks done, ETA).
    - `out`: optional `.nc` (written at the end; on an interrupt the finished chunks are
      written with `status` = `RESULTS.not_run` for the rest) or `.zarr` (written chunk by
      chunk, resumable).
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
    and attrs recording experiment, solver, tolerances, dtype, versions and device kind. A
    shard or an unfinished sweep returns the flat layout.

    **Raises:**

    `SweepError` for a bad grid, chunk size, shard or output (an existing path without
    `force`, a directory where the `.nc` file should be, a directory where no file can be
    created, a store of a different sweep or one that cannot be read), before anything
    compiles. If the output cannot be written *after* computing (a full disk, …), the results
    are written to a recovery file `<out name>.recovered-<pid>.nc` (in the temporary
    directory, else the working directory) and the `SweepError` names it; the Dataset is
    also in its `dataset` attribute (`recovery_path`: the file, or `None`).

    !!! note "Ctrl-C"

        The first Ctrl-C stops the sweep after the chunk in flight, which is kept (on CPU a
        chunk runs inside the call that starts it; on an accelerator the wait for it stops at
        once and an unfinished chunk is dropped); a second Ctrl-C stops at once. Every
        finished chunk is kept: in a Zarr store (resume it), in a NetCDF file (flat,
        `complete = 0`), and in the `KeyboardInterrupt`'s `dataset` attribute (flat, the rest
        `RESULTS.not_run`).

    !!! note "Compile caches"

        The compiled program belongs to the `Experiment` (`Experiment.jitted`), so sweeping
        the same experiment object again with a grid of the same chunk shape does not
        recompile (the grid's values are traced). A **plain function** is wrapped in an
        `Experiment` cached per `(function, axis names)`: sweeping the same function again
        reuses the program. JAX traces the function once, so a global variable (or a
        closed-over value) the function reads is *baked in* at its first trace: changing it
        later does not change later sweeps. Pass such values as a grid axis, or call
        `sweep_function` for a fresh `Experiment`.
    """
    experiment = _as_experiment(experiment_or_fn, grid)
    sink = make_sink(out, resume=resume, force=force)  # a bad output fails before any compile
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise SweepError("no devices given", argument="devices")
    mesh = jax.sharding.Mesh(np.array(devs), ("batch",))
    p = plan(
        experiment,
        grid,
        n_dev=len(devs),
        platform=str(devs[0].platform),
        chunk_size=chunk_size,
        shard=shard,
        memory_budget=memory_budget,
    )

    attrs = sweep_attrs(experiment, p.grid, shard, devs, p.chunk)

    # Template of the outputs, from one abstract evaluation (no compile).
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    spec = experiment.jitted.eval_shape(
        {
            k: jax.ShapeDtypeStruct((p.chunk,), axis_dtype(experiment, k), sharding=sharding)
            for k in p.grid
        }
    )
    buffers = {
        name: np.full((p.n_points,) + s.shape[1:], fill_value(s.dtype), np.dtype(s.dtype))
        for name, s in spec.items()
    }
    # `status` is always present: `not_run` until a point has run (experiments may report
    # their own).
    buffers["status"] = np.full((p.n_points,), STATUS_NOT_RUN, np.dtype(STATUS_DTYPE))

    try:
        done = sink.prepare(experiment, p, buffers, attrs)
    except OSError as e:  # nothing computed yet: nothing to recover
        raise SweepError(f"cannot create {out}: {e}", argument="out") from e
    todo = [c for c in range(p.n_chunks) if not done[c]]
    if max_chunks is not None:
        todo = todo[:max_chunks]

    def store(c: int, res: Mapping[str, jax.Array]) -> None:
        a, b = p.bounds(c)
        for name, v in res.items():
            buffers[name][a:b] = _to_host(v)[: b - a]
        if "status" not in res:
            buffers["status"][a:b] = STATUS_SUCCESSFUL
        done[c] = True
        sink.write_chunk(c)

    def forget(c: int) -> None:  # undo a chunk whose results did not all arrive
        a, b = p.bounds(c)
        for name, buf in buffers.items():
            buf[a:b] = STATUS_NOT_RUN if name == "status" else fill_value(buf.dtype)
        done[c] = False

    def partial() -> xr.Dataset:
        return flat_dataset(experiment, p.points, buffers, {**attrs, "complete": 0})

    bar = _progress(progress, p.n_chunks, int(done.sum()), experiment.name)
    pending: tuple[int, Mapping[str, jax.Array]] | None = None  # dispatched, not yet stored
    try:
        with _DeferredInterrupt() as ctrl_c:
            for c in todo:
                if ctrl_c.hit:
                    raise KeyboardInterrupt
                batch = {
                    k: _global_array(
                        np.asarray(p.chunk_values(c, k), axis_dtype(experiment, k)), sharding
                    )
                    for k in p.points
                }
                pending = (c, experiment.jitted(batch))
                _wait(pending[1], ctrl_c)
                store(*pending)
                pending = None
                if bar is not None:
                    bar.update(1)
    except KeyboardInterrupt as e:
        if pending is not None and _ready(pending[1]):
            try:  # the in-flight chunk had finished: keep it
                store(*pending)
            except BaseException:  # noqa: BLE001 - a second Ctrl-C, a failed write: drop it
                forget(pending[0])
        try:
            sink.abort()
        except OSError as err:
            raise _recovered(partial(), out, err, "after the interrupt") from err
        e.dataset = partial()  # pyright: ignore[reportAttributeAccessIssue]
        e.add_note(f"jaxdyn.sweep: {int(done.sum())} of {p.n_chunks} chunks done")
        raise
    except OSError as err:  # a chunk's write failed (full disk, ...): keep what is computed
        raise _recovered(partial(), out, err, "while writing a chunk") from err
    except BaseException:
        sink.abort()
        raise
    finally:
        if bar is not None:
            bar.close()

    complete = bool(done.all())
    attrs["complete"] = int(complete)
    flat = flat_dataset(experiment, p.points, buffers, attrs)
    result = flat if shard is not None or not complete else grid_dataset(flat, p.grid)
    try:
        sink.finish(result, complete)
    except OSError as err:
        raise _recovered(result, out, err, "at the end") from err
    return result


def _recovered(
    ds: xr.Dataset, out: str | os.PathLike | None, err: OSError, when: str
) -> SweepError:
    """The `SweepError` for an output that could not be written after computing: `ds` is
    kept in a recovery file (named in the message) and in the error's `dataset` attribute."""
    path = write_recovery(ds, None if out is None else os.fspath(out))
    kept = (
        f"the results are kept in {path} (jaxdyn.load_sweep reads it)"
        if path is not None
        else "no recovery file could be written either; the results are in this error's "
        "`dataset` attribute"
    )
    e = SweepError(f"cannot write {out} ({when}): {err}; {kept}", argument="out")
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
