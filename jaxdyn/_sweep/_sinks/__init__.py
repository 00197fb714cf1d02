"""Sweep outputs behind one interface (`AbstractSink`): in memory, NetCDF, Zarr."""

from __future__ import annotations

import os

from .._dataset import out_kind
from .base import (
    AbstractSink as AbstractSink,
    check_writable as check_writable,
    write_recovery as write_recovery,
)
from .memory import MemorySink as MemorySink
from .netcdf import NetCDFSink as NetCDFSink
from .zarr_store import ZarrSink as ZarrSink


def make_sink(
    out: str | os.PathLike | None, *, resume: bool = False, force: bool = False
) -> AbstractSink:
    """The sink for `sweep(..., out=out)`: `MemorySink` for `None`, `NetCDFSink` for `.nc`,
    `ZarrSink` for `.zarr`.

    **Arguments:**

    - `out`: output path or `None`.
    - `resume`: continue a partly written Zarr store.
    - `force`: overwrite an existing output.

    **Returns:**

    The sink (already validated: see each sink's constructor).

    **Raises:** `SweepError` for a bad extension or an output that cannot be used.
    """
    if out is None:
        return MemorySink()
    path = os.fspath(out)
    if out_kind(path) == "nc":
        return NetCDFSink(path, resume=resume, force=force)
    return ZarrSink(path, resume=resume, force=force)
