"""Gradient flow (Diffrax) and gradient descent (Optax) on Equinox models.

`gradient_flow` solves the ODE dθ/dt = −lr ⊙ ∇_θ L(θ) with an adaptive Diffrax solver; it is the
numerical reference every closed form in `jaxdyn.exact` is tested against.
`gradient_descent` runs the discrete map θ ← θ − lr ⊙ ∇L (or any Optax optimizer) and returns the
same `Trajectory` type, with step k saved at time `t = k` (so the flow with the same `lr` is its
continuous-time limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PyTree

from ._checks import check_data, check_finite_tree, check_ts, is_concrete
from ._models import TwoLayer, is_linear_in_input, is_piecewise_smooth
from ._results import RESULTS, status_code

__all__ = [
    "Trajectory",
    "describe_solver",
    "gradient_descent",
    "gradient_flow",
    "mse_loss",
    "resolve_batch",
]

#: What `data` arguments accept: `(X, Y)` with `X (n, d)`, `Y (n,)` or `(n, o)`. Annotated
#: loosely on purpose: the functions validate it themselves and raise a `TypeError`/`ValueError`
#: naming the argument (a runtime type checker would pre-empt those messages).
DataLike = Any
#: Save times: a 1-D array or a sequence of numbers (shape and values validated by the
#: functions, which name `ts` in their errors).
TimesLike = ArrayLike | Sequence[float]

DEFAULT_MAX_STEPS = 100_000
DEFAULT_TOL = 1e-8
#: The non-smooth strategy's step floor is (ts[-1] - ts[0]) / FLOOR_STEPS.
FLOOR_STEPS = 20_000


class Trajectory(eqx.Module):
    r"""A solved learning trajectory.

    **Fields:**

    - `ts`: save times, shape `(T,)`.
    - `model`: the model pytree with a leading time axis on every array (`T` first).
    - `loss`: the loss at each save time, `(T,)`.
    - `stats`: dict with `num_steps`, `num_accepted_steps`, `num_rejected_steps` and `t_final`
      (the time the solve ended: the last save time, or the hitting time of `stop_at_loss`).
      A solve with the non-smooth strategy adds `num_forced_steps` (steps taken at the step
      floor although their error estimate failed: steps across or along a kink) and `dtmin`
      (the floor). For a bias-free `TwoLayer` with a positively homogeneous activation (and
      scalar per-layer learning rates) `conserved_drift` is the largest change, over save times
      and hidden units, of the per-unit invariant $\eta_1\|W_2[:,k]\|^2 -
      \eta_2\|W_1[k]\|^2$, which the exact flow keeps constant: the solve's measured error.
    - `result`: a `jaxdyn.RESULTS` item (Diffrax's codes plus `nonfinite`). Check it with
      `traj.result == jd.RESULTS.successful`; `traj.status` gives its integer index (see
      `jaxdyn.status_meaning()`).

    Save times after a `stop_at_loss` event hold the state at the hitting time. Save times after
    a failure (max_steps, non-finite state) hold NaN, and `result` says why.

    Under `jax.vmap`, or from a batched solve, every field has a leading batch axis.
    """

    ts: Float[Array, "*batch T"]
    model: PyTree
    loss: Float[Array, "*batch T"]
    stats: dict[str, Array]
    result: RESULTS

    @property
    def status(self) -> Array:
        """Integer status: the index of `result` in `jaxdyn.RESULTS` (`int8`; 0 is
        `successful`), the code a sweep stores in its `status` variable."""
        return status_code(self.result)

    @property
    def final_model(self):
        """The model at the last save time."""
        return _index_time(self.model, -1)


def _index_time(model, i):
    # The time axis is the first axis of every array leaf of an unbatched trajectory.
    return jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, model)


# --------------------------------------------------------------------------------------------
# Loss


def mse_loss(model: eqx.Module, data: DataLike) -> Float[Array, ""]:
    r"""The mean-squared-error loss $L = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2$, the loss
    `gradient_flow(loss="mse")` minimises, evaluated on the data directly.

    **Arguments:**

    - `model`: an Equinox model applied to one input `(d,)`.
    - `data`: `(X, Y)` with `X (n, d)`, `Y (n,)` or `(n, o)`.

    **Returns:**

    The scalar loss.
    """
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


#: Contractions up to this length are written as unrolled multiply-adds (`_rows_matmul`).
SMALL_CONTRACTION = 8


def _rows_matmul(A, B):
    """The matrix product over the two leading axes with the members' batch axis trailing:
    `A (m, k[, N])`, `B (k, n[, N])` -> `(m, n, N)` (an operand without the trailing axis is
    shared by all members). For k ≤ `SMALL_CONTRACTION` it is k unrolled broadcast
    multiply-adds: elementwise along the contiguous member axis, so XLA fuses them with
    their neighbours (a batched `dot_general` would put the members first and transpose
    around every vector-field evaluation)."""
    A = A if A.ndim == 3 else A[..., None]
    B = B if B.ndim == 3 else B[..., None]
    k = A.shape[1]
    if k > SMALL_CONTRACTION:
        return jnp.einsum("ikb,kjb->ijb", A, B)
    out = A[:, 0:1] * B[0:1]
    for i in range(1, k):
        out = out + A[:, i : i + 1] * B[i : i + 1]
    return out


def _rows_kind(member_model, params) -> str | None:
    """`"single_neuron"` / `"two_layer_linear"` when the stacked solve has hand-written rows
    formulas for the model (all of its parameters trained), else `None`."""
    from ._models import SingleNeuron, TwoLayerLinear

    kind = type(member_model)
    if kind is SingleNeuron and params.a is not None and params.w is not None:
        return "single_neuron"
    if kind is TwoLayerLinear and params.W1 is not None and params.W2 is not None:
        return "two_layer_linear"
    return None


def _rows_linear_map(kind, tree):
    """The members' linear maps `B (o, d, N)` from leaves with a trailing member axis."""
    if kind == "single_neuron":
        return (tree.a * tree.w)[None]
    return _rows_matmul(tree.W2, tree.W1)


def _rows_grad(member_model, params, Sxx, Sxy):
    """The MSE gradient of a batch of `SingleNeuron` or `TwoLayerLinear` members from the data
    moments, written on leaves with the members' axis trailing (`a (N,)`, `w (d, N)`;
    `W1 (h, d, N)`, `W2 (o, h, N)`): ∇_B L = B·Sxx − Sxyᵀ pulled back through B = a·wᵀ or
    B = W₂W₁ by hand, as in `_make_grad`. `None` for any other model (or when a parameter is
    frozen): the stacked solve then vmaps the member gradient instead."""
    kind = _rows_kind(member_model, params)
    if kind == "single_neuron":

        def grad(tree):
            a, w = tree.a, tree.w  # (N,), (d, N)
            G = _rows_matmul(_rows_linear_map(kind, tree), Sxx)[0] - Sxy[:, 0:1]  # (d, N)
            ga = w[0] * G[0]
            for i in range(1, w.shape[0]):
                ga = ga + w[i] * G[i]
            return eqx.tree_at(lambda t: (t.a, t.w), tree, (ga, a * G))

        return grad
    if kind == "two_layer_linear":

        def grad(tree):
            W1, W2 = tree.W1, tree.W2  # (h, d, N), (o, h, N)
            G = _rows_matmul(_rows_linear_map(kind, tree), Sxx) - Sxy.T[..., None]  # (o, d, N)
            gW1 = _rows_matmul(jnp.swapaxes(W2, 0, 1), G)  # W2ᵀG, (h, d, N)
            gW2 = _rows_matmul(G, jnp.swapaxes(W1, 0, 1))  # G W1ᵀ, (o, h, N)
            return eqx.tree_at(lambda t: (t.W1, t.W2), tree, (gW1, gW2))

        return grad
    return None


def _rows_loss(member_model, params, Sxx, Sxy, syy):
    """The MSE of a batch of members on leaves with a trailing member axis, from the data
    moments: L = ½ tr(B Sxx Bᵀ) − tr(B Sxy) + ½ syy per member (as `_mse_from_moments`),
    elementwise along that axis. `None` where `_rows_grad` is `None`."""
    kind = _rows_kind(member_model, params)
    if kind is None:
        return None

    def loss(tree):
        B = _rows_linear_map(kind, tree)  # (o, d, N)
        quad = jnp.sum(_rows_matmul(B, Sxx) * B, axis=(0, 1))
        return 0.5 * quad - jnp.sum(B * Sxy.T[..., None], axis=(0, 1)) + 0.5 * syy

    return loss


def _make_grad(static, X, Y2, loss, model, L):
    """Return `∇L(params)`. For the MSE of a model linear in its input the gradient is the
    pullback of ∇_B L = B·Sxx − Sxyᵀ through the linear map B(θ) (one vjp of `linear_map`,
    no differentiation of the quadratic form: fewer and smaller matrix products per member,
    which matters in a stacked solve of many small members); else `jax.grad(L)`."""
    if loss == "mse" and is_linear_in_input(model):
        Sxx, Sxy, _ = _moments(X, Y2)
        Sxx = 0.5 * (Sxx + Sxx.T)  # exactly symmetric: ∇ of ½tr(B Sxx Bᵀ) is B·Sxx

        def grad_moments(params):
            B, pullback = jax.vjp(lambda p: eqx.combine(p, static).linear_map(), params)
            return pullback(B @ Sxx - Sxy.T)[0]

        return grad_moments
    return jax.grad(L)


def _make_loss(static, X, Y2, vector_y, loss, model):
    """Return `L(params)` for the given loss spec."""
    if loss == "mse":
        if is_linear_in_input(model):
            Sxx, Sxy, syy = _moments(X, Y2)

            def L_moments(params):
                return _mse_from_moments(eqx.combine(params, static), Sxx, Sxy, syy)

            return L_moments

        def L_data(params):
            return _mse_from_data(eqx.combine(params, static), X, Y2)

        return L_data
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
        if is_concrete(lr) and not (np.isfinite(float(lr)) and float(lr) >= 0):
            raise ValueError(f"`lr` must be non-negative and finite, got {float(lr)}.")
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
        if is_concrete(leaf):
            v = np.asarray(leaf)
            if not bool(np.all(np.isfinite(v) & (v >= 0))):
                raise ValueError("`lr` must be non-negative and finite in every leaf.")
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


BATCH_MODES = ("stacked", "vmap", "auto")


def resolve_batch(batch: bool | str) -> str | None:
    """The batched-solve mode `gradient_flow` uses for its `batch` argument.

    **Arguments:**

    - `batch`: `False`, `True` (same as `"stacked"`), `"stacked"`, `"vmap"` or `"auto"`.

    **Returns:**

    `None` for a single model, else `"stacked"` or `"vmap"`; `"auto"` resolves to `"stacked"`
    on CPU (one stacked ODE is the fastest there) and to `"vmap"` on accelerators (per-member
    steps). This is the only place the choice is made: experiments and sweeps pass their
    `mode` through.
    """
    if batch is False:
        return None
    if batch is True:
        return "stacked"
    if isinstance(batch, str) and batch in BATCH_MODES:
        if batch == "auto":
            return "stacked" if jax.default_backend() == "cpu" else "vmap"
        return batch
    raise ValueError(f"`batch` must be False, True, 'stacked', 'vmap' or 'auto', got {batch!r}.")


def _tolerances(rtol, atol, controller) -> tuple[float, float]:
    if controller is not None:
        if rtol is not None or atol is not None:
            raise ValueError(
                "`rtol`/`atol` cannot be combined with a custom `stepsize_controller`: give the "
                "tolerances to the controller (e.g. diffrax.PIDController(rtol=..., atol=...))."
            )
        return DEFAULT_TOL, DEFAULT_TOL
    rtol = DEFAULT_TOL if rtol is None else rtol
    atol = DEFAULT_TOL if atol is None else atol
    for name, v in (("rtol", rtol), ("atol", atol)):
        if is_concrete(v) and not (np.isfinite(v) and float(v) > 0):
            raise ValueError(f"`{name}` must be positive and finite, got {v}.")
    return rtol, atol


def _vmap_flow(model, data, ts, *, lr, **kwargs) -> Trajectory:
    """`jax.vmap` of the single-model flow over the leading axis of `model` (and of a pytree
    `lr`); static (non-array) fields are shared."""
    scalar_lr = isinstance(lr, int | float) or (eqx.is_array_like(lr) and jnp.ndim(lr) == 0)

    def one(m, eta):
        return gradient_flow(m, data, ts, lr=eta, **kwargs)

    in_axes = (eqx.if_array(0), None if scalar_lr else eqx.if_array(0))
    return eqx.filter_vmap(one, in_axes=in_axes)(model, lr)


def describe_solver(
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    batch: bool | str = False,
    nonsmooth: bool = False,
    dtmin: float | None = None,
) -> dict[str, Any]:
    """Dataset attributes describing a `gradient_flow` configuration, generated from the
    Diffrax objects themselves (so an experiment never writes them by hand).

    **Arguments:**

    - `solver`, `stepsize_controller`, `rtol`, `atol`, `batch`, `dtmin`: as for
      `gradient_flow` (`None` means its default).
    - `nonsmooth`: whether the solve uses the non-smooth strategy (what
      `gradient_flow(nonsmooth="auto")` picks for a piecewise-smooth model, see
      `jaxdyn.is_piecewise_smooth`); it applies only without a `stepsize_controller`.

    **Returns:**

    A dict with `solver` (e.g. `"diffrax.Dopri8 + PIDController(max norm)"`), `rtol`, `atol`,
    and `mode` (the resolved batch mode) when `batch` is not `False`; with the non-smooth
    strategy also `dtmin` (a number, or `"(t1 - t0)/20000"` for the default floor).
    """
    rtol, atol = _tolerances(rtol, atol, stepsize_controller)
    floor = nonsmooth and stepsize_controller is None
    if floor:
        solver = _nonsmooth_solver() if solver is None else solver
        stepsize_controller = FloorController.make(rtol, atol, 1.0 if dtmin is None else dtmin)
    solver = diffrax.Tsit5() if solver is None else solver
    controller = (
        _default_controller(rtol, atol) if stepsize_controller is None else stepsize_controller
    )
    if isinstance(controller, FloorController):
        controller = controller.pid
    text = f"diffrax.{type(solver).__name__} + {type(controller).__name__}"
    if isinstance(controller, diffrax.PIDController):
        rtol, atol = float(controller.rtol), float(controller.atol)
        notes = []
        if controller.norm is optx.max_norm:
            notes.append("max norm")
        elif controller.norm is optx.rms_norm:
            notes.append("RMS norm")
        if controller.dtmin is not None:
            notes.append("dtmin forced" if controller.force_dtmin else "dtmin")
        text += f"({', '.join(notes)})" if notes else ""
    attrs: dict[str, Any] = {"solver": text, "rtol": rtol, "atol": atol}
    if floor:
        attrs["dtmin"] = f"(t1 - t0)/{FLOOR_STEPS}" if dtmin is None else dtmin
    mode = resolve_batch(batch)
    if mode is not None:
        attrs["mode"] = mode
    return attrs


def _default_controller(rtol, atol) -> diffrax.PIDController:
    return diffrax.PIDController(rtol=rtol, atol=atol, norm=optx.max_norm)


class FloorController(diffrax.AbstractAdaptiveStepSizeController):
    """The step-size controller of the non-smooth strategy: a max-norm
    `diffrax.PIDController` with a forced step floor `dtmin`, which also counts the forced
    steps (steps kept at the floor although their error estimate failed).

    **Fields:**

    - `pid`: the wrapped `diffrax.PIDController` (with `dtmin` and `force_dtmin=True`).
    - `rtol`, `atol`, `norm`: its tolerances and error norm.

    Build it with `FloorController.make(rtol, atol, dtmin)`. The count is read from the final
    controller state (`diffrax.SaveAt(controller_state=True)`): `state[1]`.
    """

    pid: diffrax.PIDController
    rtol: Any
    atol: Any
    norm: Callable = eqx.field(static=True)

    @classmethod
    def make(cls, rtol, atol, dtmin) -> FloorController:
        """A floor controller with tolerances `rtol`, `atol` and step floor `dtmin`.

        **Arguments:**

        - `rtol`, `atol`: tolerances of the error test (max norm).
        - `dtmin`: the step floor.

        **Returns:**

        The controller.
        """
        pid = diffrax.PIDController(
            rtol=rtol, atol=atol, norm=optx.max_norm, dtmin=dtmin, force_dtmin=True
        )
        return cls(pid=pid, rtol=rtol, atol=atol, norm=optx.max_norm)

    def wrap(self, direction):
        return eqx.tree_at(lambda c: c.pid, self, self.pid.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        dt, state = self.pid.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return dt, (state, jnp.zeros((), jnp.int32))

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        inner, n_forced = controller_state
        keep, next_t0, next_t1, jump, inner, result = self.pid.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )

        def scaled(e, a, b):
            return e / (self.atol + self.rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))

        err = self.norm(jax.tree_util.tree_map(scaled, y_error, y0, y1_candidate))
        forced = keep & ~(err < 1)
        return keep, next_t0, next_t1, jump, (inner, n_forced + forced), result


