"""Linear-network experiments (Dominé et al. 2024, arXiv:2409.14623) against their theory.

Each experiment runs on a tiny grid through `jd.sweep`; the checks are the notes' §8 items:
flow vs exact solution, conservation of λ-balance, lazy limit of the kernel distance, reversal
times, λ-independent forgetting, width masking, and the CLI. Shapes are reused so that each
experiment compiles once (the CLI test hits the same cached, compiled experiment).
"""

import numpy as np
import pytest
from click.testing import CliRunner

import jaxdyn as jd
from jaxdyn.cli import main
from jaxdyn.experiments import get_experiment

STATUS_INADMISSIBLE = jd.result_index(jd.RESULTS.inadmissible_init)

LB_CONFIG = dict(t_max=30.0, n_t=61)
LB_GRID = {
    "lam": np.linspace(-2.0, 2.0, 5),
    "scale": [0.01],
    "width": [2, 4, 6],
    "seed": [0],
}


@pytest.fixture(scope="module")
def lb():
    exp = get_experiment("lambda-balanced", **LB_CONFIG)
    return exp, jd.sweep(exp, LB_GRID, progress=False)


def test_lambda_balanced_exact_vs_flow(lb):
    _, ds = lb
    st = ds["status"]
    ok = st == 0
    # width 6 > d = o = 4 admits only λ = 0 (notes §1, A3)
    inadm = (ds["width"] > 4) & (ds["lam"] != 0)
    assert int((st.where(inadm, 0) == STATUS_INADMISSIBLE).sum()) == int(inadm.sum())
    assert bool((ok | inadm).all())
    assert float(ds["exact_deviation"].where(ok).max()) <= 1e-7
    assert float(ds["balance_drift"].where(ok).max()) <= 1e-9
    assert int(np.isnan(ds["exact_deviation"].where(inadm, 0.0)).sum()) == int(inadm.sum())
    le, lf = ds["loss_exact"].where(ok), ds["loss"].where(ok)
    assert float(np.abs(le - lf).max()) <= 1e-7 * float(np.abs(le).max())
    # the masked λ = 0, width-6 net learns too (the weakest mode, s̃ = 0.2, is still converging)
    assert float(ds["loss"].sel(lam=0.0, width=6).isel(t=-1).max()) < 1e-6


def test_lambda_balanced_lazy_limit(lb):
    """S(0, T) decreases towards 0 as |λ| grows at fixed scale (notes §4.3, §8.15)."""
    exp = get_experiment("lambda-balanced", **LB_CONFIG)
    ds = jd.sweep(exp, {"lam": [0.0, 1.0, 4.0, 16.0, 64.0], "scale": [0.01]}, progress=False)
    kd = ds["kernel_distance"].isel(t=-1, scale=0, width=0, seed=0).values
    kde = ds["kernel_distance_exact"].isel(t=-1, scale=0, width=0, seed=0).values
    assert np.all(np.diff(kd) < 0), kd
    assert kd[0] > 0.05 and kd[-1] < 1e-4
    np.testing.assert_allclose(kd, kde, atol=1e-8)


def test_kernel_distance_grams_matches_empirical_ntk():
    import jax

    X, Y, _ = jd.data.whitened_task(8, 4, 3, [2.0, 1.0, 0.5], 1)
    m = jd.init.lambda_balanced(jax.random.key(3), 4, 3, 3, 1.5, 0.1)
    sol = jd.exact.lambda_balanced(m.W1, m.W2, X, Y, np.array([0.0, 0.5, 3.0]))
    K = jd.exact.ntk_from_solution(sol, X)
    ref = jd.metrics.kernel_distance(K[0], K)
    np.testing.assert_allclose(
        jd.metrics.kernel_distance_grams(sol.gram_in, sol.gram_out), ref, atol=1e-13
    )


def test_masked_width_follows_unpadded_net(lb, jit_flow):
    """The width-2 member (built at width 6, units ≥ 2 zero) equals the width-2 net."""
    import jax
    import jax.numpy as jnp

    exp, ds = lb
    d, o, n = 4, 4, 8
    X, Y, _ = jd.data.whitened_task(n, d, o, np.geomspace(2.0, 0.2, 4), 0)
    lam, width = 2.0, 2
    big = jd.init.lambda_balanced_at_width(
        jax.random.key(0), jnp.asarray(lam), jnp.asarray(0.01), width, d=d, o=o, max_width=6
    )
    assert float(jnp.abs(big.W1[width:]).max()) == 0.0
    small = jd.TwoLayerLinear(big.W1[:width], big.W2[:, :width])
    ts = jnp.asarray(exp.coords["t"])
    traj = jit_flow(small, jnp.asarray(X), jnp.asarray(Y), ts, 1.0, rtol=1e-10, atol=1e-12)
    prod_small = np.asarray(traj.model.W2 @ traj.model.W1)
    prod_masked = ds["product"].sel(lam=lam, width=width, scale=0.01, seed=0).values
    assert np.max(np.abs(prod_small - prod_masked)) <= 1e-8 * np.max(np.abs(prod_small))
    # and the exact solution of the unpadded width-2 net (concrete: checks its λ-balance)
    sol = jd.exact.lambda_balanced(small.W1, small.W2, X, Y, ts)
    prod_ex = ds["product_exact"].sel(lam=lam, width=width, scale=0.01, seed=0).values
    np.testing.assert_allclose(prod_ex, np.asarray(sol.product), atol=1e-12)


