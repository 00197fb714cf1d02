"""The interface every sweep output implements."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan

__all__ = ["AbstractSink", "check_writable"]


class AbstractSink(abc.ABC):
    """Where a sweep's results go, chunk by chunk.

    The chunk loop (`jaxdyn._sweep._engine.sweep`) keeps every result in host buffers (one row
    per point of its shard, `fill_value` until computed) and calls, in this order:

    1. `prepare(experiment, plan, buffers, attrs)` once, before the first chunk: create the
       output (or reopen it to resume), copy finished chunks into `buffers`, and return which
       chunks are done;
    2. `write_chunk(c)` after chunk `c`'s rows of `buffers` are filled;
    3. `finish(result, complete)` with the returned Dataset (grid layout when complete and not
       a shard, else flat), or `abort()` if the loop is interrupted (an exception, Ctrl-C).

    Validation that needs no computation (path, existence, `force`/`resume`) happens in the
    constructor, so a bad output fails before anything compiles. Subclasses: `MemorySink`,
    `NetCDFSink`, `ZarrSink`; `make_sink(out, resume=, force=)` picks one.

    **Fields:**

    - `path`: the output path, or `None` in memory.
    """

    path: str | None = None

    def prepare(
        self,
        experiment: Experiment,
        plan: Plan,
        buffers: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
        """Open the output before the first chunk.

        **Arguments:**

        - `experiment`: the experiment (names and dims of its variables).
        - `plan`: the sweep's plan (points, chunk size, chunk count).
        - `buffers`: variable name -> host buffer with leading axis `point` (kept by the sink:
          later calls read the rows the loop has filled in).
        - `attrs`: the Dataset attrs (without `complete`).

        **Returns:**

        A `bool` array `(plan.n_chunks,)`: chunks already done (resumed), whose rows are now
        in `buffers`.
        """
        self._experiment, self._plan, self._buffers = experiment, plan, buffers
        self._attrs = dict(attrs)
        return np.zeros(plan.n_chunks, bool)

    @abc.abstractmethod
    def write_chunk(self, c: int) -> None:
        """Persist chunk `c` (its rows of the buffers are final).

        **Arguments:**

        - `c`: chunk index.

        **Returns:** `None`.
        """

    @abc.abstractmethod
    def finish(self, result: xr.Dataset, complete: bool) -> None:
        """Close the output after the last chunk of this run.

        **Arguments:**

        - `result`: the Dataset `sweep` returns.
        - `complete`: whether every chunk of the plan is done.

        **Returns:** `None`.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Leave the output consistent after an interrupt (finished chunks kept).

        **Returns:** `None`.
        """


def check_writable(path: str) -> None:
    """Raise unless `path`'s directory exists and is writable.

    **Arguments:**

    - `path`: an output path.

    **Returns:** `None`.

    **Raises:** `SweepError` (argument `out`).
    """
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise SweepError(
            f"cannot write {path}: {parent} is not a writable directory", argument="out"
        )
