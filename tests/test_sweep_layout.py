"""The sweep engine's layout: no import runs back up to the package face or the registry; one
compile cache; planning and sinks as separate pieces."""

import ast
import pathlib

import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn._sweep import _cache, _plan
from jaxdyn._sweep._sinks import AbstractSink, MemorySink, NetCDFSink, ZarrSink, make_sink
from jaxdyn.experiments import get_experiment

SWEEP_DIR = pathlib.Path(jd.__file__).parent / "_sweep"


def _imports(path: pathlib.Path):
    """(module, names, level) of every import in a file; `module` is absolute for level 0."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", tuple(a.name for a in node.names), node.level


def _resolve(path: pathlib.Path, module: str, level: int) -> str:
    """The absolute dotted name of a (relative) import made in `path`."""
    if level == 0:
        return module
    pkg = path.relative_to(SWEEP_DIR.parent.parent).with_suffix("").parts[:-1]
    base = pkg[: len(pkg) - (level - 1)]
    return ".".join(base + ((module,) if module else ()))


def test_engine_never_imports_the_face_or_the_registry():
    files = sorted(SWEEP_DIR.rglob("*.py"))
    # __init__, _cache, _dataset, _engine, _errors, _experiment, _plan and the sinks.
    assert len(files) >= 8
    for path in files:
        for module, names, level in _imports(path):
            target = _resolve(path, module, level)
            where = f"{path.relative_to(SWEEP_DIR.parent)}: import of {target}"
            assert target != "jaxdyn", where  # `import jaxdyn` / `from .. import X`
            assert not target.startswith("jaxdyn.experiments"), where
            if target.startswith("jaxdyn."):
                # Only private modules (`jaxdyn._results`, `jaxdyn._sweep._plan`, …).
                assert target.split(".")[1].startswith("_"), where
            if target == "jaxdyn" or (level >= 2 and not module):
                pytest.fail(f"{where} {names}")


def test_the_ast_check_catches_a_face_import(tmp_path):
    bad = SWEEP_DIR / "_engine.py"
    # `from .. import experiments` in jaxdyn/_sweep/_engine.py resolves to the face.
    assert _resolve(bad, "", 2) == "jaxdyn"
    assert _resolve(bad, "experiments", 2) == "jaxdyn.experiments"
    assert _resolve(bad, "_results", 2) == "jaxdyn._results"
    assert _resolve(SWEEP_DIR / "_sinks" / "zarr_store.py", "_plan", 2) == "jaxdyn._sweep._plan"


def test_freeze_makes_configs_hashable():
    a = _cache.freeze({"sv": [2.0, 1.0], "opts": {"b": 1, "a": [1, 2]}})
    b = _cache.freeze({"opts": {"a": [1, 2], "b": 1}, "sv": [2.0, 1.0]})
    assert hash(a) == hash(b) and a == b
    assert _cache.freeze({"sv": [2.0, 1.0]}) != _cache.freeze({"sv": [2.0, 0.5]})
    x = np.arange(3.0)
    assert _cache.freeze(x) == _cache.freeze(x.copy()) != _cache.freeze(x + 1)


def test_registry_cache_ignores_keyword_order():
    one = get_experiment("single-neuron", t_max=4.0, n_t=5)
    assert get_experiment("single-neuron", n_t=5, t_max=4.0) is one
    assert one.jitted is one.jitted  # one compiled program per experiment object


def test_memo_is_per_owner_and_key():
    calls = []

    def owner():
        pass

    def build():
        calls.append(1)
        return len(calls)

    assert _cache.memo(owner, "k", build) == 1
    assert _cache.memo(owner, "k", build) == 1
    assert _cache.memo(owner, "other", build) == 2
    assert _cache.memo(len, "builtin", build) == 3  # no weak reference: kept strongly
    assert _cache.memo(len, "builtin", build) == 3


def test_plan_pads_the_last_chunk_and_shards():
    exp = jd.sweep_function(lambda x, k: {"y": x * k}, {"x": np.arange(5.0), "k": [1.0, 2.0]})
    p = _plan.plan(exp, None, n_dev=2, chunk_size=3, shard=(0, 2))
    # 10 points, shard 0 of 2: points 0..4; chunk 3 rounded up to 4 (2 devices): 2 chunks.
    assert (p.lo, p.hi, p.n_points, p.chunk, p.n_chunks) == (0, 5, 5, 4, 2)
    assert p.bounds(1) == (4, 5) and p.block == 1
    # Past the shard the chunk holds the grid's next points (computed, dropped); blocks
    # past the shard's last one are skipped.
    np.testing.assert_array_equal(p.chunk_values(1, "x"), [2.0, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(p.live(1), [True, False, False, False])
    np.testing.assert_array_equal(p.chunk_values(0, "k"), [1.0, 2.0, 1.0, 2.0])
    # Blocks of 4 of the FULL grid: shard 1 (points 5..9) starts inside block 1 (points
    # 4..7), computes it whole and keeps rows 5..7; the last block (8..11) is padded with
    # the grid's last point.
    q = _plan.plan(exp, None, n_dev=2, chunk_size=3, block_size=4, shard=(1, 2))
    assert (q.lo, q.hi, q.block, q.chunk, q.n_chunks) == (5, 10, 4, 8, 1)
    assert q.bounds(0) == (0, 5) and q.offset(0) == 1
    np.testing.assert_array_equal(q.chunk_values(0, "x"), [2, 2, 3, 3, 4, 4, 4, 4])
    np.testing.assert_array_equal(q.chunk_values(0, "k"), [1, 2, 1, 2, 1, 2, 2, 2])
    np.testing.assert_array_equal(q.live(0), [True, True])
    with pytest.raises(jd.SweepError, match="block_size") as e:
        _plan.plan(exp, None, n_dev=1, block_size=0)
    assert e.value.argument == "block_size"
    with pytest.raises(jd.SweepError, match="shard") as e:
        _plan.plan(exp, None, n_dev=1, shard=(2, 2))
    assert e.value.argument == "shard"
    with pytest.raises(jd.SweepError, match="chunk_size") as e:
        _plan.plan(exp, None, n_dev=1, chunk_size=0)
    assert e.value.argument == "chunk_size"


def test_sinks_share_one_interface(tmp_path):
    assert isinstance(make_sink(None), MemorySink)
    assert isinstance(make_sink(tmp_path / "a.nc"), NetCDFSink)
    assert isinstance(make_sink(tmp_path / "a.zarr"), ZarrSink)
    for cls in (MemorySink, NetCDFSink, ZarrSink):
        assert issubclass(cls, AbstractSink)
        for method in ("prepare", "write_chunk", "finish", "abort"):
            assert callable(getattr(cls, method))
    with pytest.raises(jd.SweepError, match="must end in .nc or .zarr") as e:
        make_sink(tmp_path / "a.txt")
    assert e.value.argument == "out"
    with pytest.raises(jd.SweepError, match="resume works with a .zarr"):
        make_sink(tmp_path / "a.nc", resume=True)
    (tmp_path / "b.nc").write_text("x")
    with pytest.raises(jd.SweepError, match="exists"):
        make_sink(tmp_path / "b.nc")
    with pytest.raises(jd.SweepError, match="not a writable directory"):
        make_sink(tmp_path / "missing" / "c.zarr")


def test_load_of_a_missing_file_is_a_sweep_error(tmp_path):
    with pytest.raises(jd.SweepError, match="does not exist"):
        jd.load_sweep(tmp_path / "nope.nc")
    with pytest.raises(jd.SweepError, match="does not exist"):
        jd.merge_sweeps([tmp_path / "nope.zarr"])


SCALE = 2.0


def _reads_a_global(x):
    return {"y": SCALE * x}


def test_plain_function_sweep_sees_a_changed_global():
    """A plain function is cached with the values of the globals it reads: rebinding one
    traces it again instead of returning results computed with the old value."""
    global SCALE
    a = jd.sweep(_reads_a_global, {"x": [1.0, 2.0]}, progress=False)
    np.testing.assert_array_equal(a["y"].values, [2.0, 4.0])
    SCALE = 3.0
    try:
        b = jd.sweep(_reads_a_global, {"x": [1.0, 2.0]}, progress=False)
    finally:
        SCALE = 2.0
    np.testing.assert_array_equal(b["y"].values, [3.0, 6.0])
    c = jd.sweep(_reads_a_global, {"x": [1.0, 2.0]}, progress=False)  # back: cached program
    np.testing.assert_array_equal(c["y"].values, [2.0, 4.0])