def gradient_flow(
    model,
    data: DataLike,
    ts: TimesLike,
    *,
    lr: float | PyTree = 1.0,
    loss: str | Callable = "mse",
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    stop_at_loss: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: float | None = None,
    batch: bool | str = False,
    nonsmooth: bool | str = "auto",
    dtmin: float | None = None,
    block_size: int | None = None,
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
      tolerances), or `diffrax.Bosh3()` under the non-smooth strategy (see `nonsmooth`).
    - `rtol`, `atol`: tolerances (default 1e-8 each) of the default `diffrax.PIDController`,
      whose error norm is the max norm (every component meets the tolerance, also in a batched
      solve). They must be positive and finite, and `rtol` at least 10·eps of the parameters'
      dtype (2.2e-15 in float64, 1.2e-6 in float32; below that a solver cannot meet it);
      `rtol=None` means 1e-8, or 10·eps where that is larger. With a custom
      `stepsize_controller` they must not be given (the controller carries its own
      tolerances): passing both raises `ValueError` rather than silently ignoring one of them.
    - `max_steps`: solver step limit; hitting it is reported in `result`, not raised.
    - `stop_at_loss`: if given, the solve ends when the loss falls to this value (a Diffrax
      event; the hitting time is `traj.stats["t_final"]`).
    - `adjoint`: Diffrax adjoint for reverse-mode autodiff (default `RecursiveCheckpointAdjoint`).
    - `stepsize_controller`, `dt0`: override Diffrax's step-size control.
    - `batch`: `False` (one model), or how to solve a batch of models, every array of `model`
      (and of a pytree `lr`) carrying a leading batch axis:
        - `"stacked"` (or `True`): all members as one stacked ODE with shared adaptive steps
          under the max-norm error control, so every member meets `rtol`/`atol`. One member's
          failure (max_steps) fails the solve for all; a member that becomes non-finite is
          marked `nonfinite`. The fast path on CPU.
        - `"vmap"`: `jax.vmap` of the single-model solve; every member keeps its own adaptive
          steps and its own `result`. The fast path on accelerators.
        - `"auto"`: `"stacked"` on CPU, `"vmap"` on GPU/TPU (see `resolve_batch`).

      The output has the batch axis first, exactly as `jax.vmap(gradient_flow)` would return.
    - `nonsmooth`: `"auto"` (default), `True` or `False`: whether to integrate with the
      non-smooth strategy. `"auto"` uses it when `jaxdyn.is_piecewise_smooth(model)` (a ReLU,
      leaky-ReLU or abs network, or a model declaring `piecewise_smooth = True`) and neither
      `solver` nor `stepsize_controller` is given; `True` uses it also with a given `solver`.
      The strategy: `diffrax.Bosh3()` (3rd order) under a max-norm PID controller with a
      forced step floor `dtmin`, so the solve reaches `ts[-1]` in at most about
      `(ts[-1] - ts[0]) / dtmin` accepted steps; `stats["num_forced_steps"]` counts the steps
      kept at the floor across or along a kink, and `stats["conserved_drift"]` (where an
      invariant is known) measures the error. Measured on a two-layer ReLU/abs net (d = 4,
      h = 16, n = 64, t = 10): 8 000–19 000 steps, weights within 3e-6 of a fine fixed-step
      solve, invariant drift ≤ 3e-7, where the plain adaptive solve stopped at t ≈ 2 after
      100 000 steps; see the numerics page for the comparison of solvers and floors.
      `nonsmooth=True` together with a `stepsize_controller` raises `ValueError`.
    - `dtmin`: the step floor of the non-smooth strategy; default
      `(ts[-1] - ts[0]) / 20_000`. Giving it for a solve that does not use the strategy
      raises `ValueError`.
    - `block_size`: with a batch, solve its members in consecutive blocks of this many, one
      block after another (`jax.lax.map`): each block is one solve in the chosen `batch` mode,
      with its own step control, `max_steps` failure and `stop_at_loss` event (a stacked
      event fires at the worst member of its block). `None` (default): one solve of all
      members. For a large stacked batch on CPU blocks are faster — most blocks need fewer
      steps than the hardest member of the whole batch, and a block's stage arrays stay in
      cache (65 536 single-neuron flows: 2.5–3.6× faster in blocks of 1 024 at equal rtol in
      one run, see the numerics page) — at the price of results that depend on the grouping (as
      `jd.sweep`'s blocks). A batch that is not a multiple of it is padded with copies of its
      last member, which the output drops.

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
    mode = resolve_batch(batch)
    if not (nonsmooth is True or nonsmooth is False or nonsmooth == "auto"):
        raise ValueError(f"`nonsmooth` must be 'auto', True or False, got {nonsmooth!r}.")
    if nonsmooth is True and stepsize_controller is not None:
        raise ValueError(
            "`nonsmooth=True` brings its own step-size controller (a forced step floor): it "
            "cannot be combined with a custom `stepsize_controller`."
        )
    if dtmin is not None and is_concrete(dtmin) and not (np.isfinite(dtmin) and dtmin > 0):
        raise ValueError(f"`dtmin` must be positive and finite, got {dtmin}.")
    rtol_arg, atol_arg = rtol, atol
    rtol, atol = _tolerances(rtol, atol, stepsize_controller)
    batch = mode is not None

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
    # the arguments a blocked or vmapped solve passes on to its inner solves
    solve_kw = dict(
        loss=loss,
        solver=solver,
        rtol=rtol_arg,
        atol=atol_arg,
        max_steps=max_steps,
        stop_at_loss=stop_at_loss,
        adjoint=adjoint,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        nonsmooth=nonsmooth,
        dtmin=dtmin,
    )
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
            raise TypeError(f"`block_size` must be an integer or None, got {block_size!r}.")
        if block_size < 1:
            raise ValueError(f"`block_size` must be positive, got {block_size}.")
        if not batch:
            raise ValueError("`block_size` splits a batch: it needs batch='stacked'/'vmap'/True.")
        n_members = jax.tree_util.tree_leaves(params)[0].shape[0]
        if block_size < n_members:
            return _blocked_flow(
                model, data, ts, lr, lr_batched, n_members, int(block_size), batch=mode, **solve_kw
            )
    if mode == "vmap":
        return _vmap_flow(model, (X, Y2[:, 0] if vector_y else Y2), ts, lr=lr, **solve_kw)

    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    rtol = _rtol_for_dtype(rtol_arg, rtol, dtype)
    piecewise = is_piecewise_smooth(model) if nonsmooth == "auto" else bool(nonsmooth)
    use_floor = piecewise and stepsize_controller is None and (solver is None or nonsmooth is True)
    if dtmin is not None and not use_floor:
        raise ValueError(
            "`dtmin` is the step floor of the non-smooth strategy, which this solve does not "
            "use (a smooth model, or a custom solver/stepsize_controller): pass "
            "nonsmooth=True, or give the floor to your controller."
        )
    ts = ts.astype(dtype) if jnp.issubdtype(dtype, jnp.floating) else ts
    member_model = (
        model
        if not batch
        else jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, model)
    )
    L = _make_loss(static, X, Y2, vector_y, loss, member_model)
    grad_L = _make_grad(static, X, Y2, loss, member_model, L)

    def member_vf(p, eta):
        g = grad_L(p)
        return jax.tree_util.tree_map(lambda gi, ei: -(ei * gi).astype(gi.dtype), g, eta)

    y0, args, flat, rows_loss = params, lr_tree, None, None
    if batch and _flat_layout_ok(params):
        # One contiguous state array (P, B): the P parameters of a member down the rows, the
        # B members along the contiguous axis. The solver's stage algebra, error norm and
        # saving then act on one array (not once per leaf), and every elementwise operation
        # runs over long contiguous rows.
        rows_grad = None
        if loss == "mse" and is_linear_in_input(member_model):
            Sxx, Sxy, syy = _moments(X, Y2)
            Sxx = 0.5 * (Sxx + Sxx.T)
            rows_grad = _rows_grad(member_model, params, Sxx, Sxy)
            rows_loss = _rows_loss(member_model, params, Sxx, Sxy, syy)
        flat = _flat_state(params, lr_tree, lr_batched, member_vf, rows_grad)
        y0, args = flat.y0, flat.eta
        member_flat_vf = flat.member_flat_vf
        batch_loss = jax.vmap(L)

        def flat_vf(t, y, args):
            return args * member_flat_vf(y)

        vf = flat_vf
    elif batch:
        batch_vf = jax.vmap(member_vf, in_axes=(0, 0 if lr_batched else None))
        batch_loss = jax.vmap(L)

        def stacked_vf(t, y, args):
            return batch_vf(y, args)

        vf = stacked_vf
    else:
        batch_loss = None

        def single_vf(t, y, args):
            return member_vf(y, args)

        vf = single_vf

    def total_loss(y):
        # the stop_at_loss event of a stacked solve fires when the worst member hits it
        if batch_loss is None:
            return L(y)
        if flat is None:
            return jnp.max(batch_loss(y))
        if rows_loss is not None:
            return jnp.max(rows_loss(flat.rows_tree(y)))
        members = jax.tree_util.tree_map(lambda x: x[:, 0], flat.to_batched(y[None]))
        return jnp.max(batch_loss(members))

    if use_floor:
        floor = (ts[-1] - ts[0]) / FLOOR_STEPS if dtmin is None else jnp.asarray(dtmin, dtype)
        if solver is None:
            solver = _nonsmooth_solver()
        stepsize_controller = FloorController.make(rtol, atol, floor)
    if solver is None:
        solver = diffrax.Tsit5()
    if stepsize_controller is None:
        stepsize_controller = _default_controller(rtol, atol)
    if adjoint is None:
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    event = None
    if stop_at_loss is not None:
        threshold = jnp.asarray(stop_at_loss, dtype)

        def cond_fn(t, y, args, **kwargs):
            return total_loss(y) - threshold

        event = diffrax.Event(cond_fn, root_finder=optx.Newton(rtol=1e-10, atol=1e-12))

    save_kw = {}
    if flat is not None:
        # At each save time, while the state is in cache: the state, each member's loss (the
        # moments formula, when there is one) and whether the member's state is finite. After
        # the solve only the transpose to the (B, T, ...) layout passes over the saved states.
        def save_fn(t, y, args):
            loss_y = None if rows_loss is None else rows_loss(flat.rows_tree(y))
            # the flag as a float (1 finite, 0 not; unsaved slots NaN): Diffrax's event
            # handling keeps save buffers in one floating dtype
            return y, loss_y, jnp.all(jnp.isfinite(y), axis=0).astype(y.dtype)

        save_kw["fn"] = save_fn

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=ts, t1=True, controller_state=use_floor, **save_kw),
        stepsize_controller=stepsize_controller,
        adjoint=adjoint,
        event=event,
        max_steps=max_steps,
        throw=False,
    )

    result = RESULTS.promote(sol.result)
    stopped = result == RESULTS.event_occurred
    # Diffrax writes the state at an event into the first unused save slot and leaves later
    # slots (and the t1 slot) at inf; a failed solve leaves its unused slots at inf too.
    sol_ts = sol.ts
    assert sol_ts is not None  # SaveAt(ts=...) always saves times
    last = jnp.sum(jnp.isfinite(sol_ts)) - 1
    t_final = sol_ts[last]
    on_time = jnp.isfinite(sol_ts[:-1]) & (sol_ts[:-1] == ts)  # (T,)

    def fill(y):
        y_last = y[last]
        y = y[:-1]
        mask = on_time.reshape((-1,) + (1,) * (y.ndim - 1))
        held = jnp.where(stopped, jnp.broadcast_to(y_last, y.shape), jnp.nan)
        return jnp.where(mask, y, held)

    ys = jax.tree_util.tree_map(fill, sol.ys)
    if batch:
        if flat is not None:
            # saved (T, P, B) states, (T, B) losses (rows formula) and (T, B) finiteness
            # flags; one transpose per leaf to the params pytree with leaves (B, T, ...)
            ys, loss_saved, finite_saved = ys
            finite = jnp.all(finite_saved == 1, axis=0)  # (B,)
            ys = flat.to_batched(ys)
            loss_t = jax.vmap(jax.vmap(L))(ys) if loss_saved is None else loss_saved.T
        else:
            # (T, B, ...) -> (B, T, ...)
            ys = jax.tree_util.tree_map(lambda y: jnp.swapaxes(y, 0, 1), ys)
            loss_t = jax.vmap(jax.vmap(L))(ys)
            finite = jax.vmap(_all_finite)(ys)
        B = loss_t.shape[0]
        finite = finite & jnp.all(jnp.isfinite(loss_t), axis=1)
        result = jax.tree_util.tree_map(lambda r: jnp.broadcast_to(r, (B,)), result)
        result = jax.vmap(_mark_nonfinite)(finite, result)
        bcast = lambda x: jnp.broadcast_to(x, (B,) + jnp.shape(x))
        ts_out = bcast(ts)
        stats = _stats(sol, t_final, bcast)
        if use_floor:
            stats.update(_floor_stats(sol, floor, bcast))
    else:
        loss_t = jax.vmap(L)(ys)
        result = _mark_nonfinite(_all_finite(ys) & jnp.all(jnp.isfinite(loss_t)), result)
        ts_out = ts
        stats = _stats(sol, t_final, lambda x: x)
        if use_floor:
            stats.update(_floor_stats(sol, floor, lambda x: x))
    traj_model = eqx.combine(ys, static)
    if loss == "mse":
        drift = _conserved_drift(traj_model, lr_tree)
        if drift is not None:
            stats["conserved_drift"] = drift
    return Trajectory(ts=ts_out, model=traj_model, loss=loss_t, stats=stats, result=result)


