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
    fixed.

    **Arguments:**

    - `ds`: a sweep Dataset (from `jd.sweep` or `jd.load_sweep`); its `axes` attribute names the
        grid axes.
    - `var`: the variable to show (default: `kernel_distance` if present, else the first variable
        other than `status`).
    - `x`: the horizontal grid axis (default: the first grid axis).
    - `y`: the vertical grid axis (default: the next grid axis).
    - `t`: the time to show (default: the last save time).
    - `path`: if given (and `ax` is not), the figure is saved there as a PNG and closed.
    - `ax`: a matplotlib Axes to draw into (default: a new figure).

    **Returns:**

    The matplotlib Axes holding the heatmap.

    **Raises:**

    `ValueError` if `var` is not a variable of `ds`, or `x`/`y` is not one of its axes.
    """
    grid_axes = [a for a in ds.attrs.get("axes", "").split(",") if a in ds.dims]
    if not grid_axes:
        grid_axes = [str(d) for d in ds.dims if d != "t"]
    if var is None:
        candidates = [str(v) for v in ds.data_vars if v != "status"]
        var = "kernel_distance" if "kernel_distance" in candidates else candidates[0]
    if var not in ds.data_vars:
        raise ValueError(f"--var {var!r} is not in the dataset; variables: {list(ds.data_vars)}")
    x = x or (grid_axes[0] if grid_axes else None)
    y = y or next((a for a in grid_axes if a != x), None)
    if x is None or x not in ds.dims:
        raise ValueError(f"--x {x!r} must be one of the dataset's axes {grid_axes}")
    if y is None or y not in ds.dims:
        raise ValueError(f"--y {y!r} must be one of the dataset's axes {grid_axes}")
    da = ds[var]
    sel: dict[str, int] = {}
    for dim in map(str, da.dims):
        if dim in (x, y):
            continue
        if dim == "t":
            tt = float(ds["t"][-1]) if t is None else t
            sel["t"] = int(np.argmin(np.abs(ds["t"].values - tt)))
        else:
            sel[dim] = 0
    da = da.isel(sel).transpose(y, x)
    plt = pyplot()
    own = ax is None
    if own:
        _, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    im = ax.pcolormesh(ds[x].values, ds[y].values, da.values, shading="auto", cmap="viridis")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    fixed = ", ".join(
        f"{k} = {ds[k].values[v]:g}" if k in ds.coords else f"{k}[{v}]" for k, v in sel.items()
    )
    ax.set_title(f"{var}" + (f" ({fixed})" if fixed else ""))
    ax.figure.colorbar(im, ax=ax, label=var)
    if own and path:
        ax.figure.savefig(path, dpi=110)
        plt.close(ax.figure)
    return ax


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
