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
    "relu-lazy-rich": (
        "relu_lazy_rich",
        "two-layer ReLU teacher-student: lazy→rich vs scale, imbalance δ, width "
        "(Kunin et al. 2024 §5)",
    ),
    "lambda-balanced": (
        "lambda_balanced",
        "λ-balanced two-layer linear net: gradient flow vs exact solution, lazy/rich vs λ, "
        "scale, width (Dominé et al. 2024)",
    ),
    "continual": (
        "continual",
        "λ-balanced linear net trained on a sequence of tasks: forgetting vs λ "
        "(Dominé et al. 2024 App. D.1)",
    ),
    "reversal": (
        "reversal",
        "reversal learning Σ̃yx → −Σ̃yx: zero-crossing time vs λ, λ = 0 never reverses "
        "(Dominé et al. 2024 App. D.2)",
    ),
    "transfer": (
        "transfer",
        "hierarchical 8-item task: fine-tuning a new feature from a pretrained "
        "representation vs λ (Dominé et al. 2024 App. D.3)",
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
    mod = (
        importlib.import_module(f".{module}", __name__)
        if not module.count(".")
        else importlib.import_module(module)
    )
    return mod.make


@functools.cache
def get_experiment(name: str, **config) -> Experiment:
    """The experiment `name` built with `config` (cached, so repeated sweeps reuse the
    compiled program)."""
    return factory(name)(**config)
