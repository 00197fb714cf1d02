"""NetCDF output (`.nc`): written once at the end; on an interrupt, the finished points."""

from __future__ import annotations

import os

import xarray as xr

from .._dataset import flat_dataset
from .._errors import SweepError
from .base import AbstractSink, check_writable

__all__ = ["NetCDFSink"]


class NetCDFSink(AbstractSink):
    """A `.nc` file (h5netcdf engine).

    The returned Dataset is written at the end through a temporary file and an atomic rename.
    If the sweep is interrupted, the flat Dataset is written instead, with `complete = 0` and
    `status` = `RESULTS.not_run` for the points not computed (NetCDF cannot be resumed: use
    Zarr for that).

    **Fields:**

    - `path`: the `.nc` path.
    """

    def __init__(self, path: str, *, resume: bool = False, force: bool = False):
        """**Arguments:**

        - `path`: the `.nc` path.
        - `resume`: must be `False` (only Zarr stores resume).
        - `force`: overwrite an existing file.

        **Raises:** `SweepError` (argument `out`) if the file exists without `force`, with
        `resume`, or if its directory is not writable.
        """
        if os.path.exists(path) and not force:
            raise SweepError(
                f"{path} exists; use force to overwrite or resume to continue", argument="out"
            )
        if resume:
            raise SweepError("resume works with a .zarr output only", argument="resume")
        check_writable(path)
        self.path = path

    def write_chunk(self, c: int) -> None:
        """Nothing (the file is written at the end).

        **Arguments:**

        - `c`: chunk index.

        **Returns:** `None`.
        """

    def finish(self, result: xr.Dataset, complete: bool) -> None:
        """Write `result` to a temporary file, then rename it over `path`.

        **Arguments:**

        - `result`: the returned Dataset.
        - `complete`: whether every chunk is done (recorded in `result.attrs`).

        **Returns:** `None`.
        """
        assert self.path is not None
        tmp = self.path + ".tmp"
        result.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, self.path)

    def abort(self) -> None:
        """Write the finished points (flat layout, `complete = 0`).

        **Returns:** `None`.
        """
        ds = flat_dataset(
            self._experiment, self._plan.points, self._buffers, {**self._attrs, "complete": 0}
        )
        ds.to_netcdf(self.path, engine="h5netcdf")
