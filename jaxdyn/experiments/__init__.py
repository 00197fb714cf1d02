"""Registry of built-in experiments (one module per paper figure), used by `jaxdyn sweep`."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from .base import Experiment as Experiment

#: name -> (module, one-line description). Modules are imported lazily.
_REGISTRY: dict[str, tuple[str, str]] = {
    "single-neuron": (
        "single_neuron",
        "single neuron a·wᵀx: lazy vs rich vs imbalance δ and lr ratio (Kunin et al. 2024)",
    ),
}


def register(name: str, module: str, description: str) -> None:
    """Add an experiment module (exposing `make(**config) -> Experiment`) to the registry."""
    _REGISTRY[name] = (module, description)


def names() -> list[str]:
    """Registered experiment names."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    return _REGISTRY[_check(name)][1]


def _check(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(names())}")
    return name


def factory(name: str) -> Callable[..., Experiment]:
    module, _ = _REGISTRY[_check(name)]
    mod = importlib.import_module(f".{module}", __name__) if not module.count(".") else \
        importlib.import_module(module)
    return mod.make


@functools.cache
def get_experiment(name: str, **config) -> Experiment:
    """The experiment `name` built with `config` (cached, so repeated sweeps reuse the
    compiled program)."""
    return factory(name)(**config)
