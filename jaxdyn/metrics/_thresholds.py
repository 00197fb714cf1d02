"""The first recorded step at which a metric crosses a threshold, censored at the budget."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Real

__all__ = ["time_to_threshold"]


def time_to_threshold(
    values: Real[ArrayLike, "*batch T"],
    threshold: Real[ArrayLike, ""],
    *,
    steps: Real[ArrayLike, " T"] | Sequence | None = None,
    direction: str = "above",
    budget: Real[ArrayLike, ""] | None = None,
) -> tuple[Real[Array, "*batch"], Bool[Array, "*batch"]]:
    r"""The first recorded step at which a metric reaches a threshold (e.g. the steps to 99 %
    test accuracy), censored at the budget when it never does.

    The metric is the last axis of `values`, recorded at `steps`; the answer is `steps[i]`
    for the first `i` with `values[..., i] >= threshold` (`direction="above"`) or
    `<= threshold` (`"below"`). A metric already past the threshold at the first record
    gives `steps[0]` (e.g. 0), not censored. One that never crosses (NaN counts as not
    crossed) gives `budget` and `censored = True`: a lower bound on the true time, to be
    treated as such (e.g. in a median, or by survival-analysis methods).

    Traceable (`jit`, `vmap`): a single `argmax` along the last axis.

    **Arguments:**

    - `values`: the recorded metric, `(*batch, T)`.
    - `threshold`: the level (a scalar).
    - `steps`: the steps of the `T` records, increasing (default `0, 1, …, T − 1`).
    - `direction`: `"above"` (reach ≥ threshold) or `"below"` (reach ≤ threshold).
    - `budget`: the value reported for runs that never cross (default `steps[-1]`, the last
      recorded step: the training budget when the last record is at the end).

    **Returns:**

    `(step, censored)`, both of shape `*batch`: the crossing step (dtype of `steps`, promoted
    with `budget`'s) and a boolean array, True where the metric never crossed and `step` is
    the budget.

    **Raises:**

    `ValueError` for an unknown `direction`, an empty record, or `steps` of the wrong length.

    ```python
    step, censored = jd.metrics.time_to_threshold(test_acc, 0.99, steps=record_steps)
    ```
    """
    if direction not in ("above", "below"):
        raise ValueError(f"`direction` must be 'above' or 'below', got {direction!r}.")
    values = jnp.asarray(values)
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(
            f"`values` must have a non-empty last (record) axis, got shape {values.shape}."
        )
    T = values.shape[-1]
    steps_ = jnp.arange(T) if steps is None else jnp.asarray(steps)
    if steps_.shape != (T,):
        raise ValueError(
            f"`steps` must have shape ({T},) (one step per record of `values`), got "
            f"{np.shape(steps_)}."
        )
    crossed = values >= threshold if direction == "above" else values <= threshold
    ever = jnp.any(crossed, axis=-1)
    first = jnp.argmax(crossed, axis=-1)
    budget_ = steps_[-1] if budget is None else jnp.asarray(budget)
    dtype = jnp.result_type(steps_, budget_)
    step = jnp.where(ever, steps_[first].astype(dtype), budget_.astype(dtype))
    return step, ~ever
