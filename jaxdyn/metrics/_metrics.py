"""Conserved quantities, empirical NTK, kernel distance and other trajectory diagnostics.

Every function accepts models with extra leading axes (e.g. a `Trajectory.model` whose arrays
carry a time axis) where noted, so a diagnostic over a whole trajectory is one call. A model's
leading axes are those its arrays carry beyond one member's shapes (`_lead_axes`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, Real

from .._models import MLP, DeepLinear, SingleNeuron, TwoLayer, TwoLayerLinear

__all__ = [
    "balance_drift",
    "crossing_time",
    "imbalance",
    "kernel_distance_grams",
    "kernel_distance_single_neuron",
    "relative_deviation",
    "conserved",
    "ntk",
    "kernel_distance",
    "alignment",
    "relative_change",
    "spectral_norms",
]


def imbalance(
    a: Real[ArrayLike, "..."],
    w: Real[ArrayLike, "... d"],
    eta_a: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> Float[Array, "..."]:
    r"""The single neuron's conserved imbalance $\delta = \eta_w a^2 - \eta_a\|w\|^2$.

    Constant along gradient flow with layer learning rates $(\eta_a, \eta_w)$; it sets the
    lazy (|δ| large) vs rich (δ ≈ 0, or δ < 0) regime.

    **Arguments:**

    - `a`: readout(s), any leading shape.
    - `w`: weights `(..., d)`, broadcasting with `a` over the leading axes.
    - `eta_a`, `eta_w`: layer learning rates (broadcast).

    **Returns:**

    δ over the broadcast leading axes.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 (the conserved quantity δ).
    """
    a = jnp.asarray(a)
    w = jnp.asarray(w)
    return jnp.asarray(eta_w * a**2 - eta_a * jnp.sum(w**2, axis=-1))


def _lr_of(lr, field: str):
    if lr is None:
        return 1.0
    if isinstance(lr, eqx.Module):
        return getattr(lr, field)
    return lr


def conserved(model, lr=None):
    r"""Quantities conserved by gradient flow with per-layer learning rates `lr`.

    - `SingleNeuron`: $\delta = \eta_w a^2 - \eta_a\|w\|^2$ (`imbalance`; Kunin et al. 2024,
      §3), shape `(...)`.
    - `TwoLayerLinear`: $\eta_1 W_2^\top W_2 - \eta_2 W_1 W_1^\top$, shape `(..., h, h)`; with
      equal rates this is the λ-balance matrix $W_2^\top W_2 - W_1W_1^\top$ (Dominé et al. 2024,
      §3).
    - `TwoLayer` (positively homogeneous activation, bias-free): per-unit
      $\eta_1\|W_2[:,k]\|^2 - \eta_2\|W_1[k]\|^2$, shape `(..., h)` (Kunin et al. 2024, §5).
    - `DeepLinear`: tuple of $\eta_l W_{l+1}^\top W_{l+1} - \eta_{l+1} W_l W_l^\top$.

    **Arguments:**

    - `model`: a `SingleNeuron`, `TwoLayerLinear`, `TwoLayer`, `DeepLinear` or `MLP`, possibly
      with leading (time, batch) axes on every array.
    - `lr`: `None` (all ones), a scalar, or a pytree of the model's type with scalar leaves.

    **Returns:**

    The conserved quantity described above, leading axes kept (a tuple for deep nets).

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §3 and §5; Dominé et al. 2024,
        *From Lazy to Rich*, arXiv:2409.14623, assumption A2.
    """
    if isinstance(model, SingleNeuron):
        return imbalance(model.a, model.w, _lr_of(lr, "a"), _lr_of(lr, "w"))
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


def _lead_axes(model) -> int:
    """How many leading (time, batch) axes the arrays of `model` carry beyond one member's
    shapes: `a.ndim` for a `SingleNeuron`, `W1.ndim - 2` for `TwoLayerLinear`/`TwoLayer`,
    `layers[0].ndim - 2` for `DeepLinear`/`MLP`; 0 for any other model (taken as unbatched)."""
    if isinstance(model, SingleNeuron):
        n = jnp.ndim(model.a)
    elif isinstance(model, TwoLayerLinear | TwoLayer):
        n = jnp.ndim(model.W1) - 2
    elif isinstance(model, DeepLinear | MLP):
        n = jnp.ndim(model.layers[0]) - 2
    else:
        n = 0
    if n < 0:
        raise ValueError(f"`model`: {type(model).__name__} has arrays of too few dimensions.")
    return n


def _over_lead(fn, lead: int):
    for _ in range(lead):
        fn = eqx.filter_vmap(fn)
    return fn


def ntk(model, X: Float[ArrayLike, "n d"], lr=None) -> Float[Array, "*batch no no"]:
    r"""Empirical neural tangent kernel $K = J\,\mathrm{diag}(\eta)\,J^\top$ on inputs `X`.

    $J = \partial f(X)/\partial\theta$ with outputs flattened sample-major (row `i·o + k` is
    output `k` of sample `i`), shape `(n·o, n·o)`. With `lr` (scalar or per-leaf pytree) the
    kernel is the one that drives function-space gradient flow,
    $\dot f = -\tfrac{1}{n} K (f - y)$ (for the MSE); for the single neuron this is
    $K(x, x') = \eta_w a^2 x^\top x' + \eta_a (w^\top x)(w^\top x')$ (Kunin et al. 2024, §4).

    Computed with `jax.jacfwd`/`jax.jacrev` (whichever is cheaper for the shapes). A model of a
    known type (`SingleNeuron`, `TwoLayerLinear`, `TwoLayer`, `DeepLinear`, `MLP`) may carry
    extra leading axes on every array (e.g. `Trajectory.model`, time first): the kernel is
    then computed per member, exactly as `jax.vmap(lambda m: ntk(m, X))(traj.model)`.

    **Arguments:**

    - `model`: an Equinox model, possibly with leading (time, batch) axes as above; any other
      model type is taken as unbatched.
    - `X`: inputs `(n, d)`.
    - `lr`: `None`, a scalar, or a pytree of the model's type with per-leaf (unbatched)
      learning rates.

    **Returns:**

    The kernel, shape `(..., n·o, n·o)` with the model's leading axes first.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §4 (the single-neuron kernel).
    """
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`X` must have shape (n, d), got {X.shape}.")
    return _over_lead(lambda m: _ntk(m, X, lr), _lead_axes(model))(model)


def _ntk(model, X, lr):
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


def kernel_distance(
    K0: Float[ArrayLike, "... m m"], Kt: Float[ArrayLike, "... m m"]
) -> Float[Array, "..."]:
    r"""Kernel distance $S(K_0, K_t) = 1 - \langle K_0, K_t\rangle_F/(\|K_0\|_F\|K_t\|_F)$.

    In [0, 1] for PSD kernels; 0 means the kernel only changed scale (lazy). Reduces over the
    last two axes, so leading axes (time, batch) broadcast.

    **Arguments:**

    - `K0`, `Kt`: kernels `(..., m, m)`.

    **Returns:**

    $S$ over the broadcast leading axes.

    ??? cite "Reference"

        Fort et al. 2020, *Deep learning versus kernel learning*, arXiv:2010.15110, §4; as used
        by Kunin et al. 2024, arXiv:2406.06158, §4.
    """
    K0 = jnp.asarray(K0)
    Kt = jnp.asarray(Kt)
    inner = jnp.sum(K0 * Kt, axis=(-2, -1))
    n0 = jnp.sqrt(jnp.sum(K0 * K0, axis=(-2, -1)))
    nt = jnp.sqrt(jnp.sum(Kt * Kt, axis=(-2, -1)))
    return 1.0 - inner / (n0 * nt)


def alignment(
    K: Float[ArrayLike, "*batch m m"], Y: Float[ArrayLike, "..."]
) -> Float[Array, "*batch"]:
    r"""Kernel–target alignment $\langle K, yy^\top\rangle_F/(\|K\|_F\|y\|^2)$
    (Cristianini et al. 2002, *On kernel-target alignment*), with `Y` flattened sample-major
    like `ntk`.

    **Arguments:**

    - `K`: a kernel `(m, m)`, or kernels `(..., m, m)` (e.g. `ntk` of a trajectory).
    - `Y`: targets with `m` entries in all (e.g. `(n,)` or `(n, o)`), shared by every kernel.

    **Returns:**

    The alignment in [−1, 1], shape `(...)`.
    """
    K = jnp.asarray(K)
    y = jnp.asarray(Y).reshape(-1)
    if K.ndim < 2 or K.shape[-1] != K.shape[-2] or K.shape[-1] != y.shape[0]:
        raise ValueError(
            f"`K` must be square (..., m, m) with m = {y.shape[0]} (the entries of `Y`), got "
            f"{K.shape}."
        )
    num = jnp.einsum("i,...ij,j->...", y, K, y)
    return num / (jnp.sqrt(jnp.sum(K * K, axis=(-2, -1))) * jnp.sum(y * y))


def relative_change(model0, model_t) -> Float[Array, "..."]:
    r"""$\|\theta_t - \theta_0\|/\|\theta_0\|$ over all parameters.

    **Arguments:**

    - `model0`: the reference model, possibly with leading (batch) axes `B…` on every array.
    - `model_t`: a model of the same structure with leading axes `(B…, T…)`: `model0`'s
      leading axes first, then any extra ones (e.g. `Trajectory.model` of a batched flow,
      `(B, T, …)`, against the initial models `(B, …)`).

    **Returns:**

    The relative change per member, with `model_t`'s leading axes `(B…, T…)`.
    """
    p0 = jax.tree_util.tree_leaves(eqx.filter(model0, eqx.is_inexact_array))
    pt = jax.tree_util.tree_leaves(eqx.filter(model_t, eqx.is_inexact_array))
    if len(p0) != len(pt):
        raise ValueError("`model0` and `model_t` must have the same structure.")
    if not p0:
        raise ValueError("`model0` has no floating-point array parameters.")
    lead0 = _lead_axes(model0)
    lead = pt[0].ndim - p0[0].ndim
    if lead < 0 or any(b.ndim - a.ndim != lead for a, b in zip(p0, pt, strict=True)):
        raise ValueError(
            "`model_t` must carry the same number of extra leading axes on every array as "
            f"`model0`, plus its own; got {[a.shape for a in p0]} and {[b.shape for b in pt]}."
        )
    for a, b in zip(p0, pt, strict=True):
        if b.shape[:lead0] != a.shape[:lead0] or b.shape[lead0 + lead :] != a.shape[lead0:]:
            raise ValueError(
                f"`model_t` array of shape {b.shape} does not extend `model0`'s {a.shape} "
                "by leading axes after model0's own."
            )

    def expand(a):  # (B…, member) -> (B…, 1…, member)
        return a.reshape(a.shape[:lead0] + (1,) * lead + a.shape[lead0:])

    def member_sum(x, first):
        return jnp.sum(x, axis=tuple(range(first, x.ndim)))

    num = sum(member_sum((b - expand(a)) ** 2, lead0 + lead) for a, b in zip(p0, pt, strict=True))
    den = sum(member_sum(a**2, lead0) for a in p0)
    return jnp.sqrt(num / jnp.reshape(den, jnp.shape(den) + (1,) * lead))


def spectral_norms(model, reference=None, *, iterations: int | None = None) -> tuple[Array, ...]:
    r"""Largest singular value $\|W\|_*$ of every weight matrix (leading axes kept), in layer
    order; with `reference`, that of every update $\Delta W = W - W_{ref}$.

    **Arguments:**

    - `model`: an Equinox model, possibly with leading (time, batch) axes on every array
      (counted by the model's type as for `ntk`); every inexact array leaf with ≥ 2
      dimensions per member is a weight matrix (its last two axes). A time-stacked
      `SingleNeuron` (`w (T, d)`) therefore has none.
    - `reference`: optional model of the same structure whose arrays broadcast against
      `model`'s (e.g. the initial model against a time-stacked `Trajectory.model`); the
      norms are then those of the updates `W - W_ref`.
    - `iterations`: `None` (default) for the exact norm (an SVD); an int q for a randomized
      block-Krylov estimate (`spectral_norm`), much cheaper for large matrices.

    **Returns:**

    A tuple of arrays, one per weight matrix, each with the model's leading axes.
    """
    lead = _lead_axes(model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    if reference is not None:
        refs = jax.tree_util.tree_leaves(eqx.filter(reference, eqx.is_inexact_array))
        if len(refs) != len(leaves):
            raise ValueError("`reference` must have the same structure as `model`.")
        try:
            leaves = [x - r for x, r in zip(leaves, refs, strict=True)]
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"`reference`'s arrays must broadcast against `model`'s: {e}"
            ) from None
    return tuple(_operator_norm(W, iterations) for W in leaves if W.ndim - lead >= 2)


#: Block width of the randomized block-Krylov spectral-norm estimate.
_KRYLOV_BLOCK = 8


def _operator_norm(W: Array, iterations: int | None) -> Array:
    """‖W‖_* over the last two axes: exact (SVD) or randomized block Krylov."""
    W = jnp.asarray(W)
    if iterations is not None and (
        isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1
    ):
        raise ValueError(f"`iterations` must be None or a positive int, got {iterations!r}.")
    if iterations is None or min(W.shape[-2:]) <= _KRYLOV_BLOCK * iterations:
        return jnp.linalg.norm(W, ord=2, axis=(-2, -1))
    return jnp.vectorize(lambda A: _krylov_norm(A, iterations), signature="(n,m)->()")(W)


def _krylov_norm(W: Array, q: int) -> Array:
    # Randomized block Krylov (Musco & Musco 2015): an orthonormal basis Q of
    # [WV, (WWᵀ)WV, …, (WWᵀ)^{q-1}WV] (each block reorthogonalized against the earlier ones),
    # then ‖QᵀW‖_* ≤ ‖W‖_*. One `fori_loop` keeps the compiled program small.
    n, b = W.shape[0], _KRYLOV_BLOCK
    V = jax.random.normal(jax.random.key(0), (W.shape[1], b), W.dtype)
    Y, _ = jnp.linalg.qr(W @ V)
    basis = jnp.zeros((n, q * b), W.dtype).at[:, :b].set(Y)

    def step(i, carry):
        basis, Y = carry
        Y = W @ (W.T @ Y)
        for _ in range(2):  # twice is enough (Giraud et al. 2005)
            Y = Y - basis @ (basis.T @ Y)
        Y, _ = jnp.linalg.qr(Y)
        return jax.lax.dynamic_update_slice(basis, Y, (0, i * b)), Y

    basis, _ = jax.lax.fori_loop(1, q, step, (basis, Y))
    Q, _ = jnp.linalg.qr(basis)
    return jnp.linalg.svd(Q.T @ W, compute_uv=False)[0]


def kernel_distance_single_neuron(
    a0: Float[ArrayLike, "..."],
    w0: Float[ArrayLike, "... d"],
    a: Float[ArrayLike, "..."],
    w: Float[ArrayLike, "... d"],
    eta_a: Real[ArrayLike, "..."] = 1.0,
    eta_w: Real[ArrayLike, "..."] = 1.0,
) -> Float[Array, "..."]:
    r"""Kernel distance $S(K_0, K_t)$ (`kernel_distance`) of the single neuron's
    learning-rate-weighted NTK on whitened inputs, in closed form, without forming the kernels.

    On whitened data $K = X M X^\top$ with $M = \eta_w a^2 I + \eta_a w w^\top$, so
    $\langle K_0, K_t\rangle_F = n^2\,\mathrm{tr}(M_0 M_t)$ and, with $p = \eta_w a^2$,
    $\mathrm{tr}(M_0M_t) = d\,p_0p_t + \eta_a(p_0\|w_t\|^2 + p_t\|w_0\|^2)
    + \eta_a^2(w_0\cdot w_t)^2$. Equal to `kernel_distance(ntk(m0, X, lr), ntk(mt, X, lr))`
    for any whitened `X`.

    **Arguments:**

    - `a0`, `w0`: the initial neuron (`w0 (..., d)`).
    - `a`, `w`: the neuron at time t, possibly with extra (e.g. time) axes broadcasting
      against `a0`, `w0`.
    - `eta_a`, `eta_w`: layer learning rates (broadcast).

    **Returns:**

    $S(K_0, K_t)$ over the broadcast leading axes.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, §4 (the NTK
        $K = X(\eta_w a^2 I + \eta_a ww^\top)X^\top$).
    """
    a0, w0, a, w = (jnp.asarray(v) for v in (a0, w0, a, w))
    d = w.shape[-1]
    p0, pt = eta_w * a0**2, eta_w * a**2
    n0, nt = jnp.sum(w0**2, -1), jnp.sum(w**2, -1)
    cross = d * p0 * pt + eta_a * (p0 * nt + pt * n0) + eta_a**2 * jnp.sum(w0 * w, -1) ** 2
    sq0 = d * p0**2 + 2 * eta_a * p0 * n0 + eta_a**2 * n0**2
    sqt = d * pt**2 + 2 * eta_a * pt * nt + eta_a**2 * nt**2
    return jnp.asarray(1.0 - cross / jnp.sqrt(sq0 * sqt))


def _ntk_inner(gi_a, go_a, gi_b, go_b, d: int, o: int):
    # ⟨K_a, K_b⟩_F / n² for two-layer linear NTKs on whitened inputs (see kernel_distance_grams).
    tr = lambda A: jnp.trace(A, axis1=-2, axis2=-1)  # noqa: E731
    dot = lambda A, B: jnp.sum(A * B, axis=(-2, -1))  # noqa: E731
    return o * dot(gi_a, gi_b) + tr(gi_a) * tr(go_b) + tr(gi_b) * tr(go_a) + d * dot(go_a, go_b)


def kernel_distance_grams(
    gram_in: Float[Array, "*batch T d d"], gram_out: Float[Array, "*batch T o o"]
) -> Float[Array, "*batch T"]:
    r"""NTK kernel distance $S(0, t)$ (`kernel_distance`) of a two-layer linear net on whitened
    inputs, from the Grams $G_{in} = W_1^\top W_1(t)$ and $G_{out} = W_2W_2^\top(t)$ only,
    without forming the `(n·o, n·o)` kernels.

    The NTK is $K = X G_{in} X^\top \otimes I_o + XX^\top \otimes G_{out}$; with
    $X^\top X = nI$, $\langle K_a, K_b\rangle_F = n^2[o\,\mathrm{tr}(G^a_{in}G^b_{in})
    + \mathrm{tr}G^a_{in}\mathrm{tr}G^b_{out} + \mathrm{tr}G^b_{in}\mathrm{tr}G^a_{out}
    + d\,\mathrm{tr}(G^a_{out}G^b_{out})]$. Exactly equal to `kernel_distance` of the empirical
    NTK (`ntk`) at times 0 and t.

    **Arguments:**

    - `gram_in`: $W_1^\top W_1$ over time, `(..., T, d, d)`; time 0 is the reference.
    - `gram_out`: $W_2W_2^\top$ over time, `(..., T, o, o)`.

    **Returns:**

    $S(0, t)$, shape `(..., T)`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, §4 (the NTK of a two-layer
        linear network as a function of $W_1^\top W_1$ and $W_2W_2^\top$).
    """
    d, o = gram_in.shape[-1], gram_out.shape[-1]
    gi0, go0 = gram_in[..., :1, :, :], gram_out[..., :1, :, :]
    inner = _ntk_inner(gi0, go0, gram_in, gram_out, d, o)
    n0 = _ntk_inner(gi0, go0, gi0, go0, d, o)
    nt = _ntk_inner(gram_in, gram_out, gram_in, gram_out, d, o)
    return 1.0 - inner / jnp.sqrt(n0 * nt)


def balance_drift(
    W1: Float[Array, "*batch T h d"],
    W2: Float[Array, "*batch T o h"],
    lam: Real[ArrayLike, "*#batch"],
    live: Real[ArrayLike, "*#batch h"] | None = None,
) -> Float[Array, "*batch"]:
    r"""How far a two-layer linear trajectory drifts from λ-balance: the maximum over time and
    entries of $|W_2^\top W_2 - W_1W_1^\top - \lambda\,\mathrm{diag}(\text{live})|$, which is
    zero along exact gradient flow from a λ-balanced init.

    **Arguments:**

    - `W1`: first-layer weights over time, `(..., T, h, d)`.
    - `W2`: second-layer weights over time, `(..., T, o, h)`.
    - `lam`: the imbalance λ, shape `(...)`.
    - `live`: which hidden units are active (1) or masked to zero (0), `(..., h)`; default all
      active.

    **Returns:**

    The drift, shape `(...)`.

    ??? cite "Reference"

        Dominé et al. 2024, *From Lazy to Rich*, arXiv:2409.14623, assumption A2
        (λ-balance, conserved by gradient flow).
    """
    lam = jnp.asarray(lam)
    if live is None:
        live = jnp.ones(W1.shape[:-3] + W1.shape[-2:-1], W1.dtype)
    live = jnp.asarray(live)
    D = jnp.einsum("...ok,...ol->...kl", W2, W2) - jnp.einsum("...kd,...ld->...kl", W1, W1)
    target = lam[..., None, None, None] * jnp.eye(W1.shape[-2]) * live[..., None, None, :]
    return jnp.max(jnp.abs(D - target), axis=(-3, -2, -1))


def relative_deviation(
    a: Float[ArrayLike, "..."], b: Float[ArrayLike, "..."], axes: int | tuple[int, ...]
) -> Float[Array, "..."]:
    r"""$\max|a - b| / \max|b|$ over `axes`: the deviation of `a` (e.g. a gradient flow) from a
    reference `b` (e.g. a closed form), relative to the reference's size.

    **Arguments:**

    - `a`, `b`: arrays of the same shape.
    - `axes`: the axis or axes to reduce.

    **Returns:**

    The relative deviation over the remaining axes.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {a.shape} and {b.shape}.")
    return jnp.max(jnp.abs(a - b), axis=axes) / jnp.max(jnp.abs(b), axis=axes)


def crossing_time(ts: Float[Array, " T"], a: Float[Array, " T"]) -> Float[Array, ""]:
    r"""The first time a sampled curve `a(ts)` crosses zero from above, to the accuracy of its
    cubic interpolation: the first save time with `a <= 0` is located, a 4-point Lagrange cubic
    through the neighbouring samples is built, and its root in the bracketing interval is
    refined by 8 Newton steps (from the linear interpolate). Traceable (`jit`, `vmap`).

    **Arguments:**

    - `ts`: increasing save times `(T,)`, `T >= 4`.
    - `a`: the curve at those times `(T,)`, positive at `ts[0]`.

    **Returns:**

    The crossing time, or `inf` if `a` stays positive (or starts ≤ 0).
    """
    T = ts.shape[0]
    if T < 4:
        raise ValueError(f"`ts` must have at least 4 save times, got {T}.")
    neg = a <= 0
    anyneg = jnp.any(neg)
    i = jnp.argmax(neg)
    i0 = jnp.clip(i - 2, 0, T - 4)
    tt = jax.lax.dynamic_slice(ts, (i0,), (4,))
    aa = jax.lax.dynamic_slice(a, (i0,), (4,))

    def p(t):
        out, dout = 0.0, 0.0
        for j in range(4):
            num, dnum = 1.0, 0.0
            den = 1.0
            for k in range(4):
                if k != j:
                    dnum = dnum * (t - tt[k]) + num
                    num = num * (t - tt[k])
                    den = den * (tt[j] - tt[k])
            out = out + aa[j] * num / den
            dout = dout + aa[j] * dnum / den
        return out, dout

    ip = jnp.maximum(i - 1, 0)
    a_l, a_r = a[ip], a[i]
    t_l, t_r = ts[ip], ts[i]
    t = t_l + (t_r - t_l) * a_l / jnp.where(a_l != a_r, a_l - a_r, 1.0)
    for _ in range(8):
        v, dv = p(t)
        t = jnp.clip(t - v / jnp.where(dv != 0, dv, 1.0), t_l, t_r)
    return jnp.where(anyneg & (i > 0), t, jnp.inf)
