"""Conserved quantities, empirical NTK, kernel distance and other trajectory diagnostics.

Every function accepts models with extra leading axes (e.g. a `Trajectory.model` whose arrays
carry a time axis) where noted, so a diagnostic over a whole trajectory is one call.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float

from .models import MLP, DeepLinear, SingleNeuron, TwoLayer, TwoLayerLinear

__all__ = [
    "conserved",
    "ntk",
    "kernel_distance",
    "alignment",
    "relative_change",
    "spectral_norms",
]


def _lr_of(lr, field: str):
    if lr is None:
        return 1.0
    if isinstance(lr, eqx.Module):
        return getattr(lr, field)
    return lr


def conserved(model, lr=None):
    r"""Quantities conserved by gradient flow with per-layer learning rates `lr`.

    - `SingleNeuron`: $\delta = \eta_w a^2 - \eta_a\|w\|^2$ (Kunin et al. 2024, §3; notes
      Eq. 1.5), shape `(...)`.
    - `TwoLayerLinear`: $\eta_1 W_2^\top W_2 - \eta_2 W_1 W_1^\top$, shape `(..., h, h)`; with
      equal rates this is the λ-balance matrix $W_2^\top W_2 - W_1W_1^\top$ (Dominé et al. 2024,
      §3).
    - `TwoLayer` (positively homogeneous activation, bias-free): per-unit
      $\eta_1\|W_2[:,k]\|^2 - \eta_2\|W_1[k]\|^2$, shape `(..., h)` (Kunin et al. 2024, §5).
    - `DeepLinear`: tuple of $\eta_l W_{l+1}^\top W_{l+1} - \eta_{l+1} W_l W_l^\top$.

    `lr` is `None` (all ones), a scalar, or a pytree of the model's type with scalar leaves.
    Leading axes (time, batch) are kept.
    """
    if isinstance(model, SingleNeuron):
        ea, ew = _lr_of(lr, "a"), _lr_of(lr, "w")
        return ew * model.a**2 - ea * jnp.sum(model.w**2, axis=-1)
    if isinstance(model, TwoLayerLinear | TwoLayer):
        e1, e2 = _lr_of(lr, "W1"), _lr_of(lr, "W2")
        if isinstance(model, TwoLayer):
            return e1 * jnp.sum(model.W2**2, axis=-2) - e2 * jnp.sum(model.W1**2, axis=-1)
        out = jnp.einsum("...oh,...ok->...hk", model.W2, model.W2)
        inn = jnp.einsum("...hd,...kd->...hk", model.W1, model.W1)
        return e1 * out - e2 * inn
    if isinstance(model, DeepLinear | MLP):
        etas = (
            [1.0] * len(model.layers)
            if lr is None
            else (list(lr.layers) if hasattr(lr, "layers") else [lr] * len(model.layers))
        )
        res = []
        for i in range(len(model.layers) - 1):
            Wl, Wn = model.layers[i], model.layers[i + 1]
            res.append(
                etas[i] * jnp.einsum("...oh,...ok->...hk", Wn, Wn)
                - etas[i + 1] * jnp.einsum("...hd,...kd->...hk", Wl, Wl)
            )
        return tuple(res)
    raise TypeError(f"`model`: no conserved quantity known for {type(model).__name__}.")


def ntk(model, X: Float[ArrayLike, "n d"], lr=None) -> Float[Array, "no no"]:
    r"""Empirical neural tangent kernel $K = J\,\mathrm{diag}(\eta)\,J^\top$ on inputs `X`.

    $J = \partial f(X)/\partial\theta$ with outputs flattened sample-major (row `i·o + k` is
    output `k` of sample `i`), shape `(n·o, n·o)`. With `lr` (scalar or per-leaf pytree) the
    kernel is the one that drives function-space gradient flow,
    $\dot f = -\tfrac{1}{n} K (f - y)$ (for the MSE); for the single neuron this is
    $K(x, x') = \eta_w a^2 x^\top x' + \eta_a (w^\top x)(w^\top x')$ (Kunin et al. 2024, §4).

    Computed with `jax.jacfwd`/`jax.jacrev` (whichever is cheaper for the shapes); the model must
    be unbatched (use `jax.vmap(lambda m: ntk(m, X))(traj.model)` over a trajectory).
    """
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`X` must have shape (n, d), got {X.shape}.")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    def f(theta):
        m = eqx.combine(unravel(theta), static)
        return jax.vmap(m)(X).reshape(-1)

    n_out = jax.eval_shape(f, flat).shape[0]
    J = jax.jacfwd(f)(flat) if flat.shape[0] <= n_out else jax.jacrev(f)(flat)
    if lr is None:
        return J @ J.T
    if not isinstance(lr, eqx.Module):
        return lr * (J @ J.T)
    lr_params = eqx.filter(lr, eqx.is_array)
    eta = jax.tree_util.tree_map(lambda e, p: jnp.broadcast_to(e, p.shape), lr_params, params)
    eta_flat, _ = ravel_pytree(eta)
    return (J * eta_flat) @ J.T


def kernel_distance(K0: ArrayLike, Kt: ArrayLike) -> Array:
    r"""Kernel distance $S(K_0, K_t) = 1 - \langle K_0, K_t\rangle_F/(\|K_0\|_F\|K_t\|_F)$.

    (Fort et al. 2020; used by Kunin et al. 2024 and Dominé et al. 2024; notes Eq. 3.2.)
    In [0, 1] for PSD kernels; 0 means the kernel only changed scale (lazy). Reduces over the
    last two axes, so leading axes (time, batch) broadcast.
    """
    K0 = jnp.asarray(K0)
    Kt = jnp.asarray(Kt)
    inner = jnp.sum(K0 * Kt, axis=(-2, -1))
    n0 = jnp.sqrt(jnp.sum(K0 * K0, axis=(-2, -1)))
    nt = jnp.sqrt(jnp.sum(Kt * Kt, axis=(-2, -1)))
    return 1.0 - inner / (n0 * nt)


def alignment(K: ArrayLike, Y: ArrayLike) -> Array:
    r"""Kernel–target alignment $\langle K, yy^\top\rangle_F/(\|K\|_F\|y\|^2)$
    (Cristianini et al. 2002), with `Y` flattened sample-major like `ntk`."""
    K = jnp.asarray(K)
    y = jnp.asarray(Y).reshape(-1)
    return (y @ K @ y) / (jnp.sqrt(jnp.sum(K * K, axis=(-2, -1))) * jnp.sum(y * y))


def relative_change(model0, model_t) -> Array:
    r"""$\|\theta_t - \theta_0\|/\|\theta_0\|$ over all parameters.

    `model_t` may carry leading axes (e.g. a trajectory's time axis); they are kept.
    """
    p0 = jax.tree_util.tree_leaves(eqx.filter(model0, eqx.is_inexact_array))
    pt = jax.tree_util.tree_leaves(eqx.filter(model_t, eqx.is_inexact_array))
    if len(p0) != len(pt):
        raise ValueError("`model0` and `model_t` must have the same structure.")
    lead = pt[0].ndim - p0[0].ndim
    num = sum(
        jnp.sum((b - a) ** 2, axis=tuple(range(lead, b.ndim))) for a, b in zip(p0, pt, strict=True)
    )
    den = sum(jnp.sum(a**2) for a in p0)
    return jnp.sqrt(num / den)


def spectral_norms(model) -> tuple[Array, ...]:
    """Largest singular value of every weight matrix (leading axes kept), in layer order."""
    leaves = [
        x
        for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
        if x.ndim >= 2
    ]
    return tuple(jnp.linalg.norm(W, ord=2, axis=(-2, -1)) for W in leaves)
