"""Equinox models whose learning dynamics jaxdyn solves.

Every model is an `eqx.Module` whose parameters are array fields and whose `__call__`
maps one input of shape `(d,)` to an output (a scalar for single-output models, `(o,)`
otherwise). Models that are linear in their input (`SingleNeuron`, `TwoLayerLinear`,
`DeepLinear`) also expose `linear_map()`, the end-to-end matrix `β` of shape `(o, d)`, which
lets `jaxdyn.gradient_flow` work with the data moments `XᵀX/n`, `XᵀY/n` instead of the data.

Models whose gradient field is only piecewise smooth (kinked activations: relu, leaky relu,
abs, …) say so through a `piecewise_smooth` attribute, read by `is_piecewise_smooth`;
`gradient_flow` then integrates them with its non-smooth strategy.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "ACTIVATIONS",
    "SingleNeuron",
    "TwoLayerLinear",
    "DeepLinear",
    "TwoLayer",
    "MLP",
    "is_linear_in_input",
    "is_piecewise_smooth",
]


def _leaky_relu(x):
    return jax.nn.leaky_relu(x, negative_slope=0.01)


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "leaky_relu": _leaky_relu,
    "abs": jnp.abs,
    "linear": lambda x: x,
    "tanh": jnp.tanh,
}


#: Activations with a kink (a jump in the derivative): the gradient field of a network using
#: them is discontinuous where a pre-activation crosses the kink.
_KINKED: tuple[Callable, ...] = (
    jax.nn.relu,
    _leaky_relu,
    jax.nn.leaky_relu,
    jnp.abs,
    jax.nn.relu6,
    jax.nn.hard_tanh,
)
#: Positively homogeneous activations σ(cz) = cσ(z) (c > 0): a bias-free two-layer network using
#: one conserves a per-unit imbalance under gradient flow.
_HOMOGENEOUS: tuple[Callable, ...] = (
    jax.nn.relu,
    _leaky_relu,
    jax.nn.leaky_relu,
    jnp.abs,
    ACTIVATIONS["linear"],
)


def _is_kinked(activation: Callable) -> bool:
    declared = getattr(activation, "piecewise_smooth", None)
    if isinstance(declared, bool):
        return declared
    return any(activation is f for f in _KINKED)


def _activation(activation: str | Callable) -> Callable:
    if callable(activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(
            f"activation={activation!r} is not known; use one of {sorted(ACTIVATIONS)} "
            "or pass a callable."
        ) from None


def _as_array(x, name: str, ndim: int | None = None) -> Array:
    """`jnp.asarray(x)`; a weight must have `ndim` dimensions, except that scalars are allowed
    so that a model can also serve as a per-layer learning-rate pytree
    (e.g. `TwoLayerLinear(W1=0.5, W2=2.0)`), and leading batch/time axes are allowed."""
    x = jnp.asarray(x)
    if ndim is not None and x.ndim != 0 and x.ndim < ndim:
        raise ValueError(f"`{name}` must have {ndim} dimension(s), got shape {x.shape}.")
    return x


def _check_chain(inner, outer, inner_name: str, outer_name: str):
    """Shapes (…, h, d) and (…, o, h) must agree on h (skipped for scalar lr leaves)."""
    if inner.ndim >= 2 and outer.ndim >= 2 and outer.shape[-1] != inner.shape[-2]:
        raise ValueError(
            f"`{outer_name}` has shape {outer.shape} but `{inner_name}` has shape {inner.shape}: "
            f"{outer_name}.shape[-1] must equal {inner_name}.shape[-2] (the hidden width)."
        )


class SingleNeuron(eqx.Module):
    r"""The single-hidden-neuron linear network $f(x) = a\,w^\top x$ (Kunin et al. 2024, Eq. 1).

    **Arguments:**

    - `a`: the readout, a scalar array.
    - `w`: the first-layer weights, shape `(d,)`.

    Under gradient flow with layer learning rates `(η_a, η_w)` the imbalance
    $\delta = \eta_w a^2 - \eta_a \|w\|^2$ is conserved (see `jaxdyn.metrics.conserved`).
    """

    a: Float[Array, ""]
    w: Float[Array, " d"]

    def __init__(self, a, w):
        self.a = _as_array(a, "a")
        self.w = _as_array(w, "w")

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.a * jnp.dot(self.w, x)

    def linear_map(self) -> Float[Array, "1 d"]:
        """End-to-end map β = a·w.

        **Returns:**

        A `(1, d)` matrix.
        """
        return (self.a * self.w)[None, :]


class TwoLayerLinear(eqx.Module):
    r"""Two-layer linear network $f(x) = W_2 W_1 x$ (Saxe et al. 2014; Dominé et al. 2024).

    **Arguments:**

    - `W1`: first layer, shape `(h, d)`.
    - `W2`: second layer, shape `(o, h)`.

    The matrix $W_2^\top W_2 - W_1 W_1^\top$ is conserved by gradient flow with equal layer
    learning rates (λ-balance, Dominé et al. 2024, Eq. 4).
    """

    W1: Float[Array, "h d"]
    W2: Float[Array, "o h"]

    def __init__(self, W1, W2):
        self.W1 = _as_array(W1, "W1", 2)
        self.W2 = _as_array(W2, "W2", 2)
        _check_chain(self.W1, self.W2, "W1", "W2")

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " o"]:
        return self.W2 @ (self.W1 @ x)

    def linear_map(self) -> Float[Array, "o d"]:
        """End-to-end map.

        **Returns:**

        $W_2 W_1$, shape `(o, d)`.
        """
        return self.W2 @ self.W1


class DeepLinear(eqx.Module):
    r"""Deep linear network $f(x) = W_L \cdots W_1 x$.

    **Arguments:**

    - `layers`: a tuple of matrices `(W1, W2, …, WL)`, `W1` first, with compatible shapes.
    """

    layers: tuple[Float[Array, "..."], ...]

    def __init__(self, layers):
        layers = tuple(_as_array(W, f"layers[{i}]", 2) for i, W in enumerate(layers))
        if len(layers) == 0:
            raise ValueError("`layers` must contain at least one matrix.")
        for i in range(1, len(layers)):
            _check_chain(layers[i - 1], layers[i], f"layers[{i - 1}]", f"layers[{i}]")
        self.layers = layers

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " o"]:
        for W in self.layers:
            x = W @ x
        return x

    def linear_map(self) -> Float[Array, "o d"]:
        r"""End-to-end map.

        **Returns:**

        $W_L \cdots W_1$, shape `(o, d)`.
        """
        out = self.layers[0]
        for W in self.layers[1:]:
            out = W @ out
        return out


class TwoLayer(eqx.Module):
    r"""Bias-free two-layer network $f(x) = W_2\,\sigma(W_1 x)$.

    **Arguments:**

    - `W1`: first layer, shape `(h, d)`.
    - `W2`: readout, shape `(o, h)`.
    - `activation`: one of `"relu"`, `"leaky_relu"`, `"abs"`, `"linear"`, `"tanh"`, or any
      callable acting elementwise. A callable with a kink declares it with an attribute
      `piecewise_smooth = True` (`jax.nn.relu`, `jax.nn.leaky_relu`, `jnp.abs`,
      `jax.nn.relu6` and `jax.nn.hard_tanh` are recognised without it).

    For positively homogeneous activations (relu, leaky_relu, abs, linear) each hidden unit
    conserves its own imbalance $\|W_2[:,k]\|^2 - \|W_1[k]\|^2$ under gradient flow
    (Kunin et al. 2024, §5). With a kinked activation the model is `piecewise_smooth` (see
    `jaxdyn.is_piecewise_smooth`).
    """

    W1: Float[Array, "h d"]
    W2: Float[Array, "o h"]
    activation: Callable = eqx.field(static=True)

    def __init__(self, W1, W2, activation: str | Callable = "relu"):
        self.W1 = _as_array(W1, "W1", 2)
        self.W2 = _as_array(W2, "W2", 2)
        _check_chain(self.W1, self.W2, "W1", "W2")
        self.activation = _activation(activation)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " o"]:
        return self.W2 @ self.activation(self.W1 @ x)

    @property
    def piecewise_smooth(self) -> bool:
        """Whether the activation has a kink, so that the gradient field is only piecewise
        smooth."""
        return _is_kinked(self.activation)

    @property
    def homogeneous(self) -> bool:
        """Whether the activation is positively homogeneous (relu, leaky relu, abs, linear), so
        that every hidden unit conserves its imbalance under gradient flow."""
        return any(self.activation is f for f in _HOMOGENEOUS)


class MLP(eqx.Module):
    r"""Bias-free multilayer perceptron $f(x) = W_L\,\sigma(\cdots\sigma(W_1 x))$ with
    per-layer output multipliers.

    **Arguments:**

    - `layers`: tuple of weight matrices `(W1, …, WL)`, `Wl` of shape `(n_l, n_{l-1})`.
    - `multipliers`: tuple of scalars `(m1, …, mL)`; layer `l` computes `m_l · W_l h`.
      Abstract-/μP-style parametrizations put their width-dependent factors here
      (see `jaxdyn.parametrization`). Defaults to ones.
    - `activation`: as for `TwoLayer`.
    """

    layers: tuple[Float[Array, "..."], ...]
    multipliers: tuple[Float[Array, ""], ...]
    activation: Callable = eqx.field(static=True)

    def __init__(self, layers, multipliers=None, activation: str | Callable = "relu"):
        layers = tuple(_as_array(W, f"layers[{i}]", 2) for i, W in enumerate(layers))
        if len(layers) == 0:
            raise ValueError("`layers` must contain at least one matrix.")
        for i in range(1, len(layers)):
            _check_chain(layers[i - 1], layers[i], f"layers[{i - 1}]", f"layers[{i}]")
        if multipliers is None:
            multipliers = tuple(jnp.ones((), layers[0].dtype) for _ in layers)
        if len(multipliers) != len(layers):
            raise ValueError(
                f"`multipliers` has {len(multipliers)} entries but there are {len(layers)} layers."
            )
        self.layers = layers
        self.multipliers = tuple(jnp.asarray(m) for m in multipliers)
        self.activation = _activation(activation)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " o"]:
        h = x
        for i, (W, m) in enumerate(zip(self.layers, self.multipliers, strict=True)):
            # Multipliers are fixed by the parametrization: no gradient flows into them.
            h = jax.lax.stop_gradient(m) * (W @ h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h

    @property
    def piecewise_smooth(self) -> bool:
        """Whether the activation has a kink (and there is a hidden layer), so that the
        gradient field is only piecewise smooth."""
        return len(self.layers) > 1 and _is_kinked(self.activation)


def is_linear_in_input(model: eqx.Module) -> bool:
    """Whether `model` is linear in its input, i.e. has a `linear_map()` method (then its MSE
    and gradient depend on the data only through the moments XᵀX/n, XᵀY/n, YᵀY/n, which
    `gradient_flow` uses).

    **Arguments:**

    - `model`: any Equinox model.

    **Returns:**

    `True` for `SingleNeuron`, `TwoLayerLinear`, `DeepLinear` (and any model defining
    `linear_map`), else `False`.
    """
    return hasattr(model, "linear_map")


def is_piecewise_smooth(model) -> bool:
    """Whether the gradient field of `model` is only piecewise smooth (it jumps where a
    pre-activation crosses a kink of the activation), which `jaxdyn.gradient_flow(...,
    nonsmooth="auto")` integrates with its non-smooth strategy.

    **Arguments:**

    - `model`: any model. Its attribute `piecewise_smooth` (a bool, or a property) is honoured,
      so a user model declares itself with a class attribute `piecewise_smooth = True`.
      `TwoLayer` and `MLP` derive it from their activation (relu, leaky relu, abs, relu6,
      hard tanh, or a callable carrying `piecewise_smooth = True`).

    **Returns:**

    `True` or `False`; `False` for models that do not say.
    """
    declared = getattr(model, "piecewise_smooth", False)
    return declared if isinstance(declared, bool) else False
