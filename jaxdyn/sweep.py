"""Batched, sharded, chunked, resumable phase-diagram sweeps -> `xarray.Dataset`.

The grid (a cartesian product of named axes) is flattened in C order, optionally cut to one
shard (`shard=(i, N)`, for cluster array jobs), padded to a multiple of the chunk size (itself a
multiple of the device count), and every chunk is ONE call of the experiment's jitted batched
function with its inputs sharded over a 1-D device mesh (`jax.sharding.NamedSharding`). All
chunks have the same shape, so the program compiles once per sweep (and not again for a second
sweep with the same chunk shape).

Outputs:

- in memory / NetCDF: the grid-shaped Dataset (one dimension per axis, plus the experiment's
  trailing dimensions such as `t`);
- Zarr: a *flat* store (dimension `point`, one coordinate variable per axis) written chunk by
  chunk, so an interrupted sweep resumes where it stopped (`resume=True`) without redoing or
  losing finished chunks; `load(path)` returns the grid-shaped Dataset. Shards are written the
  same way and joined with `merge`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .experiments.base import Experiment

__all__ = ["sweep", "sweep_function", "load", "merge", "make_grid", "SweepError"]

STATUS_NOT_RUN = -1
_STATUS_MEANING = "-1 not run, 0 ok, 1 stopped at loss, 2 max_steps, 3 non-finite, 4 failed"


class SweepError(ValueError):
    """A user error in a sweep specification (bad axis, empty grid, existing output…)."""


# --------------------------------------------------------------------------------------------
# Grid handling


def make_grid(
    experiment: Experiment, grid: Mapping[str, Sequence] | None
) -> dict[str, np.ndarray]:
    """Merge `grid` into the experiment's default axes and validate it."""
    grid = dict(grid or {})
    unknown = sorted(set(grid) - set(experiment.axes))
    if unknown:
        raise SweepError(
            f"unknown axis {unknown[0]!r} for experiment {experiment.name!r}; "
            f"its axes are {sorted(experiment.axes)}"
        )
    out = {}
    for name, default in experiment.axes.items():
        values = np.atleast_1d(np.asarray(grid.get(name, default)))
        if values.ndim != 1:
            raise SweepError(f"axis {name!r} must be 1-D, got shape {values.shape}")
        if values.size == 0:
            raise SweepError(f"axis {name!r} is empty")
        if name in experiment.integer_axes:
            if not np.all(np.equal(np.mod(values.astype(float), 1), 0)):
                raise SweepError(f"axis {name!r} takes integers, got {values}")
            values = values.astype(np.int64)
        else:
            values = values.astype(np.float64)
            if not np.all(np.isfinite(values)):
                raise SweepError(f"axis {name!r} contains NaN or inf")
        out[name] = values
    return out


