"""Fault injection: `jaxdyn sweep` killed (SIGKILL) or interrupted (SIGINT, Ctrl-C) at many
instants — while the Zarr store is being created, while the first chunk compiles, with exactly
k chunks done, in the last chunk, while finishing — then resumed (`--resume`, or
`jd.sweep(..., resume=True)`), must give results IDENTICAL (bit for bit, every variable) to an
uninterrupted run of the same command; write failures (an injected `ENOSPC`, a directory made
read-only) keep the results in a recovery file; a second writer of the same store is refused.

Cost. A `jaxdyn` process spends ~3.5 s importing and ~5 s compiling before its first chunk.
So that ≥ 20 instants per signal fit in a few minutes on 2 cores:

- the killed commands are forked from one *fork server* that has already imported
  `jaxdyn.cli` (and xarray, zarr, h5netcdf): each child runs the real command line, from
  `jaxdyn.cli.main(argv)` on, with its own stdout/stderr and the interpreter's own handling of
  `SystemExit`/`KeyboardInterrupt`; only the interpreter start and imports are shared. The
  instants *during* start-up are covered by real `python -m jaxdyn.cli` processes
  (`test_killed_during_start_up`);
- every command runs with a persistent compilation cache, warmed by the uninterrupted reference
  run, and with `EQX_ON_ERROR=nan`: jaxlib does not cache a program with host callbacks, which
  `eqx.error_if`'s default "raise" inserts. On this grid no check fires, so only the compile
  time changes; the reference runs with the same settings.

Instants are deterministic: an event seen from outside (the temporary sibling `<out>.tmp-*`
appears, the store appears, exactly k `chunk_done` flags are set) plus a delay that is a
fraction of the reference run's length of that phase. For the chunk instants the process is
stopped (SIGSTOP) while its flags are read, so the signal arrives with exactly k chunks done.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from conftest import CLI_SWEEP_CONFIG, chunks_done, cli_sweep_argv, sigint_reaches_children

import jaxdyn as jd
from jaxdyn import SweepError

jax.config.update("jax_enable_x64", True)

NOT_RUN = jd.result_index(jd.RESULTS.not_run)

#: The sweep every kill test runs: 24 points in 8 chunks of 3 (blocks of 3: the default block
#: of `single-neuron`, 256 points, would make it one chunk).
DELTA, N_POINTS, CHUNK = "-2:2:24", 24, 3
N_CHUNKS = N_POINTS // CHUNK


def sweep_argv(out, *extra: str, delta: str = DELTA, chunk: int = CHUNK) -> list[str]:
    """`jaxdyn sweep single-neuron …` arguments (after the program name), blocks of `chunk`."""
    return cli_sweep_argv(out, *extra, delta=delta, chunk_size=chunk)


def leftovers(out) -> list[str]:
    """Temporary siblings of `out` (`<out>.tmp-*`, `<out>.old-*`)."""
    base = glob.escape(os.fspath(out).rstrip(os.sep))
    return sorted(glob.glob(base + ".tmp-*") + glob.glob(base + ".old-*"))


def assert_identical(got: xr.Dataset, ref: xr.Dataset, what: str = "") -> None:
    """Same variables, dims, dtypes and values, bit for bit (NaN equals NaN)."""
    assert sorted(map(str, got.variables)) == sorted(map(str, ref.variables)), what
    for name in ref.variables:
        g, r = got[name], ref[name]
        assert g.dims == r.dims and g.dtype == r.dtype, f"{what}: {name}"
        np.testing.assert_array_equal(g.values, r.values, err_msg=f"{what}: {name}")


def stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]


def assert_clean_interrupt(rc: int, err: str, what: str) -> None:
    """Ctrl-C: exit code 130, no traceback, and every line on stderr is jaxdyn's own, the
    last one `jaxdyn: interrupted; …`."""
    lines = stderr_lines(err)
    assert rc == 130, f"{what}: exit code {rc}; stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, f"{what}:\n{err[-3000:]}"
    assert lines and lines[-1].startswith("jaxdyn: interrupted; "), f"{what}:\n{err[-3000:]}"
    assert all(ln.startswith("jaxdyn: ") for ln in lines), f"{what}:\n{err[-3000:]}"


# --------------------------------------------------------------------------------------------
# The fork server

SERVER = r"""
import json, os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server itself ignores Ctrl-C
import h5netcdf, xarray, zarr  # noqa: F401  what the command imports later
import jaxdyn.cli, jaxdyn.experiments  # noqa: F401

