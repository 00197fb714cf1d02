"""The `Experiment` description used by `jaxdyn.sweep` and the CLI, and the `Domain` of its
axes and config keys (checked before anything compiles)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, ParamSpec

import numpy as np
from jaxtyping import ArrayLike, Bool

from ._cache import memo
from ._errors import SweepError

__all__ = ["Domain", "DomainSpec", "Experiment"]

_P = ParamSpec("_P")


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values an axis or a config key may take: an interval of reals (open or closed
    ends), optionally integers only, or a finite set of choices.

    Experiments usually write a domain as a short string, parsed once by `Domain.parse`:
    `"> 0"`, `">= 0"` (or `"≥ 0"`), `"< 1"`, `"in (0, 1)"`, `"in [1, 50]"`,
    `"integer >= 2"`, `"integer in [1, 50]"`, `"one of 'auto', 'stacked', 'vmap'"`,
    `"real"` (any finite number), each optionally prefixed by `"optional "` (also `None`).

    **Fields:**

    - `lower`, `upper`: the interval's ends (`None`: unbounded).
    - `lower_open`, `upper_open`: whether an end is excluded.
    - `integer`: integers only (Python/NumPy integers for config keys; integral values for
      axes).
    - `choices`: a finite set of allowed values instead of an interval (compared with `==` and
      the same type, so `True` is not `1`).
    - `optional`: `None` is allowed too (config keys whose default is `None`).
    - `meaning`: one line saying what the key or axis is (shown by `jaxdyn list -v`).

    Numbers must be finite; a sequence value (e.g. singular values `sv`) is checked element
    by element.
    """

    lower: float | None = None
    upper: float | None = None
    lower_open: bool = False
    upper_open: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    meaning: str = ""

    @classmethod
    def parse(cls, spec: DomainSpec) -> Domain:
        """A `Domain` from its short form.

        **Arguments:**

        - `spec`: a `Domain` (returned as is), a string as in the class docstring, or a pair
          `(string, meaning)`.

        **Returns:**

        The `Domain`.

        **Raises:**

        `ValueError` for a string that is not a domain.
        """
        if isinstance(spec, Domain):
            return spec
        meaning = ""
        if isinstance(spec, tuple):
            spec, meaning = spec
        text = " ".join(str(spec).split())
        kw: dict[str, Any] = {"meaning": meaning}
        if text.startswith("optional"):
            kw["optional"], text = True, text[len("optional") :].strip()
        if text.startswith("one of "):
            try:
                choices = ast.literal_eval(f"({text[len('one of ') :]},)")
            except (ValueError, SyntaxError):
                raise ValueError(f"domain {spec!r}: choices must be Python literals") from None
            return cls(choices=tuple(choices), **kw)
        if text.startswith("integer"):
            kw["integer"], text = True, text[len("integer") :].strip()
        if text in ("", "real", "any"):
            return cls(**kw)
        m = _INTERVAL.fullmatch(text)
        if m is not None:
            lo, hi = float(m["lo"]), float(m["hi"])
            return cls(lo, hi, m["open"] == "(", m["close"] == ")", **kw)
        m = _BOUND.fullmatch(text)
        if m is None:
            raise ValueError(
                f"domain {spec!r} is not one of '> x', '>= x', '< x', '<= x', 'in [a, b]' "
                "(ends may be open), 'one of …', optionally after 'integer' / 'optional'"
            )
        op, x = m["op"].replace("≥", ">=").replace("≤", "<="), float(m["x"])
        if op.startswith(">"):
            return cls(lower=x, lower_open=op == ">", **kw)
        return cls(upper=x, upper_open=op == "<", **kw)

    def __str__(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            parts = ["integer"] if self.integer else []
            lo, hi = self.lower, self.upper
            if lo is not None and hi is not None:
                parts.append(
                    f"in {'(' if self.lower_open else '['}{_num(lo)}, {_num(hi)}"
                    f"{')' if self.upper_open else ']'}"
                )
            elif lo is not None:
                parts.append(f"{'>' if self.lower_open else '≥'} {_num(lo)}")
            elif hi is not None:
                parts.append(f"{'<' if self.upper_open else '≤'} {_num(hi)}")
            elif not self.integer:
                parts.append("real")
            text = " ".join(parts)
        return f"None or {text}" if self.optional else text

    def contains(self, values: ArrayLike) -> Bool[np.ndarray, "..."]:
        """Which of `values` (numbers) lie in the interval and, for an integer domain, are
        integral. Ignores `choices` and `optional`.

        **Arguments:**

        - `values`: a number or an array of numbers.

        **Returns:**

        A boolean NumPy array of `values`' shape.
        """
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        if self.integer:
            ok &= np.equal(np.mod(np.where(ok, v, 0.0), 1), 0)
        if self.lower is not None:
            ok &= (v > self.lower) if self.lower_open else (v >= self.lower)
        if self.upper is not None:
            ok &= (v < self.upper) if self.upper_open else (v <= self.upper)
        return np.asarray(ok)

    def check_value(self, key: str, value: Any) -> None:
        """Check one config value (a number, a sequence of numbers, or one of the choices).

        **Arguments:**

        - `key`: the config key (for the message).
        - `value`: its value.

        **Returns:** `None`.

        **Raises:**

        `SweepError` (argument `"config"`) naming the key and the value when it is outside
        the domain or of the wrong type.
        """
        if value is None and self.optional:
            return
        if self.choices is not None:
            if not any(type(value) is type(c) and value == c for c in self.choices):
                raise _config_error(key, value, self)
            return
        if isinstance(value, str | bytes | bool | np.bool_):
            raise _config_error(key, value, self)
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            raise _config_error(key, value, self) from None
        if arr.size == 0 or arr.dtype.kind not in ("iu" if self.integer else "iuf"):
            raise _config_error(key, value, self)
        if not np.all(self.contains(arr)):
            raise _config_error(key, value, self)


#: A domain as experiments declare it: a `Domain`, its short string, or `(string, meaning)`.
DomainSpec = Domain | str | tuple[str, str]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"
_INTERVAL = re.compile(
    rf"in\s*(?P<open>[\[(])\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*(?P<close>[\])])"
)
_BOUND = re.compile(rf"(?P<op>>=|<=|>|<|≥|≤)\s*(?P<x>{_NUM})")


def _num(x: float) -> str:
    """`x` short (`:g`) where that reads back as `x`, else its exact `repr`, so that
    `Domain.parse(str(d)) == d`."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _config_error(key: str, value: Any, domain: Domain) -> SweepError:
    what = f" ({domain.meaning})" if domain.meaning else ""
    text = str(domain).replace("integer", "an integer", 1)
    return SweepError(f"config {key}={value!r} must be {text}{what}", argument="config")


@dataclasses.dataclass(eq=False)
class Experiment:
    """A sweepable computation: a batched function of named scalar hyperparameters.

    **Fields:**

    - `name`: registry name (used by the CLI, e.g. `"single-neuron"`).
    - `description`: one line for `jaxdyn list`.
    - `run`: `run(points) -> outputs`, where `points` maps every axis name to a 1-D array of
      length B (the batch of grid points) and `outputs` maps variable names to arrays with
      leading axis B. It must be a pure JAX function (it is `jax.jit`-ed once per chunk shape;
      hyperparameters arrive as traced arrays, never Python floats, so changing their values
      never recompiles).
    - `axes`: the default grid, axis name -> 1-D values. A sweep's grid overrides some axes;
      the others keep these defaults.
    - `dims`: variable name -> names of its trailing (non-grid) dimensions, e.g. `("t",)`.
    - `coords`: coordinate values for those trailing dimensions, e.g. `{"t": ts}`.
    - `attrs`: metadata copied into the Dataset (solver, tolerances, data description…).
    - `plot`: optional `plot(ds, path)` drawing the experiment's standard figure.
    - `summary`: optional `summary(ds) -> str` printed by the CLI (e.g. agreement with theory).
    - `integer_axes`: axes whose values are integers (e.g. `seed`); stored as a frozenset,
      which also holds every axis whose domain is `integer`.
    - `domains`: axis name -> its `Domain` (or the short string `Domain.parse` reads, e.g.
      `{"scale": "> 0", "width": "integer in [1, 50]", "seed": "integer >= 0"}`); stored
      parsed. `jd.sweep` rejects a grid value outside its axis's domain with a `SweepError`
      naming the axis and the value, before anything compiles. Axes without a domain take
      any finite value.
    - `config`: config key -> its `Domain` (or short form, or `(short form, meaning)`): the
      keyword settings of the experiment's `make`, for `jaxdyn list -v`. A `make` decorated
      with `Experiment.with_config(CONFIG)` has its settings checked against `CONFIG` before
      it runs and sets this field.
    - `bytes_per_point`: rough device memory per grid point, used for automatic chunk sizes.
    - `max_chunk_per_device`: upper bound on points per device and call (automatic and explicit
      chunk sizes are clamped to it), for programs that misbehave when batched too wide.
    - `block_size`: points per **block**, the batch one compiled solve sees (`run` is called on
      blocks of this many consecutive grid points, one after another within a chunk). A
      point's result depends only on the points of its block, so with a fixed block the
      results do not change with the chunk size, the device count or the shard (see
      `jaxdyn.sweep`). `None`: 1 (every point alone). Built-in experiments that batch a
      stacked solve declare a block wide enough to be fast.

    The class attribute `SOLVER_CONFIG` holds the config rows (`rtol`, `atol`, `mode`) that
    every experiment solving by `jd.gradient_flow` shares: write
    `CONFIG = {**jd.Experiment.SOLVER_CONFIG, "n_t": ..., ...}`.
    """

    SOLVER_CONFIG: ClassVar[dict[str, DomainSpec]] = {
        "rtol": ("in (0, 1)", "relative tolerance of the solver"),
        "atol": ("> 0", "absolute tolerance of the solver"),
        "mode": ("one of 'auto', 'stacked', 'vmap'", "batch mode of jd.gradient_flow"),
    }

    name: str
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    axes: Mapping[str, Any]
    dims: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    coords: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    plot: Callable | None = None
    summary: Callable | None = None
    integer_axes: Collection[str] = frozenset()
    domains: Mapping[str, DomainSpec] = dataclasses.field(default_factory=dict)
    config: Mapping[str, DomainSpec] = dataclasses.field(default_factory=dict)
    bytes_per_point: int = 1 << 16
    max_chunk_per_device: int | None = None
    block_size: int | None = None

    def __post_init__(self):
        self.axes = {k: np.atleast_1d(np.asarray(v)) for k, v in self.axes.items()}
        self.coords = {k: np.asarray(v) for k, v in self.coords.items()}
        unknown = sorted(set(self.domains) - set(self.axes))
        if unknown:
            raise ValueError(
                f"`domains` names {unknown[0]!r}, which is not an axis of {self.name!r}; "
                f"its axes are {sorted(self.axes)}."
            )
        self.domains = {k: Domain.parse(v) for k, v in self.domains.items()}
        self.config = {k: Domain.parse(v) for k, v in self.config.items()}
        self.integer_axes = frozenset(self.integer_axes) | {
            k for k, d in self.domains.items() if d.integer
        }

    @staticmethod
    def check_config(config: Mapping[str, DomainSpec], values: Mapping[str, Any]) -> None:
        """Check an experiment's settings against their domains.

        **Arguments:**

        - `config`: key -> `Domain` or short form (as the `config` field takes).
        - `values`: key -> value; keys without a domain are not checked.

        **Returns:** `None`.

        **Raises:**

        `SweepError` (a `ValueError`; its `argument` is `"config"`) naming the first key whose
        value is outside its domain or of the wrong type, e.g.
        `config n_t=0 must be an integer ≥ 2 (save times)`.
        """
        for key, spec in config.items():
            if key in values:
                Domain.parse(spec).check_value(key, values[key])

    @staticmethod
    def with_config(
        config: Mapping[str, DomainSpec],
    ) -> Callable[[Callable[_P, Experiment]], Callable[_P, Experiment]]:
        """Decorate an experiment's `make(**config) -> Experiment`: its settings are checked
        against `config` (`check_config`) before `make` runs, a Python `int` given for a
        real-valued key is passed on as a `float` (`--config t_max=5`), and the returned
        `Experiment` gets `config` (parsed) as its `config` field, for `jaxdyn list -v`.

        ```python
        CONFIG = {"n_t": ("integer >= 2", "save times"), "rtol": ("in (0, 1)", "tolerance")}

        @jd.Experiment.with_config(CONFIG)
        def make(*, n_t: int = 101, rtol: float = 1e-8) -> jd.Experiment: ...
        ```

        **Arguments:**

        - `config`: key -> `Domain` or short form (as the `config` field takes).

        **Returns:**

        The decorator; the decorated `make` keeps its signature (`inspect.signature` shows
        the settings and their defaults) and raises `SweepError` (argument `"config"`)
        naming a key whose value is outside its domain.
        """
        domains = {k: Domain.parse(v) for k, v in config.items()}

        def decorate(make: Callable[_P, Experiment]) -> Callable[_P, Experiment]:
            signature = inspect.signature(make)

            @functools.wraps(make)
            def checked(*args: _P.args, **kwargs: _P.kwargs) -> Experiment:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError as e:  # an unknown key, as `make` itself would say
                    raise TypeError(f"{make.__module__}.{make.__qualname__}(): {e}") from None
                Experiment.check_config(domains, bound.arguments)
                for key, value in bound.arguments.items():
                    d = domains.get(key)
                    if (
                        d is not None
                        and d.choices is None
                        and not d.integer
                        and isinstance(value, int | np.integer)
                        and not isinstance(value, bool)
                    ):
                        bound.arguments[key] = float(value)
                exp = make(*bound.args, **bound.kwargs)
                exp.config = dict(domains)
                return exp

            return checked

        return decorate

    @property
    def jitted(self) -> Any:
        """`jax.jit(run)`, created once per experiment object (cached by `memo` in
        `jaxdyn._sweep._cache`), so repeated sweeps reuse its compilation cache.

        **Returns:**

        The jitted `run` (a `jax.jit` wrapper: callable, with `.lower` and `.eval_shape`).
        """
        import jax

        return memo(self, "jitted", lambda: jax.jit(self.run))