def _flat_points(grid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    return {k: m.reshape(-1) for k, m in zip(grid, mesh, strict=True)}


def _shard_range(n_points: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, n_points
    i, N = shard
    if not (isinstance(i, int) and isinstance(N, int) and N >= 1 and 0 <= i < N):
        raise SweepError(f"shard must be i/N with 0 <= i < N, got {i}/{N}")
    per = math.ceil(n_points / N)
    return min(i * per, n_points), min((i + 1) * per, n_points)


def _sweep_hash(experiment: Experiment, grid, *extra: str) -> str:
    """Short hash of the experiment name, the grid and `extra` strings."""
    h = hashlib.sha256()
    h.update(experiment.name.encode())
    for k, v in grid.items():
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def _attr_value(v):
    """A value NetCDF/Zarr attributes can hold (numbers and strings; anything else as repr)."""
    return v if isinstance(v, str | int | float) and not isinstance(v, bool) else repr(v)


# --------------------------------------------------------------------------------------------
# Devices and chunks


def _device_mesh(devices):
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise SweepError("no devices given")
    return jax.sharding.Mesh(np.array(devices), ("batch",)), devices


#: On CPU a chunk larger than this per device is slower (measured on the single-neuron sweep,
#: 4096 points, 2 cores: 38k traj/s at 1024 per call vs 25k at 4096): the stacked solve's
#: state then falls out of cache and one stiff member sets the step for more others.
CPU_MAX_CHUNK_PER_DEVICE = 1024


def _auto_chunk(
    experiment: Experiment, n_points: int, n_dev: int, budget: float, platform: str = "cpu"
) -> int:
    """Points per chunk: `budget` bytes of device memory per device, divided by the bytes one
    grid point needs, times the device count (a multiple of it, at most the padded grid); on
    CPU at most `CPU_MAX_CHUNK_PER_DEVICE` per device.

    Bytes per point come from XLA's memory analysis of the compiled program on a small probe
    chunk (`_measured_bytes_per_point`); that costs one extra compile, so it is only done when
    the experiment's rough `bytes_per_point` says the grid does not fit in one chunk anyway.
    """

    def fit(bytes_per_point: float) -> int:
        per_dev = max(1, int(budget // max(bytes_per_point, 1)))
        if platform == "cpu":
            per_dev = min(per_dev, CPU_MAX_CHUNK_PER_DEVICE)
        chunk = min(per_dev * n_dev, n_points)
        return max(n_dev, math.ceil(chunk / n_dev) * n_dev)

    chunk = fit(experiment.bytes_per_point)
    if chunk >= n_points:  # one chunk holds everything: no probe compile needed
        return chunk
    measured = _measured_bytes_per_point(experiment)
    return chunk if measured is None else fit(measured)


_PROBE_POINTS = 64  # per-point bytes at 8 points underestimate larger chunks (~15%); 64: <1%
_probe_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _measured_bytes_per_point(experiment: Experiment) -> float | None:
    """Device bytes per grid point of `experiment.jitted`, from XLA's compiled memory analysis
    (temp + argument + output) of one `_PROBE_POINTS`-point chunk on the default device, or
    None where the backend gives no analysis. Cached per experiment and dtype. The probe's
    size does not change the compile time; `single-neuron` needs 19.47 KB/point at 64 points
    and 19.44 KB/point at 4096 (float64, CPU)."""
    dtype = jnp.result_type(float)
    per_exp = _probe_cache.setdefault(experiment, {})
    if dtype in per_exp:
        return per_exp[dtype]
    spec = {
        k: jax.ShapeDtypeStruct((_PROBE_POINTS,), _axis_dtype(experiment, k))
        for k in experiment.axes
    }
    try:
        stats = experiment.jitted.lower(spec).compile().memory_analysis()
        total = sum(
            int(getattr(stats, f"{f}_size_in_bytes", 0) or 0)
            for f in ("temp", "argument", "output")
        )
        total -= int(getattr(stats, "alias_size_in_bytes", 0) or 0)
    except Exception:  # noqa: BLE001 - no analysis on this backend: use the rough estimate
        stats, total = None, 0
    measured = total / _PROBE_POINTS if stats is not None and total > 0 else None
    per_exp[dtype] = measured
    return measured


_fn_experiments: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _as_experiment(experiment_or_fn, grid) -> Experiment:
    if isinstance(experiment_or_fn, Experiment):
        return experiment_or_fn
    if isinstance(experiment_or_fn, str):
        from .experiments import get_experiment

        return get_experiment(experiment_or_fn)
    if callable(experiment_or_fn):
        # A plain per-point function: its axes are the grid's. One Experiment per (function,
        # axis names), so repeated sweeps of the same function reuse its compiled program.
        if not grid:
            raise SweepError("sweeping a plain function needs a grid naming all its arguments")
        names = tuple(grid)
        per_fn = _fn_experiments.setdefault(experiment_or_fn, {})
        if names not in per_fn:
            per_fn[names] = sweep_function(experiment_or_fn, grid)
        return per_fn[names]
    raise TypeError(
        f"`experiment_or_fn` must be an Experiment, a name or a function, got "
        f"{type(experiment_or_fn).__name__}."
    )


def sweep_function(
    fn: Callable[..., Mapping[str, Any]],
    axes: Mapping[str, Sequence],
    *,
    dims: Mapping[str, tuple[str, ...]] | None = None,
    coords: Mapping[str, Any] | None = None,
    name: str | None = None,
    integer_axes=(),
) -> Experiment:
    """Make an `Experiment` from a per-point function `fn(**scalars) -> dict of arrays`.

    `fn` is `jax.vmap`-ed over the grid points. Trailing dimensions are named from `dims`
    (default `"<var>_dim<i>"`).
    """
    names = list(axes)
    dims = dict(dims or {})

    def run(points):
        return jax.vmap(lambda p: dict(fn(**p)))({k: points[k] for k in names})

    return Experiment(
        name=name or getattr(fn, "__name__", "function"),
        run=run,
        axes=axes,
        dims=dims,
        coords=coords or {},
        integer_axes=frozenset(integer_axes),
    )


# --------------------------------------------------------------------------------------------
# The sweep


def sweep(
    experiment_or_fn: Experiment | str | Callable,
    grid: Mapping[str, Sequence] | None = None,
    *,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    memory_budget: float = 2**30,
    max_chunks: int | None = None,
) -> xr.Dataset:
    """Run an experiment over a grid of hyperparameters; return an `xarray.Dataset`.

    **Arguments:**

    - `experiment_or_fn`: an `Experiment`, a registered name (`"single-neuron"`, …), or a plain
      per-point function `fn(**scalars) -> dict of arrays` whose arguments are the grid's axes
      (it is `jax.vmap`-ed; use `sweep_function` to name its output dimensions).
    - `grid`: axis name -> 1-D values; axes not given keep the experiment's defaults. Unknown
      axes and empty axes raise `SweepError` (a `ValueError`).
    - `chunk_size`: points per compiled call; default from `memory_budget` and the experiment's
      `bytes_per_point`. Rounded up to a multiple of the device count.
    - `devices`: devices of the 1-D mesh the chunks are sharded over (default: all local
      devices of the default backend).
    - `progress`: show a progress bar (chunks done, ETA).
    - `out`: optional `.nc` (written at the end; on an interrupt the finished chunks are written
      with `status = -1` for the rest) or `.zarr` (written chunk by chunk, resumable).
    - `resume`: continue a partly written Zarr store instead of starting over.
    - `force`: overwrite an existing `out`.
    - `shard`: `(i, N)`: run only the i-th of N contiguous slices of the flattened grid (for
      array jobs); the result is flat (dimension `point`); join shards with `merge`.
    - `max_chunks`: stop after this many chunks (for testing interrupts); the store stays
      resumable.

    **Returns:** the Dataset: one coordinate per grid axis plus the experiment's trailing
    dimensions, a variable per recorded quantity, `status` (int8, see attrs), and attrs
    recording experiment, solver, tolerances, dtype, versions and device kind. A shard or an
    unfinished sweep returns the flat layout.
    """
    experiment = _as_experiment(experiment_or_fn, grid)
    grid = make_grid(experiment, grid)
    points = _flat_points(grid)
    n_total = next(iter(points.values())).size
    lo, hi = _shard_range(n_total, shard)
    n_points = hi - lo
    if n_points == 0:
        raise SweepError(f"shard {shard} of a {n_total}-point grid is empty")
    mesh, devs = _device_mesh(devices)
    n_dev = len(devs)
    if chunk_size is None:
        chunk = _auto_chunk(experiment, n_points, n_dev, memory_budget, devs[0].platform)
    else:
        if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
            raise SweepError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        chunk = math.ceil(int(chunk_size) / n_dev) * n_dev
    if experiment.max_chunk_per_device is not None:
        chunk = min(chunk, experiment.max_chunk_per_device * n_dev)
    n_chunks = math.ceil(n_points / chunk)

    out_path = None if out is None else os.fspath(out)
    kind = None
    if out_path is not None:
        kind = _out_kind(out_path)
        if os.path.exists(out_path) and not (force or (resume and kind == "zarr")):
            raise SweepError(f"{out_path} exists; use force to overwrite or resume to continue")
        if resume and kind != "zarr":
            raise SweepError("resume works with a .zarr output only")
        parent = os.path.dirname(os.path.abspath(out_path)) or "."
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise SweepError(f"cannot write {out_path}: {parent} is not a writable directory")

    attrs = _attrs(experiment, grid, shard, n_dev, devs)
    # Identifies a resumable store: the grid, the shard and the experiment's settings.
    settings = json.dumps({k: _attr_value(v) for k, v in experiment.attrs.items()}, sort_keys=True)
    key = _sweep_hash(experiment, grid, repr(shard), settings)
    attrs["grid_hash"] = key
    attrs["chunk_size"] = chunk
    flat_coords = {k: v[lo:hi] for k, v in points.items()}

    # Template of the outputs, from one abstract evaluation (no compile).
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    spec = experiment.jitted.eval_shape(
        {
            k: jax.ShapeDtypeStruct((chunk,), _axis_dtype(experiment, k), sharding=sharding)
            for k in grid
        }
    )
    done = np.zeros(n_chunks, bool)
    buffers = {
        name: np.full((n_points,) + s.shape[1:], _fill(s.dtype), np.dtype(s.dtype))
        for name, s in spec.items()
    }
    # `status` is always present: -1 until a point has run (experiments may report their own).
    buffers["status"] = np.full((n_points,), STATUS_NOT_RUN, np.int8)

    store = None
    if kind == "zarr":
        store = _ZarrStore(
            out_path,
            experiment,
            flat_coords,
            buffers,
            attrs,
            key,
            chunk,
            resume=resume,
            force=force,
        )
        done = store.done
        store.load_into(buffers, done, chunk)

    todo = [c for c in range(n_chunks) if not done[c]]
    if max_chunks is not None:
        todo = todo[:max_chunks]
    bar = _progress(progress, n_chunks, int(done.sum()), experiment.name)
    try:
        for c in todo:
            a, b = c * chunk, min((c + 1) * chunk, n_points)
            batch = {}
            for k, v in flat_coords.items():
                vals = v[a:b]
                if b - a < chunk:  # pad with the last point (valid values, dropped after)
                    vals = np.concatenate([vals, np.repeat(vals[-1:], chunk - (b - a))])
                batch[k] = _global_array(np.asarray(vals, _axis_dtype(experiment, k)), sharding)
            res = experiment.jitted(batch)
            res = {name: _to_host(v)[: b - a] for name, v in res.items()}
            for name, v in res.items():
                buffers[name][a:b] = v
            if "status" not in res:
                buffers["status"][a:b] = 0
            done[c] = True
            if store is not None:
                store.write_chunk(buffers, c, a, b)
            if bar is not None:
                bar.update(1)
    except BaseException:
        if kind == "nc":
            _flat_dataset(experiment, flat_coords, buffers, {**attrs, "complete": 0}).to_netcdf(
                out_path, engine="h5netcdf"
            )
        raise
    finally:
        if bar is not None:
            bar.close()

    complete = bool(done.all())
    attrs["complete"] = int(complete)
    flat = _flat_dataset(experiment, flat_coords, buffers, attrs)
    if store is not None:
        store.finish(complete)
    if shard is not None or not complete:
        result = flat
    else:
        result = _unflatten(flat, grid)
    if kind == "nc":
        tmp = out_path + ".tmp"
        result.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, out_path)
    return result


# --------------------------------------------------------------------------------------------
# Dataset assembly


def _global_array(values: np.ndarray, sharding) -> jax.Array:
    """Place a host array (identical on every process) on the mesh, sharded along the batch.

    Works for one process and for multi-process runs (`jax.distributed.initialize`), where each
    process provides the slices of its own devices."""
    return jax.make_array_from_callback(values.shape, sharding, lambda idx: values[idx])


def _to_host(x: jax.Array) -> np.ndarray:
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _axis_dtype(experiment, name):
    if name in experiment.integer_axes:
        return jnp.int32
    return jnp.result_type(float)


def _fill(dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return np.nan
    if dtype == np.bool_:
        return False
    return -1


def _dims_for(experiment, name, shape):
    trailing = tuple(experiment.dims.get(name, ()))
    if len(trailing) != len(shape):
        trailing = tuple(f"{name}_dim{i}" for i in range(len(shape)))
    return trailing


def _flat_dataset(experiment, flat_coords, buffers, attrs) -> xr.Dataset:
    data_vars = {}
    for name, arr in buffers.items():
        dims = ("point",) + _dims_for(experiment, name, arr.shape[1:])
        data_vars[name] = (dims, arr)
    coords = {k: ("point", v) for k, v in flat_coords.items()}
    used = {d for v in data_vars.values() for d in v[0]}
    for k, v in experiment.coords.items():
        if k in used:
            coords[k] = (k, v)
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds["status"].attrs["meaning"] = _STATUS_MEANING
    ds.attrs["axes"] = ",".join(flat_coords)
    return ds


def _unflatten(flat: xr.Dataset, grid: Mapping[str, np.ndarray]) -> xr.Dataset:
    shape = tuple(v.size for v in grid.values())
    data_vars = {}
    for name, da in flat.data_vars.items():
        dims = tuple(grid) + da.dims[1:]
        data_vars[name] = (dims, da.values.reshape(shape + da.shape[1:]), da.attrs)
    coords = {k: (k, v) for k, v in grid.items()}
    for k in flat.coords:
        if k not in grid and k != "point":
            coords[k] = flat.coords[k]
    return xr.Dataset(data_vars, coords=coords, attrs=dict(flat.attrs))


def _grid_from_flat(flat: xr.Dataset) -> dict[str, np.ndarray] | None:
    """The sweep's full grid (from attrs) if `flat` covers it exactly once, else None."""
    if "grid" not in flat.attrs:
        return None
    grid = {k: np.asarray(v) for k, v in json.loads(flat.attrs["grid"]).items()}
    if int(np.prod([g.size for g in grid.values()])) != flat.sizes["point"]:
        return None
    expected = _flat_points(grid)
    order = _grid_order(flat, grid)
    for k, v in expected.items():
        if not np.array_equal(flat[k].values[order], v):
            return None
    return grid


def _grid_order(flat: xr.Dataset, grid) -> np.ndarray:
    """Permutation sorting the flat points into C order of the grid."""
    idx = [np.searchsorted(np.sort(v), flat[k].values) for k, v in grid.items()]
    ranks = [np.argsort(np.argsort(v)) for v in grid.values()]
    pos = [r[i.clip(0, len(r) - 1)] for r, i in zip(ranks, idx, strict=True)]
    return np.lexsort(list(reversed(pos)))


def load(path: str | os.PathLike) -> xr.Dataset:
    """Open a sweep written by `sweep(..., out=path)` (`.nc` or `.zarr`) as the grid-shaped
    Dataset when the grid is complete, else in the flat `point` layout."""
    path = os.fspath(path)
    kind = _out_kind(path)
    if kind == "nc":
        ds = xr.load_dataset(path, engine="h5netcdf")
    else:
        ds = xr.open_zarr(path, consolidated=False).load()
        ds = ds.drop_vars([v for v in ("chunk_done",) if v in ds])
    if "point" in ds.dims:
        if int(ds.attrs.get("complete", 0)) and ds.attrs.get("shard", "none") == "none":
            grid = _grid_from_flat(ds)
            if grid is not None:
                return _unflatten(ds.isel(point=_grid_order(ds, grid)), grid)
    return ds


def merge(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, force: bool = False
) -> xr.Dataset:
    """Join shard outputs of one sweep (`shard=(i, N)` for all i) into the grid Dataset."""
    if not paths:
        raise SweepError("merge needs at least one input")
    parts = [load(p) for p in paths]
    hashes = {p.attrs.get("grid_id") for p in parts}
    if len(hashes) != 1:
        raise SweepError("these files come from different sweeps (grid ids differ)")
    flat = (
        xr.concat(
            parts, dim="point", data_vars="all", coords="different", compat="equals", join="outer"
        )
        if len(parts) > 1
        else parts[0]
    )
    attrs = dict(parts[0].attrs)
    attrs["shard"] = "none"
    attrs["complete"] = int(all(int(p.attrs.get("complete", 0)) for p in parts))
    flat.attrs = attrs
    grid = _grid_from_flat(flat)
    if grid is None:
        raise SweepError("the shards do not cover the whole grid (missing or repeated shards)")
    result = _unflatten(flat.isel(point=_grid_order(flat, grid)), grid)
    if out is not None:
        out = os.fspath(out)
        if os.path.exists(out) and not force:
            raise SweepError(f"{out} exists; use force to overwrite")
        _write(result, out)
    return result


def _write(ds: xr.Dataset, path: str):
    if _out_kind(path) == "nc":
        ds.to_netcdf(path, engine="h5netcdf")
    else:
        ds.to_zarr(path, mode="w", consolidated=False)


def _out_kind(path: str) -> str:
    p = path.rstrip("/")
    if p.endswith(".nc"):
        return "nc"
    if p.endswith(".zarr"):
        return "zarr"
    raise SweepError(f"output {path!r} must end in .nc or .zarr")


def _attrs(experiment, grid, shard, n_dev, devs) -> dict[str, Any]:
    from . import __version__

    attrs = {
        "experiment": experiment.name,
        "jaxdyn_version": __version__,
        "jax_version": jax.__version__,
        "dtype": str(jnp.result_type(float)),
        "device_kind": str(devs[0].device_kind),
        "platform": str(devs[0].platform),
        "n_devices": n_dev,
        "shard": "none" if shard is None else f"{shard[0]}/{shard[1]}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    for k, v in experiment.attrs.items():
        attrs[k] = _attr_value(v)
    attrs["grid_id"] = _sweep_hash(experiment, grid)  # shared by all shards of one sweep
    attrs["grid"] = json.dumps({k: np.asarray(v).tolist() for k, v in grid.items()})
    return attrs


def _progress(progress: bool, total: int, initial: int, name: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"{name} chunks", unit="chunk")


# --------------------------------------------------------------------------------------------
# Zarr store, written chunk by chunk


class _ZarrStore:
    def __init__(
        self, path, experiment, flat_coords, buffers, attrs, key, chunk, *, resume, force
    ):
        self.path = path
        self.key = key
        n_chunks = math.ceil(next(iter(flat_coords.values())).size / chunk)
        if resume and os.path.exists(path):
            existing = xr.open_zarr(path, consolidated=False)
            if (
                existing.attrs.get("grid_hash") != key
                or int(existing.attrs.get("chunk", -1)) != chunk
            ):
                raise SweepError(
                    f"{path} holds a different sweep (grid, experiment, shard or chunk size "
                    "differ); use force to overwrite"
                )
            self.done = existing["chunk_done"].values.astype(bool).copy()
            self.dims = {name: existing[name].dims for name in buffers}
            self._existing = existing
            return
        if os.path.exists(path):
            if not force:
                raise SweepError(f"{path} exists; use force to overwrite or resume to continue")
            import shutil

            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        ds = _flat_dataset(
            experiment, flat_coords, buffers, {**attrs, "chunk": chunk, "complete": 0}
        )
        ds["chunk_done"] = ("chunk", np.zeros(n_chunks, np.int8))
        encoding = {name: {"chunks": (chunk,) + ds[name].shape[1:]} for name in buffers}
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=False)
        self.done = np.zeros(n_chunks, bool)
        self.dims = {name: ds[name].dims for name in buffers}
        self._existing = None

    def load_into(self, buffers, done, chunk):
        if self._existing is None:
            return
        n = next(iter(buffers.values())).shape[0]
        for c in np.flatnonzero(done):
            a, b = c * chunk, min((c + 1) * chunk, n)
            for name in buffers:
                buffers[name][a:b] = self._existing[name].values[a:b]

    def write_chunk(self, buffers, c, a, b):
        # Data first, then the chunk's done flag: a kill between the two only redoes the chunk.
        ds = xr.Dataset({name: (self.dims[name], buffers[name][a:b]) for name in buffers})
        ds.to_zarr(self.path, region={"point": slice(a, b)}, consolidated=False)
        flag = xr.Dataset({"chunk_done": ("chunk", np.ones(1, np.int8))})
        flag.to_zarr(self.path, region={"chunk": slice(c, c + 1)}, consolidated=False)

    def finish(self, complete: bool):
        import zarr

        root = zarr.open_group(self.path, mode="r+")
        root.attrs["complete"] = int(complete)
