"""The `Experiment` description used by `jaxdyn.sweep` and the CLI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["Experiment", "resolve_mode"]


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
    - `integer_axes`: axes whose values are integers (e.g. `seed`).
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
    integer_axes: frozenset[str] = frozenset()
    bytes_per_point: int = 1 << 16
    max_chunk_per_device: int | None = None
    _jitted: Any = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        self.axes = {k: np.atleast_1d(np.asarray(v)) for k, v in self.axes.items()}
        self.coords = {k: np.asarray(v) for k, v in self.coords.items()}
        self.integer_axes = frozenset(self.integer_axes)

    @property
    def jitted(self):
        """`jax.jit(run)`, created once per experiment object (so repeated sweeps reuse its
        compilation cache)."""
        if self._jitted is None:
            import jax

            self._jitted = jax.jit(self.run)
        return self._jitted


def resolve_mode(mode: str) -> str:
    """Batched-solve mode of an experiment: `"stacked"` (one ODE for the whole chunk, shared
    adaptive steps: fastest on CPU), `"vmap"` (per-member steps), or `"auto"` (stacked on CPU,
    vmap on accelerators)."""
    if mode == "auto":
        import jax

        mode = "stacked" if jax.default_backend() == "cpu" else "vmap"
    if mode not in ("stacked", "vmap"):
        raise ValueError(f"`mode` must be 'auto', 'stacked' or 'vmap', got {mode!r}.")
    return mode
