"""No file: the sweep's result is only returned."""

from __future__ import annotations

import xarray as xr

from .base import AbstractSink

__all__ = ["MemorySink"]


class MemorySink(AbstractSink):
    """Keeps nothing beyond the returned Dataset (`sweep(..., out=None)`).

    **Fields:**

    - `path`: `None`.
    """

    def write_chunk(self, c: int) -> None:
        """Nothing to write.

        **Arguments:**

        - `c`: chunk index.

        **Returns:** `None`.
        """

    def finish(self, result: xr.Dataset, complete: bool) -> None:
        """Nothing to close.

        **Arguments:**

        - `result`: the returned Dataset.
        - `complete`: whether every chunk is done.

        **Returns:** `None`.
        """

    def abort(self) -> None:
        """Nothing to keep.

        **Returns:** `None`.
        """