class Child(Exception):
    pass

def say(msg):  # no Python file object: a child must not inherit a half-used buffer
    os.write(1, (json.dumps(msg) + "\n").encode())

def serve():
    ids, buf = {}, b""
    say({"ready": os.getpid()})
    while True:
        while ids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            say({"id": ids.pop(pid), "rc": os.waitstatus_to_exitcode(status)})
        if not select.select([0], [], [], 0.005)[0]:
            continue
        data = os.read(0, 65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                raise Child(req)
            ids[pid] = req["id"]
            say({"id": req["id"], "pid": pid})

try:
    serve()
except Child as c:
    req = c.args[0]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, flags, 0o644), fd)
    os.chdir(req["cwd"])
    if "argv" in req:
        sys.argv = ["jaxdyn", *req["argv"]]
        jaxdyn.cli.main(args=req["argv"], prog_name="jaxdyn")
    else:
        exec(compile(req["code"], "<forked>", "exec"), {"__name__": "__main__"})
"""


@dataclasses.dataclass
class Child:
    """One forked command: `pid`, a pidfd (signals cannot reach a recycled pid), its logs."""

    pid: int
    pidfd: int
    stdout: str
    stderr: str
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    rc: int | None = None

    def signal(self, sig: int) -> bool:
        """Send `sig`; `False` if the process has already exited."""
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            return False
        return True

    def alive(self) -> bool:
        return not self.done.is_set() and not select.select([self.pidfd], [], [], 0)[0]

    def wait(self, timeout: float = 300) -> int:
        assert self.done.wait(timeout), f"pid {self.pid} still running after {timeout} s"
        os.close(self.pidfd)
        assert self.rc is not None
        return self.rc

    def out(self) -> str:
        return _read(self.stdout)

    def err(self) -> str:
        return _read(self.stderr)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:  # the child has not opened it yet
        return ""


class ForkServer:
    """`launch(argv)` / `run_code(code)` fork a child of a process that has imported jaxdyn."""

    def __init__(self, env: dict[str, str], logs: str):
        self.logs = logs
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()
        self._next = 0
        self._children: dict[int, Child] = {}
        self._started: dict[int, threading.Event] = {}
        self._pids: dict[int, int] = {}
        self._early: dict[int, int] = {}
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        assert "ready" in ready, ready
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if "pid" in msg:
                    self._pids[msg["id"]] = msg["pid"]
                    self._started[msg["id"]].set()
                else:
                    child = self._children.get(msg["id"])
                    if child is None:  # exited before `_launch` saw its pid (not expected)
                        self._early[msg["id"]] = msg["rc"]
                        continue
                    child.rc = msg["rc"]
                    child.done.set()

    def _launch(self, req: dict) -> Child:
        with self._lock:
            i = self._next
            self._next += 1
            self._started[i] = threading.Event()
        stdout = os.path.join(self.logs, f"{i}.out")
        stderr = os.path.join(self.logs, f"{i}.err")
        msg = {**req, "id": i, "stdout": stdout, "stderr": stderr}
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        assert self._started[i].wait(60), "the fork server did not answer"
        with self._lock:
            pid = self._pids.pop(i)
            pidfd = os.pidfd_open(pid)
            # The pidfd is this child's only if the pid has not been reaped (and reused) yet.
            assert i not in self._early, f"child {i} exited at once"
            child = Child(pid, pidfd, stdout, stderr)
            self._children[i] = child
        return child

    def launch(self, argv: list[str], cwd: str) -> Child:
        return self._launch({"argv": argv, "cwd": cwd})

    def run_code(self, code: str, cwd: str) -> Child:
        return self._launch({"code": textwrap.dedent(code), "cwd": cwd})

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


# --------------------------------------------------------------------------------------------
# The reference run and its timeline


@dataclasses.dataclass
class Reference:
    data: xr.Dataset  # the uninterrupted run's result (grid layout, in memory)
    phases: dict[str, float]  # seconds from start: "tmp", "store", "c1", …, "c8", "end"
    env: dict[str, str]
    server: ForkServer
    root: str


def _command_env(cache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        EQX_ON_ERROR="nan",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        TQDM_MININTERVAL="0",  # a progress bar shows every chunk
        TQDM_MINITERS="1",
    )
    return env


def _timeline(proc: subprocess.Popen | Child, out: str) -> dict[str, float]:
    t0, phases = time.monotonic(), {}
    while proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.alive():
        t = time.monotonic() - t0
        if "tmp" not in phases and leftovers(out):
            phases["tmp"] = t
        if os.path.isdir(out):
            phases.setdefault("store", t)
            phases.setdefault(f"c{chunks_done(out)}", t)
        time.sleep(0.003)
    phases["end"] = time.monotonic() - t0
    return phases


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("faults"))
    env = _command_env(os.path.join(root, "compilation-cache"))
    out = os.path.join(root, "reference.zarr")
    with sigint_reaches_children():
        proc = subprocess.Popen(
            [sys.executable, "-m", "jaxdyn.cli", *sweep_argv(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _timeline(proc, out)
        _, err = proc.communicate()
        assert proc.returncode == 0, err[-3000:]
        logs = os.path.join(root, "logs")
        os.mkdir(logs)
        server = ForkServer(env, logs)
    data = jd.load_sweep(out).load()
    assert (data["status"].values == 0).all()
    try:
        # The same command forked from the server (compiled program from the cache): the
        # phases the instants' delays refer to, and the same numbers as the reference.
        out = os.path.join(root, "forked.zarr")
        child = server.launch(sweep_argv(out), cwd=root)
        phases = _timeline(child, out)
        assert child.wait() == 0, child.err()[-3000:]
        assert_identical(jd.load_sweep(out), data, "forked uninterrupted run")
        assert {"tmp", "store", "c1"} <= set(phases), phases
        yield Reference(data, phases, env, server, root)
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# Instants


@dataclasses.dataclass(frozen=True)
class Instant:
    """`event` ("tmp": the temporary store appears, "store": the store appears, "chunks":
    exactly `k` chunks are done) and `frac`: the delay after it, as a fraction of the
    reference run's phase that follows the event."""

    event: str
    frac: float = 0.0
    k: int = 0

    def __str__(self) -> str:
        if self.event == "chunks":
            return f"{self.k}-of-{N_CHUNKS}-done"
        return f"{self.event}+{self.frac:g}"


