"""The interface every sweep output implements."""

from __future__ import annotations

import abc
import glob
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..._results import RESULTS, result_index
from .._dataset import fill_value, flat_dataset, grid_dataset
from .._errors import SweepError
from .._experiment import Experiment
from .._plan import Plan

__all__ = [
    "AbstractSink",
    "BufferedSink",
    "OutputLock",
    "RowSpec",
    "available_memory",
    "check_writable",
    "clean_leftovers",
    "format_bytes",
    "host_bytes",
    "temp_sibling",
    "write_recovery",
]


#: Variable name -> (trailing shape, dtype) of one grid point's results (`status` included).
RowSpec = Mapping[str, tuple[tuple[int, ...], np.dtype]]


class AbstractSink(abc.ABC):
    """Where a sweep's results go, chunk by chunk.

    The chunk loop (`jaxdyn._sweep._engine.sweep`) calls, in this order:

    1. `prepare(experiment, plan, spec, attrs)` once, before the first chunk: create the
       output (or reopen it to resume) and return which chunks are done;
    2. `write_chunk(c, rows)` with chunk `c`'s results (variable name -> array of the rows
       `plan.bounds(c)`);
    3. `finish(complete)`, which returns the Dataset `sweep` returns (grid layout when
       complete and not a shard, else flat), or `partial()` (the flat Dataset of what is
       done) and `abort()` after an interrupt;
    4. `close()` always (releases the output's lock).

    Validation that needs no computation (path, existence, `force`/`resume`, writability,
    the lock against a second writer) happens in the constructor, so a bad output fails
    before anything compiles. Subclasses: `MemorySink`, `NetCDFSink` (both keep every row in
    host memory: `BufferedSink`) and `ZarrSink` (streams each chunk to disk; host memory
    independent of the grid size); `make_sink(out, resume=, force=)` picks one.

    **Fields:**

    - `path`: the output path, or `None` in memory.
    - `buffered`: whether every row is kept in host memory until the end.
    """

    path: str | None = None
    buffered: bool = False
    _lock: OutputLock | None = None

    def prepare(
        self,
        experiment: Experiment,
        plan: Plan,
        spec: RowSpec,
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
        """Open the output before the first chunk.

        **Arguments:**

        - `experiment`: the experiment (names and dims of its variables).
        - `plan`: the sweep's plan (points, chunk size, chunk count).
        - `spec`: variable name -> (trailing shape, dtype) of one point's results.
        - `attrs`: the Dataset attrs (without `complete`).

        **Returns:**

        A `bool` array `(plan.n_chunks,)`: chunks already done (resumed).
        """
        self._experiment, self._plan, self._spec = experiment, plan, dict(spec)
        self._attrs = dict(attrs)
        return np.zeros(plan.n_chunks, bool)

    @abc.abstractmethod
    def write_chunk(self, c: int, rows: Mapping[str, np.ndarray]) -> None:
        """Persist chunk `c`.

        **Arguments:**

        - `c`: chunk index.
        - `rows`: variable name -> its values at the rows `plan.bounds(c)`.

        **Returns:** `None`.
        """

    @abc.abstractmethod
    def finish(self, complete: bool) -> xr.Dataset:
        """Close the output after the last chunk of this run.

        **Arguments:**

        - `complete`: whether every chunk of the plan is done.

        **Returns:** the Dataset `sweep` returns.
        """

    @abc.abstractmethod
    def partial(self) -> xr.Dataset:
        """The flat Dataset of what is done so far (`complete = 0`; points not computed have
        `status` `RESULTS.not_run`).

        **Returns:** the Dataset.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Leave the output consistent after an interrupt (finished chunks kept).

        **Returns:** `None`.
        """

    def close(self) -> None:
        """Release the output's lock (idempotent).

        **Returns:** `None`.
        """
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class BufferedSink(AbstractSink):
    """A sink keeping every row in host buffers (one per variable, leading axis `point`):
    the in-memory and NetCDF outputs. `jaxdyn.sweep` refuses a grid whose buffers would not
    fit in the host's available memory before anything compiles (`host_bytes`).

    **Fields:**

    - `path`: as in `AbstractSink`.
    - `buffered`: `True`.
    """

    buffered = True

    def prepare(
        self,
        experiment: Experiment,
        plan: Plan,
        spec: RowSpec,
        attrs: Mapping[str, Any],
    ) -> np.ndarray:
        """Allocate the buffers (`fill_value` until computed; `status` `not_run`).

        **Arguments:** as `AbstractSink.prepare`.

        **Returns:** no chunk done.
        """
        done = super().prepare(experiment, plan, spec, attrs)
        self._buffers = {
            name: np.full((plan.n_points,) + shape, fill_value(dtype), dtype)
            for name, (shape, dtype) in spec.items()
        }
        self._buffers["status"][:] = result_index(RESULTS.not_run)
        return done

    def write_chunk(self, c: int, rows: Mapping[str, np.ndarray]) -> None:
        """Copy chunk `c`'s rows into the buffers.

        **Arguments:** as `AbstractSink.write_chunk`.

        **Returns:** `None`.
        """
        a, b = self._plan.bounds(c)
        for name, v in rows.items():
            self._buffers[name][a:b] = v

    def partial(self) -> xr.Dataset:
        """The flat Dataset of the buffers (`complete = 0`).

        **Returns:** the Dataset.
        """
        return flat_dataset(
            self._experiment, self._plan.points, self._buffers, {**self._attrs, "complete": 0}
        )

    def result(self, complete: bool) -> xr.Dataset:
        """The Dataset of the buffers: grid layout when `complete` and not a shard.

        **Arguments:**

        - `complete`: whether every chunk is done.

        **Returns:** the Dataset.
        """
        attrs = {**self._attrs, "complete": int(complete)}
        flat = flat_dataset(self._experiment, self._plan.points, self._buffers, attrs)
        if self._plan.shard is not None or not complete:
            return flat
        return grid_dataset(flat, self._plan.grid)


def host_bytes(plan: Plan, spec: RowSpec) -> int:
    """Host bytes a buffered sink needs for `plan`: every variable's rows plus one value per
    axis per point.

    **Arguments:**

    - `plan`: the sweep's plan.
    - `spec`: variable name -> (trailing shape, dtype).

    **Returns:** bytes.
    """
    per_point = sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in spec.values())
    per_point += 8 * len(plan.grid)
    return plan.n_points * per_point


