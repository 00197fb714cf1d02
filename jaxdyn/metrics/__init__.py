"""Diagnostics of learning trajectories (`jd.metrics`): conserved quantities, the empirical NTK
and kernel distances (also in closed form from Grams), alignment, weight change, spectral norms,
deviations and crossing times.

Functions accept models with extra leading axes (e.g. `Trajectory.model`, time first) where
their docstrings say so, so a diagnostic over a whole trajectory is one call.
"""

from ._filters import (
    LAPLACIAN as LAPLACIAN,
    activation_hamming as activation_hamming,
    filter_smoothness as filter_smoothness,
)
from ._mechanisms import (
    directional_change as directional_change,
    layer_alignment as layer_alignment,
    layer_change as layer_change,
    layer_weights as layer_weights,
    norm_ratio as norm_ratio,
    ntk_ratio as ntk_ratio,
)
from ._metrics import (
    alignment as alignment,
    balance_drift as balance_drift,
    conserved as conserved,
    crossing_time as crossing_time,
    imbalance as imbalance,
    kernel_distance as kernel_distance,
    kernel_distance_grams as kernel_distance_grams,
    kernel_distance_single_neuron as kernel_distance_single_neuron,
    ntk as ntk,
    relative_change as relative_change,
    relative_deviation as relative_deviation,
    spectral_norms as spectral_norms,
)
from ._spectral import (
    alignment_ratio as alignment_ratio,
    feature_updates as feature_updates,
    features as features,
    loglog_slope as loglog_slope,
    spectral_norm as spectral_norm,
    stable_rank as stable_rank,
    weight_updates as weight_updates,
)
from ._thresholds import time_to_threshold as time_to_threshold
