"""Phase diagrams and trajectory-vs-theory plots (`jd.plot`: matplotlib, Agg backend, PNG files).

matplotlib is imported lazily, on the first call, so `import jaxdyn` stays light. Axes arguments
and return values are `matplotlib.axes.Axes`; they are annotated `Any` for that reason.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import xarray as xr
from jaxtyping import ArrayLike

__all__ = ["heatmap", "pyplot", "trajectory_vs_theory"]


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the non-interactive Agg backend (figures go to files).

    Experiments draw their figures through this function so that no experiment needs a display
    and none sets the backend itself.

    **Arguments:** none.

    **Returns:**

    The `matplotlib.pyplot` module, with the Agg backend selected.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(
    ds: xr.Dataset,
    var: str | None = None,
    x: str | None = None,
    y: str | None = None,
    t: float | None = None,
    path: str | None = None,
    ax: Any = None,
) -> Any:
    """Heatmap of a sweep variable over two grid axes.

    Grid axes other than `x` and `y` are fixed at their first value, the time axis `t` at the save
    time nearest to `t`, any other trailing dimension at index 0; the title says which values were
    fixed (for the time, the saved time shown). Each cell is centred on its grid point; an axis
    whose values are log-spaced (at least 3 positive values with one common ratio, as
    `log:a:b:n` gives) is drawn on a log scale, every other axis on a linear one.

    **Arguments:**

    - `ds`: a sweep Dataset in grid layout (from `jd.sweep`, `jd.load_sweep` or `jd.merge_sweeps`);
        its `axes` attribute names the grid axes.
    - `var`: the variable to show (default: `kernel_distance` if present, else the first variable
        other than `status`).
    - `x`: the horizontal axis: a grid axis or `t` (default: the first grid axis).
    - `y`: the vertical axis (default: the next grid axis).
    - `t`: the time to show, within the saved times (default: the last save time).
    - `path`: if given (and `ax` is not), the figure is saved there as a PNG and closed.
    - `ax`: a matplotlib Axes to draw into (default: a new figure).

    **Returns:**

    The matplotlib Axes holding the heatmap.

    **Raises:**

    `ValueError` if `var` is not a variable of `ds`, `x`/`y` is not one of its axes (or both
    name the same one), `t` lies outside the saved times or `var` has no time axis to select
    from, or `ds` is a flat shard/partial result (dimension `point`).
    """
    if "point" in ds.dims:
        raise ValueError(
            "this is a flat shard/partial result (dimension 'point'); merge the shards first "
            "(jaxdyn merge / jd.merge_sweeps) to plot it over the grid"
        )
    grid_axes = [a for a in ds.attrs.get("axes", "").split(",") if a in ds.dims]
    if not grid_axes:
        grid_axes = [str(d) for d in ds.dims if d != "t"]
    variables = [str(v) for v in ds.data_vars]
    if var is None:
        candidates = [v for v in variables if v != "status"]
        var = "kernel_distance" if "kernel_distance" in candidates else candidates[0]
    if var not in ds.data_vars:
        raise ValueError(
            f"--var {var!r} is not a variable of the sweep; choices: {', '.join(variables)}"
        )
    da = ds[var]
    choices = [a for a in [*grid_axes, "t"] if a in da.dims]
    x = _pick_axis("x", x or (choices[0] if choices else None), choices, var)
    y = _pick_axis("y", y or next((a for a in choices if a != x), None), choices, var)
    if x == y:
        raise ValueError(f"--x and --y are both {x!r}; give two different axes")
    sel: dict[str, int] = {}
    t_note = ""
    if t is not None and ("t" not in da.dims or "t" in (x, y)):
        why = "has no time axis" if "t" not in da.dims else "is drawn over t"
        raise ValueError(f"--t: {var!r} {why}; leave --t out")
    for dim in map(str, da.dims):
        if dim in (x, y):
            continue
        if dim == "t" and "t" in ds.coords:
            times = np.asarray(ds["t"].values, dtype=float)
            if t is None:
                sel["t"] = int(np.argmax(times))
                continue
            lo, hi = float(times.min()), float(times.max())
            slack = 1e-9 * max(hi - lo, abs(hi), 1e-300)
            if not (np.isfinite(t) and lo - slack <= t <= hi + slack):
                raise ValueError(f"--t {t:g} is outside the saved times {lo:g} … {hi:g}")
            sel["t"] = int(np.argmin(np.abs(times - t)))
            if not np.isclose(times[sel["t"]], t, rtol=1e-9, atol=0.0):
                t_note = f" [nearest saved to {t:g}]"
        else:
            sel[dim] = 0
    da = da.isel(sel).transpose(y, x).sortby([x, y])
    plt = pyplot()
    own = ax is None
    if own:
        _, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    xv, yv = np.asarray(da[x].values), np.asarray(da[y].values)
    xlog, ylog = _is_log_spaced(xv), _is_log_spaced(yv)
    im = ax.pcolormesh(
        _edges(xv, xlog), _edges(yv, ylog), np.asarray(da.values), shading="flat", cmap="viridis"
    )
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel(x + (" (log scale)" if xlog else ""))
    ax.set_ylabel(y + (" (log scale)" if ylog else ""))
    fixed = ", ".join(
        (f"{k} = {ds[k].values[v]:g}" + (t_note if k == "t" else ""))
        if k in ds.coords
        else f"{k}[{v}]"
        for k, v in sel.items()
    )
    ax.set_title(f"{var}" + (f" ({fixed})" if fixed else ""))
    ax.figure.colorbar(im, ax=ax, label=var)
    if own and path:
        ax.figure.savefig(path, dpi=110)
        plt.close(ax.figure)
    return ax


def _pick_axis(option: str, axis: str | None, choices: list[str], var: str) -> str:
    if axis is None or axis not in choices:
        raise ValueError(
            f"--{option} {axis!r} is not an axis of {var!r}; choices: {', '.join(choices)}"
        )
    return axis


def _is_log_spaced(values: np.ndarray, rtol: float = 1e-9) -> bool:
    """Whether coordinate values are at least 3 distinct positive values whose sorted neighbours
    have one common ratio (to `rtol`, relative): a `log:a:b:n` range or `np.geomspace`."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    if v.size < 3 or not np.all(np.isfinite(v)) or v[0] <= 0:
        return False
    ratios = v[1:] / v[:-1]
    if ratios[0] <= 1 + rtol:
        return False
    return bool(np.all(np.abs(ratios - ratios[0]) <= rtol * ratios[0]))


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midpoints (geometric ones on a log axis), the outer
    edges half a cell beyond the end values; a single value gets a cell of width 1."""
    c = np.log(values) if log else np.asarray(values, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    e = np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
    return np.exp(e) if log else e


def trajectory_vs_theory(
    ts: ArrayLike,
    numeric: ArrayLike,
    exact: ArrayLike,
    labels: list[str] | tuple[str, ...] | None = None,
    path: str | None = None,
    title: str | None = None,
) -> Any:
    """Overlay numerical curves (solid) and closed-form curves (dotted black) over time.

    **Arguments:**

    - `ts`: the save times, shape `(T,)`.
    - `numeric`: the numerical trajectory, shape `(T,)` or `(T, k)` (trailing axes are flattened
        into `k` curves).
    - `exact`: the closed-form trajectory, same shape as `numeric`.
    - `labels`: one legend label per curve (default: `"0"`, `"1"`, …).
    - `path`: if given, the figure is saved there as a PNG and closed.
    - `title`: the figure title.

    **Returns:**

    The matplotlib Axes holding the plot.
    """
    plt = pyplot()
    ts = np.asarray(ts)
    numeric = np.asarray(numeric).reshape(len(ts), -1)
    exact = np.asarray(exact).reshape(len(ts), -1)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for i in range(numeric.shape[1]):
        lab = labels[i] if labels else f"{i}"
        ax.plot(ts, numeric[:, i], lw=2, label=f"{lab} (flow)")
        ax.plot(ts, exact[:, i], ls=":", color="k", lw=1.5)
    ax.plot([], [], ls=":", color="k", label="exact")
    ax.set_xlabel("time t")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return ax
