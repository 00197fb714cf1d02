"""Zarr output (`.zarr`): a flat store written chunk by chunk, resumable."""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..._results import RESULTS, result_index, status_meaning
from .._dataset import dims_for, fill_value, identity_keys, load
from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan
from .base import (
    AbstractSink,
    OutputLock,
    RowSpec,
    check_writable,
    clean_leftovers,
    temp_sibling,
)

__all__ = ["ZarrSink"]


class ZarrSink(AbstractSink):
    """A flat Zarr store (dimension `point`, one coordinate variable per axis, and a
    `chunk_done` flag per chunk), written chunk by chunk: each chunk's rows go straight to
    disk, so host memory does not grow with the grid (no whole-grid buffer is ever
    allocated; coordinates and fill values are written in bounded slices when the store is
    created). `finish` returns the store opened lazily (`jaxdyn.load_sweep`).

    The store is created under a temporary sibling name (`<path>.tmp-<host>-<pid>`) and
    renamed into place only once its metadata, coordinates and `chunk_done` array are
    complete, so a sweep killed at any instant leaves either no store, or one that resumes.
    (Temporary siblings left by killed processes are removed by the next sweep to the same
    path.) Each chunk's data is written before its `chunk_done` flag, so a kill between the
    two only redoes that chunk. With `resume`, an existing store of the *same* sweep is
    reopened and its finished chunks are kept: same experiment, grid, shard, settings, dtype,
    jaxdyn version (all in `grid_hash`), block and chunk size, and the same variables with the
    same shapes and dtypes; anything else is refused, naming what differs. A complete store's
    metadata is consolidated. The path is locked (`OutputLock`) while the sweep runs.

    **Fields:**

    - `path`: the `.zarr` path.
    """

    def __init__(self, path: str, *, resume: bool = False, force: bool = False):
        """**Arguments:**

        - `path`: the `.zarr` path.
        - `resume`: continue an existing store of the same sweep.
        - `force`: overwrite an existing store (when not resuming).

        **Raises:** `SweepError` (argument `out`) if the store exists without `force` or
        `resume`, if its directory is not writable, or if another sweep is writing it.
        """
        if os.path.lexists(path) and not (force or resume):
            raise SweepError(
                f"{path} exists; use force to overwrite or resume to continue", argument="out"
            )
        check_writable(path)
        self._lock = OutputLock(path)
        self.path = path
        self.resume = resume
        self.force = force

    def prepare(
        self,
        experiment: Experiment,
        plan: Plan,
        spec: RowSpec,
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
        """Create the store (atomically), or reopen it to resume.

        **Arguments:**

        - `experiment`: the experiment.
        - `plan`: the sweep's plan.
        - `spec`: variable name -> (trailing shape, dtype).
        - `attrs`: the Dataset attrs (`grid_hash` identifies the sweep).

        **Returns:**

        The `bool` array of chunks already done.

        **Raises:** `SweepError` (argument `out`) when resuming a store of a different sweep
        or one that cannot be read; `OSError` when the store cannot be created.
        """
        super().prepare(experiment, plan, spec, attrs)
        path = self.path
        assert path is not None
        clean_leftovers(path)
        self._dims = {
            name: ("point",) + dims_for(experiment, name, shape)
            for name, (shape, _) in spec.items()
        }
        if self.resume and os.path.lexists(path):
            return self._reopen(experiment, plan, attrs)
        tmp = temp_sibling(path)
        try:
            self._create(tmp)
            _move_into_place(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return np.zeros(plan.n_chunks, bool)

    def _create(self, tmp: str) -> None:
        import dask.array as da

        plan, exp, spec = self._plan, self._experiment, self._spec
        n, chunk = plan.n_points, plan.chunk
        data_vars: dict[str, Any] = {}
        encoding: dict[str, Any] = {}
        for name, (shape, dtype) in spec.items():
            data_vars[name] = (
                self._dims[name],
                da.full((n,) + shape, fill_value(dtype), dtype=dtype, chunks=(chunk,) + shape),
            )
            encoding[name] = {"chunks": (chunk,) + shape}
        coords: dict[str, Any] = {
            k: ("point", da.zeros(n, dtype=v.dtype, chunks=chunk)) for k, v in plan.grid.items()
        }
        encoding.update({k: {"chunks": (chunk,)} for k in plan.grid})
        used = {d for dims in self._dims.values() for d in dims}
        for k, v in exp.coords.items():
            if k in used:
                coords[k] = (k, v)
        attrs = {**self._attrs, "chunk": chunk, "complete": 0}
        ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
        ds["status"].attrs["meaning"] = status_meaning()
        ds.attrs["axes"] = ",".join(plan.grid)
        ds["chunk_done"] = ("chunk", np.zeros(plan.n_chunks, np.int8))
        # Metadata, trailing coordinates and `chunk_done` only: the lazy arrays are not computed.
        ds.to_zarr(tmp, mode="w", compute=False, encoding=encoding, consolidated=False)
        # Axis coordinates and the fill of non-float variables (`status` = not_run), in
        # bounded slices. Float variables read back as NaN without being written.
        fill = [name for name, (_, dt) in spec.items() if not np.issubdtype(dt, np.floating)]
        row_bytes = 8 * len(plan.grid) + sum(
            math.prod(spec[name][0]) * np.dtype(spec[name][1]).itemsize for name in fill
        )
        step = max(chunk, (_SLICE_BYTES // max(row_bytes, 1)) // chunk * chunk)
        not_run = result_index(RESULTS.not_run)
        for a in range(0, n, step):
            b = min(a + step, n)
            part = xr.Dataset(
                {
                    name: (
                        self._dims[name],
                        np.full(
                            (b - a,) + spec[name][0],
                            not_run if name == "status" else fill_value(spec[name][1]),
                            spec[name][1],
                        ),
                    )
                    for name in fill
                },
                coords={k: ("point", v) for k, v in plan.rows(a, b).items()},
            )
            part.to_zarr(tmp, region={"point": slice(a, b)}, consolidated=False)

    def _reopen(self, experiment: Experiment, plan: Plan, attrs: Mapping[str, Any]) -> np.ndarray:
        path = self.path
        assert path is not None
        try:
            existing = xr.open_zarr(path, consolidated=False)
            flags = existing["chunk_done"]
        except Exception as e:  # noqa: BLE001 - any unreadable store gets the same answer
            raise SweepError(
                f"{path} is not a readable sweep store ({type(e).__name__}: {e}); "
                "use force to start over",
                argument="out",
            ) from None
        now = {**attrs, "chunk": plan.chunk}
        differ = [
            k
            for k in (*identity_keys(experiment), "chunk")
            if not _same(existing.attrs.get(k), now.get(k))
        ]
        if existing.attrs.get("grid_hash") != attrs["grid_hash"] and not differ:
            differ = ["grid_hash"]
        for name, (shape, dtype) in self._spec.items():
            full = (plan.n_points,) + shape
            if name not in existing:
                differ.append(f"variable {name} (missing)")
            elif existing[name].shape != full or existing[name].dtype != dtype:
                differ.append(
                    f"variable {name} ({existing[name].dtype}{list(existing[name].shape)} "
                    f"stored, {np.dtype(dtype)}{list(full)} now)"
                )
        if flags.shape != (plan.n_chunks,) and not differ:
            differ = ["chunk count"]
        if differ:
            shown = [
                f"{k} ({_short(existing.attrs.get(k))} stored, {_short(now[k])} now)"
                if k in now
                else k
                for k in differ
            ]
            raise SweepError(
                f"{path} holds a different sweep ({'; '.join(shown)} differ); "
                "use force to overwrite",
                argument="out",
            )
        try:
            done = flags.values.astype(bool).copy()
        except Exception as e:  # noqa: BLE001 - a damaged flag array
            raise SweepError(
                f"{path}: cannot read its chunk flags ({type(e).__name__}: {e}); "
                "use force to start over",
                argument="out",
            ) from None
        if not done.all():  # it will be written again: drop a stale `complete`/consolidation
            import zarr

            root = zarr.open_group(path, mode="r+")
            root.attrs["complete"] = 0
        return done

    def write_chunk(self, c: int, rows: Mapping[str, np.ndarray]) -> None:
        """Write chunk `c`'s rows, then its `chunk_done` flag (straight into the Zarr arrays
        xarray created: the rows are already in their stored dtypes).

        **Arguments:**

        - `c`: chunk index.
        - `rows`: variable name -> its values at the rows `plan.bounds(c)`.

        **Returns:** `None`.
        """
        import zarr

        if getattr(self, "_root", None) is None:
            self._root = zarr.open_group(self.path, mode="r+")
        a, b = self._plan.bounds(c)
        for name, v in rows.items():
            arr: Any = self._root[name]
            arr[a:b] = np.asarray(v, dtype=arr.dtype)
        flags: Any = self._root["chunk_done"]
        flags[c] = 1

    def finish(self, complete: bool) -> xr.Dataset:
        """Record `complete` in the store's attrs, consolidate a complete store's metadata,
        and open the store lazily.

        **Arguments:**

        - `complete`: whether every chunk is done.

        **Returns:** the store as `jaxdyn.load_sweep` returns it (dask-backed).
        """
        import zarr

        assert self.path is not None
        root = zarr.open_group(self.path, mode="r+")
        root.attrs["complete"] = int(complete)
        if complete:
            with warnings.catch_warnings():  # zarr 3: "not part of the format 3 spec"
                warnings.simplefilter("ignore")
                zarr.consolidate_metadata(self.path)
        return load(self.path)

    def partial(self) -> xr.Dataset:
        """The store opened lazily (flat; `complete = 0`).

        **Returns:** the Dataset.
        """
        assert self.path is not None
        return load(self.path)

    def abort(self) -> None:
        """Nothing: every finished chunk is already in the store (resume continues).

        **Returns:** `None`.
        """


#: Bytes per write when a new store's coordinates and fill values are laid down.
_SLICE_BYTES = 1 << 24


def _same(a: Any, b: Any) -> bool:
    """Attribute equality after a round trip through the store (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _move_into_place(tmp: str, path: str) -> None:
    """Rename the finished store `tmp` to `path`, replacing what is there (`force`): the old
    store is renamed aside first and removed after, so `path` is never half-written."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    old = temp_sibling(path, "old")
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old) if os.path.isdir(old) and not os.path.islink(old) else os.remove(old)