def available_memory() -> int | None:
    """Host memory available to this process, in bytes (`MemAvailable` of `/proc/meminfo`,
    else the free physical pages), or `None` where neither is known.

    **Returns:** bytes or `None`.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float | int) -> str:
    """`n` bytes as a short human-readable string (`"1.5 GiB"`).

    **Arguments:**

    - `n`: bytes.

    **Returns:** the string.
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


class OutputLock:
    """An exclusive lock on an output path, held while a sweep writes it: `fcntl.flock` on
    `<path>.lock` (released by the kernel when the process dies, so a killed sweep never
    leaves a stale lock). A second sweep to the same path, in this or another process, is
    refused with a `SweepError` naming the holder.

    **Fields:**

    - `path`: the lock file.
    """

    def __init__(self, out: str):
        """Take the lock on output `out`.

        **Arguments:**

        - `out`: the output path.

        **Raises:** `SweepError` (argument `out`) when another sweep holds it.
        """
        import fcntl

        self.path = os.path.abspath(out).rstrip(os.sep) + ".lock"
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise SweepError(
                    f"{out} is being written by another process ({holder}); wait for it to "
                    "finish, or choose another output",
                    argument="out",
                ) from None
            try:  # the file may have been removed by a releasing holder meanwhile: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent).

        **Returns:** `None`.
        """
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __del__(self) -> None:  # a sink dropped without `close()` (tests, API misuse)
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "unknown holder"


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
