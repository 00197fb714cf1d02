"""Sweep planning: the grid (defaults merged, validated), its flat points in C order, the shard
this run computes, and the chunk plan (automatic chunk size from the device memory budget,
clamped per experiment).

Nothing here runs a sweep; `plan` returns a `Plan` the chunk loop (`_engine.sweep`) walks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Real

from ._cache import memo
from ._errors import SweepError
from ._experiment import Domain, Experiment

__all__ = [
    "CPU_MAX_CHUNK_PER_DEVICE",
    "Plan",
    "auto_chunk",
    "axis_dtype",
    "flat_points",
    "make_grid",
    "measured_bytes_per_point",
    "plan",
    "shard_range",
]

#: One axis of a grid as users give it: a 1-D array or a list of numbers.
AxisValues = ArrayLike | Sequence[Any]

#: On CPU a chunk larger than this per device is slower (measured on the single-neuron sweep,
#: 4096 points, 2 cores: 38k traj/s at 1024 per call vs 25k at 4096): the stacked solve's
#: state then falls out of cache and one stiff member sets the step for more others.
CPU_MAX_CHUNK_PER_DEVICE = 1024

_INT32_MAX = 2**31 - 1  # integer axes are int32 inside the program (`axis_dtype`)

_PROBE_POINTS = 64  # per-point bytes at 8 points underestimate larger chunks (~15%); 64: <1%


# --------------------------------------------------------------------------------------------
# The grid


def make_grid(
    experiment: Experiment, grid: Mapping[str, AxisValues] | None
) -> dict[str, Real[np.ndarray, " _"]]:
    """Merge `grid` into the experiment's default axes and validate it.

    **Arguments:**

    - `experiment`: the `Experiment` whose `axes` give the defaults and the allowed names.
    - `grid`: axis name -> 1-D values (overrides), or `None` for the defaults.

    **Returns:**

    Axis name -> 1-D NumPy array, in the experiment's axis order: `int64` for the
    experiment's `integer_axes`, `float64` otherwise.

    **Raises:**

    `SweepError` for an unknown axis, an axis that is not 1-D or is empty, non-integers on an
    integer axis (or integers beyond int32), NaN or inf, or a value outside the axis's
    domain (`Experiment.domains`), naming the axis and the first bad value. Nothing is
    compiled before these checks.
    """
    grid = dict(grid or {})
    unknown = sorted(set(grid) - set(experiment.axes))
    if unknown:
        raise SweepError(
            f"unknown axis {unknown[0]!r} for experiment {experiment.name!r}; "
            f"its axes are {sorted(experiment.axes)}"
        )
    out = {}
    for name, default in experiment.axes.items():
        values = np.atleast_1d(np.asarray(grid.get(name, default)))
        if values.ndim != 1:
            raise SweepError(f"axis {name!r} must be 1-D, got shape {values.shape}")
        if values.size == 0:
            raise SweepError(f"axis {name!r} is empty")
        try:
            as_float = values.astype(np.float64)
        except (TypeError, ValueError):
            raise SweepError(f"axis {name!r} takes numbers, got {values}") from None
        if name in experiment.integer_axes:
            if not np.all(np.equal(np.mod(as_float, 1), 0)):
                raise SweepError(f"axis {name!r} takes integers, got {values}")
            big = np.abs(as_float) > _INT32_MAX
            if np.any(big):
                raise SweepError(
                    f"axis {name!r}: {values[big][0]:g} does not fit the program's int32"
                )
            values = values.astype(np.int64)
        else:
            values = as_float
            if not np.all(np.isfinite(values)):
                raise SweepError(f"axis {name!r} contains NaN or inf")
        if name in experiment.domains:
            domain = Domain.parse(experiment.domains[name])  # already parsed: returned as is
            bad = ~domain.contains(values)
            if np.any(bad):
                raise SweepError(
                    f"axis {name!r} of experiment {experiment.name!r}: {values[bad][0]:g} is "
                    f"outside its domain ({domain})"
                )
        out[name] = values
    return out


def flat_points(
    grid: Mapping[str, Real[np.ndarray, " _"]],
) -> dict[str, Real[np.ndarray, " _"]]:
    """The cartesian product of the grid, flattened in C order (last axis fastest).

    **Arguments:**

    - `grid`: axis name -> 1-D values (as from `make_grid`).

    **Returns:**

    Axis name -> 1-D array of length ∏ sizes: that axis's value at every point.
    """
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    return {k: m.reshape(-1) for k, m in zip(grid, mesh, strict=True)}


def shard_range(n_points: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The half-open range `[lo, hi)` of flat points in shard `i` of `N` (contiguous slices of
    `ceil(n_points / N)` points; the last ones may be short or empty).

    **Arguments:**

    - `n_points`: points of the whole grid.
    - `shard`: `(i, N)` with `0 <= i < N`, or `None` for the whole grid.

    **Returns:**

    `(lo, hi)`.

    **Raises:**

    `SweepError` (argument `shard`) for a malformed shard.
    """
    if shard is None:
        return 0, n_points
    i, N = shard
    if not (isinstance(i, int) and isinstance(N, int) and N >= 1 and 0 <= i < N):
        raise SweepError(f"shard must be i/N with 0 <= i < N, got {i}/{N}", argument="shard")
    per = math.ceil(n_points / N)
    return min(i * per, n_points), min((i + 1) * per, n_points)


