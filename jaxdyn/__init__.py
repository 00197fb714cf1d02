"""jaxdyn: exact learning dynamics of neural networks in JAX.

Importing jaxdyn changes no global JAX configuration: enable float64 yourself with
`jax.config.update("jax_enable_x64", True)` (all exact-vs-ODE agreement claims are in float64).
"""

from . import (
    data as data,
    exact as exact,
    experiments as experiments,
    init as init,
    metrics as metrics,
    parametrization as parametrization,
    plot as plot,
)
from ._flow import (
    Trajectory as Trajectory,
    describe_solver as describe_solver,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
    mse_loss as mse_loss,
    resolve_batch as resolve_batch,
)
from ._models import (
    MLP as MLP,
    DeepLinear as DeepLinear,
    SingleNeuron as SingleNeuron,
    TwoLayer as TwoLayer,
    TwoLayerLinear as TwoLayerLinear,
    is_linear_in_input as is_linear_in_input,
    is_piecewise_smooth as is_piecewise_smooth,
)
from ._results import (
    RESULTS as RESULTS,
    result_index as result_index,
    status_code as status_code,
    status_meaning as status_meaning,
)
from ._sweep import (
    Experiment as Experiment,
    SweepError as SweepError,
    load as load_sweep,  # noqa: F401 (public re-export under another name)
    merge as merge_sweeps,  # noqa: F401
    sweep as sweep,
    sweep_function as sweep_function,
)
from ._train import (
    Training as Training,
    cross_entropy_loss as cross_entropy_loss,
    train as train,
    trainable as trainable,
    uniform_minibatch as uniform_minibatch,
)
from ._version import __version__ as __version__
