"""Built-in experiments of Kunin et al. 2024: single-neuron and relu-lazy-rich; every experiment
module uses public names only."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd
from jaxdyn.experiments import get_experiment, names

jax.config.update("jax_enable_x64", True)


def test_registry_lists_the_design_experiments():
    for name in ("single-neuron", "relu-lazy-rich"):
        assert name in names()
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


@pytest.mark.parametrize("d", [1, 3])
def test_whitened_kernel_distance_equals_the_empirical_ntk_one(d):
    X, _ = jd.data.whitened_regression(8, d, np.eye(d)[0], fix_signs=False)
    X = jnp.asarray(X)
    rng = np.random.default_rng(d)
    m0 = jd.SingleNeuron(rng.normal(), rng.normal(size=d))
    m1 = jd.SingleNeuron(rng.normal(), rng.normal(size=d))
    lr = jd.SingleNeuron(0.6, 1.7)
    ref = jd.metrics.kernel_distance(jd.metrics.ntk(m0, X, lr), jd.metrics.ntk(m1, X, lr))
    got = jd.metrics.kernel_distance_single_neuron(m0.a, m0.w, m1.a, m1.w, 0.6, 1.7)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_single_neuron_lr_ratio_symmetry():
    """β(t) and the kernel depend on (η_a, η_w) only through η_a·η_w (notes C26(ii))."""
    exp = get_experiment("single-neuron", t_max=8.0, n_t=17)
    ds = jd.sweep(
        exp,
        {"delta": [-1.0, 0.0, 1.5], "scale": [0.1], "lr_ratio": [0.25, 1.0, 4.0]},
        progress=False,
    )
    beta = ds["beta"].values  # (delta, scale, ratio, t, component)
    np.testing.assert_allclose(beta[:, :, 0], beta[:, :, 1], atol=1e-8)
    np.testing.assert_allclose(beta[:, :, 2], beta[:, :, 1], atol=1e-8)
    assert float(ds["exact_deviation"].max()) < 1e-7


def test_relu_lazy_rich_small_grid_and_width_axis():
    exp = get_experiment("relu-lazy-rich", d=4, n=12, n_test=32, max_width=8, t_max=20.0, n_t=9)
    ds = jd.sweep(
        exp,
        {"scale": [0.2, 2.0], "delta": [-0.5, 0.5], "width": [4, 8], "seed": [0]},
        progress=False,
    )
    assert (ds["status"] == 0).all()
    assert ds["kernel_distance"].dims == ("scale", "delta", "width", "seed", "t")
    # Symmetric init: f ≡ 0, so the initial loss is the same for every point.
    l0 = ds["loss"].isel(t=0).values
    np.testing.assert_allclose(l0, l0.flat[0], rtol=1e-12)
    # Lazy at large scale: the kernel moves far less than at small scale.
    kd = ds["kernel_distance"].isel(t=-1, seed=0)
    assert float(kd.sel(scale=2.0).max()) < float(kd.sel(scale=0.2).max())
    # Per-unit conserved δ_k stays put (its drift bounds the error of the forced small steps).
    assert float(ds["delta_drift"].max()) < 1e-4


EXPERIMENT_MODULES = sorted(
    p
    for p in (pathlib.Path(jd.__file__).parent / "experiments").glob("*.py")
    if p.name != "__init__.py"
)


@pytest.mark.parametrize("path", EXPERIMENT_MODULES, ids=[p.stem for p in EXPERIMENT_MODULES])
def test_experiment_modules_use_public_names_only(path):
    """An experiment is a thin composition of public `jd.*` names: no relative import, no
    private module or name, no other experiment (issue 8, "thin experiments")."""
    tree = ast.parse(path.read_text(), filename=str(path))
    others = {p.stem for p in EXPERIMENT_MODULES} - {path.stem}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            parts = mod.split(".")
            if node.level:
                bad.append(f"relative import `from {'.' * node.level}{mod}`")
            if any(p.startswith("_") for p in parts if p != "__future__"):
                bad.append(f"private module `{mod}`")
            if parts[:2] == ["jaxdyn", "experiments"]:
                bad.append(f"experiment import `from {mod}`")
            for a in node.names:
                if a.name.startswith("_") and mod != "__future__":
                    bad.append(f"private name `{a.name}` from `{mod}`")
                if mod == "jaxdyn.experiments" or a.name in others:
                    bad.append(f"experiment import `{a.name}` from `{mod}`")
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if any(p.startswith("_") for p in parts):
                    bad.append(f"private module `import {a.name}`")
                if parts[:2] == ["jaxdyn", "experiments"]:
                    bad.append(f"experiment import `import {a.name}`")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            # jd._x, jd.exact._solve, …: private attributes of the package (dunders are fine).
            if not (node.attr.startswith("__") and node.attr.endswith("__")):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in {"jd", "jaxdyn"}:
                    bad.append(f"private attribute `.{node.attr}`")
        elif isinstance(node, ast.Attribute) and node.attr in others:
            root = node.value
            if isinstance(root, ast.Attribute) and root.attr == "experiments":
                bad.append(f"experiment module `experiments.{node.attr}`")
    assert not bad, f"{path.name}: " + "; ".join(bad)


def test_public_names_check_catches_violations(tmp_path):
    """The check above flags each kind of violation (so it cannot pass vacuously)."""
    sources = [
        "from .. import init\n",
        "from jaxdyn._flow import gradient_flow\n",
        "from jaxdyn.exact import _solve\n",
        "from jaxdyn.experiments.reversal import make\n",
        "import jaxdyn as jd\nx = jd.exact._single_neuron\n",
    ]
    for i, src in enumerate(sources):
        p = tmp_path / f"mod{i}.py"
        p.write_text(src)
        with pytest.raises(AssertionError):
            test_experiment_modules_use_public_names_only(p)
