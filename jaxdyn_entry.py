"""The `jaxdyn` console script's entry point, outside the `jaxdyn` package.

Importing `jaxdyn` imports JAX, which takes seconds; a Ctrl-C in that time would otherwise
end in a `KeyboardInterrupt` traceback (or an `ImportError` from an interrupted extension
module) before any of jaxdyn's code runs. This module defers Ctrl-C while `jaxdyn.cli` is
imported, then exits with the one line `jaxdyn: interrupted; …` and code 130 if it came,
else runs the command line (`jaxdyn.cli.main`).
"""

from __future__ import annotations

import signal
import sys
import threading


def main() -> None:
    """Run the `jaxdyn` command line (`jaxdyn.cli.main`), Ctrl-C-safe from the first instant.

    **Arguments:** none (reads `sys.argv`).

    **Returns:** `None`; exits like `jaxdyn.cli.main` (0, 2, 130).
    """
    hit: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    old = None
    if in_main:
        old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        from jaxdyn.cli import main as cli_main
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)
    if hit:
        print("jaxdyn: interrupted; nothing was computed", file=sys.stderr, flush=True)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":  # pragma: no cover - `python -m jaxdyn_entry`
    main()
