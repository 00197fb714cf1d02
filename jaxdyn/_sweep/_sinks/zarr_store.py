"""Zarr output (`.zarr`): a flat store written chunk by chunk, resumable."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._dataset import flat_dataset, identity_keys
from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan
from .base import AbstractSink, check_writable, clean_leftovers, temp_sibling

__all__ = ["ZarrSink"]


class ZarrSink(AbstractSink):
    """A flat Zarr store (dimension `point`, one coordinate variable per axis, and a
    `chunk_done` flag per chunk), written chunk by chunk.

    The store is created under a temporary sibling name (`<path>.tmp-<host>-<pid>`) and
    renamed into place only once its metadata and `chunk_done` array are complete, so a
    sweep killed at any instant leaves either no store, or one that resumes. (Temporary
    siblings left by killed processes are removed by the next sweep to the same path.) Each
    chunk's data is written before its `chunk_done` flag, so a kill between the two only
    redoes that chunk. With `resume`, an existing store of the *same* sweep is reopened and
    its finished chunks are kept: same experiment, grid, shard, settings, dtype, jaxdyn version
    (all in `grid_hash`) and chunk size, and the same variables with the same shapes and
    dtypes; anything else is refused, naming what differs. `jaxdyn.load_sweep` returns the grid
    Dataset once the store is complete.

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
        if os.path.lexists(path) and not (force or resume):
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
        """Create the store (atomically), or reopen it to resume and copy its finished chunks
        into `buffers`.

        **Arguments:**

        - `experiment`: the experiment.
        - `plan`: the sweep's plan.
        - `buffers`: variable name -> host buffer (kept by the sink).
        - `attrs`: the Dataset attrs (`grid_hash` identifies the sweep).

        **Returns:**

        The `bool` array of chunks already done.

        **Raises:** `SweepError` (argument `out`) when resuming a store of a different sweep
        or one that cannot be read; `OSError` when the store cannot be created.
        """
        super().prepare(experiment, plan, buffers, attrs)
        path, chunk = self.path, plan.chunk
        assert path is not None
        clean_leftovers(path)
        if self.resume and os.path.lexists(path):
            return self._reopen(experiment, plan, buffers, attrs)
        ds = flat_dataset(
            experiment, plan.points, buffers, {**attrs, "chunk": chunk, "complete": 0}
        )
        ds["chunk_done"] = ("chunk", np.zeros(plan.n_chunks, np.int8))
        encoding = {name: {"chunks": (chunk,) + ds[name].shape[1:]} for name in buffers}
        tmp = temp_sibling(path)
        try:
            ds.to_zarr(tmp, mode="w", encoding=encoding, consolidated=False)
            _move_into_place(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._dims = {name: ds[name].dims for name in buffers}
        return np.zeros(plan.n_chunks, bool)

    def _reopen(
        self,
        experiment: Experiment,
        plan: Plan,
        buffers: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
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
            if not _same(existing.attrs.get(k), now[k])
        ]
        if existing.attrs.get("grid_hash") != attrs["grid_hash"] and not differ:
            differ = ["grid_hash"]
        for name, buf in buffers.items():
            if name not in existing:
                differ.append(f"variable {name} (missing)")
            elif existing[name].shape != buf.shape or existing[name].dtype != buf.dtype:
                differ.append(
                    f"variable {name} ({existing[name].dtype}{list(existing[name].shape)} "
                    f"stored, {buf.dtype}{list(buf.shape)} now)"
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
            for a, b in _runs(plan, done):  # read the finished chunks only
                part = existing.isel(point=slice(a, b))
                for name in buffers:
                    buffers[name][a:b] = part[name].values
        except Exception as e:  # noqa: BLE001 - a damaged chunk
            raise SweepError(
                f"{path}: cannot read its finished chunks ({type(e).__name__}: {e}); "
                "use force to start over",
                argument="out",
            ) from None
        self._dims = {name: existing[name].dims for name in buffers}
        return done

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


def _same(a: Any, b: Any) -> bool:
    """Attribute equality after a round trip through the store (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _runs(plan: Plan, done: np.ndarray) -> list[tuple[int, int]]:
    """Point ranges `[a, b)` of the maximal runs of consecutive done chunks."""
    runs: list[tuple[int, int]] = []
    for c in np.flatnonzero(done):
        a, b = plan.bounds(int(c))
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


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