INSTANTS = (
    # while the store is being created (its temporary sibling exists)
    *(Instant("tmp", f) for f in (0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8)),
    # the store is in place, the first chunk compiles and runs
    *(Instant("store", f) for f in (0.0, 0.2, 0.4, 0.6, 0.8)),
    # exactly k chunks done; k = N_CHUNKS - 1: the last chunk is in flight
    *(Instant("chunks", k=k) for k in range(1, N_CHUNKS)),
    # every chunk done, the command still finishing
    Instant("chunks", k=N_CHUNKS),
)
#: Resumed by `jaxdyn sweep --resume` (one killed in creation, one mid-run); the others by
#: `jd.sweep(..., resume=True)`.
CLI_RESUMED = (INSTANTS[3], INSTANTS[15])


@dataclasses.dataclass
class Outcome:
    instant: Instant
    out: str
    rc: int
    err: str
    signalled: bool
    done_at_signal: int  # chunks done when the signal was sent (chunk instants; else -1)
    leftovers: list[str]


def _wait_for(cond: Callable[[], bool], child: Child, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if not child.alive():
            return False
        time.sleep(0.002)
    raise AssertionError("timed out waiting for an event")


def _signal_when(child: Child, state: Callable[[], int], at_least: int, sig: int) -> int:
    """Stop the process, read `state()`, send `sig` once it is `>= at_least`, let the process
    go on; returns the state the signal was sent in (-1: the process ended first)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not child.signal(signal.SIGSTOP):
            return -1
        time.sleep(0.001)  # let the stop take effect
        n = state()
        sent = n >= at_least and child.signal(sig)
        child.signal(signal.SIGCONT)
        if sent:
            return n
        time.sleep(0.002)
    raise AssertionError("timed out waiting for the process")


def _signal_at_chunk(child: Child, out: str, k: int, sig: int) -> tuple[bool, int]:
    """Signal the process when exactly `k` (or, missed, more) chunks are done."""
    if not _wait_for(lambda: os.path.isdir(out), child):
        return False, -1
    n = _signal_when(child, lambda: chunks_done(out), k, sig)
    return n >= 0, n


def _inject(ref: Reference, instant: Instant, sig: int, out: str) -> Outcome:
    ph = ref.phases
    child = ref.server.launch(sweep_argv(out), cwd=os.path.dirname(out))
    signalled, done_at = False, -1
    if instant.event == "chunks":
        signalled, done_at = _signal_at_chunk(child, out, instant.k, sig)
    else:
        if instant.event == "tmp":
            hit = _wait_for(lambda: bool(leftovers(out)), child)
            phase = ph["store"] - ph["tmp"]
        else:
            hit = _wait_for(lambda: os.path.isdir(out), child)
            phase = ph["c1"] - ph["store"]
        if hit:
            time.sleep(instant.frac * phase)
            signalled = child.signal(sig)
    rc = child.wait()
    return Outcome(instant, out, rc, child.err(), signalled, done_at, leftovers(out))


def _resume_in_process(ref: Reference, outs: list[str]) -> None:
    """`jd.sweep(..., resume=True)` on every store, in one forked process."""
    code = f"""
        import numpy as np, jax
        jax.config.update("jax_enable_x64", True)
        import jaxdyn as jd
        exp = jd.experiments.get_experiment("single-neuron", **{CLI_SWEEP_CONFIG!r})
        grid = {{"delta": np.linspace(-2.0, 2.0, {N_POINTS}), "scale": [0.05], "lr_ratio": [1.0]}}
        for out in {outs!r}:
            jd.sweep(exp, grid, chunk_size={CHUNK}, block_size={CHUNK}, out=out, resume=True,
                     progress=False)
    """
    child = ref.server.run_code(code, cwd=ref.root)
    assert child.wait() == 0, child.err()[-3000:]


def _resume_cli(ref: Reference, out: str) -> None:
    child = ref.server.launch(sweep_argv(out, "--resume"), cwd=os.path.dirname(out))
    rc = child.wait()
    assert rc == 0, f"--resume of {out}: exit {rc}\n{child.err()[-3000:]}"
    assert f"wrote {out}" in child.out()


def _problems(o: Outcome, sig: int) -> list[str]:
    """What is wrong with how one signalled command ended (empty: nothing)."""
    what = f"{signal.Signals(sig).name} at {o.instant}"
    tail = o.err[-2000:]
    if not o.signalled:
        return [f"{what}: the command ended (exit {o.rc}) before the signal\n{tail}"]
    found = []
    if sig == signal.SIGKILL:
        if o.rc != -signal.SIGKILL:
            found.append(f"{what}: exit {o.rc}\n{tail}")
    else:
        try:
            assert_clean_interrupt(o.rc, o.err, what)
        except AssertionError as e:
            found.append(str(e))
        if os.path.isdir(o.out):  # a Ctrl-C keeps every finished chunk
            if "continue with --resume" not in o.err:
                found.append(f"{what}: no --resume hint\n{tail}")
            if chunks_done(o.out) < max(o.done_at_signal, 0):
                found.append(f"{what}: {chunks_done(o.out)} of {o.done_at_signal} chunks kept")
        if o.leftovers:  # an orderly stop leaves nothing half-created behind
            found.append(f"{what}: left {[os.path.basename(p) for p in o.leftovers]}")
    if o.instant.event == "chunks":
        if o.done_at_signal != o.instant.k or chunks_done(o.out) < o.instant.k:
            found.append(f"{what}: signalled with {o.done_at_signal} chunks done")
    elif o.instant.event == "tmp" and sig == signal.SIGKILL and chunks_done(o.out) != 0:
        found.append(f"{what}: chunks done while the store was being created?")
    return found


# SIGINT (Ctrl-C) at every instant is slow (≈ 130 s); CI keeps SIGKILL at every instant and the
# Ctrl-C tests below, the full suite runs both.
@pytest.mark.parametrize("signame", ["SIGKILL", pytest.param("SIGINT", marks=pytest.mark.slow)])
def test_interrupted_at_every_instant_resumes_identically(reference, tmp_path, signame):
    """≥ 20 instants per signal: signal, check how the command ended, resume, compare."""
    assert len(INSTANTS) >= 20
    sig = getattr(signal, signame)
    outs = {inst: str(tmp_path / f"{i:02d}.zarr") for i, inst in enumerate(INSTANTS)}
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda i: _inject(reference, i, sig, outs[i]), INSTANTS))

    problems = []  # every instant is checked before the test fails, to show them all
    for o in outcomes:
        problems += _problems(o, sig)
    # The chunk instants saw every state from one chunk done to all done.
    seen = {o.done_at_signal for o in outcomes if o.instant.event == "chunks"}
    if seen != set(range(1, N_CHUNKS + 1)):
        problems.append(f"chunk instants saw {sorted(seen)} chunks done")

    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(_resume_cli, reference, outs[i]) for i in CLI_RESUMED]
        rest = [outs[i] for i in INSTANTS if i not in CLI_RESUMED]
        jobs.append(pool.submit(_resume_in_process, reference, rest))
        for job in jobs:
            try:
                job.result()
            except AssertionError as e:
                problems.append(str(e))
    for inst, out in outs.items():
        what = f"{signame} at {inst}, resumed"
        try:
            got = jd.load_sweep(out)
            assert int(got.attrs["complete"]) == 1, f"{what}: not complete"
            assert_identical(got, reference.data, what)
            assert leftovers(out) == [], f"{what}: left {leftovers(out)}"
        except Exception as e:  # noqa: BLE001 - collected, the test fails below
            problems.append(f"{type(e).__name__}: {e}")
    assert not problems, "\n\n".join(problems)


# --------------------------------------------------------------------------------------------
# Start-up (real processes: the fork server has already imported everything)

#: Fractions of the reference run's time to its temporary store (importing, building the
#: experiment, planning).
START_UP = (0.2, 0.5, 0.85)


def _start_up_kill(ref: Reference, sig: int, frac: float, out: str) -> tuple[int, str]:
    # `jaxdyn_entry` is what the `jaxdyn` console script runs (Ctrl-C-safe while JAX imports).
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxdyn_entry", *sweep_argv(out)],
        env=ref.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(frac * ref.phases["tmp"])
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.parametrize(
    "signame",
    [
        "SIGKILL",
        "SIGINT",
    ],
)
def test_killed_during_start_up(reference, tmp_path, signame):
    sig = getattr(signal, signame)
    outs = [str(tmp_path / f"{i}.zarr") for i in range(len(START_UP))]
    with sigint_reaches_children(), ThreadPoolExecutor(2) as pool:
        ends = list(pool.map(lambda a: _start_up_kill(reference, sig, *a), zip(START_UP, outs)))
    for frac, out, (rc, err) in zip(START_UP, outs, ends, strict=True):
        what = f"{signame} at start+{frac:g}"
        if sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL, f"{what}: {rc}\n{err[-2000:]}"
        else:
            assert_clean_interrupt(rc, err, what)
            assert leftovers(out) == [], what
    _resume_in_process(reference, outs)
    for out in outs:
        assert_identical(jd.load_sweep(out), reference.data, f"{signame}: {out}")


# --------------------------------------------------------------------------------------------
# Ctrl-C with NetCDF output: the finished points are written, `not_run` marks the rest

#: 8 chunks of 50 points; the progress bar (every update shown: `TQDM_MININTERVAL=0`) tells
#: how many are done.
NC_DELTA, NC_POINTS, NC_CHUNK = "-2:2:400", 400, 50


def test_ctrl_c_with_netcdf_output_writes_the_finished_points(reference, tmp_path):
    ref_out, out = str(tmp_path / "ref.nc"), str(tmp_path / "part.nc")
    argv = [a for a in sweep_argv(out, delta=NC_DELTA, chunk=NC_CHUNK) if a != "--no-progress"]
    uninterrupted = reference.server.launch(
        sweep_argv(ref_out, delta=NC_DELTA, chunk=NC_CHUNK), cwd=str(tmp_path)
    )
    child = reference.server.launch(argv, cwd=str(tmp_path))
    n = NC_POINTS // NC_CHUNK

    def shown() -> int:  # chunks done, as the progress bar shows them
        bars = re.findall(rf"\b(\d+)/{n}\b", child.err())
        return int(bars[-1]) if bars else -1

    at = _signal_when(child, shown, 2, signal.SIGINT)  # two chunks done
    assert at in range(2, n), child.err()[-2000:]
    rc, err = child.wait(), child.err()
    assert rc == 130 and "Traceback" not in err, err[-3000:]
    last = stderr_lines(err)[-1]
    assert last.startswith("jaxdyn: interrupted; finished points were written to"), last
    assert uninterrupted.wait() == 0, uninterrupted.err()[-3000:]

    part, full = jd.load_sweep(out), jd.load_sweep(ref_out)
    assert "point" in part.dims and int(part.attrs["complete"]) == 0
    status = part["status"].values
    done = status != NOT_RUN
    assert done.sum() >= at * NC_CHUNK and (~done).any(), status
    assert (status[done] == 0).all() and leftovers(out) == []
    for name, var in full.data_vars.items():
        flat = var.values.reshape((NC_POINTS,) + var.shape[3:])  # grid axes: delta, scale, lr
        np.testing.assert_array_equal(part[name].values[done], flat[done], err_msg=name)
        if np.issubdtype(var.dtype, np.floating):
            assert np.isnan(part[name].values[~done]).all(), name


# --------------------------------------------------------------------------------------------
# Concurrent writers


def _one_line_refusal(child: Child, what: str) -> None:
    rc, err = child.wait(), child.err()
    lines = stderr_lines(err)
    assert rc == 2, f"{what}: exit {rc}\n{err[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("jaxdyn: error: "), f"{what}:\n{err}"
    assert "another process" in lines[0] or "lock" in lines[0], f"{what}: {lines[0]}"


def test_second_writer_of_the_same_store_is_refused(reference, tmp_path):
    """Two commands to the same store at once: one writes it, the other exits with code 2
    and one line; `--force` and `--resume` while the first is writing are refused too."""
    out = str(tmp_path / "same.zarr")
    first, second = (reference.server.launch(sweep_argv(out), cwd=str(tmp_path)) for _ in "ab")
    while first.alive() and second.alive():
        time.sleep(0.01)
    loser, winner = (first, second) if not first.alive() else (second, first)
    _one_line_refusal(loser, "the second of two simultaneous writers")

    assert _wait_for(lambda: os.path.isdir(out), winner), "the winner ended early"
    assert winner.signal(signal.SIGSTOP)  # holds the store (and its lock) while stopped
    try:
        late = [
            reference.server.launch(sweep_argv(out, flag), cwd=str(tmp_path))
            for flag in ("--force", "--resume")
        ]
        for flag, child in zip(("--force", "--resume"), late, strict=True):
            _one_line_refusal(child, f"{flag} while another process writes the store")
    finally:
        winner.signal(signal.SIGCONT)
    assert winner.wait() == 0, winner.err()[-3000:]
    assert_identical(jd.load_sweep(out), reference.data, "the winner's store")
    assert leftovers(out) == []


# --------------------------------------------------------------------------------------------
# Write failures (in this process; a cheap per-point function)


def pointwise(x, y):
    return {"v": 2.0 * x * y, "w": jnp.stack([x, jnp.where(x > 0.5, jnp.nan, y)])}


GRID = {"x": np.linspace(0.0, 1.0, 10), "y": [1.0, 2.0]}  # 20 points, 5 chunks of 4


def _sweep(**kw) -> xr.Dataset:
    return jd.sweep(pointwise, GRID, chunk_size=4, progress=False, **kw)


@pytest.fixture
def recovery_dir(tmp_path, monkeypatch):
    d = tmp_path / "recovery"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _patch_zarr_writes(monkeypatch, when: Callable[[str, str], bool], action=None) -> list:
    """Make the Zarr `LocalStore.set(key, value)` of a store under `root` raise `ENOSPC` (or
    run `action()` first) when `when(root, key)`; returns the list of keys that failed."""
    from zarr.storage import LocalStore

    real, failed = LocalStore.set, []

    async def set_(self, key, value):
        if when(str(self.root), key):
            if action is None:
                failed.append(key)
                raise _enospc()
            action()
        return await real(self, key, value)

    monkeypatch.setattr(LocalStore, "set", set_)
    return failed


def _recovered(e: pytest.ExceptionInfo, ref: xr.Dataset) -> xr.Dataset:
    """The recovery file a `SweepError` names: it exists and loads, and each point it holds
    (matched by its coordinates) equals the reference's; returned flat."""
    path = e.value.recovery_path  # pyright: ignore[reportAttributeAccessIssue]
    assert path is not None and path in str(e.value) and os.path.isfile(path)
    rec = jd.load_sweep(path)
    flat = rec if "point" in rec.dims else rec.stack(point=list(GRID)).transpose("point", ...)
    ref_flat = ref.stack(point=list(GRID)).transpose("point", ...)
    where = {(x, y): i for i, (x, y) in enumerate(zip(*(ref_flat[k].values for k in GRID)))}
    idx = [where[(x, y)] for x, y in zip(*(flat[k].values for k in GRID), strict=True)]
    done = flat["status"].values != NOT_RUN
    assert done.any()
    for name in ref.data_vars:
        r = ref_flat[name].values[idx]
        np.testing.assert_array_equal(flat[name].values[done], r[done], err_msg=name)
    return flat


def test_disk_full_while_writing_a_chunk_keeps_the_results(tmp_path, monkeypatch, recovery_dir):
    """`ENOSPC` from the filesystem in the middle of the sweep (after the store is in place):
    a `SweepError` naming a recovery file with every computed point; the store resumes."""
    out = str(tmp_path / "s.zarr")
    ref = _sweep()
    counter = []

    def when(root, key):
        if root.rstrip(os.sep) != out or "zarr.json" in key:
            return False
        counter.append(key)
        return len(counter) == 5  # a data write some chunks in

    failed = _patch_zarr_writes(monkeypatch, when)
    with pytest.raises(SweepError, match="No space left on device") as e:
        _sweep(out=out)
    assert failed and e.value.argument == "out"
    _recovered(e, ref)
    assert leftovers(out) == [] and os.listdir(recovery_dir)
    monkeypatch.undo()
    got = _sweep(out=out, resume=True)
    assert_identical(got.drop_attrs(), ref.drop_attrs(), "resumed after ENOSPC")
    assert leftovers(out) == []


def test_disk_full_while_creating_the_store(tmp_path, monkeypatch, recovery_dir):
    out = str(tmp_path / "s.zarr")
    failed = _patch_zarr_writes(monkeypatch, lambda root, key: ".tmp-" in root)
    with pytest.raises(SweepError, match="No space left on device") as e:
        _sweep(out=out)
    assert failed and e.value.argument == "out"
    assert not os.path.exists(out) and leftovers(out) == []


def test_disk_full_everywhere_keeps_the_results_in_the_error(tmp_path, monkeypatch, recovery_dir):
    """The `.nc` write fails at the end, the recovery file in the temporary directory too: it
    goes to the working directory; when that fails as well, the error holds the Dataset."""
    (tmp_path / "out").mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = str(tmp_path / "out" / "s.nc")
    ref = _sweep()
    real = xr.Dataset.to_netcdf
    full = {str(tmp_path / "out"), str(recovery_dir)}

    def to_netcdf(self, path=None, *args, **kwargs):
        if path is not None and os.path.dirname(os.path.abspath(path)) in full:
            with open(path, "wb") as f:  # half a file, then the disk is full
                f.write(b"\x89HDF\r\n")
            raise _enospc()
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    with pytest.raises(SweepError, match="No space left") as e:
        _sweep(out=out)
    assert os.path.dirname(e.value.recovery_path) == str(cwd)  # pyright: ignore
    _recovered(e, ref)
    assert os.listdir(tmp_path / "out") == [] and os.listdir(recovery_dir) == []

    full.add(str(cwd))
    os.remove(e.value.recovery_path)  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(SweepError, match="`dataset` attribute") as e:
        _sweep(out=out)
    assert e.value.recovery_path is None  # pyright: ignore[reportAttributeAccessIssue]
    kept = e.value.dataset  # pyright: ignore[reportAttributeAccessIssue]
    assert_identical(kept.drop_attrs(), ref.drop_attrs(), "the error's dataset")
    assert os.listdir(tmp_path / "out") == [] and os.listdir(cwd) == []


def _writes_into_read_only_directories() -> bool:
    """Whether this process ignores directory permissions (root with CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o555)
        try:
            open(os.path.join(d, "probe"), "w").close()
        except PermissionError:
            return False
        finally:
            os.chmod(d, 0o755)
        return True


@pytest.mark.skipif(
    _writes_into_read_only_directories(), reason="root writes into read-only directories"
)
@pytest.mark.parametrize("kind", ["zarr", "nc"])
def test_directory_made_read_only_mid_sweep_keeps_the_results(
    tmp_path, monkeypatch, recovery_dir, kind
):
    """The output's directory turns read-only after the writability probe (a remount, a
    quota): the results go to the recovery file."""
    parent = tmp_path / "out"
    parent.mkdir()
    out = str(parent / f"s.{kind}")
    ref = _sweep()

    def read_only():
        for d, dirs, _ in os.walk(parent):
            os.chmod(d, 0o555)

    if kind == "zarr":  # at the first chunk flag written to the store in place
        hit = []

        def when(root, key):
            if root.rstrip(os.sep) == out and key.startswith("chunk_done/") and not hit:
                hit.append(key)
                return True
            return False

        _patch_zarr_writes(monkeypatch, when, action=read_only)
    else:  # when the file is about to be written
        real = xr.Dataset.to_netcdf

        def to_netcdf(self, path=None, *args, **kwargs):
            if path is not None and str(parent) in os.path.abspath(path):
                read_only()
            return real(self, path, *args, **kwargs)

        monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    try:
        with pytest.raises(SweepError, match="kept in") as e:
            _sweep(out=out)
        _recovered(e, ref)
        assert leftovers(out) == []
    finally:
        for d, _, _ in os.walk(parent):
            os.chmod(d, 0o755)


def test_directory_in_place_of_the_nc_file_is_refused_before_compiling(reference, tmp_path):
    out = tmp_path / "d.nc"
    out.mkdir()
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration_secs, **kw: compiles.append(event) if "compile" in event else None
    )
    exp = jd.experiments.get_experiment("single-neuron", **CLI_SWEEP_CONFIG)
    with pytest.raises(SweepError, match="is a directory") as e:
        jd.sweep(exp, {"delta": [0.0, 1.0]}, out=out, progress=False)
    assert e.value.argument == "out" and compiles == []
    for flags in ((), ("--force",)):  # not removed by --force either
        child = reference.server.launch(sweep_argv(out, *flags), cwd=str(tmp_path))
        rc, err = child.wait(), child.err()
        lines = stderr_lines(err)
        assert rc == 2 and len(lines) == 1, err
        assert lines[0].startswith("jaxdyn: error: ") and "d.nc" in lines[0], lines
    assert "is a directory" in lines[0], lines
    assert os.listdir(out) == [] and leftovers(out) == []
