"""Command line: `jaxdyn list | sweep | plot | merge | info`.

User errors (unknown experiment, axis or config key, an axis or config value outside its
domain, malformed range, empty grid, unwritable or existing output) print one line
`jaxdyn: error: …` and exit with code 2, never a traceback. The checks themselves live where
the values are used: the engine raises `SweepError` (grid and axis domains, chunk size,
shard, output), the experiments' `make` a `SweepError` for a config value outside its domain
(`jd.Experiment.check_config`) and the registry `ValueError`/`TypeError` (experiment name,
settings); this module only parses its arguments and turns those errors into the one line.
click's own usage errors (unknown command or option, a value of the wrong type, a missing
argument) are the same one line, naming the command's `--help`.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import sys
import time
from typing import Any, NoReturn

import click
import numpy as np
from jaxtyping import Float

from ._results import RESULTS, result_index
from ._sweep import SweepError
from ._sweep._experiment import Domain

EXIT_USAGE = 2

#: Most values one `--AXIS=start:stop:num` may ask for (10⁸ float64 values are 800 MB).
MAX_AXIS_VALUES = 10**8

#: Engine argument -> the option that sets it (to name the option in an error message).
_OPTION_OF = {
    "chunk_size": "--chunk-size",
    "block_size": "--block-size",
    "shard": "--shard",
    "out": "--out",
    "resume": "--resume",
    "config": "--config",
}


class UserError(click.ClickException):
    """A user error: printed as one line `jaxdyn: error: MESSAGE`, exit code 2.

    **Fields:**

    - `message`: the message.
    """

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        """Print the one line to stderr.

        **Arguments:**

        - `file`: ignored (always stderr).

        **Returns:** `None`.
        """
        click.echo(f"jaxdyn: error: {self.format_message()}", err=True)


def _fail(msg: str) -> NoReturn:
    raise UserError(msg)


def _fail_from(e: Exception) -> NoReturn:
    """A `SweepError` (or another `ValueError`) as the one-line user error, naming the CLI
    option behind the engine argument at fault."""
    argument = getattr(e, "argument", None) or ""
    option = _OPTION_OF.get(argument)
    if argument == "config" and str(e).startswith("config "):
        _fail(f"--{e}")  # "--config KEY=VALUE must be …"
    _fail(f"{option}: {e}" if option else str(e))


def parse_axis_values(name: str, text: str) -> Float[np.ndarray, " n"]:
    """Parse one `--AXIS=…` value.

    **Arguments:**

    - `name`: the axis name (for messages).
    - `text`: `start:stop:num` (inclusive linspace), `log:start:stop:num` (geomspace) or
      `v1,v2,…`.

    **Returns:**

    The values, a 1-D float array.

    **Raises:**

    `UserError` (exit code 2) for a malformed value.
    """
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
            if num > MAX_AXIS_VALUES:
                _fail(
                    f"--{name}={text}: num must be ≤ {MAX_AXIS_VALUES:.0e} values per axis "
                    "(larger grids come from the product of several axes)"
                )
            if log:
                if start <= 0 or stop <= 0:
                    _fail(f"--{name}={text}: log ranges need positive ends")
                return np.geomspace(start, stop, num)
            return np.linspace(start, stop, num)
        values = [float(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        _fail(
            f"--{name}={text!r} is not a range start:stop:num, log:start:stop:num or a list "
            "v1,v2,…"
        )
    if not values:
        _fail(f"--{name}: empty or invalid value list {text!r}")
    return np.array(values)


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
        grid[name] = parse_axis_values(name, value)
    return grid


def _parse_config(items: tuple[str, ...]) -> dict[str, Any]:
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


class _Group(click.Group):
    """The `jaxdyn` group: click's own usage errors (an unknown command or option, an option
    value of the wrong type) become the same one line `jaxdyn: error: …` as every other user
    error (exit code 2), naming the command's `--help`."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _one_line_usage_errors():
                return super().invoke(ctx)
        except KeyboardInterrupt:  # before or after a sweep (building, compiling, plotting)
            click.echo("jaxdyn: interrupted; outputs written before are kept", err=True)
            sys.exit(130)


@contextlib.contextmanager
def _one_line_usage_errors():
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as e:
        path = e.ctx.command_path if e.ctx is not None else "jaxdyn"
        raise UserError(f"{e.format_message()} (see `{path} --help`)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jaxdyn")
def main() -> None:
    """jaxdyn: exact learning dynamics of neural networks (gradient flow, closed forms, sweeps).

    \f
    The `jaxdyn` console script (a `click` group: `list`, `sweep`, `plot`, `merge`, `info`).

    **Arguments:** none (reads `sys.argv`).

    **Returns:** `None`; exits with 0, 2 (user error, one line) or 130 (interrupted).

    Before JAX starts its backend, the command turns off XLA:CPU's concurrency-optimised
    scheduler (`--xla_cpu_enable_concurrency_optimized_scheduler=false` appended to
    `XLA_FLAGS`, unless that flag is already set): with it, programs batching the exact
    λ-balanced solution intermittently deadlock (jax/jaxlib 0.10.2; see the Numerics page).
    The library itself never touches `XLA_FLAGS`.
    """
    _avoid_xla_cpu_deadlock()


