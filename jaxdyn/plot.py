"""Phase diagrams and trajectory-vs-theory plots (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["heatmap", "trajectory_vs_theory", "pyplot"]


def pyplot():
    """`matplotlib.pyplot` on the non-interactive Agg backend (figures go to files)."""
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
    ax=None,
):
    """Heatmap of `var` over grid axes `x` (horizontal) and `y` (vertical).

    Remaining grid axes are fixed at their first value, a time axis `t` at the save time nearest
    to `t` (default: the last), other trailing dimensions at index 0. With `path`, saves a PNG.
    Returns the matplotlib Axes.
    """
    grid_axes = [a for a in ds.attrs.get("axes", "").split(",") if a in ds.dims]
    if not grid_axes:
        grid_axes = [d for d in ds.dims if d not in ("t",)]
    if var is None:
        candidates = [v for v in ds.data_vars if v != "status"]
        var = "kernel_distance" if "kernel_distance" in candidates else candidates[0]
    if var not in ds.data_vars:
        raise ValueError(f"--var {var!r} is not in the dataset; variables: {list(ds.data_vars)}")
    x = x or (grid_axes[0] if grid_axes else None)
    y = y or next((a for a in grid_axes if a != x), None)
    for name, a in (("x", x), ("y", y)):
        if a is None or a not in ds.dims:
            raise ValueError(f"--{name} {a!r} must be one of the dataset's axes {grid_axes}")
    da = ds[var]
    sel = {}
    for dim in da.dims:
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
        fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
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


def trajectory_vs_theory(ts, numeric, exact, labels=None, path=None, title=None):
    """Overlay numerical curves (solid) and closed-form curves (dotted); `numeric`, `exact` of
    shape `(T, k)`. Saves a PNG if `path` is given; returns the Axes."""
    plt = pyplot()
    numeric = np.asarray(numeric).reshape(len(ts), -1)
    exact = np.asarray(exact).reshape(len(ts), -1)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for i in range(numeric.shape[1]):
        lab = labels[i] if labels else f"{i}"
        (line,) = ax.plot(ts, numeric[:, i], lw=2, label=f"{lab} (flow)")
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
