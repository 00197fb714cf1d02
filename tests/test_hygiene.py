"""Library hygiene: importing jaxdyn prints nothing, changes no JAX config, starts no backend."""

import subprocess
import sys
import textwrap


def test_import_is_silent_and_side_effect_free():
    code = textwrap.dedent(
        """
        import jax
        before = {k: jax.config.values[k] for k in
                  ("jax_enable_x64", "jax_platforms", "jax_default_matmul_precision")}
        import jaxdyn, jaxdyn.experiments, jaxdyn.cli, jaxdyn.plot
        from jax._src import xla_bridge
        after = {k: jax.config.values[k] for k in before}
        assert before == after, (before, after)
        assert not xla_bridge._backends, "importing jaxdyn initialised a JAX backend"
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert out.stderr == ""


def test_public_surface():
    """The declared faces exist, the version has one home, and no function shadows a module."""
    import importlib.metadata
    import inspect
    import pkgutil

    import jaxdyn as jd

    assert jd.__version__ == importlib.metadata.version("jaxdyn")
    for name in ("sweep", "Experiment", "SweepError", "data", "RESULTS"):
        assert hasattr(jd, name), name
    assert inspect.isfunction(jd.sweep) and issubclass(jd.SweepError, Exception)

    namespaces = [jd, jd.data, jd.exact, jd.experiments, jd.init, jd.metrics, jd.plot]
    for ns in namespaces:
        if not hasattr(ns, "__path__"):  # a plain module has no submodules to shadow
            continue
        submodules = {m.name for m in pkgutil.iter_modules(ns.__path__)}
        for attr in dir(ns):
            if attr.startswith("_"):
                continue
            value = getattr(ns, attr)
            assert not (callable(value) and not inspect.isclass(value) and attr in submodules), (
                f"{ns.__name__}.{attr} is a function and also the name of a submodule"
            )
            if attr in submodules:
                assert inspect.ismodule(value), f"{ns.__name__}.{attr} shadows its submodule"
