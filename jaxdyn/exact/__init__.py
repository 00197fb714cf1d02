"""Closed-form learning trajectories (`jd.exact`), one module per paper family."""

from ..metrics._metrics import imbalance as imbalance  # δ lives once, in jd.metrics
from ._linear import (
    LambdaBalancedSolution as LambdaBalancedSolution,
    lambda_balanced as lambda_balanced,
    lambda_balanced_mode as lambda_balanced_mode,
    ntk_from_solution as ntk_from_solution,
    ntk_two_layer_linear as ntk_two_layer_linear,
    reversal_time as reversal_time,
    saxe_modes as saxe_modes,
)
from ._single_neuron import (
    single_neuron as single_neuron,
    single_neuron_beta as single_neuron_beta,
    single_neuron_from_target as single_neuron_from_target,
    single_neuron_limit as single_neuron_limit,
    whitened_target as whitened_target,
)
from ._xu_ziyin import (
    XU_ZIYIN_REGIMES as XU_ZIYIN_REGIMES,
    XuZiyinConstants as XuZiyinConstants,
    XuZiyinSolution as XuZiyinSolution,
    xu_ziyin as xu_ziyin,
    xu_ziyin_constants as xu_ziyin_constants,
    xu_ziyin_exponents as xu_ziyin_exponents,
    xu_ziyin_imbalance as xu_ziyin_imbalance,
    xu_ziyin_network as xu_ziyin_network,
    xu_ziyin_ntk_ratio as xu_ziyin_ntk_ratio,
    xu_ziyin_phase as xu_ziyin_phase,
    xu_ziyin_regime as xu_ziyin_regime,
)
