"""The `Experiment` description used by `jaxdyn.sweep` and the CLI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from ._cache import memo

__all__ = ["Experiment"]


@dataclasses.dataclass(eq=False)
class Experiment:
    """A sweepable computation: a batched function of named scalar hyperparameters.

    **Fields:**

    - `name`: registry name (used by the CLI, e.g. `"single-neuron"`).
    - `description`: one line for `jaxdyn list`.
    - `run`: `run(points) -> outputs`, where `points` maps every axis name to a 1-D array of
      length B (the batch of grid points) and `outputs` maps variable names to arrays with
      leading axis B. It must be a pure JAX function (it is `jax.jit`-ed once per chunk shape;
      hyperparameters arrive as traced arrays, never Python floats, so changing their values
      never recompiles).
    - `axes`: the default grid, axis name -> 1-D values. A sweep's grid overrides some axes;
      the others keep these defaults.
    - `dims`: variable name -> names of its trailing (non-grid) dimensions, e.g. `("t",)`.
    - `coords`: coordinate values for those trailing dimensions, e.g. `{"t": ts}`.
    - `attrs`: metadata copied into the Dataset (solver, tolerances, data description…).
    - `plot`: optional `plot(ds, path)` drawing the experiment's standard figure.
    - `summary`: optional `summary(ds) -> str` printed by the CLI (e.g. agreement with theory).
    - `integer_axes`: axes whose values are integers (e.g. `seed`); stored as a frozenset.
    - `bytes_per_point`: rough device memory per grid point, used for automatic chunk sizes.
    - `max_chunk_per_device`: upper bound on points per device and call (automatic and explicit
      chunk sizes are clamped to it), for programs that misbehave when batched too wide.
    """

    name: str
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    axes: Mapping[str, Any]
    dims: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    coords: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    plot: Callable | None = None
    summary: Callable | None = None
    integer_axes: Collection[str] = frozenset()
    bytes_per_point: int = 1 << 16
    max_chunk_per_device: int | None = None

    def __post_init__(self):
        self.axes = {k: np.atleast_1d(np.asarray(v)) for k, v in self.axes.items()}
        self.coords = {k: np.asarray(v) for k, v in self.coords.items()}
        self.integer_axes = frozenset(self.integer_axes)

    @property
    def jitted(self) -> Any:
        """`jax.jit(run)`, created once per experiment object (cached by `memo` in
        `jaxdyn._sweep._cache`), so repeated sweeps reuse its compilation cache.

        **Returns:**

        The jitted `run` (a `jax.jit` wrapper: callable, with `.lower` and `.eval_shape`).
        """
        import jax

        return memo(self, "jitted", lambda: jax.jit(self.run))