def test_cli_sweep_lambda_balanced(lb, tmp_path):
    out, png = tmp_path / "x.nc", tmp_path / "x.png"
    args = ["sweep", "lambda-balanced", "--lam=-2:2:5", "--scale=0.01", "--width=2,4,6"]
    args += ["--config", "t_max=30.0", "--config", "n_t=61", "--no-progress"]
    r = CliRunner().invoke(main, args + ["--out", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert out.exists() and png.exists() and png.stat().st_size > 10_000
    ds = jd.load_sweep(out)
    np.testing.assert_allclose(ds["lam"].values, np.linspace(-2, 2, 5))
    assert "worst relative deviation" in r.output


def test_reversal_times_and_lambda_zero_stuck():
    exp = get_experiment("reversal")
    lams = [-1.0, -0.1, 0.0, 0.1, 1.0]
    ds = jd.sweep(exp, {"lam": lams}, progress=False)
    assert bool((ds["status"] == 0).all())
    tr = ds["t_reversal"].values
    th = ds["t_reversal_theory"].values
    nz = np.array(lams) != 0
    np.testing.assert_allclose(tr[nz], th[nz], rtol=1e-4)
    s = np.array(str(ds.attrs["task_singular_values"]).split(","), float)
    np.testing.assert_allclose(
        th[nz, 0], np.asarray(jd.exact.reversal_time(s[None], np.array(lams)[nz, None])), 1e-12
    )
    zero = ds.sel(lam=0.0)
    assert int(zero["reversed"].sum()) == 0 and np.all(np.isinf(zero["t_reversal"]))
    # stuck near the saddle W2W1 = 0: error to −Σ̃ stays ≈ ‖Σ̃‖ = ‖s‖
    assert float(zero["final_error"].min()) > 0.9 * np.linalg.norm(s)
    assert float(ds["final_error"].sel(lam=1.0).max()) < 1e-3  # reversed (not yet converged)
    assert float(ds["exact_deviation"].max()) <= 1e-7
    assert float(ds["balance_drift"].max()) <= 1e-9


def test_continual_forgetting_is_lambda_independent():
    exp = get_experiment("continual")
    ds = jd.sweep(exp, {"lam": [-3.0, 0.0, 3.0]}, progress=False)
    assert bool((ds["status"] == 0).all())
    assert float(ds["final_residual"].max()) < 1e-8
    F = ds["forgetting"].values.reshape(3, 3, 3)
    Fth = ds["forgetting_theory"].values.reshape(3, 3, 3)
    later = np.isfinite(Fth[0])
    assert later.sum() == 3
    np.testing.assert_allclose(F[:, later], Fth[:, later], atol=1e-8)
    assert np.ptp(F[:, later], axis=0).max() < 1e-8
    assert float(ds["exact_deviation"].max()) <= 1e-7
    assert float(ds["balance_drift"].max()) <= 1e-9


def test_transfer_vs_theory():
    exp = get_experiment("transfer")
    ds = jd.sweep(exp, {"lam": [-4.0, 0.0, 4.0]}, progress=False)
    assert bool((ds["status"] == 0).all())
    assert float(ds["exact_deviation"].max()) <= 1e-7
    np.testing.assert_allclose(ds["transfer"], ds["transfer_theory"], atol=1e-8)
    np.testing.assert_allclose(ds["t_fit"], ds["t_fit_theory"], rtol=1e-4)
    sib = ds["transfer"].isel(seed=0, item=1).values
    tfit = ds["t_fit"].isel(seed=0).values
    assert np.all(np.diff(sib) > 0) and np.all(np.diff(tfit) > 0)  # more transfer, slower


@pytest.mark.slow
def test_linear_exact_benchmark_quick():
    """`benchmarks/linear_exact.py --quick`: JSON lines, ratio line, exact ≈ flow."""
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "linear_exact.py"), "--quick"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert recs[0]["method"] == "machine" and recs[-1]["method"] == "ratios"
    assert recs[-1]["n_traj"] >= 1024
    assert recs[-1]["max_rel_deviation_product"] <= 1e-6
    assert recs[-1]["exact_over_flow_speedup"] > 0
