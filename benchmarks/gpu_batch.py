"""The GPU batch job of issue 13, as one script: work–precision benchmark, a ≥ 10⁶-trajectory
single-neuron sweep and a ≥ 10⁴-net λ × width sweep, printing device, sizes, times and
trajectories per second.

    python benchmarks/gpu_batch.py [--out-dir gpu_runs] [--tiny]

On a GPU (`pip install -U "jax[cuda12]"`) the sweeps use `mode="auto"`, i.e. per-member steps
(`vmap`); on a CPU the same script runs (stacked). `--tiny` shrinks every part so that the
script can be tested on a CPU in well under a minute (64 and 72 grid points, the work–precision
`--tiny` set). Each part prints one JSON line (`part`, `device`, sizes, `time_s`,
`traj_per_s`); the sweep times include compilation (the first chunk) — the line also records the
time without the first chunk's compile where the engine reports it separately (it does not:
`time_s` is the honest end-to-end wall time of `jd.sweep`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# XLA:CPU's concurrency-optimized scheduler deadlocked on vmapped exact solutions (see
# benchmarks/linear_exact.py); turn it off before jax loads (no effect on GPUs).
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import jaxdyn as jd  # noqa: E402

try:
    from ._common import emit, machine_info
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import emit, machine_info

HERE = Path(__file__).resolve().parent


def timed_sweep(part, name, grid, out, **config):
    exp = jd.experiments.get_experiment(name, **config)
    n = int(np.prod([len(v) for v in grid.values()]))
    t0 = time.perf_counter()
    ds = jd.sweep(exp, grid, out=str(out), progress=False, force=True)
    dt = time.perf_counter() - t0
    status = np.asarray(ds["status"].values)
    rec = {
        "bench": "gpu_batch",
        "method": part,
        "experiment": name,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "n_traj": n,
        "grid": {k: len(v) for k, v in grid.items()},
        "config": config,
        "time_s": dt,
        "traj_per_s": n / dt,
        "ok": int((status == 0).sum()),
        "out": str(out),
    }
    emit(rec)
    print(
        f"{part}: {n} trajectories in {dt:.1f} s = {n / dt:.4g}/s on {rec['device']}",
        file=sys.stderr,
    )
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out-dir", default="gpu_runs")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test at tiny sizes")
    p.add_argument("--wp-sizes", default="1000,10000,100000", help="work–precision sizes")
    p.add_argument("--no-wp", action="store_true", help="skip the work–precision part")
    a = p.parse_args(argv)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    emit(
        {"bench": "gpu_batch", "method": "machine", "load_avg": os.getloadavg(), **machine_info()}
    )

    wp = [sys.executable, str(HERE / "work_precision.py"), "--png", str(out / "wp.png")]
    wp += ["--tiny"] if a.tiny else ["--sizes", a.wp_sizes]
    t0 = time.perf_counter()
    rc = 0
    if not a.no_wp:
        with open(out / "work_precision.jsonl", "w") as f:
            rc = subprocess.run(wp, stdout=f, check=False).returncode
    emit(
        {
            "bench": "gpu_batch",
            "method": "work_precision",
            "rc": rc,
            "time_s": time.perf_counter() - t0,
            "jsonl": str(out / "work_precision.jsonl"),
        }
    )

    if a.tiny:
        sn = {
            "delta": np.linspace(-3, 3, 16),
            "scale": np.array([0.01, 0.1]),
            "lr_ratio": np.array([0.5, 2.0]),
        }
        lb = {
            "lam": np.linspace(-5, 5, 6),
            "scale": np.array([0.01, 1.0]),
            "width": np.array([2, 4, 6]),
            "seed": np.array([0, 1]),
        }
        sn_cfg, lb_cfg = {"n_t": 11}, {"n_t": 11}
    else:  # 15625 × 16 × 4 = 10⁶ single neurons; 250 × 5 × 4 × 2 = 10⁴ λ-balanced nets
        sn = {
            "delta": np.linspace(-3, 3, 15625),
            "scale": np.geomspace(0.01, 1.0, 16),
            "lr_ratio": np.geomspace(0.1, 10.0, 4),
        }
        lb = {
            "lam": np.linspace(-5, 5, 250),
            "scale": np.geomspace(1e-3, 10.0, 5),
            "width": np.array([1, 2, 4, 6]),
            "seed": np.arange(2),
        }
        sn_cfg, lb_cfg = {}, {}
    timed_sweep("single_neuron_sweep", "single-neuron", sn, out / "single_neuron.zarr", **sn_cfg)
    timed_sweep("lambda_width_sweep", "lambda-balanced", lb, out / "lambda_width.zarr", **lb_cfg)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