_XLA_CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def _avoid_xla_cpu_deadlock() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if _XLA_CPU_SCHEDULER_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_XLA_CPU_SCHEDULER_FLAG}=false".strip()


def _build(name: str, config: dict[str, Any]) -> Any:
    """The experiment `name` built with `config`; every user error (unknown experiment,
    unknown config key, a value outside its domain or of the wrong type) as the one line."""
    from . import experiments

    try:
        make = experiments.factory(name)
    except ValueError as e:  # unknown experiment
        _fail_from(e)
    keys = _config_keys(make)
    unknown = sorted(set(config) - set(keys))
    if unknown:
        _fail(
            f"--config: unknown key {unknown[0]!r} for {name}; its keys are "
            f"{', '.join(keys) or '(none)'} (see `jaxdyn list -v {name}`)"
        )
    try:
        return experiments.get_experiment(name, **config)
    except SweepError as e:
        _fail_from(e)
    except (TypeError, ValueError) as e:  # checks of make's own (e.g. `sv` vs `d`)
        _fail(f"--config: {e}")


def _config_keys(make: Any) -> dict[str, inspect.Parameter]:
    """The keyword settings of an experiment's `make`, from its signature."""
    params = inspect.signature(make).parameters.values()
    return {
        p.name: p
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    }


def _range(values: Any) -> str:
    v = np.asarray(values)
    rng = f"{v[0]:g} … {v[-1]:g}" if v.size > 1 else f"{v[0]:g}"
    return f"{v.size} value(s), {rng}"


def _describe(name: str, verbose: bool) -> list[str]:
    """The lines `jaxdyn list [-v] NAME` and `jaxdyn sweep NAME --help` show for one experiment:
    its description and default axes; with `verbose`, each axis's domain and each config key
    (`--config KEY=VALUE`) with its type, default, domain and meaning."""
    from . import experiments

    lines = [f"{name}: {experiments.describe(name)}"]
    try:
        exp = experiments.get_experiment(name)
    except Exception as e:  # noqa: BLE001 - listing must not die on one experiment
        return [*lines, f"    (unavailable: {e})"]
    for axis, values in exp.axes.items():
        line = f"    --{axis}: {_range(values)}"
        if verbose:
            domain = exp.domains.get(axis)
            if domain is None:
                domain = "integer" if axis in exp.integer_axes else "real"
            line += f"; domain: {domain}"
        lines.append(line)
    if not verbose:
        return lines
    keys = _config_keys(experiments.factory(name))
    if keys:
        lines.append("    config keys (--config KEY=VALUE):")
    for key, p in keys.items():
        kind = (
            p.annotation
            if isinstance(p.annotation, str)
            else getattr(p.annotation, "__name__", "")
        )
        kind = "" if p.annotation is p.empty else f": {kind}"
        line = f"      {key}{kind} = {p.default!r}"
        if key in exp.config:
            domain = Domain.parse(exp.config[key])
            line += f"; domain: {domain}"
            if domain.meaning:
                line += f"; {domain.meaning}"
        lines.append(line)
    return lines


def _check_experiment(name: str) -> None:
    from . import experiments

    if name not in experiments.names():
        _fail(f"unknown experiment {name!r}; known: {', '.join(experiments.names())}")


@main.command("list")
@click.argument("names", nargs=-1)
@click.option("-v", "--verbose", is_flag=True, help="Also show axis domains and config keys.")
def _list_cmd(names, verbose):
    """List the built-in experiments (or NAMES) and their default axes.

    With -v: each axis's domain and each config key (`--config KEY=VALUE`) with its type,
    default, domain and meaning (`jaxdyn sweep NAME --help` shows the same).
    """
    from . import experiments

    for name in names:
        _check_experiment(name)
    for name in names or experiments.names():
        for line in _describe(name, verbose):
            click.echo(line)


#: `jaxdyn sweep`'s flags (every other option, and an axis without `=`, takes a value).
_SWEEP_FLAGS = ("-h", "--help", "--resume", "--force", "--no-progress")


class _SweepCommand(click.Command):
    """`jaxdyn sweep`, whose `--help` with an EXPERIMENT (before or after the flag) adds what
    `jaxdyn list -v EXPERIMENT` shows: its axes (defaults, domains) and config keys."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(a in ("-h", "--help") for a in args):
            ctx.meta["jaxdyn.experiment"] = _experiment_in(args)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        name = ctx.meta.get("jaxdyn.experiment")
        if name:
            formatter.write("\n")
            for line in _describe(name, verbose=True):
                formatter.write(line + "\n")


def _experiment_in(args: list[str]) -> str | None:
    """The first positional argument of raw `jaxdyn sweep` arguments (an option's value, a
    `--AXIS VALUE` pair and `--AXIS=VALUE` skipped), checked to be an experiment."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--" or a in _SWEEP_FLAGS:
            i += 1
        elif a.startswith("-"):
            i += 1 if "=" in a else 2
        else:
            _check_experiment(a)
            return a
    return None


