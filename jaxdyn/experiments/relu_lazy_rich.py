"""`relu-lazy-rich`: two-layer ReLU teacher–student, lazy → rich vs scale τ and imbalance δ.

Kunin et al. 2024 (arXiv:2406.06158), Fig. 1(b) and Fig. 10; the set-up of the authors'
`two-layer-relu` grid (notes §5.3–5.5): inputs uniform on the unit sphere, a bias-free ReLU
teacher with a few unit-norm units and ±1 readouts, a bias-free ReLU student whose every unit
has |a_k|‖w_k‖ = τ² and imbalance a_k² − ‖w_k‖² = δ, symmetrised so f ≡ 0 at init
(`jd.init.two_layer`). Each `seed` draws the teacher, the data and the student's base
directions, reused over the whole (τ, δ) grid, as in the authors' code.

Time. The paper trains by full-batch gradient descent on (1/n)Σ(f − y)² with lr η₀/τ²
(η₀ = 5·10⁻³) for 10⁶ steps. Its small-step limit, in the loss L = (1/2n)Σ(f − y)² that
`jd.gradient_flow` minimises, is θ̇ = −(2η₀/τ²)∇L per step. Writing s = 2η₀·k ("rescaled
time"), θ solves dθ/ds = −τ⁻²∇L(θ): the lr = 1 flow θ̇ = −∇L run to flow time t = s/τ².
So every grid point is solved in s, with `lr = 1/τ²` and the same save times s_i for all
points (one compiled program, a per-point horizon in flow time), and the paper's checkpoint
at step k is s = k/100: steps 10, 10², …, 10⁶ ↔ s = 0.1, 1, …, 10⁴. The `t` coordinate of
the Dataset is s.

Numerics: ReLU gradient flow is only piecewise smooth (a unit's pre-activation on a training
input crossing 0 is a kink; sliding along it makes an adaptive error control shrink the step
without bound). The solve uses `jd.gradient_flow`'s non-smooth strategy: a forced step floor,
here `dtmin·τ²/max(1, a_k² + ‖w_k‖²)` in s, i.e. `dtmin/max(1, a_k² + ‖w_k‖²)` in flow time —
the floor follows the scale of the initial NTK, which sets the stiffness, so it is stable at
every (τ, δ) and the large-τ points do not pay the small-τ points' step count. The drift of
the per-unit conserved δ_k (`delta_drift`) measures the error this causes.

Width is a batch axis: students are built at the largest width with the extra units masked to
zero (`jd.init.mask_width`), so one compiled program serves every width.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

import jaxdyn as jd

#: The two presets of `make` (`--config size=…`): settings and default grid.
SIZES = {
    "default": {
        "d": 20,
        "n": 200,
        "n_test": 2000,
        "t_max": 1000.0,
        "n_t": 11,
        "scale": np.logspace(-1.0, 0.3, 5),
        "delta": np.linspace(-1.0, 1.0, 5),
        "seed": np.arange(1),
        "max_steps": 200_000,
    },
    "paper": {
        "d": 100,
        "n": 1000,
        "n_test": 10_000,
        "t_max": 1e4,
        "n_t": 7,
        "scale": np.logspace(-1.0, 0.3, 17),
        "delta": np.linspace(-1.0, 1.0, 17),
        "seed": np.arange(16),
        "max_steps": 2_000_000,
    },
}

#: The settings of `make` (`--config KEY=VALUE`): key -> (domain, meaning).
CONFIG = {
    "size": (
        "one of 'default', 'paper'",
        "preset: a reduced grid for a CPU, or the paper's Fig. 1(b) settings "
        "(d 100, n 1000, 17 × 17 × 16 grid, s up to 10⁴)",
    ),
    "d": ("optional integer >= 1", "input dimension (default: from `size`)"),
    "n": ("optional integer >= 1", "training samples (default: from `size`)"),
    "n_test": ("optional integer >= 1", "test samples (default: from `size`)"),
    "teacher_units": ("integer >= 1", "hidden units of the ReLU teacher"),
    "max_width": ("integer >= 2", "largest student width (even); the `width` axis is ≤ it"),
    "t_max": (
        "optional > 0",
        "last save time in rescaled time s = τ²·t (paper: step k ↔ s = k/100); "
        "default: from `size`",
    ),
    "n_t": (
        "optional integer >= 3",
        "save times: 0 and n_t − 1 log-spaced over five decades up to t_max "
        "(default: from `size`)",
    ),
    "rtol": jd.Experiment.SOLVER_CONFIG["rtol"],
    "atol": jd.Experiment.SOLVER_CONFIG["atol"],
    "dtmin": (
        "> 0",
        "step floor (forced across kinks) in flow time t at unit weight scale: "
        "dtmin·τ²/max(1, a_k² + ‖w_k‖²) in s",
    ),
    "floor_steps": (
        "integer >= 1",
        "the step floor is at most t_max/floor_steps in s (at most this many floor steps)",
    ),
    "max_steps": ("optional integer >= 1", "solver step limit per trajectory (from `size`)"),
    "data_seed": ("integer >= 0", "offset of the seeds drawing teacher, data and init"),
}


@jd.Experiment.with_config(CONFIG)
def make(
    *,
    size: str = "default",
    d: int | None = None,
    n: int | None = None,
    n_test: int | None = None,
    teacher_units: int = 3,
    max_width: int = 50,
    t_max: float | None = None,
    n_t: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dtmin: float = 1.0,
    floor_steps: int = 20_000,
    max_steps: int | None = None,
    data_seed: int = 0,
) -> jd.Experiment:
    """Axes: `scale` τ (overall init scale, |a_k|‖w_k‖ = τ²), `delta` (per-unit imbalance
    δ = a_k² − ‖w_k‖²), `width` (≤ max_width, even), `seed` (teacher, data and student
    directions). Save times (rescaled time s = τ²·t, the same for every point): 0 and
    `n_t − 1` log-spaced times over five decades up to `t_max`.

    `size="default"`: d 20, n 200, 2000 test points, s ≤ 10³, a 5 × 5 (τ, δ) grid, one seed
    (a few minutes on a 2-core CPU). `size="paper"`: the paper's Fig. 1(b) — d 100, n 1000,
    10⁴ test points, s ≤ 10⁴ (10⁶ steps of the paper's GD), τ on `logspace(-1, 0.3, 17)`,
    δ on `linspace(-1, 1, 17)`, 16 seeds. Explicit `d`, `n`, `n_test`, `t_max`, `n_t`,
    `max_steps` override the preset.

    The step floor of the non-smooth solve is `dtmin/max(1, a_k² + ‖w_k‖²)` in flow time
    (the initial NTK's scale sets the stiffness), capped at `t_max/floor_steps` in s.

    **Arguments:**

    The keyword-only configuration described above (on the command line:
    `jaxdyn sweep NAME --config KEY=VALUE`).

    **Returns:**

    The `jd.Experiment`; its `axes` are the preset's grid.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 1(b), Fig. 10 and
        App. D.1 (the two-layer ReLU teacher–student set-up).
    """
    if max_width % 2:
        raise jd.SweepError(
            f"config max_width={max_width!r} must be even (the student's units come in "
            "symmetric pairs)",
            argument="config",
        )
    preset = SIZES[size]
    d = int(preset["d"] if d is None else d)
    n = int(preset["n"] if n is None else n)
    n_test = int(preset["n_test"] if n_test is None else n_test)
    t_max = float(preset["t_max"] if t_max is None else t_max)
    n_t = int(preset["n_t"] if n_t is None else n_t)
    max_steps = int(preset["max_steps"] if max_steps is None else max_steps)
    ts_np = np.concatenate([[0.0], np.geomspace(t_max * 1e-5, t_max, n_t - 1)])

    def run(points):
        dtype = jnp.result_type(float)
        ts = jnp.asarray(ts_np, dtype)

        def one(scale, delta, width, seed):
            k_data, k_init = jax.random.split(jax.random.fold_in(jax.random.key(data_seed), seed))
            X, y, Xt, yt = jd.data.teacher_student(k_data, n, n_test, d, teacher_units, dtype)
            model = jd.init.two_layer(k_init, d, max_width, 1, scale, delta, "relu")
            # Pairs (k, k + H/2) are interleaved first, so masking keeps whole pairs.
            model = jd.init.mask_width(jd.init.interleave_pairs(model), width)
            # Solved in u = s/(τ²·c) with lr c: dθ/du = −c∇L is dθ/ds = −τ⁻²∇L. A step floor
            # of 1 in u is c·τ² in s; c makes it the smaller of dtmin/max(1, a_k² + ‖w_k‖²) in
            # flow time (stable: it follows the initial NTK's scale) and t_max/floor_steps in s.
            energy = jnp.sqrt(delta**2 + 4 * scale**4)  # a_k² + ‖w_k‖² at init
            c = jnp.minimum(dtmin / jnp.maximum(1.0, energy), t_max / (floor_steps * scale**2))
            traj = jd.gradient_flow(
                model,
                (X, y),
                ts / (scale**2 * c),
                lr=c,
                rtol=rtol,
                atol=atol,
                dtmin=1.0,
                max_steps=max_steps,
            )
            K0 = jd.metrics.ntk(model, X)
            on0 = X @ model.W1.T > 0
            live = (jnp.arange(max_width) < width).astype(dtype)

            def at(m):  # the metrics at one save time
                on = X @ m.W1.T > 0
                flips = jnp.sum((on != on0) * live) / (n * jnp.maximum(width, 1))
                test = 0.5 * jnp.mean((jax.vmap(m)(Xt)[:, 0] - yt) ** 2)
                kd = jd.metrics.kernel_distance(K0, jd.metrics.ntk(m, X))
                dist = jnp.sqrt(jnp.sum((m.W1 - model.W1) ** 2) + jnp.sum((m.W2 - model.W2) ** 2))
                return kd, test, flips, dist

            # One save time at a time: a single (n, n) kernel in memory per point.
            kd, test, flips, dist = jax.lax.map(at, traj.model)
            dk = jnp.asarray(jd.metrics.conserved(traj.model))  # (T, H) per-unit a_k² − ‖w_k‖²
            return {
                "loss": traj.loss,
                "test_loss": test,
                "kernel_distance": kd,
                "activation_flips": flips,
                "param_distance": dist,
                "weight_change": jd.metrics.relative_change(model, traj.model),
                "delta_drift": jnp.max(jnp.abs(dk - dk[:1])),
                "num_steps": traj.stats["num_steps"].astype(jnp.int32),
                "num_forced_steps": traj.stats["num_forced_steps"].astype(jnp.int32),
                "status": traj.status.astype(jnp.int8),
            }

        return jax.vmap(one)(
            points["scale"].astype(dtype),
            points["delta"].astype(dtype),
            points["width"],
            points["seed"],
        )

    per_t = ("loss", "test_loss", "kernel_distance", "weight_change", "activation_flips")
    return jd.Experiment(
        name="relu-lazy-rich",
        description="two-layer ReLU teacher-student: lazy→rich vs scale τ, imbalance δ, width "
        "(Kunin et al. 2024 Fig. 1b; --config size=paper for the paper's grid)",
        run=run,
        axes={
            "scale": preset["scale"],
            "delta": preset["delta"],
            "width": np.array([max_width]),
            "seed": preset["seed"],
        },
        dims={k: ("t",) for k in (*per_t, "param_distance")},
        coords={"t": ts_np},
        attrs={
            **jd.describe_solver(
                diffrax.Bosh3(),
                diffrax.PIDController(
                    rtol=rtol, atol=atol, dtmin=dtmin, force_dtmin=True, norm=optx.max_norm
                ),
            ),
            "strategy": "jd.gradient_flow's non-smooth default (nonsmooth='auto'): forced "
            "step floor dtmin·scale²/max(1, a_k²+‖w_k‖²) in s",
            "size": size,
            "d": d,
            "n": n,
            "n_test": n_test,
            "teacher_units": teacher_units,
            "max_width": max_width,
            "lr": "1/scale² in rescaled time s (the paper's lr 5e-3/scale² per step)",
            "dtmin": dtmin,
            "time": "t is the rescaled time s = scale²·(flow time at lr 1); the paper's GD "
            "step k (lr 5e-3/scale² on (1/n)Σ(f−y)²) is at s = k/100",
            "description": "loss, test_loss: (1/2n)Σ(f−y)² on the n training points and on "
            "n_test fresh sphere points (the paper's MSE is twice this); kernel_distance "
            "S(0, t) of the empirical NTK on the training inputs; activation_flips = "
            "normalised Hamming distance of the activation patterns 1{w_k·x > 0} to init "
            "(fraction of (training sample, active unit) pairs flipped); param_distance = "
            "‖θ_t − θ_0‖; weight_change = ‖θ_t − θ_0‖/‖θ_0‖; delta_drift = max |δ_k(t) − "
            "δ_k(0)| of the per-unit conserved imbalance; num_steps = solver steps",
        },
        integer_axes=frozenset({"width", "seed"}),
        domains={
            "scale": "> 0",
            "width": f"integer in [1, {max_width}]",
            "seed": "integer >= 0",
        },
        plot=plot,
        summary=summary,
        bytes_per_point=8 * (3 * n * n + 2 * n * max_width * (d + 2) + n_test * (d + max_width))
        + 8 * n_t * (max_width * (d + 2) * 8 + 8),
    )


def _lazy_rich_numbers(ds):
    """(S(0, T) averaged over δ > … per scale, mean final test loss per (scale, δ)): over the
    last width, mean over seeds."""
    sub = ds.isel(width=-1, t=-1).mean("seed")
    kd = sub["kernel_distance"].mean("delta")
    test = sub["test_loss"].transpose("scale", "delta")
    return kd, test


def summary(ds) -> str:
    """The numbers `jaxdyn sweep` prints after the relu-lazy-rich sweep.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.

    **Returns:**

    A few lines of text: the solver status, the δ_k drift, S(0, T) averaged over δ per scale,
    and where the test loss is lowest.
    """
    st = ds["status"].values
    kd, test = _lazy_rich_numbers(ds)
    i, j = np.unravel_index(int(np.nanargmin(test.values)), test.shape)
    per_scale = ", ".join(
        f"{float(s):.3g}: {float(v):.3f}"
        for s, v in zip(kd["scale"].values, kd.values, strict=True)
    )
    return "\n".join(
        [
            f"relu-lazy-rich sweep: {st.size} students, {(st == 0).sum()} ok",
            f"  max drift of the per-unit conserved δ_k (gradient flow): "
            f"{float(ds['delta_drift'].max()):.2e}",
            f"  kernel distance S(0,T) averaged over δ, per scale: {per_scale}",
            f"  lowest test loss {float(test.values[i, j]):.2e} at scale "
            f"{float(test['scale'][i]):.3g}, δ {float(test['delta'][j]):+.2f} "
            f"(highest {float(np.nanmax(test.values)):.2e})",
            f"  final train loss ≤ {float(ds['loss'].isel(t=-1).max()):.2e}",
        ]
    )


def _edges(v, log: bool):
    v = np.asarray(v, float)
    if v.size == 1:
        return np.array([v[0] / 1.5, v[0] * 1.5]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    u = np.log(v) if log else v
    mid = (u[1:] + u[:-1]) / 2
    e = np.concatenate([[2 * u[0] - mid[0]], mid, [2 * u[-1] - mid[-1]]])
    return np.exp(e) if log else e


def plot(ds, path) -> None:
    """The paper's Fig. 1(b) and Fig. 10 for the sweep: (τ, δ) heat maps (log τ axis, mean over
    seeds, at the last save time) of the test loss, the kernel distance S(0, T), the Hamming
    distance of the activation patterns and the parameter distance, plus the training loss
    and the kernel distance against rescaled time for the four corners of the grid.

    **Arguments:**

    - `ds`: the sweep's `xarray.Dataset`.
    - `path`: where to write the figure (any Matplotlib format, e.g. `.png`).

    **Returns:**

    Nothing; writes the figure to `path`.

    ??? cite "Reference"

        Kunin et al. 2024, *Get rich quick*, arXiv:2406.06158, Fig. 1(b) and Fig. 10.
    """
    plt = jd.plot.pyplot()
    from matplotlib.colors import LogNorm

    sub = ds.isel(width=-1)
    final = sub.isel(t=-1).mean("seed")
    scale, delta = sub["scale"].values, sub["delta"].values
    fig, axs = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    panels = [
        ("test_loss", "test loss at T (Fig. 1b)", "viridis", True),
        ("kernel_distance", "kernel distance S(0, T) (Fig. 1b)", "magma", False),
        ("activation_flips", "Hamming distance of activations (Fig. 10)", "cividis", False),
        ("param_distance", "parameter distance ‖θ_T − θ_0‖ (Fig. 10)", "plasma", False),
    ]
    for ax, (var, title, cmap, log) in zip(axs.flat, panels, strict=False):
        v = final[var].transpose("delta", "scale").values
        pos = v[np.isfinite(v) & (v > 0)]
        norm = LogNorm(pos.min(), pos.max()) if log and pos.size else None
        im = ax.pcolormesh(
            _edges(scale, True), _edges(delta, False), v, cmap=cmap, norm=norm, shading="flat"
        )
        ax.set_xscale("log")
        ax.set_xlabel("scale τ (|a_k|·‖w_k‖ = τ²)")
        ax.set_ylabel("imbalance δ = a_k² − ‖w_k‖²  (> 0: upstream)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    corners = [(0, 0), (0, -1), (-1, 0), (-1, -1), (0, len(delta) // 2)]
    ts = sub["t"].values[1:]
    styles = ["C0", "C1", "C2", "C3", "C4"]
    seen = set()
    for (i, j), c in zip(corners, styles, strict=True):
        key = (i % len(scale), j % len(delta))
        if key in seen:
            continue
        seen.add(key)
        pt = sub.isel(scale=i, delta=j).mean("seed")
        label = f"τ={float(scale[i]):.2g}, δ={float(delta[j]):+.2g}"
        axs[1, 1].loglog(ts, pt["loss"].values[1:], c, label=label)
        axs[1, 2].semilogx(ts, pt["kernel_distance"].values[1:], c, label=label)
    axs[1, 1].set_title("training loss (Fig. 10)")
    axs[1, 2].set_title("kernel distance S(0, s)")
    for ax in axs[1, 1:]:
        ax.set_xlabel("rescaled time s = τ²·t  (paper: GD step = 100·s)")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Two-layer ReLU student (width {int(sub['width'])}, d = {ds.attrs.get('d', '?')}, "
        f"n = {ds.attrs.get('n', '?')}, {sub.sizes['seed']} seed(s)) on a "
        f"{ds.attrs.get('teacher_units', '?')}-unit ReLU teacher, s ≤ {float(ts[-1]):g}: "
        "lazy at large τ, rich at small τ"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