def _blocked_flow(model, data, ts, lr, lr_batched, n, block, **kwargs) -> Trajectory:
    """`gradient_flow` of a batch of `n` members in consecutive blocks of `block`, one block
    after another (`jax.lax.map`); the last block padded with copies of the last member."""
    n_blocks = -(-n // block)
    pad = n_blocks * block - n

    def to_blocks(x):  # (n, ...) -> (n_blocks, block, ...)
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        return x.reshape((n_blocks, block) + x.shape[1:])

    dyn_m, static_m = eqx.partition(model, eqx.is_array)
    dyn_l, static_l = eqx.partition(lr, eqx.is_array) if lr_batched else (None, lr)

    def one(args):
        m, e = args
        return gradient_flow(
            eqx.combine(m, static_m), data, ts, lr=eqx.combine(e, static_l), **kwargs
        )

    blocks = jax.tree_util.tree_map(to_blocks, (dyn_m, dyn_l))
    first = jax.tree_util.tree_map(lambda x: x[0], blocks)
    out_static = eqx.filter(
        eqx.filter_eval_shape(one, first), lambda x: not isinstance(x, jax.ShapeDtypeStruct)
    )
    out = jax.lax.map(lambda a: eqx.filter(one(a), eqx.is_array), blocks)
    out = jax.tree_util.tree_map(lambda x: x.reshape((n_blocks * block,) + x.shape[2:])[:n], out)
    return eqx.combine(out, out_static)


def _flat_layout_ok(params) -> bool:
    """The contiguous layout needs one floating dtype across the parameter leaves."""
    leaves = jax.tree_util.tree_leaves(params)
    return len({leaf.dtype for leaf in leaves}) == 1


class _FlatState(NamedTuple):
    """The stacked solve's contiguous state (see `_flat_state`)."""

    y0: Array  # (P, B)
    eta: Array  # (P, B) or (P, 1)
    rows_tree: Callable  # (..., P, B) -> params pytree, leaves (..., *shape, B)
    to_batched: Callable  # (T, P, B) -> params pytree, leaves (B, T, *shape)
    member_flat_vf: Callable  # (P, B) -> (P, B), unit learning rate


def _flat_state(params, lr_tree, lr_batched, member_vf, rows_grad=None) -> _FlatState:
    """The stacked solve's contiguous state: `y0 (P, B)` (the P parameters of a member down
    the rows, the B members along the contiguous axis), the learning rates `eta` as a `(P, ·)`
    array, `rows_tree` (a state, with any leading axes, viewed as the params pytree with the
    members' axis trailing: leaf k is the row block `y[..., o_k:o_k+s_k, :]`), `to_batched`
    (saved states `(T, P, B)` -> the params pytree with leaves `(B, T, *shape)`: one
    transpose), and `member_flat_vf(y (P, B))`, the members' vector field at unit learning
    rate. `rows_grad` (from `_rows_grad`), when given, is the members' gradient on leaves
    with a trailing member axis, used instead of vmapping `member_vf`."""
    member0 = jax.tree_util.tree_map(lambda x: x[0], params)

    def ravel(tree):
        return ravel_pytree(tree)[0]

    y0 = jax.vmap(ravel)(params).T  # (P, B)
    if lr_batched:
        eta = jax.vmap(
            lambda e, p: ravel(
                jax.tree_util.tree_map(lambda ei, pi: jnp.broadcast_to(ei, pi.shape), e, p)
            )
        )(lr_tree, params).T
    else:
        eta = ravel(
            jax.tree_util.tree_map(lambda e, p: jnp.broadcast_to(e, p.shape), lr_tree, member0)
        )[:, None]
    eta = eta.astype(y0.dtype)
    ones = jax.tree_util.tree_map(lambda p: jnp.ones((), p.dtype), member0)

    leaves0, treedef = jax.tree_util.tree_flatten(member0)
    shapes = [leaf.shape for leaf in leaves0]
    sizes = [int(np.prod(sh)) for sh in shapes]
    offsets = np.cumsum([0] + sizes)
    blocks = list(zip(offsets[:-1], sizes, shapes, strict=True))

    def rows_tree(y):
        lead, B = y.shape[:-2], y.shape[-1]
        return treedef.unflatten(
            [y[..., o : o + n, :].reshape(lead + sh + (B,)) for o, n, sh in blocks]
        )

    def to_batched(ys):
        # one transpose per leaf, (T, n_k, B) -> (B, T, n_k): no (B, T, P) intermediate
        T, B = ys.shape[0], ys.shape[-1]
        return treedef.unflatten(
            [jnp.moveaxis(ys[:, o : o + n], -1, 0).reshape((B, T) + sh) for o, n, sh in blocks]
        )

    def member_rows(tree):
        return member_vf(tree, ones)

    # The members' batch axis stays the trailing (contiguous) axis into the vector field.
    # With a hand-written `rows_grad` (SingleNeuron, TwoLayerLinear) the whole field is
    # elementwise along that axis; otherwise the member's field is vmapped over it, and XLA
    # may still insert batched dots and transposes inside it.
    if rows_grad is None:
        batched_rows = jax.vmap(member_rows, in_axes=-1, out_axes=-1)
    else:
        batched_rows = lambda tree: jax.tree_util.tree_map(jnp.negative, rows_grad(tree))  # noqa: E731

    def member_flat_vf(y):
        out = jax.tree_util.tree_leaves(batched_rows(rows_tree(y)))
        return jnp.concatenate([leaf.reshape(-1, y.shape[-1]) for leaf in out], axis=0)

    return _FlatState(y0, eta, rows_tree, to_batched, member_flat_vf)


def _nonsmooth_solver() -> diffrax.AbstractSolver:
    return diffrax.Bosh3()


def _rtol_for_dtype(rtol_arg, rtol, dtype):
    """`rtol` must be at least 10·eps of the state's dtype; `None` means the default, raised
    to that floor in low precision."""
    if not jnp.issubdtype(dtype, jnp.floating):
        return rtol
    floor = 10 * float(jnp.finfo(dtype).eps)
    if rtol_arg is None:
        return max(rtol, floor)
    if is_concrete(rtol_arg) and float(rtol_arg) < floor:
        raise ValueError(
            f"`rtol`={float(rtol_arg):g} is below what {jnp.dtype(dtype).name} can meet "
            f"(rtol ≥ 10·eps = {floor:.2g}): raise `rtol` or use float64."
        )
    return rtol


def _floor_stats(sol, floor, bcast):
    assert sol.controller_state is not None
    return {
        "num_forced_steps": bcast(jnp.asarray(sol.controller_state[1])),
        "dtmin": bcast(jnp.asarray(floor)),
    }


def _conserved_drift(traj_model, lr_tree):
    """max over save times and units of |δ_k(t) − δ_k(0)|, δ_k = η1‖W2[:,k]‖² − η2‖W1[k]‖²,
    for a bias-free `TwoLayer` with a positively homogeneous activation and scalar per-layer
    learning rates; `None` where no invariant is known. Leading (batch) axes are kept."""
    if not isinstance(traj_model, TwoLayer) or not traj_model.homogeneous:
        return None
    if not isinstance(lr_tree, TwoLayer):
        return None
    e1, e2 = lr_tree.W1, lr_tree.W2
    if jnp.ndim(e1) != 0 or jnp.ndim(e2) != 0:
        return None
    W1, W2 = traj_model.W1, traj_model.W2  # (..., T, h, d), (..., T, o, h)
    q = e1 * jnp.sum(W2**2, axis=-2) - e2 * jnp.sum(W1**2, axis=-1)  # (..., T, h)
    return jnp.nanmax(jnp.abs(q - q[..., :1, :]), axis=(-2, -1))


def _all_finite(tree) -> Array:
    finite = jnp.asarray(True)
    for y in jax.tree_util.tree_leaves(tree):
        finite = finite & jnp.all(jnp.isfinite(y))
    return finite


def _mark_nonfinite(finite, result):
    """Mark an otherwise successful trajectory whose states or loss are not `finite`."""
    ok = (result == RESULTS.successful) | (result == RESULTS.event_occurred)
    return RESULTS.where(ok & ~finite, RESULTS.nonfinite, result)  # pyright: ignore[reportArgumentType]


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
    data: DataLike,
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
    result = _mark_nonfinite(_all_finite(ys) & jnp.all(jnp.isfinite(loss_t)), RESULTS.successful)
    stats = {
        "num_steps": jnp.asarray(n_saves * save_every),
        "num_accepted_steps": jnp.asarray(n_saves * save_every),
        "num_rejected_steps": jnp.asarray(0),
        "t_final": ts[-1],
    }
    return Trajectory(
        ts=ts, model=eqx.combine(ys, static), loss=loss_t, stats=stats, result=result
    )
