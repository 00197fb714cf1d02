"""jaxdyn: exact learning dynamics of neural networks in JAX.

Importing jaxdyn changes no global JAX configuration: enable float64 yourself with
`jax.config.update("jax_enable_x64", True)` (all exact-vs-ODE agreement claims are in float64).
"""

from . import exact as exact
from . import init as init
from . import metrics as metrics
from .flow import (
    RESULTS as RESULTS,
)
from .flow import (
    STATUS as STATUS,
)
from .flow import (
    Trajectory as Trajectory,
)
from .flow import (
    gradient_descent as gradient_descent,
)
from .flow import (
    gradient_flow as gradient_flow,
)
from .models import (
    MLP as MLP,
)
from .models import (
    DeepLinear as DeepLinear,
)
from .models import (
    SingleNeuron as SingleNeuron,
)
from .models import (
    TwoLayer as TwoLayer,
)
from .models import (
    TwoLayerLinear as TwoLayerLinear,
)
from .sweep import (
    load as load_sweep,
    merge as merge_sweeps,
    sweep as sweep,
    sweep_function as sweep_function,
)

__version__ = "0.1.0"
