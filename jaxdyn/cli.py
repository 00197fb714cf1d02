"""Command line: `jaxdyn list | sweep | plot | merge | info`.

User errors (unknown experiment or axis, malformed range, empty grid, unwritable or existing
output) print one line `jaxdyn: error: …` and exit with code 2, never a traceback.
"""

from __future__ import annotations

import ast
import os
import sys
import time

import click
import numpy as np

from .sweep import SweepError

EXIT_USAGE = 2


class UserError(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file=None):
        click.echo(f"jaxdyn: error: {self.format_message()}", err=True)


def _fail(msg: str):
    raise UserError(msg)


def parse_axis_values(name: str, text: str) -> np.ndarray:
    """`start:stop:num` (inclusive linspace), `log:start:stop:num` (geomspace) or `v1,v2,…`."""
    text = text.strip()
    if not text:
        _fail(f"--{name} needs values (start:stop:num or v1,v2,…)")
    try:
        if ":" in text:
            parts = text.split(":")
            log = parts[0] == "log"
            if log:
                parts = parts[1:]
            if len(parts) != 3:
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1:
                _fail(f"--{name}={text}: num must be ≥ 1")
            if log:
                if start <= 0 or stop <= 0:
                    _fail(f"--{name}={text}: log ranges need positive ends")
                return np.geomspace(start, stop, num)
            return np.linspace(start, stop, num)
        return np.array([float(v) for v in text.split(",") if v.strip() != ""] or [float("nan")])
    except ValueError:
        _fail(
            f"--{name}={text!r} is not a range start:stop:num, log:start:stop:num or a list "
            "v1,v2,…"
        )


def _parse_extra(args: list[str]) -> dict[str, np.ndarray]:
    grid: dict[str, np.ndarray] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) <= 2:
            _fail(f"unexpected argument {a!r}; axes are given as --AXIS=start:stop:num")
        body = a[2:]
        if "=" in body:
            name, value = body.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                _fail(f"--{body} needs a value")
            name, value = body, args[i + 1]
            i += 2
        name = name.replace("-", "_")
        values = parse_axis_values(name, value)
        if np.any(np.isnan(values)):
            _fail(f"--{name}: empty or invalid value list {value!r}")
        grid[name] = values
    return grid


