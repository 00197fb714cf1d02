"""Registry of built-in experiments (one module per paper figure), used by `jaxdyn sweep`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .._sweep import Experiment as Experiment, freeze, memo, set_name_resolver

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
    "xu-ziyin": (
        "xu_ziyin",
        "finite-width linear net f = γ·uᵀWx on latent data: exact solution vs gradient flow, "
        "kernel / alignment / disalignment / rescaling vs width, scale, γ, lr ratio "
        "(Xu & Ziyin 2024)",
    ),
    "grokking": (
        "grokking",
        "modular arithmetic: steps to 99 % test accuracy vs imbalance α and scale τ, "
        "MLP or 1-layer transformer (Kunin et al. 2024 Fig. 6d/12)",
    ),
    "spectral": (
        "spectral",
        "coordinate check: feature and spectral weight updates vs width under SP / NTK / μP / "
        "spectral (Yang, Simon & Bernstein 2023)",
    ),
    "hierarchy": (
        "hierarchy",
        "Random Hierarchy Model: test accuracy vs training-set size, imbalance α and scale τ "
        "(Kunin et al. 2024 Fig. 6c)",
    ),
    "filters": (
        "filters",
        "CNN on 8×8 digits: smoothness of the first-layer filters vs imbalance α "
        "(Kunin et al. 2024 Fig. 6b/11)",
    ),
    "deep": (
        "deep",
        "deep MLP on digits: per-layer NTK movement vs activation-pattern and parameter "
        "distance, first/last layers rescaled by α (Kunin et al. 2024 Fig. 6a)",
    ),
}


def register(name: str, module: str, description: str) -> None:
    """Add an experiment module (exposing `make(**config) -> Experiment`) to the registry.

    **Arguments:**

    - `name`: the registry name (`jaxdyn sweep NAME`).
    - `module`: a module of `jaxdyn.experiments` (`"single_neuron"`) or a dotted absolute
      module path (`"mypkg.my_experiment"`).
    - `description`: one line for `jaxdyn list`.

    **Returns:** `None`.
    """
    _REGISTRY[name] = (module, description)


def names() -> list[str]:
    """Registered experiment names.

    **Returns:** the names, sorted.
    """
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The one-line description of experiment `name`.

    **Arguments:**

    - `name`: a registered name.

    **Returns:** the description.

    **Raises:** `ValueError` for an unknown name.
    """
    return _REGISTRY[_check(name)][1]


def _check(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(names())}")
    return name


def factory(name: str) -> Callable[..., Experiment]:
    """The `make(**config) -> Experiment` function of experiment `name` (imports its module).

    **Arguments:**

    - `name`: a registered name.

    **Returns:** the module's `make`.

    **Raises:** `ValueError` for an unknown name.
    """
    module, _ = _REGISTRY[_check(name)]
    mod = (
        importlib.import_module(f".{module}", __name__)
        if not module.count(".")
        else importlib.import_module(module)
    )
    return mod.make


def get_experiment(name: str, **config: Any) -> Experiment:
    """The experiment `name` built with `config`, cached (the sweep engine's compile cache,
    `jaxdyn._sweep.memo`, keyed by the experiment's `make` and the config), so repeated
    sweeps reuse the compiled program.

    Config values may be lists or dicts (`--config sv=[2.0,1.0]`): the cache key is made
    hashable with `freeze` (lists as tuples, …) while `make` receives the values as given.

    **Arguments:**

    - `name`: a registered name (see `names()`).
    - `config`: keyword settings of the experiment's `make`.

    **Returns:** the `Experiment`.

    **Raises:** `ValueError` for an unknown name; `TypeError` for an unknown setting.
    """
    make = factory(name)
    return memo(make, ("experiment", freeze(config)), lambda: make(**config))


set_name_resolver(get_experiment)
