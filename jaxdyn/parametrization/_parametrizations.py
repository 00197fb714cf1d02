"""SP, NTK, μP and spectral (Yang–Simon–Bernstein Parametrization 1), and the lookup by name."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from ._base import AbstractParametrization, LayerScaling, _float

__all__ = ["NTK", "SP", "MuP", "Spectral", "get", "names"]


def _one():
    return _float(1.0)


class SP(AbstractParametrization):
    r"""Standard parametrization (PyTorch's default scaling): $\sigma_\ell = 1/\sqrt{n_{\ell-1}}$,
    no multiplier, one global learning rate for every layer (SGD and Adam alike).

    At a fixed learning rate its hidden updates grow with width
    ($\|\Delta W_\ell\|_* \sim \eta\sqrt n$): the features of hidden layers move more and more
    (and the readout blows up) as the net widens.

    **Fields:** none.

    ??? cite "Reference"

        Yang et al. 2022, *Tensor Programs V*, arXiv:2203.03466, Table 3 (SP, in parentheses
        next to μP); Yang, Simon & Bernstein 2023, arXiv:2310.17813, §3.
    """

    name: ClassVar[str] = "sp"

    def layer(self, fan_in, fan_out, index, depth, optimizer) -> LayerScaling:
        return LayerScaling(std=1.0 / jnp.sqrt(fan_in), multiplier=_one(), lr=_one())


class NTK(AbstractParametrization):
    r"""Neural tangent parametrization: $W_\ell = \hat W_\ell/\sqrt{n_{\ell-1}}$ with
    $\hat W_\ell \sim \mathcal N(0, 1)$ stored (std 1, multiplier $1/\sqrt{n_{\ell-1}}$), one
    global learning rate on $\hat W$ (SGD and Adam alike).

    Under SGD its effective learning rate is $\eta/n_{\ell-1}$: hidden updates shrink like
    $\|\Delta W_\ell\|_* \sim n^{-1/2}$ and the features freeze as the width grows (lazy /
    kernel regime).

    **Fields:** none.

    ??? cite "Reference"

        Jacot, Gabriel & Hongler 2018, *Neural tangent kernel*, arXiv:1806.07572, §2 (the
        $1/\sqrt{n_\ell}$ factors of the NTK parametrization); Yang, Simon & Bernstein 2023,
        arXiv:2310.17813, §3 (NTP updates are too small).
    """

    name: ClassVar[str] = "ntk"

    def layer(self, fan_in, fan_out, index, depth, optimizer) -> LayerScaling:
        return LayerScaling(std=_one(), multiplier=1.0 / jnp.sqrt(fan_in), lr=_one())


class Spectral(AbstractParametrization):
    r"""The spectral parametrization (Yang, Simon & Bernstein's Parametrization 1): init std
    $\sigma_\ell = \frac{1}{\sqrt{n_{\ell-1}}}\min\{1, \sqrt{n_\ell/n_{\ell-1}}\}$, no
    multiplier, and learning-rate factor $r_\ell = n_\ell/n_{\ell-1}$ for SGD (and gradient
    flow), $r_\ell = 1/n_{\ell-1}$ for Adam.

    It makes $\|W_\ell\|_*$ and $\|\Delta W_\ell\|_*$ both $\Theta(\sqrt{n_\ell/n_{\ell-1}})$
    (their Condition 1), so every hidden feature and its update have entries of size Θ(1)
    at any width (their Desideratum 1). The Adam rule follows because Adam's first step on a
    rank-one gradient, $\eta\,\mathrm{sign}(G)$, has spectral norm $\eta\sqrt{n_\ell n_{\ell-1}}$
    (our derivation; the paper states the SGD rule).

    Constants: `Spectral()` uses the rule as written (every Θ taken as equality).

    **Fields:** none.

    ??? cite "Reference"

        Yang, Simon & Bernstein 2023, *A spectral condition for feature learning*,
        arXiv:2310.17813, Condition 1 and Parametrization 1 (p. 8); the Adam rule matches
        the μP Adam column of Yang et al. 2022, *Tensor Programs V*, arXiv:2203.03466,
        Table 3.
    """

    name: ClassVar[str] = "spectral"

    def layer(self, fan_in, fan_out, index, depth, optimizer) -> LayerScaling:
        std = jnp.minimum(1.0, jnp.sqrt(fan_out / fan_in)) / jnp.sqrt(fan_in)
        lr = fan_out / fan_in if optimizer == "sgd" else 1.0 / fan_in
        return LayerScaling(std=std, multiplier=_one(), lr=lr)


class MuP(AbstractParametrization):
    r"""The maximal-update parametrization μP, as Tensor Programs V's Table 3 with the
    hyperparameters tuned at a base width $b$ (the μTransfer form of the `mup` package).

    The hidden sizes $n_1, …, n_{L-1}$ are the ones that grow; the input size $n_0$ and the
    output size $n_L$ stay fixed. With the width multipliers $w_{in} = n_{\ell-1}/b$,
    $w_{out} = n_\ell/b$ of the growing sides (1 for a fixed side), every layer starts with
    std $1/\sqrt{n_{\ell-1}}$ except the readout, and the learning-rate factors are

    | layer | SGD | Adam |
    |---|---|---|
    | input $W_1$ | $w_{out}$ | 1 |
    | hidden | $w_{out}/w_{in}$ | $1/w_{in}$ |
    | readout $W_L$ | $1/w_{in}$ (effective) | $1/w_{in}$ (effective) |

    With `readout_multiplier=True` (default, mup's `MuReadout`) the readout stores weights of
    std $\sqrt{w_{in}/n_{L-1}}$ behind a forward multiplier $1/w_{in}$ and trains them at
    $w_{in}$ (SGD) or 1 (Adam); with `readout_multiplier=False` it stores the effective
    weights, std $1/\sqrt{w_{in}\,n_{L-1}}$, at the effective rates above. Both give the same
    training (the `Rescaled` symmetry). At the base width ($w = 1$) μP is exactly `SP`; with
    $b = 1$ it is Table 3's absolute form (readout variance $1/n_{L-1}^2$, input SGD rate
    $\eta\,n_1$). A one-layer net has no growing side and is SP.

    **Fields:**

    - `base_width`: the width $b$ at which μP coincides with SP (default 1).
    - `readout_multiplier`: put the readout's $1/w_{in}$ into a forward multiplier
      (default `True`).

    ??? cite "Reference"

        Yang et al. 2022, *Tensor Programs V: Tuning large neural networks via zero-shot
        hyperparameter transfer*, arXiv:2203.03466, Table 3 (μP for SGD and Adam); Yang &
        Hu 2021, *Feature learning in infinite-width neural networks*, arXiv:2011.14522
        (μP as the maximal-update abc-parametrization).
    """

    base_width: int = 1
    readout_multiplier: bool = True

    name: ClassVar[str] = "mup"

    def __check_init__(self):
        b = self.base_width
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ValueError(f"`base_width` must be a positive int, got {b!r}.")

    def layer(self, fan_in, fan_out, index, depth, optimizer) -> LayerScaling:
        grows_in = index > 0
        grows_out = index < depth - 1
        b = float(self.base_width)
        w_in = fan_in / b if grows_in else _one()
        w_out = fan_out / b if grows_out else _one()
        std = 1.0 / jnp.sqrt(fan_in)
        sgd = optimizer == "sgd"
        if grows_in and not grows_out:  # readout
            if self.readout_multiplier:
                return LayerScaling(
                    std=std * jnp.sqrt(w_in), multiplier=1.0 / w_in, lr=w_in if sgd else _one()
                )
            return LayerScaling(std=std / jnp.sqrt(w_in), multiplier=_one(), lr=1.0 / w_in)
        if grows_in and grows_out:  # hidden
            return LayerScaling(std=std, multiplier=_one(), lr=w_out / w_in if sgd else 1.0 / w_in)
        if grows_out:  # input layer
            return LayerScaling(std=std, multiplier=_one(), lr=w_out if sgd else _one())
        return LayerScaling(std=std, multiplier=_one(), lr=_one())  # one layer: SP


_BY_NAME: dict[str, type[AbstractParametrization]] = {
    "sp": SP,
    "ntk": NTK,
    "mup": MuP,
    "spectral": Spectral,
}


def names() -> list[str]:
    """The parametrization names `get` knows.

    **Returns:**

    `["sp", "ntk", "mup", "spectral"]`.
    """
    return list(_BY_NAME)


def get(parametrization: str | AbstractParametrization) -> AbstractParametrization:
    """A parametrization from its name (`"sp"`, `"ntk"`, `"mup"`, `"spectral"`, any case) with
    default fields; a parametrization object is returned as is.

    **Arguments:**

    - `parametrization`: a name or an `AbstractParametrization`.

    **Returns:**

    The parametrization object.

    **Raises:**

    `ValueError` naming `parametrization` for an unknown name (listing the known ones);
    `TypeError` for anything else.
    """
    if isinstance(parametrization, AbstractParametrization):
        return parametrization
    if isinstance(parametrization, str):
        cls = _BY_NAME.get(parametrization.lower())
        if cls is None:
            raise ValueError(
                f"`parametrization`: unknown name {parametrization!r}; known: "
                f"{', '.join(map(repr, _BY_NAME))} (or pass a jd.parametrization object)."
            )
        return cls()
    raise TypeError(
        "`parametrization` must be a name or a jd.parametrization object, got "
        f"{type(parametrization).__name__}."
    )
