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
from jaxtyping import ArrayLike, Bool, Real

from ._cache import memo
from ._errors import SweepError
from ._experiment import Domain, Experiment

__all__ = [
    "CPU_MAX_CHUNK_PER_DEVICE",
    "Plan",
    "ACCELERATOR_MIN_BLOCK",
    "auto_chunk",
    "axis_dtype",
    "block_size_for",
    "flat_points",
    "make_grid",
    "measured_bytes_per_point",
    "plan",
    "shard_range",
]

#: One axis of a grid as users give it: a 1-D array or a list of numbers.
AxisValues = ArrayLike | Sequence[Any]

#: On CPU, the automatic chunk holds at most this many points per device. What one solve
#: batches is the block (`Experiment.block_size`), not the chunk, so a chunk only sets how
#: often results come back to the host (and are written): large enough that a Zarr write per
#: chunk costs little, small enough that Ctrl-C and the progress bar stay responsive
#: (about a second per chunk for the single-neuron sweep on 2 cores).
CPU_MAX_CHUNK_PER_DEVICE = 8192

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

    Points are grouped into **blocks** of `block` consecutive points of the *full* grid (C
    order): block `k` holds the points `[k·block, (k+1)·block)`, the last one padded with
    copies of the grid's last point. A block is what one compiled solve sees (one stacked
    solve, one `vmap`), so a point's result depends only on its block, never on the chunk
    size, the device count or the shard: a shard that starts or ends inside a block computes
    the whole block and keeps its own rows. A chunk is `chunk / block` consecutive blocks (a
    multiple of the device count); blocks past the shard's last one are skipped.

    **Fields:**

    - `grid`: the full validated grid (axis name -> 1-D values).
    - `shard`: `(i, N)` or `None`.
    - `lo`, `hi`: the flat points `[lo, hi)` of the full grid this run computes.
    - `block`: points per block.
    - `chunk`: points per compiled call (a multiple of `block` times the device count).
    - `n_chunks`: chunks of this run.
    """

    grid: dict[str, np.ndarray]
    shard: tuple[int, int] | None
    lo: int
    hi: int
    block: int
    chunk: int
    n_chunks: int

    @property
    def n_total(self) -> int:
        """Points of the full grid.

        **Returns:** an `int`.
        """
        return math.prod(v.size for v in self.grid.values())

    @property
    def n_points(self) -> int:
        """Points this run computes (`hi - lo`).

        **Returns:** an `int`.
        """
        return self.hi - self.lo

    @property
    def first_block(self) -> int:
        """Index of the first block holding a point of `[lo, hi)`.

        **Returns:** an `int`.
        """
        return self.lo // self.block

    @property
    def end_block(self) -> int:
        """One past the last block holding a point of `[lo, hi)`.

        **Returns:** an `int`.
        """
        return -(-self.hi // self.block)

    def _span(self, c: int) -> tuple[int, int]:
        g0 = (self.first_block + c * (self.chunk // self.block)) * self.block
        return g0, g0 + self.chunk

    def bounds(self, c: int) -> tuple[int, int]:
        """The rows `[a, b)` (indices into this run's points, `0 … n_points`) chunk `c`
        produces.

        **Arguments:**

        - `c`: chunk index, `0 <= c < n_chunks`.

        **Returns:** `(a, b)`.
        """
        g0, g1 = self._span(c)
        return max(g0, self.lo) - self.lo, min(g1, self.hi) - self.lo

    def offset(self, c: int) -> int:
        """Where row `bounds(c)[0]` sits in chunk `c`'s output.

        **Arguments:**

        - `c`: chunk index.

        **Returns:** an `int` (non-zero only when the shard starts inside a block).
        """
        g0, _ = self._span(c)
        return max(g0, self.lo) - g0

    def live(self, c: int) -> Bool[np.ndarray, " blocks"]:
        """Which blocks of chunk `c` hold a point of this run (the others are skipped).

        **Arguments:**

        - `c`: chunk index.

        **Returns:** a `bool` array of length `chunk / block`.
        """
        k = self.first_block + c * (self.chunk // self.block) + np.arange(self.chunk // self.block)
        return k < self.end_block

    def chunk_values(self, c: int, name: str) -> np.ndarray:
        """Axis `name`'s values at the `chunk` points of chunk `c`: whole blocks of the full
        grid, past its end padded with the grid's last point (valid values; results outside
        `bounds(c)` are dropped).

        **Arguments:**

        - `c`: chunk index.
        - `name`: axis name.

        **Returns:** a 1-D array of length `chunk`.
        """
        g0, g1 = self._span(c)
        return self.values(name, np.minimum(np.arange(g0, g1), self.n_total - 1))

    def values(self, name: str, index: np.ndarray) -> np.ndarray:
        """Axis `name`'s values at flat indices `index` of the full grid (C order).

        **Arguments:**

        - `name`: axis name.
        - `index`: integer array of flat indices.

        **Returns:** an array of `index`'s shape.
        """
        sizes = [v.size for v in self.grid.values()]
        pos = list(self.grid).index(name)
        return self.grid[name][np.unravel_index(index, sizes)[pos]]

    def rows(self, a: int, b: int) -> dict[str, np.ndarray]:
        """Every axis's values at rows `[a, b)` of this run.

        **Arguments:**

        - `a`, `b`: row range, `0 <= a <= b <= n_points`.

        **Returns:** axis name -> 1-D array of length `b - a`.
        """
        index = np.arange(self.lo + a, self.lo + b)
        return {k: self.values(k, index) for k in self.grid}

    @property
    def points(self) -> dict[str, np.ndarray]:
        """Every axis's values at every point of this run (`rows(0, n_points)`; allocates
        `n_points` values per axis).

        **Returns:** axis name -> 1-D array of length `n_points`.
        """
        return self.rows(0, self.n_points)


def plan(
    experiment: Experiment,
    grid: Mapping[str, AxisValues] | None,
    *,
    n_dev: int,
    platform: str = "cpu",
    chunk_size: int | np.integer | None = None,
    block_size: int | np.integer | None = None,
    shard: tuple[int, int] | None = None,
    memory_budget: float | int = 2**30,
) -> Plan:
    """Validate a sweep's grid, shard, block and chunk size and lay out its chunks.

    **Arguments:**

    - `experiment`: the experiment.
    - `grid`: axis overrides (see `make_grid`).
    - `n_dev`: devices of the mesh; chunks are multiples of it times the block.
    - `platform`: the devices' platform (for `auto_chunk` and `block_size_for`).
    - `chunk_size`: points per call, or `None` for `auto_chunk`; rounded up to a multiple of
      `n_dev · block`, then clamped to the experiment's `max_chunk_per_device` (never below
      one block per device).
    - `block_size`: points per block, or `None` for `block_size_for(experiment, platform)`.
    - `shard`: `(i, N)` or `None`.
    - `memory_budget`: device bytes per device for `auto_chunk`.

    **Returns:**

    The `Plan`.

    **Raises:**

    `SweepError` for a bad grid, shard (or an empty one), block or chunk size.
    """
    full = make_grid(experiment, grid)
    n_total = math.prod(v.size for v in full.values())
    lo, hi = shard_range(n_total, shard)
    n_points = hi - lo
    if n_points == 0:
        raise SweepError(f"shard {shard} of a {n_total}-point grid is empty", argument="shard")
    if block_size is None:
        block = block_size_for(experiment, platform)
    else:
        if not isinstance(block_size, int | np.integer) or block_size < 1:
            raise SweepError(
                f"block_size must be a positive integer, got {block_size!r}",
                argument="block_size",
            )
        block = int(block_size)
    unit = n_dev * block
    if chunk_size is None:
        chunk = auto_chunk(experiment, n_points, n_dev, memory_budget, platform)
    else:
        if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
            raise SweepError(
                f"chunk_size must be a positive integer, got {chunk_size!r}",
                argument="chunk_size",
            )
        chunk = int(chunk_size)
    if experiment.max_chunk_per_device is not None:
        chunk = min(chunk, experiment.max_chunk_per_device * n_dev)
    chunk = max(unit, math.ceil(chunk / unit) * unit)
    n_blocks = -(-hi // block) - lo // block
    return Plan(
        grid=full,
        shard=shard,
        lo=lo,
        hi=hi,
        block=block,
        chunk=chunk,
        n_chunks=-(-n_blocks // (chunk // block)),
    )


#: Default points per block on accelerators, where `vmap` is the batch mode and a block is
#: what one device call vectorises over: wide enough to fill the device.
ACCELERATOR_MIN_BLOCK = 4096


def block_size_for(experiment: Experiment, platform: str = "cpu") -> int:
    """The default block of an experiment: its `block_size` (1 when it declares none),
    clamped to its `max_chunk_per_device`; on an accelerator at least
    `ACCELERATOR_MIN_BLOCK` (then clamped likewise).

    **Arguments:**

    - `experiment`: the experiment.
    - `platform`: `"cpu"`, `"gpu"`, `"tpu"`.

    **Returns:**

    Points per block, ≥ 1.
    """
    block = experiment.block_size or 1
    if platform != "cpu":
        block = max(block, ACCELERATOR_MIN_BLOCK)
    if experiment.max_chunk_per_device is not None:
        block = min(block, experiment.max_chunk_per_device)
    return max(1, block)
