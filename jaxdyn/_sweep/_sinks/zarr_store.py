"""Zarr output (`.zarr`): a flat store written chunk by chunk, resumable."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._dataset import flat_dataset
from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan
from .base import AbstractSink, check_writable

__all__ = ["ZarrSink"]


class ZarrSink(AbstractSink):
    """A flat Zarr store (dimension `point`, one coordinate variable per axis, and a
    `chunk_done` flag per chunk), written chunk by chunk.

    Each chunk's data is written before its `chunk_done` flag, so a kill between the two only
    redoes that chunk. With `resume`, an existing store of the *same* sweep (same `grid_hash`:
    experiment, grid, shard and settings; same chunk size) is reopened and its finished
    chunks are kept; `jaxdyn.load_sweep` returns the grid Dataset once the store is complete.

    **Fields:**

    - `path`: the `.zarr` path.
    """

    def __init__(self, path: str, *, resume: bool = False, force: bool = False):
        """**Arguments:**

        - `path`: the `.zarr` path.
        - `resume`: continue an existing store of the same sweep.
        - `force`: overwrite an existing store (when not resuming).

        **Raises:** `SweepError` (argument `out`) if the store exists without `force` or
        `resume`, or if its directory is not writable.
        """
        if os.path.exists(path) and not (force or resume):
            raise SweepError(
                f"{path} exists; use force to overwrite or resume to continue", argument="out"
            )
        check_writable(path)
        self.path = path
        self.resume = resume
        self.force = force

    def prepare(
        self,
        experiment: Experiment,
        plan: Plan,
        buffers: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
        """Create the store, or reopen it to resume and copy its finished chunks into
        `buffers`.

        **Arguments:**

        - `experiment`: the experiment.
        - `plan`: the sweep's plan.
        - `buffers`: variable name -> host buffer (kept by the sink).
        - `attrs`: the Dataset attrs (`grid_hash` identifies the sweep).

        **Returns:**

        The `bool` array of chunks already done.

        **Raises:** `SweepError` (argument `out`) when resuming a store of a different sweep.
        """
        super().prepare(experiment, plan, buffers, attrs)
        path, chunk = self.path, plan.chunk
        assert path is not None
        if self.resume and os.path.exists(path):
            existing = xr.open_zarr(path, consolidated=False)
            if (
                existing.attrs.get("grid_hash") != attrs["grid_hash"]
                or int(existing.attrs.get("chunk", -1)) != chunk
            ):
                raise SweepError(
                    f"{path} holds a different sweep (grid, experiment, shard or chunk size "
                    "differ); use force to overwrite",
                    argument="out",
                )
            done = existing["chunk_done"].values.astype(bool).copy()
            self._dims = {name: existing[name].dims for name in buffers}
            for c in np.flatnonzero(done):
                a, b = plan.bounds(int(c))
                for name in buffers:
                    buffers[name][a:b] = existing[name].values[a:b]
            return done
        if os.path.exists(path):  # force (checked in __init__)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        ds = flat_dataset(
            experiment, plan.points, buffers, {**attrs, "chunk": chunk, "complete": 0}
        )
        ds["chunk_done"] = ("chunk", np.zeros(plan.n_chunks, np.int8))
        encoding = {name: {"chunks": (chunk,) + ds[name].shape[1:]} for name in buffers}
        ds.to_zarr(path, mode="w", encoding=encoding, consolidated=False)
        self._dims = {name: ds[name].dims for name in buffers}
        return np.zeros(plan.n_chunks, bool)

    def write_chunk(self, c: int) -> None:
        """Write chunk `c`'s rows, then its `chunk_done` flag.

        **Arguments:**

        - `c`: chunk index.

        **Returns:** `None`.
        """
        a, b = self._plan.bounds(c)
        ds = xr.Dataset(
            {name: (self._dims[name], buf[a:b]) for name, buf in self._buffers.items()}
        )
        ds.to_zarr(self.path, region={"point": slice(a, b)}, consolidated=False)
        flag = xr.Dataset({"chunk_done": ("chunk", np.ones(1, np.int8))})
        flag.to_zarr(self.path, region={"chunk": slice(c, c + 1)}, consolidated=False)

    def finish(self, result: xr.Dataset, complete: bool) -> None:
        """Record `complete` in the store's attrs.

        **Arguments:**

        - `result`: the returned Dataset (not written again).
        - `complete`: whether every chunk is done.

        **Returns:** `None`.
        """
        import zarr

        root = zarr.open_group(self.path, mode="r+")
        root.attrs["complete"] = int(complete)

    def abort(self) -> None:
        """Nothing: every finished chunk is already in the store (resume continues).

        **Returns:** `None`.
        """
