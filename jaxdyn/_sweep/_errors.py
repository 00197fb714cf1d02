"""`SweepError`: the one exception the sweep engine raises for a user error."""

from __future__ import annotations

__all__ = ["SweepError"]


class SweepError(ValueError):
    """A user error in a sweep specification: unknown or empty axis, bad chunk size or shard,
    an output that exists or cannot be written, shards that do not fit together, …

    A `ValueError`, so `except ValueError` catches it too. The CLI prints it as one line and
    exits with code 2.

    **Fields:**

    - `argument`: the name of the `sweep`/`merge`/`load` argument at fault (`"chunk_size"`,
      `"shard"`, `"out"`, …), or `None` when the error is in the grid or the data. The CLI
      uses it to name its own option (`--chunk-size`, …).
    """

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument
