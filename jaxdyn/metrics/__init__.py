"""Diagnostics of learning trajectories (`jd.metrics`): conserved quantities, the empirical NTK
and kernel distances (also in closed form from Grams), alignment, weight change, spectral norms,
deviations and crossing times.

Functions accept models with extra leading axes (e.g. `Trajectory.model`, time first) where
their docstrings say so, so a diagnostic over a whole trajectory is one call.
"""

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
