"""Shared test set-up: float64 everywhere, whitened data, jitted flows and a scipy reference.

The library never flips `jax_enable_x64` itself (DESIGN.md): the test session does it here, at
import, before any array is created.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

# XLA:CPU's concurrency-optimised scheduler intermittently deadlocks programs that batch the
# exact λ-balanced solution (jax/jaxlib 0.10.2): the tests run with it off, as the `jaxdyn`
# command does (set before JAX starts its backend; subprocesses inherit it).
if "--xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()

import diffrax
import equinox as eqx
import jax
import numpy as np
import pytest
import xarray as xr

jax.config.update("jax_enable_x64", True)

import jaxdyn as jd  # noqa: E402  (after enabling float64)

SEED = 20240606


def make_whitened(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """`X (n, d)` with `XᵀX/n = I_d` to rounding, drawn from `rng` (`jd.data.whitened_inputs`);
    needs n ≥ d."""
    return jd.data.whitened_inputs(n, d, rng)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


@pytest.fixture
def whitened():
    """Factory `whitened(rng, n, d)` for inputs with `XᵀX/n = I` exactly (to rounding)."""
    return make_whitened


# ---------------------------------------------------------------------------------------------
# Jitted flows: `gradient_flow` rebuilds its vector field on every eager call, so each eager call
# compiles afresh (~1 s). Tests that solve many problems of one shape go through these wrappers,
# which compile once per shape (and exercise the "jax.jit works" promise at the same time).


@eqx.filter_jit
def flow_dopri8(model, X, y, ts, lr, rtol=1e-11, atol=1e-12, max_steps=200_000):
    """`jd.gradient_flow` with Dopri8 and tight tolerances, compiled once per shape."""
    return jd.gradient_flow(
        model,
        (X, y),
        ts,
        lr=lr,
        solver=diffrax.Dopri8(),
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )


def single_neuron_rhs(Sxx, sxy, eta_a, eta_w):
    """ȧ = −η_a wᵀg, ẇ = −η_w a g with g = Sxx·aw − sxy, for scipy (state [a, w])."""

    def rhs(t, z):
        a, w = z[0], z[1:]
        g = Sxx @ (a * w) - sxy
        return np.concatenate([[-eta_a * (w @ g)], -eta_w * a * g])

    return rhs


def scipy_single_neuron(X, y, a0, w0, ts, eta_a, eta_w, rtol=1e-12, atol=1e-14):
    """Reference: DOP853 on the single-neuron flow for L = (1/2n)Σ(a wᵀx − y)² (any data)."""
    from scipy.integrate import solve_ivp

    X = np.asarray(X, float)
    y = np.asarray(y, float)
    n = X.shape[0]
    rhs = single_neuron_rhs(X.T @ X / n, X.T @ y / n, float(eta_a), float(eta_w))
    ts = np.asarray(ts, float)
    z0 = np.concatenate([[float(a0)], np.asarray(w0, float)])
    sol = solve_ivp(rhs, (ts[0], ts[-1]), z0, method="DOP853", t_eval=ts, rtol=rtol, atol=atol)
    assert sol.success, sol.message
    return sol.y[0], sol.y[1:].T


def rel_err(approx, ref) -> float:
    """max |approx − ref| / max |ref| over the whole trajectory."""
    approx = np.asarray(approx)
    ref = np.asarray(ref)
    return float(np.max(np.abs(approx - ref)) / np.max(np.abs(ref)))


@pytest.fixture
def scipy_reference():
    return scipy_single_neuron


@pytest.fixture
def jit_flow():
    return flow_dopri8


@pytest.fixture
def relerr():
    return rel_err


# ---------------------------------------------------------------------------------------------
# `jaxdyn sweep` as a subprocess: the command the kill / Ctrl-C / resume tests run, and the same
# sweep in-process (the reference its results must equal bit for bit).

#: `--config` settings of the small single-neuron sweeps run through the CLI.
CLI_SWEEP_CONFIG = {"t_max": 8.0, "n_t": 17}


def cli_sweep_argv(
    out, *extra: str, delta: str = "-2:2:40", chunk_size: int = 2, config=None
) -> list[str]:
    """`sweep single-neuron --delta=DELTA --scale=0.05 --lr_ratio=1` with `config` (default
    `CLI_SWEEP_CONFIG`), `--chunk-size CHUNK_SIZE --block-size CHUNK_SIZE --out OUT
    --no-progress`, then `extra`: the arguments after the program name (blocks as small as
    the chunks, so the grid has many chunks: the experiment's default block would make it
    one)."""
    items = (CLI_SWEEP_CONFIG if config is None else config).items()
    return [
        "sweep",
        "single-neuron",
        f"--delta={delta}",
        "--scale=0.05",
        "--lr_ratio=1",
        *[a for k, v in items for a in ("--config", f"{k}={v}")],
        "--chunk-size",
        str(chunk_size),
        "--block-size",
        str(chunk_size),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def cli_sweep_args(out, *extra: str, delta: str = "-2:2:40", chunk_size: int = 2) -> list[str]:
    """`python -m jaxdyn.cli` followed by `cli_sweep_argv(out, *extra, delta=, chunk_size=)`."""
    argv = cli_sweep_argv(out, *extra, delta=delta, chunk_size=chunk_size)
    return [sys.executable, "-m", "jaxdyn.cli", *argv]


def cli_sweep_reference(delta: str = "-2:2:40", chunk_size: int = 2) -> xr.Dataset:
    """The sweep of `cli_sweep_args(out, delta=, chunk_size=)`, run in this process."""
    start, stop, num = delta.split(":")
    grid = {
        "delta": np.linspace(float(start), float(stop), int(num)),
        "scale": [0.05],
        "lr_ratio": [1.0],
    }
    exp = jd.experiments.get_experiment("single-neuron", **CLI_SWEEP_CONFIG)
    return jd.sweep(exp, grid, chunk_size=chunk_size, block_size=chunk_size, progress=False)


def chunks_done(store) -> int:
    """How many `chunk_done` flags of a Zarr sweep store are set (0 while it cannot be read:
    not created yet, being created)."""
    import zarr

    try:
        return int(
            np.asarray(zarr.open_array(os.path.join(store, "chunk_done"), mode="r")[:]).sum()
        )
    except Exception:  # noqa: BLE001 - not there (yet)
        return 0


@contextlib.contextmanager
def sigint_reaches_children():
    """Make SIGINT reach the subprocesses started inside the block: a process started with
    SIGINT *ignored* (a background job of a non-interactive shell, `nohup`) passes that on to
    its children, and Python in them then ignores Ctrl-C. A handler (unlike "ignore") is reset
    to the default on exec, so the children get Python's usual KeyboardInterrupt."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT)
    if main and old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if main and old == signal.SIG_IGN:
            signal.signal(signal.SIGINT, old)
