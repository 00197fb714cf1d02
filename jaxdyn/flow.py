"""Gradient flow (Diffrax) and gradient descent (Optax) on Equinox models.

`gradient_flow` solves the ODE dθ/dt = −lr ⊙ ∇_θ L(θ) with an adaptive Diffrax solver; it is the
numerical reference every closed form in `jaxdyn.exact` is tested against.
`gradient_descent` runs the discrete map θ ← θ − lr ⊙ ∇L (or any Optax optimizer) and returns the
same `Trajectory` type, with step k saved at time `t = k` (so the flow with the same `lr` is its
continuous-time limit).
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, PyTree

from ._checks import check_data, check_finite_tree, check_ts, is_concrete
from .models import is_linear_in_input

__all__ = ["RESULTS", "Trajectory", "gradient_flow", "gradient_descent", "mse_loss", "STATUS"]

DEFAULT_MAX_STEPS = 100_000


#: Result codes: Diffrax's (`successful`, `max_steps_reached`, `event_occurred`, …) including
#: Optimistix's `nonfinite`, which jaxdyn sets when a trajectory became NaN/inf.
RESULTS = diffrax.RESULTS


#: Integer status codes used in sweep Datasets (`status` variable).
STATUS = {
    0: "ok",
    1: "stopped_at_loss",
    2: "max_steps",
    3: "nonfinite",
    4: "failed",
}


class Trajectory(eqx.Module):
    """A solved learning trajectory.

    **Fields:**

    - `ts`: save times, shape `(T,)`.
    - `model`: the model pytree with a leading time axis on every array (`T` first).
    - `loss`: the loss at each save time, `(T,)`.
    - `stats`: dict with `num_steps`, `num_accepted_steps`, `num_rejected_steps` and `t_final`
      (the time the solve ended: the last save time, or the hitting time of `stop_at_loss`).
    - `result`: a `jaxdyn.RESULTS` item (Diffrax's codes plus `nonfinite`). Check it with
      `traj.result == jd.RESULTS.successful`; `traj.status` gives an integer code (see
      `jaxdyn.flow.STATUS`).

    Save times after a `stop_at_loss` event hold the state at the hitting time. Save times after
    a failure (max_steps, non-finite state) hold NaN, and `result` says why.

    Under `jax.vmap`, or from a batched solve, every field has a leading batch axis.
    """

    ts: Float[Array, " T"]
    model: PyTree
    loss: Float[Array, " T"]
    stats: dict[str, Array]
    result: diffrax.RESULTS

    @property
    def status(self) -> Array:
        """Integer status: 0 ok, 1 stopped at `stop_at_loss`, 2 max_steps, 3 non-finite,
        4 other failure."""
        r = self.result
        return jnp.select(
            [
                r == RESULTS.successful,
                r == RESULTS.event_occurred,
                r == RESULTS.max_steps_reached,
                r == RESULTS.nonfinite,
            ],
            [0, 1, 2, 3],
            4,
        )

    @property
    def final_model(self):
        """The model at the last save time."""
        return _index_time(self.model, -1)


def _index_time(model, i):
    # The time axis is the first axis of every array leaf of an unbatched trajectory.
    return jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, model)


# --------------------------------------------------------------------------------------------
# Loss


def mse_loss(model, data) -> Array:
    """L = (1/2n) Σ_i ‖f(x_i) − y_i‖², evaluated on the data directly."""
    X, Y2, _ = check_data(data)
    return _mse_from_data(model, X, Y2)


def _mse_from_data(model, X, Y2):
    pred = jax.vmap(model)(X).reshape(X.shape[0], -1)
    return 0.5 * jnp.mean(jnp.sum((pred - Y2) ** 2, axis=-1))


def _moments(X, Y2):
    n = X.shape[0]
    return X.T @ X / n, X.T @ Y2 / n, jnp.sum(Y2 * Y2) / n


def _mse_from_moments(model, Sxx, Sxy, syy):
    # L = ½ tr(B Sxx Bᵀ) − tr(B Sxy) + ½ tr(Syy), B = linear map (o, d)
    B = model.linear_map()
    return 0.5 * jnp.sum((B @ Sxx) * B) - jnp.sum(B * Sxy.T) + 0.5 * syy


def _make_loss(static, X, Y2, vector_y, loss, model):
    """Return `L(params)` for the given loss spec."""
    if loss == "mse":
        if is_linear_in_input(model):
            Sxx, Sxy, syy = _moments(X, Y2)

            def L(params):
                return _mse_from_moments(eqx.combine(params, static), Sxx, Sxy, syy)

        else:

            def L(params):
                return _mse_from_data(eqx.combine(params, static), X, Y2)

        return L
    if callable(loss):
        Y = Y2[:, 0] if vector_y else Y2

        def L(params):
            return loss(eqx.combine(params, static), (X, Y))

        return L
    raise ValueError(f"`loss` must be 'mse' or a callable loss(model, data), got {loss!r}.")


# --------------------------------------------------------------------------------------------
# Learning rates


def _lr_tree(lr, params, batch: bool):
    """Normalise `lr` into a pytree matching `params` (leaves broadcastable to each parameter).

    Returns `(lr_tree, lr_batched)`: `lr_batched` is True when, in batch mode, the learning rates
    carry a leading batch axis."""
    if isinstance(lr, int | float) or (eqx.is_array_like(lr) and jnp.ndim(lr) == 0):
        lr = jnp.asarray(lr)
        if is_concrete(lr) and float(lr) < 0:
            raise ValueError(f"`lr` must be non-negative, got {float(lr)}.")
        return jax.tree_util.tree_map(lambda _: lr, params), False
    lr_params = eqx.filter(lr, eqx.is_array)
    p_struct = jax.tree_util.tree_structure(params)
    l_struct = jax.tree_util.tree_structure(lr_params)
    if p_struct != l_struct:
        raise TypeError(
            "`lr` must be a scalar or a pytree with the model's structure (e.g. "
            "`jd.SingleNeuron(a=eta_a, w=eta_w)`); got structure\n"
            f"  {l_struct}\nfor a model with structure\n  {p_struct}."
        )
    for leaf, p in zip(
        jax.tree_util.tree_leaves(lr_params), jax.tree_util.tree_leaves(params), strict=True
    ):
        leaf_shape = jnp.shape(leaf)
        if batch:
            if len(leaf_shape) == 0 or leaf_shape[0] != p.shape[0]:
                raise ValueError(
                    "`lr`: with batch=True, a pytree lr must carry the leading batch axis on "
                    f"every leaf (got a leaf of shape {leaf_shape} for a parameter of shape "
                    f"{p.shape}); use a scalar lr to share it."
                )
            member_shape, p_member = leaf_shape[1:], p.shape[1:]
        else:
            member_shape, p_member = leaf_shape, p.shape
        try:
            if jnp.broadcast_shapes(member_shape, p_member) != p_member:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"`lr`: a leaf of shape {leaf_shape} does not broadcast to its parameter of shape "
                f"{p.shape}."
            ) from None
        if is_concrete(leaf) and bool(np.any(np.asarray(leaf) < 0)):
            raise ValueError("`lr` must be non-negative in every leaf.")
    return lr_params, batch


# --------------------------------------------------------------------------------------------
# Gradient flow


def _check_model_data(model, X, Y2, batch: bool):
    """Shape-check the model against the data without compiling."""
    x0 = jax.ShapeDtypeStruct(X.shape[1:], X.dtype)
    try:
        if batch:
            out = eqx.filter_eval_shape(lambda m, x: jax.vmap(lambda mm: mm(x))(m), model, x0)
            out_shape = out.shape[1:]
        else:
            out = eqx.filter_eval_shape(lambda m, x: m(x), model, x0)
            out_shape = out.shape
    except Exception as e:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            f"`model` cannot be applied to inputs of dimension d = {X.shape[1]} (data X has shape "
            f"{X.shape}): {e}"
        ) from None
    o = int(np.prod(out_shape)) if len(out_shape) else 1
    if o != Y2.shape[1]:
        raise ValueError(
            f"`model` outputs {o} value(s) per input but targets Y have {Y2.shape[1]} column(s)."
        )


def gradient_flow(
    model,
    data: tuple[ArrayLike, ArrayLike],
    ts: ArrayLike,
    *,
    lr: float | PyTree = 1.0,
    loss: str | Callable = "mse",
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    stop_at_loss: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: float | None = None,
    batch: bool = False,
) -> Trajectory:
    r"""Solve gradient flow $\dot\theta = -\eta \odot \nabla_\theta L(\theta)$ with Diffrax.

    **Arguments:**

    - `model`: an Equinox model (e.g. `jd.SingleNeuron`); its inexact-array leaves are the
      parameters θ.
    - `data`: `(X, Y)`, `X` of shape `(n, d)`, `Y` of shape `(n,)` or `(n, o)`.
    - `ts`: 1-D save times, starting at 0, strictly increasing.
    - `lr`: a non-negative scalar, or a pytree with the model's structure holding per-leaf
      learning rates (e.g. `jd.SingleNeuron(a=eta_a, w=eta_w)`), each broadcast to its parameter.
    - `loss`: `"mse"` — $L = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2$ — or a callable
      `loss(model, (X, Y)) -> scalar`. For models linear in their input the MSE and its
      gradient are computed from the moments XᵀX/n, XᵀY/n, YᵀY/n only, so the cost of the solve
      does not depend on n.
    - `solver`: any Diffrax solver; default `diffrax.Tsit5()` (use `diffrax.Dopri8()` for tight
      tolerances).
    - `rtol`, `atol`: tolerances of the default `diffrax.PIDController`, whose error norm is the
      max norm (every component meets the tolerance, also in a batched solve).
    - `max_steps`: solver step limit; hitting it is reported in `result`, not raised.
    - `stop_at_loss`: if given, the solve ends when the loss falls to this value (a Diffrax
      event; the hitting time is `traj.stats["t_final"]`).
    - `adjoint`: Diffrax adjoint for reverse-mode autodiff (default `RecursiveCheckpointAdjoint`).
    - `stepsize_controller`, `dt0`: override Diffrax's step-size control.
    - `batch`: if True, every array of `model` (and of a pytree `lr`) has a leading batch axis and
      all members are solved as one stacked ODE with shared adaptive steps under the max-norm
      error control, so every member meets `rtol`/`atol`. The output has the batch axis first,
      like `jax.vmap(gradient_flow)` would return. One member's failure (max_steps) fails the
      solve for all; a member that becomes non-finite is marked `nonfinite`.

    **Returns:**

    A `jaxdyn.Trajectory`.

    Works under `jax.jit`, `jax.vmap` (each member keeps its own adaptive step) and `jax.grad`.
    Invalid arguments raise `ValueError`/`TypeError` naming the argument before anything is
    compiled (value checks are skipped for traced inputs).
    """
    X, Y2, vector_y = check_data(data)
    ts = check_ts(ts)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive integer or None, got {max_steps}.")
    if stop_at_loss is not None and is_concrete(stop_at_loss) and not np.isfinite(stop_at_loss):
        raise ValueError(f"`stop_at_loss` must be finite, got {stop_at_loss}.")
    if not isinstance(batch, bool):
        raise TypeError(f"`batch` must be a bool, got {type(batch).__name__}.")

    params, static = eqx.partition(model, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("`model` has no floating-point array parameters to train.")
    check_finite_tree(params, "model")
    if batch:
        sizes = {
            leaf.shape[0] if leaf.ndim else None for leaf in jax.tree_util.tree_leaves(params)
        }
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                "`model`: with batch=True every parameter array needs the same leading batch "
                f"axis; got leading sizes {sorted(map(str, sizes))}."
            )
    _check_model_data(model, X, Y2, batch)
    lr_tree, lr_batched = _lr_tree(lr, params, batch)

    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    ts = ts.astype(dtype) if jnp.issubdtype(dtype, jnp.floating) else ts
    member_model = (
        model
        if not batch
        else jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, model)
    )
    L = _make_loss(static, X, Y2, vector_y, loss, member_model)

    def member_vf(p, eta):
        g = jax.grad(L)(p)
        return jax.tree_util.tree_map(lambda gi, ei: -(ei * gi).astype(gi.dtype), g, eta)

    if batch:
        batch_vf = jax.vmap(member_vf, in_axes=(0, 0 if lr_batched else None))
        batch_loss = jax.vmap(L)

        def vf(t, y, args):
            return batch_vf(y, args)

        def total_loss(y):
            return jnp.max(batch_loss(y))
    else:

        def vf(t, y, args):
            return member_vf(y, args)

        total_loss = L

    if solver is None:
        solver = diffrax.Tsit5()
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=optx.max_norm)
    if adjoint is None:
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    event = None
    if stop_at_loss is not None:
        threshold = jnp.asarray(stop_at_loss, dtype)

        def cond_fn(t, y, args, **kwargs):
            return total_loss(y) - threshold

        event = diffrax.Event(cond_fn, root_finder=optx.Newton(rtol=1e-10, atol=1e-12))

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=params,
        args=lr_tree,
        saveat=diffrax.SaveAt(ts=ts, t1=True),
        stepsize_controller=stepsize_controller,
        adjoint=adjoint,
        event=event,
        max_steps=max_steps,
        throw=False,
    )

    result = sol.result
    stopped = result == RESULTS.event_occurred
    # Diffrax writes the state at an event into the first unused save slot and leaves later
    # slots (and the t1 slot) at inf; a failed solve leaves its unused slots at inf too.
    last = jnp.sum(jnp.isfinite(sol.ts)) - 1
    t_final = sol.ts[last]
    on_time = jnp.isfinite(sol.ts[:-1]) & (sol.ts[:-1] == ts)  # (T,)

    def fill(y):
        y_last = y[last]
        y = y[:-1]
        mask = on_time.reshape((-1,) + (1,) * (y.ndim - 1))
        held = jnp.where(stopped, jnp.broadcast_to(y_last, y.shape), jnp.nan)
        return jnp.where(mask, y, held)

    ys = jax.tree_util.tree_map(fill, sol.ys)

    if batch:
        # (T, B, ...) -> (B, T, ...)
        ys = jax.tree_util.tree_map(lambda y: jnp.swapaxes(y, 0, 1), ys)
        loss_t = jax.vmap(jax.vmap(L))(ys)
        B = loss_t.shape[0]
        result = jax.tree_util.tree_map(lambda r: jnp.broadcast_to(r, (B,)), result)
        result = jax.vmap(_mark_nonfinite)(ys, loss_t, result)
        bcast = lambda x: jnp.broadcast_to(x, (B,) + jnp.shape(x))
        ts_out = bcast(ts)
        stats = _stats(sol, t_final, bcast)
    else:
        loss_t = jax.vmap(L)(ys)
        result = _mark_nonfinite(ys, loss_t, result)
        ts_out = ts
        stats = _stats(sol, t_final, lambda x: x)

    traj_model = eqx.combine(ys, static)
    return Trajectory(ts=ts_out, model=traj_model, loss=loss_t, stats=stats, result=result)


def _mark_nonfinite(ys, loss_t, result):
    """Mark an otherwise successful trajectory whose states or loss are not finite."""
    finite = jnp.all(jnp.isfinite(loss_t))
    for y in jax.tree_util.tree_leaves(ys):
        finite = finite & jnp.all(jnp.isfinite(y))
    ok = (result == RESULTS.successful) | (result == RESULTS.event_occurred)
    return RESULTS.where(ok & ~finite, RESULTS.nonfinite, result)


def _stats(sol, t_final, bcast):
    s = sol.stats
    return {
        "num_steps": bcast(jnp.asarray(s["num_steps"])),
        "num_accepted_steps": bcast(jnp.asarray(s["num_accepted_steps"])),
        "num_rejected_steps": bcast(jnp.asarray(s["num_rejected_steps"])),
        "t_final": bcast(jnp.asarray(t_final)),
    }


# --------------------------------------------------------------------------------------------
# Gradient descent


def gradient_descent(
    model,
    data: tuple[ArrayLike, ArrayLike],
    steps: int,
    *,
    lr: float | PyTree,
    optimizer: optax.GradientTransformation | None = None,
    save_every: int = 1,
    loss: str | Callable = "mse",
) -> Trajectory:
    r"""Full-batch discrete training with Optax, returned as a `Trajectory`.

    **Arguments:**

    - `model`, `data`, `loss`: as for `gradient_flow`.
    - `steps`: number of optimizer steps (a positive int).
    - `lr`: scalar or per-leaf pytree (as for `gradient_flow`), multiplying the optimizer's
      updates. With the default optimizer this is plain gradient descent
      θ ← θ − lr ⊙ ∇L, whose gradient-flow limit is `gradient_flow(model, data, ts, lr=lr)`
      with step k at time t = k. With an Optax optimizer that has its own learning rate, pass
      `lr=1.0`.
    - `optimizer`: any `optax.GradientTransformation`; default `optax.sgd(1.0)`.
    - `save_every`: save every this many steps (steps 0, save_every, …, ≤ steps).

    **Returns:**

    A `Trajectory` with `ts` = step indices (as floats), `stats["num_steps"]` = steps, and
    `result` = `nonfinite` if the iterates became NaN/inf.
    """
    X, Y2, vector_y = check_data(data)
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps!r}.")
    if not isinstance(save_every, int | np.integer) or not 1 <= save_every <= steps:
        raise ValueError(f"`save_every` must be an int in [1, steps], got {save_every!r}.")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("`model` has no floating-point array parameters to train.")
    check_finite_tree(params, "model")
    _check_model_data(model, X, Y2, False)
    lr_tree, _ = _lr_tree(lr, params, False)
    L = _make_loss(static, X, Y2, vector_y, loss, model)
    if optimizer is None:
        optimizer = optax.sgd(1.0)
    opt_state = optimizer.init(params)
    n_saves = steps // save_every

    def one_step(carry, _):
        p, s = carry
        g = jax.grad(L)(p)
        updates, s = optimizer.update(g, s, p)
        updates = jax.tree_util.tree_map(lambda u, e: (e * u).astype(u.dtype), updates, lr_tree)
        return (optax.apply_updates(p, updates), s), None

    def save_block(carry, _):
        carry, _ = jax.lax.scan(one_step, carry, None, length=save_every)
        return carry, carry[0]

    _, saved = jax.lax.scan(save_block, (params, opt_state), None, length=n_saves)
    ys = jax.tree_util.tree_map(lambda p0, s: jnp.concatenate([p0[None], s]), params, saved)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    ts = jnp.arange(n_saves + 1, dtype=dtype) * save_every
    loss_t = jax.vmap(L)(ys)
    result = _mark_nonfinite(ys, loss_t, RESULTS.successful)
    stats = {
        "num_steps": jnp.asarray(n_saves * save_every),
        "num_accepted_steps": jnp.asarray(n_saves * save_every),
        "num_rejected_steps": jnp.asarray(0),
        "t_final": ts[-1],
    }
    return Trajectory(
        ts=ts, model=eqx.combine(ys, static), loss=loss_t, stats=stats, result=result
    )
