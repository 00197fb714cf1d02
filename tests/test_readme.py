"""The README's command-line block works when pasted as written, in order, in an empty directory.

Every line of the fenced `bash` block(s) under "Sweeps and the command line" that starts with
`jaxdyn` runs, trailing `# comment` stripped, in order in one empty temporary directory
(through the installed `jaxdyn` console script, or `python -m jaxdyn.cli` where it is not
installed): each must exit with 0, and every file it names (an argument ending in `.nc`,
`.zarr` or `.png`, and each `wrote PATH` it prints) must exist afterwards.

The default test shrinks the grids by textual substitution (`SHRINK`: the 401 δ values become
21, the 7 scales 3) and runs all commands but the last in-process (`jaxdyn.cli.main`, so imports
and compiled programs are shared) to stay well under a minute; the `slow` variant runs the block
exactly as written, every command through the console script.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Sweeps and the command line"

#: Argument substitutions of the fast variant: (as written, run as).
SHRINK = [
    ("--delta=-3:3:401", "--delta=-3:3:21"),
    ("--scale=log:0.001:1:7", "--scale=log:0.001:1:3"),
]


def cli_blocks(text: str) -> list[str]:
    """The fenced `bash` blocks of the README's command-line section."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def cli_commands(text: str) -> list[list[str]]:
    """Each `jaxdyn …` line of those blocks as an argument list, trailing `# comment` stripped."""
    commands = []
    for block in cli_blocks(text):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "jaxdyn":
                commands.append(argv)
    return commands


def jaxdyn_command() -> list[str]:
    script = Path(sys.executable).with_name("jaxdyn")
    if script.exists():
        return [str(script)]
    found = shutil.which("jaxdyn")
    return [found] if found else [sys.executable, "-m", "jaxdyn.cli"]


def named_files(argv: list[str], output: str) -> list[str]:
    files = [a for a in argv[1:] if a.endswith((".nc", ".zarr", ".png"))]
    return files + re.findall(r"^wrote (\S+)$", output, flags=re.M)


def test_readme_cli_block_is_found():
    commands = cli_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 8
    verbs = {argv[1] for argv in commands}
    assert {"list", "sweep", "plot", "merge", "info"} <= verbs
    assert ["jaxdyn", "info"] in commands  # "# versions and devices" stripped


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """`argv` through the installed console script, in `cwd`."""
    r = subprocess.run(
        [*jaxdyn_command(), *argv[1:]],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return r.returncode, r.stdout, r.stderr


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """`argv` through `jaxdyn.cli.main` in this process (imports and compiled programs shared
    between the commands), in `cwd`."""
    from click.testing import CliRunner

    from jaxdyn.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, argv[1:])
    finally:
        os.chdir(here)
    return r.exit_code, r.stdout, r.stderr + (repr(r.exception) if r.exit_code else "")


@pytest.mark.parametrize(
    "fast", [True, pytest.param(False, marks=pytest.mark.slow, id="as-written")]
)
def test_readme_cli_block_runs(tmp_path, fast):
    """The fast variant shrinks the grids (`SHRINK`) and runs every command but the last in
    this process, the last through the console script; the slow one runs the block as
    written, each command through the console script."""
    commands = cli_commands(README.read_text(encoding="utf-8"))
    substitute = dict(SHRINK) if fast else {}
    for old in substitute:  # the substitutions still match the README
        assert any(old in argv for argv in commands), old
    for i, argv in enumerate(commands):
        argv = [substitute.get(a, a) for a in argv]
        shown = shlex.join(argv)
        run = run_in_process if fast and i < len(commands) - 1 else run_subprocess
        code, out, err = run(argv, tmp_path)
        assert code == 0, f"{shown}\n{out}\n{err}"
        assert "Traceback" not in err, f"{shown}\n{err}"
        for f in named_files(argv, out):
            assert (tmp_path / f).exists(), f"{shown}: {f} missing"
    # What the block promises: the resumed store is complete; the shards merge into the grid.
    import jaxdyn as jd

    n_delta, n_scale = (21, 3) if fast else (401, 7)
    sn = jd.load_sweep(tmp_path / "sn.zarr")
    assert dict(sn["status"].sizes) == {"delta": n_delta, "scale": n_scale, "lr_ratio": 2}
    assert int((sn["status"] == 0).sum()) == sn["status"].size
    merged = jd.load_sweep(tmp_path / "all.nc")
    assert merged["status"].sizes["delta"] == n_delta
    assert int((merged["status"] == 0).sum()) == merged["status"].size


@pytest.mark.parametrize(
    "line, argv",
    [
        ("jaxdyn info   # versions", ["jaxdyn", "info"]),
        ("jaxdyn plot a.nc --t 5  # heatmap -> a.png", ["jaxdyn", "plot", "a.nc", "--t", "5"]),
        ("  # a comment line", []),
    ],
)
def test_comments_are_stripped(line, argv):
    text = f"{SECTION}\n\n```bash\n{line}\n```\n"
    assert cli_commands(text) == ([argv] if argv else [])
