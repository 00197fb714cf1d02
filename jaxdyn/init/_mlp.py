"""`jd.init.mlp`: an MLP drawn from a parametrization (SP, NTK, μP, spectral)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxtyping import ArrayLike, Int, PRNGKeyArray

from .._models import MLP
from ..parametrization import AbstractParametrization, get

__all__ = ["mlp"]


def mlp(
    key: PRNGKeyArray,
    widths: Sequence | Int[ArrayLike, "..."],
    parametrization: str | AbstractParametrization = "sp",
    *,
    activation: str | Callable = "relu",
    max_widths: Sequence | None = None,
) -> MLP:
    r"""A bias-free `jd.MLP` of sizes `widths = (n_0, …, n_L)` initialised by a
    parametrization: layer ℓ's stored weights are $\sigma_\ell\,\mathcal N(0, 1)$ (drawn from
    `jax.random.split(key, L)[ℓ]`) behind the forward multiplier $m_\ell$. Train it with the
    parametrization's learning rates, `lr=p.lr(model, eta)`.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `widths`: the layer sizes, input first (at least two positive integers).
    - `parametrization`: `"sp"`, `"ntk"`, `"mup"`, `"spectral"` or a `jd.parametrization`
      object (e.g. `jd.parametrization.MuP(base_width=64)`).
    - `activation`: as for `jd.MLP` (a name or a callable).
    - `max_widths`: optional concrete sizes ≥ `widths` to build at, with the units past
      `widths` zeroed (masked; they stay zero under training when σ(0) = 0); `widths` may
      then be traced, so one program serves a width sweep.

    **Returns:**

    The `jd.MLP`.

    **Raises:**

    `ValueError` naming `parametrization` (unknown name), `widths` (fewer than two sizes, a
    zero, negative or non-integer size, a size above `max_widths`) or `max_widths` (a
    different length).
    """
    return get(parametrization).init(key, widths, activation=activation, max_widths=max_widths)
