"""Initialisers with a prescribed imbalance or balance (`jd.init`).

All are pure functions of their arguments, jittable and `vmap`-able over the scalar
hyperparameters (δ, λ, scale, width), so a sweep builds its whole batch of models in one call.
"""

from ._init import (
    interleave_pairs as interleave_pairs,
    mask_width as mask_width,
    pad_width as pad_width,
    readout_from_imbalance as readout_from_imbalance,
    single_neuron as single_neuron,
    two_layer as two_layer,
)
from ._linear import (
    lambda_balanced as lambda_balanced,
    lambda_balanced_admissible as lambda_balanced_admissible,
    lambda_balanced_at_width as lambda_balanced_at_width,
    lambda_balanced_converged as lambda_balanced_converged,
    match_det_sign as match_det_sign,
    split_singular_values as split_singular_values,
    weights_from_qqt as weights_from_qqt,
)
from ._mlp import mlp as mlp
from ._rescale import (
    Scaled as Scaled,
    layer_ends as layer_ends,
    rescale as rescale,
)
