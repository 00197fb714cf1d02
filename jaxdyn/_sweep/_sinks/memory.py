"""No file: the sweep's result is only returned."""

from __future__ import annotations

import xarray as xr

from .base import BufferedSink

__all__ = ["MemorySink"]


class MemorySink(BufferedSink):
    """Keeps the rows in host memory and returns them (`sweep(..., out=None)`).

    **Fields:**

    - `path`: `None`.
    """

    def finish(self, complete: bool) -> xr.Dataset:
        """The Dataset of the buffers.

        **Arguments:**

        - `complete`: whether every chunk is done.

        **Returns:** the Dataset.
        """
        return self.result(complete)

    def abort(self) -> None:
        """Nothing to keep beyond `partial()`.

        **Returns:** `None`.
        """