def _parse_config(items: tuple[str, ...]) -> dict:
    config = {}
    for item in items:
        if "=" not in item:
            _fail(f"--config {item!r} must be KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            config[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            config[k] = v
    return config


def _set_dtype(dtype: str):
    import jax

    if dtype not in ("float64", "float32"):
        _fail(f"--dtype must be float64 or float32, got {dtype!r}")
    jax.config.update("jax_enable_x64", dtype == "float64")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jaxdyn")
def main():
    """jaxdyn: exact learning dynamics of neural networks (gradient flow, closed forms, sweeps)."""


@main.command("list")
def list_cmd():
    """List the built-in experiments and their default axes."""
    from . import experiments

    for name in experiments.names():
        click.echo(f"{name}: {experiments.describe(name)}")
        try:
            exp = experiments.get_experiment(name)
        except Exception as e:  # noqa: BLE001 - listing must not die on one experiment
            click.echo(f"    (unavailable: {e})")
            continue
        for axis, values in exp.axes.items():
            v = np.asarray(values)
            rng = f"{v[0]:g} … {v[-1]:g}" if v.size > 1 else f"{v[0]:g}"
            click.echo(f"    --{axis}: {v.size} value(s), {rng}")


@main.command(
    "sweep",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("experiment")
@click.option("--out", "out", type=str, default=None, help="Output file: .nc or .zarr.")
@click.option("--plot", "plot_path", type=str, default=None, help="Write the figure (PNG).")
@click.option("--chunk-size", type=int, default=None, help="Grid points per compiled call.")
@click.option("--resume", is_flag=True, help="Continue a partly written .zarr store.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--shard", type=str, default=None, help="Run shard i/N of the grid.")
@click.option("--dtype", default="float64", show_default=True, help="float64 or float32.")
@click.option("--config", "config", multiple=True, help="Experiment setting KEY=VALUE.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.pass_context
def sweep_cmd(
    ctx, experiment, out, plot_path, chunk_size, resume, force, shard, dtype, config, no_progress
):
    """Run EXPERIMENT over a grid: --AXIS=start:stop:num, --AXIS=log:a:b:n or --AXIS=v1,v2,…"""
    from . import experiments

    if experiment not in experiments.names():
        _fail(f"unknown experiment {experiment!r}; known: {', '.join(experiments.names())}")
    grid = _parse_extra(list(ctx.args))
    shard_t = None
    if shard is not None:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            _fail(f"--shard {shard!r} must be i/N")
        shard_t = (i, n)
    if chunk_size is not None and chunk_size < 1:
        _fail(f"--chunk-size must be ≥ 1, got {chunk_size}")
    for path in (out, plot_path):
        if path and os.path.exists(path) and not force and not (resume and path == out):
            _fail(
                f"{path} exists; pass --force to overwrite"
                + (" or --resume to continue" if path == out else "")
            )
    if plot_path and not plot_path.lower().endswith(".png"):
        _fail(f"--plot {plot_path!r} must end in .png")
    if plot_path:
        parent = os.path.dirname(os.path.abspath(plot_path))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            _fail(f"cannot write {plot_path}: {parent} is not a writable directory")
    _set_dtype(dtype)
    from .sweep import sweep

    try:
        exp = experiments.get_experiment(experiment, **_parse_config(config))
    except TypeError as e:
        _fail(f"--config: {e}")
    t0 = time.perf_counter()
    try:
        ds = sweep(
            exp,
            grid,
            chunk_size=chunk_size,
            out=out,
            resume=resume,
            force=force,
            shard=shard_t,
            progress=not no_progress,
        )
    except SweepError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        msg = "interrupted"
        if out and out.rstrip("/").endswith(".zarr"):
            msg += f"; finished chunks are kept in {out} (continue with --resume)"
        elif out:
            msg += f"; finished points were written to {out} (status -1 marks the rest)"
        click.echo(f"jaxdyn: {msg}", err=True)
        sys.exit(130)
    elapsed = time.perf_counter() - t0
    n = int(ds["status"].size)
    click.echo(
        f"{experiment}: {n} grid points in {elapsed:.1f} s "
        f"({n / elapsed:.0f} points/s, incl. compile)"
    )
    if exp.summary is not None and "point" not in ds.dims:
        click.echo(exp.summary(ds))
    if out:
        click.echo(f"wrote {out}")
    if plot_path:
        if "point" in ds.dims:
            click.echo("(no plot: this shard/partial result is flat; merge the shards first)")
        elif exp.plot is not None:
            exp.plot(ds, plot_path)
            click.echo(f"wrote {plot_path}")
        else:
            from .plot import heatmap

            heatmap(ds, path=plot_path)
            click.echo(f"wrote {plot_path}")


@main.command("plot")
@click.argument("file")
@click.option("--var", default=None, help="Variable for a heatmap (default: experiment figure).")
@click.option("--x", "x", default=None, help="Horizontal axis.")
@click.option("--y", "y", default=None, help="Vertical axis.")
@click.option("--t", "t", type=float, default=None, help="Time to show (default: last).")
@click.option("--out", "out", default=None, help="PNG path (default: FILE with .png).")
@click.option("--force", is_flag=True, help="Overwrite an existing PNG.")
def plot_cmd(file, var, x, y, t, out, force):
    """Plot a sweep file: the experiment's figure, or a heatmap of --var over two axes."""
    from . import experiments
    from .sweep import load

    if not os.path.exists(file):
        _fail(f"{file} does not exist")
    out = out or os.path.splitext(file.rstrip("/"))[0] + (f"_{var}" if var else "") + ".png"
    if os.path.exists(out) and not force:
        _fail(f"{out} exists; pass --force to overwrite")
    try:
        ds = load(file)
    except (SweepError, OSError, ValueError) as e:
        _fail(f"cannot read {file}: {e}")
    from .plot import heatmap

    name = ds.attrs.get("experiment")
    if var is None and name in experiments.names() and "point" not in ds.dims:
        exp = experiments.get_experiment(name)
        if exp.plot is not None:
            exp.plot(ds, out)
            click.echo(f"wrote {out}")
            return
    try:
        heatmap(ds, var=var, x=x, y=y, t=t, path=out)
    except ValueError as e:
        _fail(str(e))
    click.echo(f"wrote {out}")


@main.command("merge")
@click.argument("out")
@click.argument("files", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def merge_cmd(out, files, force):
    """Join shard outputs FILES (from --shard i/N) into OUT (.nc or .zarr)."""
    from .sweep import merge

    for f in files:
        if not os.path.exists(f):
            _fail(f"{f} does not exist")
    try:
        ds = merge(files, out=out, force=force)
    except SweepError as e:
        _fail(str(e))
    click.echo(f"merged {len(files)} shard(s): {int(ds['status'].size)} points -> {out}")


@main.command("info")
def info_cmd():
    """Versions and devices."""
    import jax

    from . import __version__

    click.echo(f"jaxdyn {__version__}")
    import diffrax
    import equinox
    import optax
    import xarray

    for mod in (jax, equinox, diffrax, optax, xarray, np):
        click.echo(f"{mod.__name__} {mod.__version__}")
    click.echo(f"backend: {jax.default_backend()}")
    for d in jax.devices():
        click.echo(f"device {d.id}: {d.platform} {d.device_kind}")


if __name__ == "__main__":  # pragma: no cover
    main()
