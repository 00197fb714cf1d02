"""`relu-lazy-rich`: two-layer ReLU teacher–student, lazy → rich vs scale and imbalance.

Kunin et al. 2024 (arXiv:2406.06158), §5; set-up of the authors' `two-layer-relu` grid (notes
§5.3), scaled down to run on a laptop CPU: inputs on the unit sphere, a ReLU teacher with a few
units, a bias-free ReLU student whose every unit has |a_k|‖w_k‖ = scale² and per-unit imbalance
a_k² − ‖w_k‖² = δ, symmetrised so f ≡ 0 at init (`jd.init.two_layer`). Trained by gradient flow
(Diffrax, lr = 1; the authors' lr ∝ 1/scale² only rescales time). Records the kernel distance
S(0, t) of the empirical NTK, train/test loss, relative weight change, the fraction of flipped
activation signs, and the drift of the per-unit conserved δ_k.

Width is a batch axis: students are built at the largest width with the extra units masked to
zero (`jd.init.mask_width`), so one compiled program serves every width.

Numerics: ReLU gradient flow is not smooth. Units whose pre-activation on a training input
reaches 0 can slide along that activation boundary, where an adaptive error control shrinks
the step without bound (measured: 20 000 steps without reaching t = 100 at scale 0.1). The
step-size controller therefore has a floor, `dtmin` (default 0.02), with `force_dtmin=True`:
the solve is adaptive wherever the flow is smooth and takes steps of size `dtmin` across
kinks. The drift of the per-unit conserved δ_k (`delta_drift`) measures the error this causes.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

import jaxdyn as jd

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    "d": ("integer >= 1", "input dimension"),
    "n": ("integer >= 1", "training samples"),
    "n_test": ("integer >= 1", "test samples"),
    "teacher_units": ("integer >= 1", "hidden units of the ReLU teacher"),
    "max_width": ("integer >= 2", "largest student width (even); the `width` axis is ≤ it"),
    "t_max": ("> 0", "last save time"),
    "n_t": ("integer >= 3", "save times: 0 and n_t − 1 log-spaced up to t_max"),
    "rtol": ("in (0, 1)", "relative tolerance of the solver"),
    "atol": ("> 0", "absolute tolerance of the solver"),
    "dtmin": ("> 0", "smallest step of the step-size controller (forced across kinks)"),
    "max_steps": ("integer >= 1", "solver step limit per trajectory"),
    "data_seed": ("integer >= 0", "seed of the teacher and the data"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    d: int = 10,
    n: int = 32,
    n_test: int = 256,
    teacher_units: int = 3,
    max_width: int = 50,
    t_max: float = 100.0,
    n_t: int = 31,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dtmin: float = 0.02,
    max_steps: int = 50_000,
    data_seed: int = 0,
) -> jd.Experiment:
    """Axes: `scale` (overall init scale), `delta` (per-unit imbalance), `width` (≤ max_width,
    even), `seed` (student init). Save times: 0 and `n_t − 1` log-spaced times up to `t_max`.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the default grid.
    """
    if max_width % 2:
        raise jd.SweepError(
            f"config max_width={max_width!r} must be even (the student's units come in "
            "symmetric pairs)",
            argument="config",
        )
    ts_np = np.concatenate([[0.0], np.geomspace(t_max / 1e4, t_max, n_t - 1)])
    controller = diffrax.PIDController(
        rtol=rtol, atol=atol, dtmin=dtmin, force_dtmin=True, norm=optx.max_norm
    )
    solver = diffrax.Tsit5()

    def run(points):
        dtype = jnp.result_type(float)
        X, y, Xt, yt = jd.data.teacher_student(
            jax.random.key(data_seed), n, n_test, d, teacher_units, dtype
        )
        ts = jnp.asarray(ts_np, dtype)

        def one(scale, delta, width, seed):
            model = jd.init.two_layer(jax.random.key(seed), d, max_width, 1, scale, delta, "relu")
            # Pairs (k, k + H/2) are interleaved first, so masking keeps whole pairs.
            model = jd.init.mask_width(jd.init.interleave_pairs(model), width)
            traj = jd.gradient_flow(
                model,
                (X, y),
                ts,
                solver=solver,
                stepsize_controller=controller,
                max_steps=max_steps,
            )
            K = jax.vmap(lambda m: jd.metrics.ntk(m, X))(traj.model)
            kd = jd.metrics.kernel_distance(K[0], K)
            test = jax.vmap(lambda m: 0.5 * jnp.mean((jax.vmap(m)(Xt)[:, 0] - yt) ** 2))(
                traj.model
            )
            pre0 = X @ model.W1.T
            pre = jnp.einsum("nd,thd->tnh", X, traj.model.W1)
            live = (jnp.arange(max_width) < width).astype(dtype)
            flips = jnp.sum((jnp.sign(pre) != jnp.sign(pre0)) * live, axis=(1, 2)) / (
                n * jnp.maximum(width, 1)
            )
            dk = jnp.asarray(jd.metrics.conserved(traj.model))  # (T, H) per-unit a_k² − ‖w_k‖²
            drift = jnp.max(jnp.abs(dk - dk[:1]))
            return {
                "loss": traj.loss,
                "test_loss": test,
                "kernel_distance": kd,
                "weight_change": jd.metrics.relative_change(model, traj.model),
                "activation_flips": flips,
                "delta_drift": drift,
                "status": traj.status.astype(jnp.int8),
            }

        return jax.vmap(one)(
            points["scale"].astype(dtype),
            points["delta"].astype(dtype),
            points["width"],
            points["seed"],
        )

    return jd.Experiment(
        name="relu-lazy-rich",
        description="two-layer ReLU teacher-student: lazy→rich vs scale, imbalance δ, width "
        "(Kunin et al. 2024 §5)",
        run=run,
        axes={
            "scale": np.geomspace(0.1, 2.0, 9),
            "delta": np.linspace(-1.0, 1.0, 9),
            "width": np.array([max_width]),
            "seed": np.array([0]),
        },
        dims={
            k: ("t",)
            for k in ("loss", "test_loss", "kernel_distance", "weight_change", "activation_flips")
        },
        coords={"t": ts_np},
        attrs={
            **jd.describe_solver(solver, controller),
            "d": d,
            "n": n,
            "n_test": n_test,
            "teacher_units": teacher_units,
            "max_width": max_width,
            "lr": 1.0,
            "dtmin": dtmin,
            "description": "loss (1/2n)Σ(f−y)²; kernel_distance of the empirical NTK on the "
            "training inputs; activation_flips = fraction of (sample, active unit) signs changed",
        },
        integer_axes=frozenset({"width", "seed"}),
        domains={
            "scale": "> 0",
            "width": f"integer in [1, {max_width}]",
            "seed": "integer >= 0",
        },
        plot=plot,
        summary=summary,
        bytes_per_point=8 * n_t * (n * n * 3 + max_width * (d + 2) * 8),
    )


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the relu-lazy-rich sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text.
    """
    st = ds["status"].values
    kd = ds["kernel_distance"].isel(t=-1)
    return "\n".join(
        [
            f"relu-lazy-rich sweep: {st.size} students, {(st == 0).sum()} ok",
            f"  max drift of the per-unit conserved δ_k (gradient flow): "
            f"{float(ds['delta_drift'].max()):.2e}",
            f"  final kernel distance S(0,T): {float(kd.min()):.3f} … {float(kd.max()):.3f}",
            f"  final train loss ≤ {float(ds['loss'].isel(t=-1).max()):.2e}",
        ]
    )


def plot(ds, path) -> None:
    """Heat maps over (scale, δ) of the final kernel distance, activation flips and test loss
    (Kunin et al. 2024, §5).

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.
    """
    plt = jd.plot.pyplot()

    sub = ds.isel(width=-1, seed=0)
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    panels = [
        ("kernel_distance", "kernel distance S(0, T)", "magma"),
        ("activation_flips", "fraction of activation signs flipped", "viridis"),
        ("test_loss", "test loss at T", "cividis"),
    ]
    for ax, (var, title, cmap) in zip(axs, panels, strict=True):
        v = sub[var].isel(t=-1).transpose("delta", "scale")
        im = ax.pcolormesh(
            sub["scale"].values, sub["delta"].values, v.values, shading="auto", cmap=cmap
        )
        ax.set_xscale("log")
        ax.set_xlabel("init scale (|a_k|·‖w_k‖ = scale²)")
        ax.set_ylabel("imbalance δ = a_k² − ‖w_k‖²  (>0: upstream)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    fig.suptitle(
        f"Two-layer ReLU student (width {int(sub['width'])}) on a ReLU teacher: lazy (large "
        f"scale) vs rich (small scale), T = {float(ds['t'][-1]):g}"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
