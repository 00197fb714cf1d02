"""NetCDF output (`.nc`): written once at the end; on an interrupt, the finished points."""

from __future__ import annotations

import os

import xarray as xr

from .._dataset import flat_dataset
from .._errors import SweepError
from .base import AbstractSink, check_writable, clean_leftovers, temp_sibling

__all__ = ["NetCDFSink"]


class NetCDFSink(AbstractSink):
    """A `.nc` file (h5netcdf engine).

    The returned Dataset is written at the end through a temporary sibling file
    (`<path>.tmp-<host>-<pid>`) and an atomic rename, so `path` is either absent, the old file
    (with `force`) or complete. If the sweep is interrupted, the flat Dataset is written
    instead, with `complete = 0` and `status` = `RESULTS.not_run` for the points not computed
    (NetCDF cannot be resumed: use Zarr for that). A failed write removes its temporary file
    and raises the `OSError` (the engine then keeps the results in a recovery file).

    **Fields:**

    - `path`: the `.nc` path.
    """

    def __init__(self, path: str, *, resume: bool = False, force: bool = False):
        """**Arguments:**

        - `path`: the `.nc` path.
        - `resume`: must be `False` (only Zarr stores resume).
        - `force`: overwrite an existing file.

        **Raises:** `SweepError` (argument `out`) if the file exists without `force`, with
        `resume`, if a directory is in its place, or if its directory is not writable.
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
        clean_leftovers(path)
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

        **Raises:** `OSError` if the file cannot be written (no temporary file is left).
        """
        assert self.path is not None
        _write_atomic(result, self.path)

    def abort(self) -> None:
        """Write the finished points (flat layout, `complete = 0`).

        **Returns:** `None`.

        **Raises:** `OSError` if the file cannot be written (no temporary file is left).
        """
        assert self.path is not None
        ds = flat_dataset(
            self._experiment, self._plan.points, self._buffers, {**self._attrs, "complete": 0}
        )
        _write_atomic(ds, self.path)


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
