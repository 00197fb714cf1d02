"""Closed-form learning trajectories (`jd.exact`), one module per paper family."""

from .single_neuron import (
    imbalance as imbalance,
)
from .single_neuron import (
    single_neuron as single_neuron,
)
from .single_neuron import (
    single_neuron_beta as single_neuron_beta,
)
from .single_neuron import (
    single_neuron_limit as single_neuron_limit,
)
from .single_neuron import (
    whitened_target as whitened_target,
)
