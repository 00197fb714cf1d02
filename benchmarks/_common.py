"""Shared helpers for the jaxdyn benchmarks: timing, machine record, one-JSON-line output.

Every benchmark prints one JSON object per line on stdout (`emit`), so results can be collected
with `grep '^{' | jq`. Timings exclude warm-up (compilation, first-call caches): `timeit` runs
the function `warmup` times untimed, then `repeat` timed calls with `time.perf_counter`, and
reports the best and the median.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "block",
    "compile_counter",
    "emit",
    "equal_accuracy",
    "interp_loglog",
    "machine_info",
    "peak_rss_tracker",
    "print_ratios",
    "lambda_balanced_models",
    "print_table",
    "rate_record",
    "timeit",
]


def lambda_balanced_models(lam, scale, seed, Syx, d: int):
    """Square d → d → d λ-balanced nets (`jd.init.lambda_balanced`, key = `seed`) with the first
    layer reflected so sign det W2W1(0) = sign det Σ̃yx (`jd.init.match_det_sign`), as the
    `lambda-balanced` experiment builds them; one jitted vmap over the 1-D arrays `lam`,
    `scale`, `seed`."""
    import jax
    import jax.numpy as jnp

    import jaxdyn as jd

    Syx = jnp.asarray(Syx)

    @jax.jit
    def build(lam, scale, seed):
        def one(l, s, k):
            m = jd.init.lambda_balanced(jax.random.key(k), d, d, d, l, s)
            return jd.init.match_det_sign(m, Syx, jnp.asarray(True))

        return jax.vmap(one)(lam, scale, seed)

    return build(jnp.asarray(lam), jnp.asarray(scale), jnp.asarray(seed))


def block(x: Any) -> Any:
    """Wait for every JAX array in `x` (a pytree) to be computed; a no-op for non-JAX values."""
    if "jax" in sys.modules:
        import jax

        return jax.block_until_ready(x)
    return x


def timeit(fn: Callable[[], Any], *, repeat: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Time `fn()` (blocking on JAX results): `warmup` untimed calls, then `repeat` timed ones.

    Returns `{"best_s", "median_s", "times_s", "repeat", "result"}`, `result` being the value of
    the last call.
    """
    out = None
    for _ in range(warmup):
        out = block(fn())
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = block(fn())
        times.append(time.perf_counter() - t0)
    return {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "times_s": times,
        "repeat": len(times),
        "result": out,
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", None) == 0:  # numpy / jax scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)
    return x


def emit(record: dict[str, Any]) -> None:
    """Print `record` as exactly one JSON line on stdout (flushed)."""
    print(json.dumps(_jsonable(record), separators=(", ", ": ")), flush=True)


def machine_info() -> dict[str, Any]:
    """CPU count, platform, Python and package versions, and the JAX backend / device kind."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for mod in ("numpy", "scipy", "jax", "jaxlib", "equinox", "diffrax", "jaxdyn"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except ImportError:
            continue
    if "jax" in sys.modules:
        import jax

        dev = jax.devices()[0]
        info["jax_backend"] = jax.default_backend()
        info["device_kind"] = dev.device_kind
        info["n_devices"] = jax.device_count()
        info["x64"] = bool(jax.config.jax_enable_x64)
    return info


class _Counts:
    compiles = 0
    traces = 0
    result: int | None = None


@contextlib.contextmanager
def compile_counter():
    """Count JAX traces and XLA compiles inside the block (`jax.monitoring` duration events).

    Yields an object whose `compiles` / `traces` attributes hold the counts so far."""
    import jax.monitoring as mon

    counts = _Counts()

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            counts.compiles += 1
        elif event == "/jax/core/compile/jaxpr_trace_duration":
            counts.traces += 1

    mon.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        mon.unregister_event_duration_listener(listener)


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def peak_rss_tracker(enabled: bool = True):
    """Growth of the process's peak resident set size over the block, in bytes (Linux).

    Resets the kernel's high-water mark (`/proc/self/clear_refs` ← 5) on entry and reads
    VmHWM − VmRSS(entry) on exit into `.result`; `.result` stays None where this is
    unavailable (not Linux, no permission) or `enabled` is false."""
    counts = _Counts()
    rss0 = None
    if enabled:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            rss0 = _proc_status_kib("VmRSS")
        except OSError:
            rss0 = None
    try:
        yield counts
    finally:
        hwm = _proc_status_kib("VmHWM") if rss0 is not None else None
        if hwm is not None and rss0 is not None:
            counts.result = max(0, hwm - rss0) * 1024


def rate_record(bench: str, method: str, count_key: str, n: int, r: dict, **extra) -> dict:
    """Emit and return one throughput record: `n` items timed by `timeit` result `r`."""
    rec = {
        "bench": bench,
        "method": method,
        count_key: n,
        "traj_per_s": n / r["best_s"],
        "traj_per_s_median": n / r["median_s"],
        "time_s": r["best_s"],
        "median_s": r["median_s"],
        "repeat": r["repeat"],
    }
    rec.update({k: v for k, v in r.items() if k not in ("best_s", "median_s", "repeat")})
    rec.update(extra)
    emit(rec)
    return rec


def print_ratios(ratios: dict, targets: dict, meets: dict, width: int, out) -> None:
    """One line per ratio, with its target and whether this run met it."""
    for k, v in ratios.items():
        tgt = (
            f"  (target >= {targets[k]:g}: {'ok' if meets[k] else 'MISSED'})"
            if k in targets
            else ""
        )
        print(f"{k:<{width}}{v:>9.1f}x{tgt}", file=out)


def print_table(title: str, header: list[str], rows: list[list[Any]], out, first: int = 0) -> None:
    """A plain-text table on `out`: `title`, then `header` and `rows` (cells as strings or
    numbers), the first column left-aligned (width `first`, default: the widest cell), the
    others right-aligned to their widest cell."""
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[j]) for r in cells) + 2 for j in range(len(header))]
    widths[0] = max(first, widths[0])
    print(title, file=out)
    for r in cells:
        line = r[0].ljust(widths[0]) + "".join(
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        )
        print(line.rstrip(), file=out)


def interp_loglog(points: list[tuple[float, float]], err: float) -> float | None:
    """Time at achieved error `err` on one method's work–precision curve `[(error, time), …]`:
    log(time) linear in log(error) between the measured points sorted by error (a repeated
    error keeps its fastest time); `None` outside the measured error range (no extrapolation)
    or with no finite positive point."""
    import math

    best: dict[float, float] = {}
    for e, t in points:
        if e > 0 and t > 0 and math.isfinite(e) and math.isfinite(t):
            best[e] = min(t, best.get(e, math.inf))
    if not best:
        return None
    es = sorted(best)
    if not es[0] <= err <= es[-1]:
        return None
    if len(es) == 1:
        return best[es[0]]
    for lo, hi in zip(es, es[1:], strict=False):
        if lo <= err <= hi:
            u = (math.log(err) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return math.exp((1 - u) * math.log(best[lo]) + u * math.log(best[hi]))
    return None


def equal_accuracy(
    curves: dict[str, dict[str, list[tuple[float, float]]]], ref: str, targets: list[float]
) -> dict[str, dict[str, float | None]]:
    """Speed ratios at equal achieved accuracy.

    `curves[family][member]` is a list of `(achieved error, time)` points (one per tolerance);
    a family's time at error e is the fastest of its members' interpolated times
    (`interp_loglog`). Returns `{family: {"1e-08": time(family)/time(ref), …}}` for every family
    other than `ref`, over `targets`; `None` where either family does not reach e."""

    def family_time(fam, e):
        ts = [t for pts in curves[fam].values() if (t := interp_loglog(pts, e)) is not None]
        return min(ts) if ts else None

    out: dict[str, dict[str, float | None]] = {}
    for fam in curves:
        if fam == ref:
            continue
        row: dict[str, float | None] = {}
        for e in targets:
            t_ref, t_fam = family_time(ref, e), family_time(fam, e)
            row[f"{e:.0e}"] = None if t_ref is None or t_fam is None else t_fam / t_ref
        out[fam] = row
    return out