def axis_dtype(experiment: Experiment, name: str) -> Any:
    """The dtype an axis's values have inside the jitted program: `int32` for integer axes,
    the default float dtype (`float64` with `jax_enable_x64`) otherwise.

    **Arguments:**

    - `experiment`: the experiment.
    - `name`: one of its axis names.

    **Returns:**

    A JAX dtype.
    """
    if name in experiment.integer_axes:
        return jnp.int32
    return jnp.result_type(float)


# --------------------------------------------------------------------------------------------
# Chunk sizes


def auto_chunk(
    experiment: Experiment,
    n_points: int,
    n_dev: int,
    budget: float | int,
    platform: str = "cpu",
) -> int:
    """Points per chunk: `budget` bytes of device memory per device, divided by the bytes one
    grid point needs, times the device count (a multiple of it, at most the padded grid); on
    CPU at most `CPU_MAX_CHUNK_PER_DEVICE` per device.

    Bytes per point come from XLA's memory analysis of the compiled program on a small probe
    chunk (`measured_bytes_per_point`); that costs one extra compile, so it is only done when
    the experiment's rough `bytes_per_point` says the grid does not fit in one chunk anyway.

    **Arguments:**

    - `experiment`: the experiment (its `bytes_per_point` and `jitted` program).
    - `n_points`: points this run computes.
    - `n_dev`: devices of the mesh.
    - `budget`: device memory per device, in bytes.
    - `platform`: the devices' platform (`"cpu"`, `"gpu"`, `"tpu"`).

    **Returns:**

    The chunk size, a positive multiple of `n_dev`.
    """

    def fit(bytes_per_point: float | int) -> int:
        per_dev = max(1, int(budget // max(bytes_per_point, 1)))
        if platform == "cpu":
            per_dev = min(per_dev, CPU_MAX_CHUNK_PER_DEVICE)
        chunk = min(per_dev * n_dev, n_points)
        return max(n_dev, math.ceil(chunk / n_dev) * n_dev)

    chunk = fit(experiment.bytes_per_point)
    if chunk >= n_points:  # one chunk holds everything: no probe compile needed
        return chunk
    measured = measured_bytes_per_point(experiment)
    return chunk if measured is None else fit(measured)


def measured_bytes_per_point(experiment: Experiment) -> float | None:
    """Device bytes per grid point of `experiment.jitted`, from XLA's compiled memory analysis
    (temp + argument + output) of one `_PROBE_POINTS`-point chunk on the default device.

    Cached per experiment and dtype (`memo`). The probe's size does not change the compile
    time; `single-neuron` needs 19.47 KB/point at 64 points and 19.44 KB/point at 4096
    (float64, CPU).

    **Arguments:**

    - `experiment`: the experiment to measure.

    **Returns:**

    Bytes per point, or `None` where the backend gives no analysis.
    """
    dtype = jnp.result_type(float)
    return memo(experiment, ("bytes_per_point", str(dtype)), lambda: _probe(experiment))


def _probe(experiment: Experiment) -> float | None:
    spec = {
        k: jax.ShapeDtypeStruct((_PROBE_POINTS,), axis_dtype(experiment, k))
        for k in experiment.axes
    }
    try:
        stats = experiment.jitted.lower(spec).compile().memory_analysis()
        total = sum(
            int(getattr(stats, f"{f}_size_in_bytes", 0) or 0)
            for f in ("temp", "argument", "output")
        )
        total -= int(getattr(stats, "alias_size_in_bytes", 0) or 0)
    except Exception:  # noqa: BLE001 - no analysis on this backend: use the rough estimate
        stats, total = None, 0
    return total / _PROBE_POINTS if stats is not None and total > 0 else None


# --------------------------------------------------------------------------------------------
# The plan


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one `sweep` call computes, and in which chunks.

    **Fields:**

    - `grid`: the full validated grid (axis name -> 1-D values).
    - `shard`: `(i, N)` or `None`.
    - `lo`, `hi`: the flat points `[lo, hi)` of the full grid this run computes.
    - `points`: axis name -> values at those points (length `n_points`).
    - `chunk`: points per compiled call (a multiple of the device count).
    - `n_chunks`: `ceil(n_points / chunk)`; the last chunk is padded.
    """

    grid: dict[str, np.ndarray]
    shard: tuple[int, int] | None
    lo: int
    hi: int
    points: dict[str, np.ndarray]
    chunk: int
    n_chunks: int

    @property
    def n_points(self) -> int:
        """Points this run computes (`hi - lo`).

        **Returns:** an `int`.
        """
        return self.hi - self.lo

    def bounds(self, c: int) -> tuple[int, int]:
        """The points `[a, b)` (indices into `points`) of chunk `c`.

        **Arguments:**

        - `c`: chunk index, `0 <= c < n_chunks`.

        **Returns:** `(a, b)`; `b - a < chunk` only for the last chunk.
        """
        return c * self.chunk, min((c + 1) * self.chunk, self.n_points)

    def chunk_values(self, c: int, name: str) -> np.ndarray:
        """Axis `name`'s values of chunk `c`, padded to `chunk` points with the chunk's last
        point (valid values; their results are dropped).

        **Arguments:**

        - `c`: chunk index.
        - `name`: axis name.

        **Returns:** a 1-D array of length `chunk`.
        """
        a, b = self.bounds(c)
        vals = self.points[name][a:b]
        if b - a < self.chunk:
            vals = np.concatenate([vals, np.repeat(vals[-1:], self.chunk - (b - a))])
        return vals


def plan(
    experiment: Experiment,
    grid: Mapping[str, AxisValues] | None,
    *,
    n_dev: int,
    platform: str = "cpu",
    chunk_size: int | np.integer | None = None,
    shard: tuple[int, int] | None = None,
    memory_budget: float | int = 2**30,
) -> Plan:
    """Validate a sweep's grid, shard and chunk size and lay out its chunks.

    **Arguments:**

    - `experiment`: the experiment.
    - `grid`: axis overrides (see `make_grid`).
    - `n_dev`: devices of the mesh; chunks are multiples of it.
    - `platform`: the devices' platform (for `auto_chunk`).
    - `chunk_size`: points per call, or `None` for `auto_chunk`; rounded up to a multiple of
      `n_dev`, then clamped to the experiment's `max_chunk_per_device`.
    - `shard`: `(i, N)` or `None`.
    - `memory_budget`: device bytes per device for `auto_chunk`.

    **Returns:**

    The `Plan`.

    **Raises:**

    `SweepError` for a bad grid, shard (or an empty one) or chunk size.
    """
    full = make_grid(experiment, grid)
    points = flat_points(full)
    n_total = next(iter(points.values())).size
    lo, hi = shard_range(n_total, shard)
    n_points = hi - lo
    if n_points == 0:
        raise SweepError(f"shard {shard} of a {n_total}-point grid is empty", argument="shard")
    if chunk_size is None:
        chunk = auto_chunk(experiment, n_points, n_dev, memory_budget, platform)
    else:
        if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
            raise SweepError(
                f"chunk_size must be a positive integer, got {chunk_size!r}",
                argument="chunk_size",
            )
        chunk = math.ceil(int(chunk_size) / n_dev) * n_dev
    if experiment.max_chunk_per_device is not None:
        chunk = min(chunk, experiment.max_chunk_per_device * n_dev)
    return Plan(
        grid=full,
        shard=shard,
        lo=lo,
        hi=hi,
        points={k: v[lo:hi] for k, v in points.items()},
        chunk=chunk,
        n_chunks=math.ceil(n_points / chunk),
    )
