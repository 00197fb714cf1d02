"""The interface every sweep output implements."""

from __future__ import annotations

import abc
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan

__all__ = ["AbstractSink", "check_writable", "clean_leftovers", "temp_sibling", "write_recovery"]


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
    """Raise unless a file can be created next to `path` (a probe file is created and removed,
    so a read-only mount, missing permissions or a full inode table fail here, before any
    compile, rather than after the whole sweep has run).

    **Arguments:**

    - `path`: an output path.

    **Returns:** `None`.

    **Raises:** `SweepError` (argument `out`).
    """
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(parent):
        raise SweepError(
            f"cannot write {path}: {parent} is not a writable directory", argument="out"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".jaxdyn-probe-", dir=parent)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise SweepError(
            f"cannot write {path}: {parent} is not a writable directory ({e.strerror or e})",
            argument="out",
        ) from None


def _tag() -> str:
    """`<host>-<pid>`: names this process's temporary files (host, for shared filesystems)."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def temp_sibling(path: str, kind: str = "tmp") -> str:
    """The name of this process's temporary sibling of `path`: `<path>.<kind>-<host>-<pid>`.

    **Arguments:**

    - `path`: an output path.
    - `kind`: `"tmp"` (being written) or `"old"` (being replaced).

    **Returns:**

    The sibling path (not created).
    """
    return f"{os.path.abspath(path).rstrip(os.sep)}.{kind}-{_tag()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_leftovers(path: str) -> list[str]:
    """Remove the temporary siblings of `path` (`temp_sibling`) left by killed processes of
    this host (a process still running keeps its own; other hosts' are left alone).

    **Arguments:**

    - `path`: an output path.

    **Returns:**

    The removed paths.
    """
    host = socket.gethostname().replace("-", "_")
    base = os.path.abspath(path).rstrip(os.sep)
    removed = []
    for kind in ("tmp", "old"):
        for p in glob.glob(glob.escape(base) + f".{kind}-*"):
            h, _, pid = p[len(base) + len(kind) + 2 :].rpartition("-")
            if h != host or not pid.isdigit() or _alive(int(pid)):
                continue
            try:
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
            except OSError:
                continue
            removed.append(p)
    return removed


def write_recovery(ds: xr.Dataset, out: str | None) -> str | None:
    """Write `ds` to a recovery NetCDF file after the real output could not be written:
    `<name>.recovered-<pid>.nc` in the temporary directory, else in the working directory.

    **Arguments:**

    - `ds`: the Dataset to keep.
    - `out`: the output path that failed (names the file), or `None`.

    **Returns:**

    The recovery file's path, or `None` if it could not be written anywhere either.
    """
    stem = os.path.basename(os.path.abspath(out).rstrip(os.sep)) if out else "sweep"
    name = f"{stem}.recovered-{os.getpid()}.nc"
    for folder in (tempfile.gettempdir(), os.getcwd()):
        target = os.path.join(folder, name)
        try:
            ds.to_netcdf(target, engine="h5netcdf")
        except Exception:  # noqa: BLE001 - try the next place
            try:
                os.remove(target)
            except OSError:
                pass
            continue
        return target
    return None
