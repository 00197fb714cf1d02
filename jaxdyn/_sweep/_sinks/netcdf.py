"""NetCDF output (`.nc`): written once at the end; on an interrupt, the finished points."""

from __future__ import annotations

import os

import xarray as xr

from .._errors import SweepError
from .base import BufferedSink, OutputLock, check_writable, clean_leftovers, temp_sibling

__all__ = ["NetCDFSink"]


class NetCDFSink(BufferedSink):
    """A `.nc` file (h5netcdf engine).

    The returned Dataset is written at the end through a temporary sibling file
    (`<path>.tmp-<host>-<pid>`) and an atomic rename, so `path` is either absent, the old file
    (with `force`) or complete. If the sweep is interrupted, the flat Dataset is written
    instead, with `complete = 0` and `status` = `RESULTS.not_run` for the points not computed
    (NetCDF cannot be resumed: use Zarr for that). A failed write removes its temporary file
    and raises the `OSError` (the engine then keeps the results in a recovery file). The
    path is locked (`OutputLock`) while the sweep runs.

    **Fields:**

    - `path`: the `.nc` path.
    """

    def __init__(self, path: str, *, resume: bool = False, force: bool = False):
        """**Arguments:**

        - `path`: the `.nc` path.
        - `resume`: must be `False` (only Zarr stores resume).
        - `force`: overwrite an existing file.

        **Raises:** `SweepError` (argument `out`) if the file exists without `force`, with
        `resume`, if a directory is in its place, if its directory is not writable, or if
        another sweep is writing it.
        """
        if os.path.isdir(path):
            raise SweepError(
                f"{path} is a directory, not a .nc file; remove it or choose another path",
                argument="out",
            )
        if os.path.exists(path) and not force:
            raise SweepError(
                f"{path} exists; use force to overwrite or resume to continue", argument="out"
            )
        if resume:
            raise SweepError("resume works with a .zarr output only", argument="resume")
        check_writable(path)
        self._lock = OutputLock(path)
        clean_leftovers(path)
        self.path = path

    def finish(self, complete: bool) -> xr.Dataset:
        """Write the result to a temporary file, then rename it over `path`.

        **Arguments:**

        - `complete`: whether every chunk is done (recorded in the attrs).

        **Returns:** the Dataset (in memory).

        **Raises:** `OSError` if the file cannot be written (no temporary file is left).
        """
        assert self.path is not None
        result = self.result(complete)
        _write_atomic(result, self.path)
        return result

    def abort(self) -> None:
        """Write the finished points (flat layout, `complete = 0`).

        **Returns:** `None`.

        **Raises:** `OSError` if the file cannot be written (no temporary file is left).
        """
        assert self.path is not None
        _write_atomic(self.partial(), self.path)


def _write_atomic(ds: xr.Dataset, path: str) -> None:
    tmp = temp_sibling(path)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
