"""The abstract parametrization, its per-layer rule, the multiplier reparametrization and the
lookup by name."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from .._checks import is_concrete
from .._models import MLP

__all__ = [
    "OPTIMIZERS",
    "AbstractParametrization",
    "LayerScaling",
    "Rescaled",
    "check_widths",
]

#: The optimizer families a parametrization has a learning-rate rule for.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


class LayerScaling(eqx.Module):
    r"""What a parametrization prescribes for one weight matrix $W_\ell$ of shape
    `(fan_out, fan_in)`: the layer computes $m_\ell W_\ell h_{\ell-1}$ with the stored
    $W_\ell \sim \mathcal N(0, \sigma_\ell^2)$ trained at learning rate $\eta_0\,r_\ell$.

    **Fields:**

    - `std`: the initial entry standard deviation $\sigma_\ell$ of the stored weights.
    - `multiplier`: the fixed forward multiplier $m_\ell$ (`jd.MLP.multipliers`).
    - `lr`: the learning-rate factor $r_\ell$ of the stored weights (multiplying the base rate).
    """

    std: Float[ArrayLike, ""]
    multiplier: Float[ArrayLike, ""]
    lr: Float[ArrayLike, ""]


def _float(x) -> Array:
    return jnp.asarray(x, jnp.result_type(float))


def check_optimizer(optimizer: str) -> str:
    """`optimizer` lower-cased if it is one of `OPTIMIZERS`, else a `ValueError` naming it."""
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(
            f"`optimizer` must be one of {', '.join(map(repr, OPTIMIZERS))} (the learning-rate "
            f"rule differs between SGD and Adam-like optimizers), got {optimizer!r}."
        )
    return optimizer.lower()


def check_widths(widths, name: str = "widths", *, concrete: bool = True) -> tuple:
    """Validate a width list `(n_0, …, n_L)`: at least two entries; concrete entries positive
    integers; traced entries (allowed when `concrete=False`) scalar integers.

    **Arguments:**

    - `widths`: the sequence of layer sizes, input first.
    - `name`: the argument name used in messages.
    - `concrete`: whether every entry must be a concrete (non-traced) value.

    **Returns:**

    The widths as a tuple (Python ints where concrete, arrays where traced).

    **Raises:**

    `ValueError` naming `name` for fewer than two entries, a non-integer, zero or negative
    entry, or a traced entry where concrete values are needed.
    """
    if isinstance(widths, str) or not isinstance(widths, Sequence | np.ndarray | jax.Array):
        raise ValueError(
            f"`{name}` must be a sequence of layer sizes (n_0, …, n_L), input first, got "
            f"{widths!r}."
        )
    widths = tuple(widths) if not isinstance(widths, np.ndarray | jax.Array) else tuple(widths)
    if len(widths) < 2:
        raise ValueError(
            f"`{name}` must list at least two sizes (input and output), got {len(widths)}."
        )
    out = []
    for i, n in enumerate(widths):
        if jnp.ndim(n) != 0:
            raise ValueError(f"`{name}[{i}]` must be a scalar, got shape {jnp.shape(n)}.")
        if is_concrete(n):
            v = np.asarray(n)
            if v.dtype.kind not in "iuf" or float(v) != int(float(v)):
                raise ValueError(f"`{name}[{i}]` must be an integer, got {n!r}.")
            if int(v) < 1:
                raise ValueError(f"`{name}[{i}]` must be a positive width, got {int(v)}.")
            out.append(int(v))
        else:
            if concrete:
                raise ValueError(
                    f"`{name}[{i}]` is traced; array shapes need concrete widths (pass traced "
                    "widths together with concrete `max_widths`)."
                )
            out.append(n)
    return tuple(out)


def _resolve_widths(widths, shape: tuple, length_error: str, bound: str) -> tuple:
    """`widths` (default `shape`) checked against the built sizes `shape`: `check_widths`
    with traced entries allowed, the same length as `shape`, no concrete entry above its size.

    `length_error` is the message for a length mismatch (formatted with `n`, the number of
    widths); `bound` names the size a width exceeds (formatted with `i` and `m`, the size).
    """
    if widths is None:
        widths = shape
    widths = check_widths(widths, concrete=False)
    if len(widths) != len(shape):
        raise ValueError(length_error.format(n=len(widths)))
    for i, (n, m) in enumerate(zip(widths, shape, strict=True)):
        if isinstance(n, int) and n > m:
            raise ValueError(f"`widths[{i}]` = {n} exceeds {bound.format(i=i, m=m)}.")
    return widths


def _mlp_widths(model: MLP) -> tuple[int, ...]:
    shapes = [W.shape[-2:] for W in model.layers]
    return (shapes[0][1],) + tuple(s[0] for s in shapes)


class AbstractParametrization(eqx.Module):
    r"""A width scaling of an MLP's initialisation, forward multipliers and per-layer learning
    rates (an *abc-parametrization*): for layer $\ell = 1, …, L$ with fan-in $n_{\ell-1}$ and
    fan-out $n_\ell$ it prescribes the stored weights' init std $\sigma_\ell$, a fixed forward
    multiplier $m_\ell$ (the layer computes $m_\ell W_\ell h_{\ell-1}$) and a learning-rate
    factor $r_\ell$ for SGD (also gradient flow, its continuous-time limit) and for Adam.

    Subclasses implement `layer` (one layer's `LayerScaling`). Everything else derives from
    it: `scalings`, `init` (a `jd.MLP`), `multipliers`, and `lr`, the per-layer learning-rate
    pytree that `jd.gradient_flow(model, data, ts, lr=tree)` and
    `jd.gradient_descent(model, data, steps, lr=tree, optimizer=...)` take unchanged.

    With Adam, use `jd.gradient_descent(..., optimizer=optax.adam(1.0), lr=p.lr(model,
    eta, optimizer="adam"))`: the tree multiplies Adam's normalised update. Using the SGD
    rule with Adam (a common slip) breaks the width scaling: Adam's update of a rank-one
    gradient has entries of size η whatever the width, so it needs $r_\ell \propto 1/n_{\ell-1}$,
    not the SGD factor.

    Widths may be traced scalars wherever no array shape depends on them (`scalings`, `lr`
    with `widths=`, `init` with `max_widths=`), so one compiled program serves a whole width
    sweep.
    """

    #: The lookup name (`jd.parametrization.get(name)`).
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def layer(
        self,
        fan_in: Real[ArrayLike, ""],
        fan_out: Real[ArrayLike, ""],
        index: int,
        depth: int,
        optimizer: str,
    ) -> LayerScaling:
        """The rule for one layer.

        **Arguments:**

        - `fan_in`, `fan_out`: the layer's input and output sizes (ints or traced scalars).
        - `index`: the layer's position, 0 (input layer) … `depth - 1` (readout).
        - `depth`: the number of weight matrices L.
        - `optimizer`: `"sgd"` or `"adam"` (already validated).

        **Returns:**

        The layer's `LayerScaling`.
        """

    def scalings(
        self,
        widths: Sequence | Int[ArrayLike, "..."],
        optimizer: str = "sgd",
    ) -> tuple[LayerScaling, ...]:
        """Every layer's rule for an MLP of sizes `widths = (n_0, …, n_L)`.

        **Arguments:**

        - `widths`: the layer sizes, input first (entries may be traced).
        - `optimizer`: `"sgd"` (also gradient flow) or `"adam"`.

        **Returns:**

        One `LayerScaling` per weight matrix, input layer first.

        **Raises:**

        `ValueError` naming `widths` (fewer than two sizes, a non-positive size) or
        `optimizer` (not `"sgd"`/`"adam"`).
        """
        widths = check_widths(widths, concrete=False)
        optimizer = check_optimizer(optimizer)
        depth = len(widths) - 1
        out = []
        for i in range(depth):
            s = self.layer(_float(widths[i]), _float(widths[i + 1]), i, depth, optimizer)
            out.append(
                LayerScaling(std=_float(s.std), multiplier=_float(s.multiplier), lr=_float(s.lr))
            )
        return tuple(out)

    def multipliers(self, widths: Sequence | Int[ArrayLike, "..."]) -> tuple[Array, ...]:
        """The forward multipliers $(m_1, …, m_L)$ (`jd.MLP.multipliers`).

        **Arguments:**

        - `widths`: the layer sizes, input first.

        **Returns:**

        A tuple of scalar arrays.
        """
        return tuple(jnp.asarray(s.multiplier) for s in self.scalings(widths))

    def init(
        self,
        key: PRNGKeyArray,
        widths: Sequence | Int[ArrayLike, "..."],
        *,
        activation: str | Callable = "relu",
        max_widths: Sequence | None = None,
    ) -> MLP:
        """A `jd.MLP` drawn from this parametrization (same as `jd.init.mlp`).

        **Arguments:**

        - `key`: a JAX PRNG key; one standard-normal vector is drawn from it and cut into
          the layers' matrices $Z_\\ell$ (in order, row-major), then `from_normal`.
        - `widths`: the layer sizes `(n_0, …, n_L)`, input first.
        - `activation`: as for `jd.MLP`.
        - `max_widths`: optional concrete sizes ≥ `widths` to build at; units past `widths`
          get zero in- and out-weights (they stay zero under training for activations with
          σ(0) = 0), and `widths` may then be traced (a masked width sweep).

        **Returns:**

        The `jd.MLP`, weights $\\sigma_\\ell\\,\\mathcal N(0, 1)$, multipliers $m_\\ell$.
        """
        return _init(self, key, widths, activation, max_widths)

    def from_normal(
        self,
        normals: Sequence[Float[ArrayLike, "_ _"]],
        *,
        widths: Sequence | Int[ArrayLike, "..."] | None = None,
        activation: str | Callable = "relu",
    ) -> MLP:
        """The `jd.MLP` whose stored weights are $\\sigma_\\ell Z_\\ell$ for given matrices
        $Z_\\ell$ (standard normal for an init): the same draw under several
        parametrizations gives nets that differ only by the rules' scalars.

        **Arguments:**

        - `normals`: the matrices $Z_1, …, Z_L$, $Z_\\ell$ of shape `(n_ℓ, n_{ℓ-1})`.
        - `widths`: the true sizes when smaller than the matrices' (the units past them are
          zeroed, as with `init(..., max_widths=)`; may be traced); default the shapes.
        - `activation`: as for `jd.MLP`.

        **Returns:**

        The `jd.MLP`.

        **Raises:**

        `ValueError` for matrices that do not chain, or `widths` that do not fit them.
        """
        return _from_normal(self, normals, widths, activation)

    def lr(
        self,
        model: eqx.Module,
        lr: Float[ArrayLike, ""] = 1.0,
        *,
        optimizer: str = "sgd",
        widths: Sequence | Int[ArrayLike, "..."] | None = None,
    ) -> MLP:
        r"""The per-layer learning-rate pytree $\eta_0 r_\ell$ for `model`.

        **Arguments:**

        - `model`: the `jd.MLP` to train (one member, no leading axes).
        - `lr`: the base learning rate $\eta_0$ (may be traced).
        - `optimizer`: `"sgd"` (also gradient flow) or `"adam"`.
        - `widths`: the true sizes `(n_0, …, n_L)` of a masked model (built with
          `max_widths`); default the model's shapes.

        **Returns:**

        A pytree with `model`'s structure (a `jd.MLP` whose `layers` are the scalar rates and
        whose `multipliers` are 0, as multipliers are not trained), to pass as `lr=` to
        `jd.gradient_flow` or `jd.gradient_descent`.

        **Raises:**

        `TypeError` if `model` is not a `jd.MLP`; `ValueError` naming `widths` if it does not
        fit the model (its length is not depth + 1, or a concrete width exceeds the model's),
        or naming `lr` (a concrete negative or non-finite rate; a traced one gives NaN rates)
        or `optimizer`.
        """
        if not isinstance(model, MLP):
            raise TypeError(
                f"`model` must be a jd.MLP (parametrizations scale MLP layers), got "
                f"{type(model).__name__}."
            )
        shape_widths = _mlp_widths(model)
        if any(W.ndim != 2 for W in model.layers):
            raise ValueError(
                "`model` must be one network (2-D weight matrices); for a batch of models call "
                "`lr` inside `jax.vmap`."
            )
        widths = _resolve_widths(
            widths,
            shape_widths,
            f"`widths` has {{n}} sizes but `model` has {len(model.layers)} layers (needs "
            f"depth + 1 = {len(shape_widths)} sizes).",
            "the model's size {m}",
        )
        if jnp.ndim(lr) != 0:
            raise ValueError(
                f"`lr` must be a scalar base learning rate, got shape {jnp.shape(lr)}."
            )
        if is_concrete(lr):
            v = float(np.asarray(lr))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"`lr` must be non-negative and finite, got {v}.")
        dtype = model.layers[0].dtype
        lr_ = jnp.asarray(lr, dtype)
        if not is_concrete(lr):  # no error to raise: a bad traced rate is NaN, never a number
            r = jnp.asarray(lr)
            lr_ = jnp.where(jnp.isfinite(r) & (r >= 0), lr_, jnp.nan)
        rates = tuple((lr_ * s.lr).astype(dtype) for s in self.scalings(widths, optimizer))
        zeros = tuple(jnp.zeros((), dtype) for _ in model.multipliers)
        return eqx.tree_at(lambda m: (m.layers, m.multipliers), model, (rates, zeros))

    def rescaled(self, factors: Sequence[float]) -> Rescaled:
        """The same training dynamics with the stored weights rescaled, $W_\\ell = c_\\ell
        \\hat W_\\ell$ (see `Rescaled`).

        **Arguments:**

        - `factors`: one positive factor $c_\\ell$ per layer.

        **Returns:**

        The `Rescaled` parametrization.
        """
        return Rescaled(self, factors)


class Rescaled(AbstractParametrization):
    r"""A parametrization with every layer's weights reparametrized as $W_\ell = c_\ell \hat
    W_\ell$: the stored $\hat W_\ell$ starts with std $\sigma_\ell/c_\ell$, the forward
    multiplier becomes $c_\ell m_\ell$, and the learning rate $r_\ell/c_\ell^2$ for SGD and
    gradient flow, $r_\ell/c_\ell$ for Adam. The effective weights $m_\ell W_\ell$, the
    network function and the training curves are those of `base`, for any $c_\ell > 0$:
    exactly for SGD and gradient flow, and for Adam when its ε is scaled by $1/c_\ell$ too
    (or is 0). This symmetry is how a μP readout multiplier (mup's `MuReadout`) matches the
    absolute μP table.

    **Fields:**

    - `base`: the parametrization rescaled.
    - `factors`: the factors $c_\ell$, one per layer (positive).

    ??? cite "Reference"

        Yang & Hu 2021, *Feature learning in infinite-width neural networks* (Tensor
        Programs IV), arXiv:2011.14522, §3 (the symmetry of abc-parametrizations: a
        multiplier moved into the init and the learning rate leaves SGD training unchanged);
        Yang et al. 2022, *Tensor Programs V*, arXiv:2203.03466 (the same for Adam, with ε
        scaled).
    """

    base: AbstractParametrization
    factors: tuple[float, ...]

    name: ClassVar[str] = "rescaled"

    def __init__(self, base: AbstractParametrization, factors: Sequence[float]):
        if not isinstance(base, AbstractParametrization):
            raise TypeError(f"`base` must be a parametrization, got {type(base).__name__}.")
        factors = tuple(float(c) for c in factors)
        if not all(np.isfinite(c) and c > 0 for c in factors):
            raise ValueError(f"`factors` must be positive and finite, got {factors}.")
        self.base = base
        self.factors = factors

    def layer(self, fan_in, fan_out, index, depth, optimizer) -> LayerScaling:
        if len(self.factors) != depth:
            raise ValueError(
                f"`factors` has {len(self.factors)} entries but the network has {depth} layers."
            )
        s = self.base.layer(fan_in, fan_out, index, depth, optimizer)
        c = self.factors[index]
        power = 2.0 if optimizer == "sgd" else 1.0
        return LayerScaling(
            std=_float(s.std) / c, multiplier=_float(s.multiplier) * c, lr=_float(s.lr) / c**power
        )


def _init(p: AbstractParametrization, key, widths, activation, max_widths) -> MLP:
    if max_widths is None:
        widths = check_widths(widths)
        shape = widths
    else:
        widths = check_widths(widths, concrete=False)
        shape = check_widths(max_widths, "max_widths")
        widths = _resolve_widths(
            widths,
            shape,
            f"`max_widths` has {len(shape)} sizes but `widths` has {{n}}.",
            "`max_widths[{i}]` = {m}",
        )
    dtype = jnp.result_type(float)
    sizes = [shape[i + 1] * shape[i] for i in range(len(shape) - 1)]
    z = jax.random.normal(key, (sum(sizes),), dtype)  # one draw: one RNG kernel to compile
    ends = np.cumsum([0] + sizes)
    normals = [z[ends[i] : ends[i + 1]].reshape(shape[i + 1], shape[i]) for i in range(len(sizes))]
    return p.from_normal(normals, widths=widths, activation=activation)


def _from_normal(p: AbstractParametrization, normals, widths, activation) -> MLP:
    normals = [jnp.asarray(Z) for Z in normals]
    if not normals or any(Z.ndim != 2 for Z in normals):
        raise ValueError(
            "`normals` must be a non-empty sequence of matrices (n_l, n_{l-1}), got shapes "
            f"{[Z.shape for Z in normals]}."
        )
    shape = (normals[0].shape[1],) + tuple(Z.shape[0] for Z in normals)
    for i in range(1, len(normals)):
        if normals[i].shape[1] != normals[i - 1].shape[0]:
            raise ValueError(
                f"`normals[{i}]` of shape {normals[i].shape} does not follow `normals[{i - 1}]` "
                f"of shape {normals[i - 1].shape}."
            )
    widths = _resolve_widths(
        widths,
        shape,
        f"`widths` has {{n}} sizes but there are {len(normals)} layers (needs {len(shape)} "
        "sizes).",
        "the built size {m}",
    )
    scal = p.scalings(widths)
    layers = []
    for i, Z in enumerate(normals):
        W = jnp.asarray(scal[i].std, Z.dtype) * Z
        full = [
            isinstance(n, int) and n == m
            for n, m in ((widths[i], shape[i]), (widths[i + 1], shape[i + 1]))
        ]
        if not all(full):
            rows = jnp.arange(shape[i + 1]) < widths[i + 1]
            cols = jnp.arange(shape[i]) < widths[i]
            W = jnp.where(rows[:, None] & cols[None, :], W, 0.0)
        layers.append(W)
    mults = tuple(jnp.asarray(s.multiplier, normals[0].dtype) for s in scal)
    return MLP(layers, multipliers=mults, activation=activation)
