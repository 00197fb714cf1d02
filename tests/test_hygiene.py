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
