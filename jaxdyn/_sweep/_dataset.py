"""Dataset assembly: attrs, the flat (`point`) layout and the grid layout, and reading sweeps
back (`load`) or joining shards (`merge`).

A sweep keeps its results as flat host buffers (one row per grid point of its shard). The
flat Dataset has dimension `point` and one coordinate variable per axis; the grid Dataset
has one dimension per axis. Both carry the experiment's trailing dimensions (`t`, …).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._results import status_meaning
from .._version import __version__
from ._errors import SweepError
from ._experiment import Experiment
from ._plan import flat_points

__all__ = [
    "attr_value",
    "dims_for",
    "fill_value",
    "flat_dataset",
    "grid_dataset",
    "identity_keys",
    "load",
    "merge",
    "out_kind",
    "sweep_attrs",
    "sweep_hash",
    "write",
]


def out_kind(path: str) -> str:
    """The output format a path names: `"nc"` (NetCDF) or `"zarr"`.

    **Arguments:**

    - `path`: a file or store path.

    **Returns:**

    `"nc"` or `"zarr"`.

    **Raises:**

    `SweepError` (argument `out`) for any other extension.
    """
    p = path.rstrip("/")
    if p.endswith(".nc"):
        return "nc"
    if p.endswith(".zarr"):
        return "zarr"
    raise SweepError(f"output {path!r} must end in .nc or .zarr", argument="out")


# --------------------------------------------------------------------------------------------
# Attrs


def attr_value(v: Any) -> Any:
    """A value NetCDF/Zarr attributes can hold: numbers and strings as they are, anything
    else (bools included) as its `repr`.

    **Arguments:**

    - `v`: an attribute value.

    **Returns:**

    `v` or `repr(v)`.
    """
    return v if isinstance(v, str | int | float) and not isinstance(v, bool) else repr(v)


def sweep_hash(experiment: Experiment, grid: Mapping[str, np.ndarray], *extra: str) -> str:
    """Short hash of the experiment name, the grid and `extra` strings (`grid_id`,
    `grid_hash`).

    **Arguments:**

    - `experiment`: the experiment (its name is hashed).
    - `grid`: axis name -> values.
    - `extra`: more strings to hash (shard, settings).

    **Returns:**

    16 hex digits.
    """
    h = hashlib.sha256()
    h.update(experiment.name.encode())
    for k, v in grid.items():
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def identity_keys(experiment: Experiment) -> tuple[str, ...]:
    """The attrs that identify a sweep's results (what `grid_hash` covers): experiment, grid,
    shard, dtype, jaxdyn version and every setting of the experiment. A store is resumed only
    when all of them (and the chunk size) match.

    **Arguments:**

    - `experiment`: the experiment (its settings are its `attrs`).

    **Returns:**

    The attribute names.
    """
    return (
        "experiment",
        "grid",
        "shard",
        "dtype",
        "jaxdyn_version",
        "block_size",
        *experiment.attrs,
    )


def sweep_attrs(
    experiment: Experiment,
    grid: Mapping[str, np.ndarray],
    shard: tuple[int, int] | None,
    devices: Sequence[Any],
    chunk: int,
    block: int,
    block_note: str = "",
) -> dict[str, Any]:
    """The Dataset attrs of a sweep: experiment, versions, dtype, devices, shard, creation
    time, the experiment's own attrs, `grid_id` (shared by all shards of one sweep), `grid`
    (JSON), `grid_hash` (identifies a resumable store: grid, shard, settings, dtype and jaxdyn
    version, see `identity_keys`), `chunk_size`, `block_size` and `reproducibility` (how a
    point's result depends on the run).

    **Arguments:**

    - `experiment`: the experiment.
    - `grid`: the full grid.
    - `shard`: `(i, N)` or `None`.
    - `devices`: the mesh's devices.
    - `chunk`: points per call.
    - `block`: points per block (`jaxdyn._sweep._plan.Plan`).
    - `block_note`: why the block differs from the experiment's default, if it does.

    **Returns:**

    A dict of attribute values (numbers and strings).
    """
    attrs = {
        "experiment": experiment.name,
        "jaxdyn_version": __version__,
        "jax_version": jax.__version__,
        "dtype": str(jnp.result_type(float)),
        "device_kind": str(devices[0].device_kind),
        "platform": str(devices[0].platform),
        "n_devices": len(devices),
        "shard": "none" if shard is None else f"{shard[0]}/{shard[1]}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    for k, v in experiment.attrs.items():
        attrs[k] = attr_value(v)
    attrs["grid_id"] = sweep_hash(experiment, grid)  # shared by all shards of one sweep
    attrs["grid"] = json.dumps({k: np.asarray(v).tolist() for k, v in grid.items()})
    settings = json.dumps({k: attr_value(v) for k, v in experiment.attrs.items()}, sort_keys=True)
    attrs["grid_hash"] = sweep_hash(
        experiment, grid, repr(shard), settings, attrs["dtype"], attrs["jaxdyn_version"]
    )
    attrs["chunk_size"] = chunk
    attrs["block_size"] = block
    attrs["reproducibility"] = (
        f"a point's result depends only on its block of {block} consecutive grid points "
        "(not on chunk size, device count or shard)" + (f"; {block_note}" if block_note else "")
    )
    return attrs


# --------------------------------------------------------------------------------------------
# Layouts


def fill_value(dtype: Any) -> Any:
    """What a not-yet-computed point holds: NaN for floats, `False` for bools, -1 otherwise.

    **Arguments:**

    - `dtype`: the variable's dtype.

    **Returns:**

    The fill value.
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return np.nan
    if dtype == np.bool_:
        return False
    return -1


def dims_for(experiment: Experiment, name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """The trailing (non-`point`) dimension names of variable `name`: the experiment's `dims`
    entry, or `"<name>_dim<i>"` where it declares none (or a different number).

    **Arguments:**

    - `experiment`: the experiment.
    - `name`: the variable.
    - `shape`: its trailing shape.

    **Returns:** the dimension names.
    """
    trailing = tuple(experiment.dims.get(name, ()))
    if len(trailing) != len(shape):
        trailing = tuple(f"{name}_dim{i}" for i in range(len(shape)))
    return trailing


def flat_dataset(
    experiment: Experiment,
    points: Mapping[str, np.ndarray],
    buffers: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The flat layout: dimension `point`, one coordinate variable per axis.

    **Arguments:**

    - `experiment`: the experiment (trailing dimension names and coordinates).
    - `points`: axis name -> value at every point.
    - `buffers`: variable name -> array with leading axis `point`.
    - `attrs`: Dataset attrs.

    **Returns:**

    The Dataset; its `status` has the `meaning` attr (`jaxdyn.status_meaning()`) and its
    attrs an `axes` entry (comma-separated axis names).
    """
    data_vars = {}
    for name, arr in buffers.items():
        dims = ("point",) + dims_for(experiment, name, arr.shape[1:])
        data_vars[name] = (dims, arr)
    coords = {k: ("point", v) for k, v in points.items()}
    used = {d for v in data_vars.values() for d in v[0]}
    for k, v in experiment.coords.items():
        if k in used:
            coords[k] = (k, v)
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs))
    ds["status"].attrs["meaning"] = status_meaning()
    ds.attrs["axes"] = ",".join(points)
    return ds


def grid_dataset(flat: xr.Dataset, grid: Mapping[str, np.ndarray]) -> xr.Dataset:
    """The grid layout of a flat Dataset whose points are the whole grid in C order.

    **Arguments:**

    - `flat`: a flat Dataset (dimension `point`).
    - `grid`: axis name -> values.

    **Returns:**

    The Dataset with one dimension per axis (then the trailing dimensions); lazy
    (dask-backed) variables stay lazy.
    """
    shape = tuple(v.size for v in grid.values())
    data_vars: dict[Any, Any] = {}
    for name, da in flat.data_vars.items():
        dims = tuple(grid) + da.dims[1:]
        data_vars[name] = (dims, da.data.reshape(shape + da.shape[1:]), da.attrs)
    coords: dict[Any, Any] = {k: (k, v) for k, v in grid.items()}
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
    expected = flat_points(grid)
    order = _grid_order(flat, grid)
    for k, v in expected.items():
        if not np.array_equal(flat[k].values[order], v):
            return None
    return grid


def _grid_order(flat: xr.Dataset, grid: Mapping[str, np.ndarray]) -> np.ndarray:
    """Permutation sorting the flat points into C order of the grid."""
    idx = [np.searchsorted(np.sort(v), flat[k].values) for k, v in grid.items()]
    ranks = [np.argsort(np.argsort(v)) for v in grid.values()]
    pos = [r[i.clip(0, len(r) - 1)] for r, i in zip(ranks, idx, strict=True)]
    return np.lexsort(list(reversed(pos)))


# --------------------------------------------------------------------------------------------
# Files


def write(ds: xr.Dataset, path: str) -> None:
    """Write a Dataset to `.nc` (h5netcdf) or `.zarr` (overwriting).

    **Arguments:**

    - `ds`: the Dataset.
    - `path`: output path (its extension picks the format).

    **Returns:** `None`.
    """
    if out_kind(path) == "nc":
        ds.to_netcdf(path, engine="h5netcdf")
    else:
        ds = ds.copy()
        for v in ds.variables.values():
            v.encoding = {}  # the source store's chunking does not fit the new layout
        ds.to_zarr(path, mode="w", consolidated=True)


def load(path: str | os.PathLike) -> xr.Dataset:
    """Open a sweep written by `sweep(..., out=path)` (`.nc` or `.zarr`).

    **Arguments:**

    - `path`: the file or store.

    **Returns:**

    The grid-shaped Dataset when the grid is complete, else the flat `point` layout (a
    shard, or an unfinished sweep whose missing points have `status` `RESULTS.not_run`).
    A `.nc` file is read into memory; a `.zarr` store is opened **lazily** (dask-backed
    variables: nothing but the axis coordinates is read until you compute or plot), so a
    store larger than the host's memory can be opened and reduced.

    **Raises:**

    `SweepError` when `path` does not exist or is neither `.nc` nor `.zarr`.
    """
    path = os.fspath(path)
    kind = out_kind(path)
    if not os.path.exists(path):
        raise SweepError(f"{path} does not exist", argument="path")
    if kind == "nc":
        ds = xr.load_dataset(path, engine="h5netcdf")
    else:
        with warnings.catch_warnings():  # zarr 3: consolidated metadata "not in the spec"
            warnings.simplefilter("ignore")
            ds = xr.open_zarr(path, consolidated=None)
        ds = ds.drop_vars([v for v in ("chunk_done",) if v in ds])
        for k in list(ds.coords):  # the axis values (small) in memory, for selection and layout
            ds[k] = ds[k].load()
    if "point" in ds.dims:
        if int(ds.attrs.get("complete", 0)) and ds.attrs.get("shard", "none") == "none":
            grid = _grid_from_flat(ds)
            if grid is not None:
                order = _grid_order(ds, grid)
                if not np.array_equal(order, np.arange(order.size)):
                    ds = ds.isel(point=order)
                return grid_dataset(ds, grid)
    return ds


def merge(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    force: bool = False,
) -> xr.Dataset:
    """Join the shard outputs of one sweep (`shard=(i, N)` for every i) into the grid Dataset.

    **Arguments:**

    - `paths`: the shard files/stores (`.nc` or `.zarr`), in any order.
    - `out`: optional `.nc` or `.zarr` path to write the merged Dataset to.
    - `force`: overwrite an existing `out`.

    **Returns:**

    The grid-shaped Dataset (attrs of the first shard, `shard="none"`, `complete` = all
    shards complete).

    **Raises:**

    `SweepError` when a path is missing, the files come from different sweeps, the shards do
    not cover the grid exactly once, or `out` exists without `force`.
    """
    if not paths:
        raise SweepError("merge needs at least one input", argument="paths")
    if out is not None:
        out_kind(os.fspath(out))
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
    result = grid_dataset(flat.isel(point=_grid_order(flat, grid)), grid)
    if out is not None:
        out = os.fspath(out)
        if os.path.exists(out) and not force:
            raise SweepError(f"{out} exists; use force to overwrite", argument="out")
        write(result, out)
    return result
