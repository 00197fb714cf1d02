"""One result vocabulary: `jaxdyn.RESULTS`, Diffrax's result enumeration extended with
jaxdyn's own outcomes.

A sweep's `status` variable stores the *index* of a `RESULTS` item (`status_code`), and the
Dataset's `status` attribute `meaning` is generated from this enumeration (`status_meaning`),
so the codes have one home.
"""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
from equinox._enum import EnumerationItem
from jaxtyping import Array, Int

__all__ = ["RESULTS", "STATUS_DTYPE", "result_index", "status_code", "status_meaning"]


class RESULTS(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcomes of a jaxdyn computation: every Diffrax/Optimistix result
    (`successful`, `max_steps_reached`, `nonfinite`, `event_occurred`, …) plus:

    - `not_run`: a sweep grid point that has not been computed (an interrupted sweep);
    - `inadmissible_init`: no initialisation with the requested invariants exists
      (e.g. a λ-balanced net with λ < 0 wider than its input dimension);
    - `outside_domain`: a closed form was asked for a point outside its domain;
    - `solver_failed`: a closed form's inner solve (root find, factorisation) failed.

    Compare with `traj.result == jd.RESULTS.successful`; `jd.RESULTS[item]` is the message.
    In a sweep Dataset, `status` holds the item's integer index (`jaxdyn.status_code`).
    """

    not_run = "Not run: the sweep stopped before this grid point was computed."
    inadmissible_init = (
        "Inadmissible initialisation: no initial weights with the requested invariants exist "
        "at this point (e.g. λ-balance at this width)."
    )
    outside_domain = "Outside the domain of the closed form."
    solver_failed = "The inner solve of a closed form failed (root finding or factorisation)."


#: dtype of the sweep's `status` variable (indices of `RESULTS` fit in int8).
STATUS_DTYPE = jnp.int8


def status_code(result: EnumerationItem) -> Int[Array, "..."]:
    """The integer index of a `RESULTS` item (array-valued under `vmap`), as stored in a sweep's
    `status` variable.

    **Arguments:**

    - `result`: a `jaxdyn.RESULTS` (or Diffrax `RESULTS`) item, possibly batched.

    **Returns:**

    An `int8` array of the same batch shape.
    """
    if result._enumeration is not RESULTS:  # pyright: ignore
        result = RESULTS.promote(result)  # pyright: ignore
    return jnp.asarray(result._value).astype(STATUS_DTYPE)  # pyright: ignore


def result_index(item: EnumerationItem) -> int:
    """The integer index of one concrete (unbatched) result item, e.g.
    `result_index(RESULTS.not_run)`, computed without running JAX.

    **Arguments:**

    - `item`: a `jaxdyn.RESULTS` or Diffrax/Optimistix `RESULTS` item.

    **Returns:**

    A Python `int`, the value stored in a sweep's `status` variable for this outcome.
    """
    if item._enumeration is not RESULTS:  # pyright: ignore
        item = RESULTS.promote(item)  # pyright: ignore[reportArgumentType]
    return int(item._value)  # pyright: ignore


def status_meaning() -> str:
    """The text stored as the `meaning` attribute of a sweep's `status` variable, generated from
    `RESULTS`: `"0 successful, 1 max_steps_reached, …"`.

    **Returns:**

    One line, `index name` pairs separated by commas.
    """
    names = sorted(
        RESULTS._name_to_item.items(),  # pyright: ignore
        key=lambda kv: int(kv[1]._value),
    )
    return ", ".join(f"{int(item._value)} {name}" for name, item in names)
