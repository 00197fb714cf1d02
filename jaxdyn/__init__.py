"""jaxdyn: exact learning dynamics of neural networks in JAX.

Importing jaxdyn changes no global JAX configuration: enable float64 yourself with
`jax.config.update("jax_enable_x64", True)` (all exact-vs-ODE agreement claims are in float64).
"""

from . import exact as exact, init as init, metrics as metrics
from .flow import (
    RESULTS as RESULTS,
    STATUS as STATUS,
    Trajectory as Trajectory,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
)
from .models import (
    MLP as MLP,
    DeepLinear as DeepLinear,
    SingleNeuron as SingleNeuron,
    TwoLayer as TwoLayer,
    TwoLayerLinear as TwoLayerLinear,
)
from .sweep import load as load_sweep, merge as merge_sweeps, sweep as sweep, sweep_function

__all__ = [
    "exact",
    "init",
    "metrics",
    "RESULTS",
    "STATUS",
    "Trajectory",
    "gradient_descent",
    "gradient_flow",
    "MLP",
    "DeepLinear",
    "SingleNeuron",
    "TwoLayer",
    "TwoLayerLinear",
    "load_sweep",
    "merge_sweeps",
    "sweep",
    "sweep_function",
]

__version__ = "0.1.0"