@main.command(
    "sweep",
    cls=_SweepCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("experiment")
@click.option("--out", "out", type=str, default=None, help="Output file: .nc or .zarr.")
@click.option("--plot", "plot_path", type=str, default=None, help="Write the figure (PNG).")
@click.option("--chunk-size", type=int, default=None, help="Grid points per compiled call.")
@click.option(
    "--block-size",
    type=int,
    default=None,
    help="Grid points per batched solve (default: the experiment's; changes results at the "
    "tolerance level, recorded in the attrs).",
)
@click.option("--resume", is_flag=True, help="Continue a partly written .zarr store.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--shard", type=str, default=None, help="Run shard i/N of the grid.")
@click.option("--dtype", default="float64", show_default=True, help="float64 or float32.")
@click.option("--config", "config", multiple=True, help="Experiment setting KEY=VALUE.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.pass_context
def _sweep_cmd(
    ctx,
    experiment,
    out,
    plot_path,
    chunk_size,
    block_size,
    resume,
    force,
    shard,
    dtype,
    config,
    no_progress,
):
    """Run EXPERIMENT over a grid: --AXIS=start:stop:num, --AXIS=log:a:b:n or --AXIS=v1,v2,…

    `jaxdyn sweep EXPERIMENT --help` (or `jaxdyn list -v EXPERIMENT`) shows its axes
    (defaults, domains) and config keys (type, default, domain, meaning).
    """
    grid = _parse_extra(list(ctx.args))
    shard_t = None
    if shard is not None:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            _fail(f"--shard {shard!r} must be i/N")
        shard_t = (i, n)
    if out and os.path.exists(out) and not (force or resume):
        # (the engine refuses it too, in its API's words: `force=`, `resume=`)
        _fail(f"{out} exists; pass --force to overwrite (or --resume to continue a .zarr store)")
    if plot_path:
        _check_png("--plot", plot_path, force)
    _set_dtype(dtype)
    from ._sweep import sweep

    exp = _build(experiment, _parse_config(config))
    t0 = time.perf_counter()
    try:
        ds = sweep(
            exp,
            grid,
            chunk_size=chunk_size,
            block_size=block_size,
            out=out,
            resume=resume,
            force=force,
            shard=shard_t,
            progress=not no_progress,
        )
    except SweepError as e:
        _fail_from(e)
    except KeyboardInterrupt:
        msg = "interrupted"
        if out and out.rstrip("/").endswith(".zarr"):
            msg += f"; finished chunks are kept in {out} (continue with --resume)"
        elif out:
            not_run = result_index(RESULTS.not_run)
            msg += (
                f"; finished points were written to {out} "
                f"(status {not_run}, RESULTS.not_run, marks the rest)"
            )
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
@click.option("--x", "x", default=None, help="Horizontal axis (a grid axis or t).")
@click.option("--y", "y", default=None, help="Vertical axis (a grid axis or t).")
@click.option("--t", "t", type=float, default=None, help="Time to show (default: last).")
@click.option("--out", "out", default=None, help="PNG path (default: FILE[_VAR].png).")
@click.option("--force", is_flag=True, help="Overwrite an existing PNG.")
def _plot_cmd(file, var, x, y, t, out, force):
    """Plot a sweep file: the experiment's figure, or a heatmap of --var over two axes.

    Without --var, --x, --y and --t: the experiment's own figure. Otherwise a heatmap (default
    variable: kernel_distance) at the saved time nearest to --t (which must lie within the
    saved times); log-spaced axes are drawn on a log scale.
    """
    from . import experiments
    from ._sweep import load

    out = out or os.path.splitext(file.rstrip("/"))[0] + (f"_{var}" if var else "") + ".png"
    _check_png("--out", out, force)
    try:
        ds = load(file)
    except SweepError as e:  # missing file, unknown extension
        _fail_from(e)
    except (OSError, ValueError, KeyError) as e:
        _fail(f"cannot read {file}: {e}")
    from .plot import heatmap

    name = ds.attrs.get("experiment")
    own_figure = var is None and x is None and y is None and t is None
    if own_figure and name in experiments.names() and "point" not in ds.dims:
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


def _check_png(option: str, path: str, force: bool) -> None:
    """A figure path: not existing (unless `force`), ending in `.png`, in a writable
    directory."""
    if os.path.exists(path) and not force:
        _fail(f"{path} exists; pass --force to overwrite")
    if not path.lower().endswith(".png"):
        _fail(f"{option} {path!r} must end in .png")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        _fail(f"cannot write {path}: {parent} is not a writable directory")


@main.command("merge")
@click.argument("out")
@click.argument("files", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def _merge_cmd(out, files, force):
    """Join shard outputs FILES (from --shard i/N) into OUT (.nc or .zarr)."""
    from ._sweep import merge

    try:
        ds = merge(files, out=out, force=force)
    except SweepError as e:
        _fail_from(e)
    click.echo(f"merged {len(files)} shard(s): {int(ds['status'].size)} points -> {out}")


@main.command("info")
def _info_cmd():
    """Versions and devices."""
    import jax

    from ._version import __version__

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
