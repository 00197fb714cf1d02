"""The one compile cache of jaxdyn: values memoised per *owner* object.

Compiling a sweep's program is the expensive part of a small sweep, so every object that
holds a compiled program is built once and found again here:

- `Experiment.jitted`: `jax.jit(experiment.run)`, owner: the `Experiment` (so a second sweep of
  the same experiment, with any grid of the same chunk shape, reuses XLA's compilation);
- the `Experiment` made for a plain per-point function swept by `jaxdyn.sweep(fn, grid)`,
  owner: the function, key: the grid's axis names;
- the bytes per grid point measured from XLA's memory analysis (automatic chunk sizes),
  owner: the `Experiment`, key: the float dtype;
- the built-in experiments of the registry (`jaxdyn.experiments.get_experiment(name,
  **config)`), owner: the experiment's `make` function, key: the config made hashable
  (`freeze`: lists become tuples, dicts sorted tuples of items, arrays their bytes).

Entries are held weakly by their owner (a `weakref.WeakKeyDictionary`): they go when the
owner goes. A cached value that refers to its owner (the `Experiment` of a plain function
calls that function) keeps it alive, so such entries live as long as the process, like
`functools.cache`; so do owners that take no weak reference (builtins). `clear()` empties the
cache (tests; or after redefining a global that a cached function reads).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

__all__ = ["memo", "freeze", "fingerprint", "clear"]

_T = TypeVar("_T")

_CACHE: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_STRONG: dict[Any, dict[Hashable, Any]] = {}  # owners that take no weak reference (builtins)


def memo(owner: object, key: Hashable, build: Callable[[], _T]) -> _T:
    """The value cached for `(owner, key)`, built by `build()` the first time.

    **Arguments:**

    - `owner`: the object the value belongs to (weakly referenced: an `Experiment`, a
      function…).
    - `key`: what distinguishes values of one owner (a string, a tuple of axis names, a dtype,
      a `freeze`-d config).
    - `build`: makes the value when it is not cached yet.

    **Returns:**

    The cached (or newly built and cached) value.
    """
    try:
        per_owner = _CACHE.setdefault(owner, {})
    except TypeError:  # cannot create a weak reference to this owner
        per_owner = _STRONG.setdefault(owner, {})
    if key not in per_owner:
        per_owner[key] = build()
    return per_owner[key]


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for `value`, equal for equal values: lists and tuples become
    tuples, dicts sorted tuples of `(key, value)`, sets frozensets, NumPy arrays
    `(dtype, shape, bytes)`; other values are returned as they are.

    **Arguments:**

    - `value`: a configuration value (number, string, list, dict, array, …).

    **Returns:**

    A hashable value to use as (part of) a cache key.
    """
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(freeze(v) for v in value))
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), value.shape, value.tobytes())
    return value


def fingerprint(fn: Callable[..., Any]) -> Hashable:
    """What a plain function reads from outside its arguments: the values of the global names
    its code (and the code of functions nested in it) refers to, and of its closure cells.

    Part of the cache key of a plain function's `Experiment` (`jaxdyn.sweep(fn, grid)`):
    a sweep after such a global changed value is traced again instead of returning results
    computed with the old value. Numbers, strings, arrays, lists, tuples and dicts of them
    and tuples of them are compared by value; lists, dicts, modules, functions and other
    objects by identity (a mutated object, or a global read only by *another* function that
    `fn` calls, is not seen).

    **Arguments:**

    - `fn`: the function.

    **Returns:**

    A hashable fingerprint (equal while those values are equal).
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("id", id(fn))
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    glb = getattr(fn, "__globals__", {})
    items = [(n, _value_key(glb[n])) for n in sorted(names) if n in glb]
    cells = tuple(_value_key(_cell(c)) for c in getattr(fn, "__closure__", None) or ())
    return (tuple(items), cells)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _value_key(v: Any) -> Hashable:
    if v is None or isinstance(v, bool | int | float | complex | str | bytes):
        return (type(v).__name__, v)
    if isinstance(v, np.ndarray | np.generic):
        return freeze(np.asarray(v))
    if type(v).__module__.startswith("jax") and hasattr(v, "shape") and hasattr(v, "dtype"):
        try:
            return freeze(np.asarray(v))
        except Exception:  # noqa: BLE001 - a tracer or a deleted array: by identity
            return ("id", id(v))
    if isinstance(v, tuple | frozenset):  # immutable containers by value; lists, dicts by id
        try:
            key = freeze(v)
            hash(key)
            return key
        except TypeError:
            return ("id", id(v))
    return ("id", id(v))


def clear() -> None:
    """Forget every cached value (the next sweep recompiles).

    **Arguments:** none.

    **Returns:** `None`.
    """
    _CACHE.clear()
    _STRONG.clear()
