"""Peak host memory of a `jaxdyn sweep single-neuron` to Zarr at two grid sizes.

Each sweep runs in its own process (`python -m jaxdyn.cli sweep ...`); its peak resident set
size comes from `os.wait4`. Zarr output streams every chunk to disk, so the peak should not
grow with the grid (issue "No silent garbage, no lost work": within 2x from 1e4 to 1e6 points).

    python benchmarks/sweep_memory.py                 # 1e4 and 1e6 points (minutes on 2 cores)
    python benchmarks/sweep_memory.py --sizes 625     # delta values per grid, comma-separated
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def run(n_delta: int, folder: str) -> dict:
    out = os.path.join(folder, f"sn{n_delta}.zarr")
    cmd = [
        sys.executable, "-m", "jaxdyn.cli", "sweep", "single-neuron",
        f"--delta=-3:3:{n_delta}", "--scale=log:0.01:1:16" if n_delta > 625 else
        "--scale=log:0.01:1:4", "--lr_ratio=log:0.1:10:4", "--out", out, "--no-progress",
    ]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(stderr[-2000:])
    shutil.rmtree(out, ignore_errors=True)
    return {"cmd": " ".join(cmd[2:]), "seconds": round(seconds, 1), "summary": stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="625,15625", help="delta values per grid, comma-separated")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="jaxdyn-mem-")
    import resource

    try:
        for n in (int(v) for v in args.sizes.split(",")):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            res = run(n, folder)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            # ru_maxrss of the children is the largest so far: sizes run in increasing order.
            res["peak_rss_MiB"] = round(max(peak, before) / 1024, 1)
            print(json.dumps(res), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
