"""`jd.data`: whitened inputs and tasks, Haar matrices, teacher–student and hierarchical data,
task sequences (shapes, whitening to tolerance, sign conventions, errors, determinism)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("fix_signs", [True, False])
@pytest.mark.parametrize("n, d", [(8, 2), (6, 6), (20, 3), (5, 1)])
def test_whitened_inputs_are_whitened(n, d, fix_signs):
    X = jd.data.whitened_inputs(n, d, 3, fix_signs=fix_signs)
    assert X.shape == (n, d) and X.dtype == np.float64
    assert jd.data.whitening_error(X) <= jd.data.whitening_tol(np.float64)
    jd.data.check_whitened(X)  # the closed forms' check accepts it


def test_whitened_inputs_determinism_and_generator():
    a = jd.data.whitened_inputs(8, 3, 5)
    np.testing.assert_array_equal(a, jd.data.whitened_inputs(8, 3, 5))
    assert not np.array_equal(a, jd.data.whitened_inputs(8, 3, 6))
    # A Generator is drawn from (and advanced); seed s and default_rng(s) agree on the first draw.
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(a, jd.data.whitened_inputs(8, 3, rng))
    assert not np.array_equal(a, jd.data.whitened_inputs(8, 3, rng))
    # The sign fix only flips columns: diag(R) of the sign-fixed factor is non-negative.
    raw = jd.data.whitened_inputs(8, 3, 5, fix_signs=False)
    np.testing.assert_array_equal(np.abs(raw), np.abs(a))
    R = a.T @ np.random.default_rng(5).standard_normal((8, 3)) / np.sqrt(8)
    assert np.all(np.diag(R) > 0)


def test_whitened_inputs_errors():
    with pytest.raises(ValueError, match="`n`"):
        jd.data.whitened_inputs(2, 3)
    with pytest.raises(ValueError, match="`d`"):
        jd.data.whitened_inputs(4, 0)
    with pytest.raises(ValueError, match="`n`"):
        jd.data.whitened_inputs(0, 1)


def test_whitened_regression():
    beta = np.array([1.0, -0.5, 0.25])
    X, y = jd.data.whitened_regression(9, 3, beta, seed=2)
    assert X.shape == (9, 3) and y.shape == (9,)
    np.testing.assert_allclose(X.T @ y / 9, beta, atol=1e-14)
    np.testing.assert_array_equal(X, jd.data.whitened_inputs(9, 3, 2))
    with pytest.raises(ValueError, match="`beta_star`"):
        jd.data.whitened_regression(9, 3, np.ones(2))


@pytest.mark.parametrize("d, o", [(4, 4), (4, 3), (2, 5)])
def test_whitened_task(d, o):
    r = min(d, o)
    sv = np.geomspace(2.0, 0.5, r)
    X, Y, Syx = jd.data.whitened_task(8, d, o, sv, seed=1)
    assert X.shape == (8, d) and Y.shape == (8, o) and Syx.shape == (o, d)
    np.testing.assert_allclose(Y.T @ X / 8, Syx, atol=1e-13)
    np.testing.assert_allclose(np.linalg.svd(Syx, compute_uv=False)[:r], sv, rtol=1e-12)
    X2, Y2, S2 = jd.data.whitened_task(8, d, o, sv, seed=1)
    np.testing.assert_array_equal(Syx, S2)
    np.testing.assert_array_equal(X, X2)


@pytest.mark.parametrize("det_sign", [1.0, -1.0])
def test_whitened_task_det_sign(det_sign):
    for seed in range(4):
        _, _, Syx = jd.data.whitened_task(6, 3, 3, [2.0, 1.0, 0.5], seed, det_sign=det_sign)
        assert np.sign(np.linalg.det(Syx)) == det_sign


def test_whitened_task_errors():
    with pytest.raises(ValueError, match="`sv`"):
        jd.data.whitened_task(8, 3, 2, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="`det_sign`"):
        jd.data.whitened_task(8, 3, 3, [1.0, 2.0, 3.0], det_sign=2.0)
    with pytest.raises(ValueError, match="`o`"):
        jd.data.whitened_task(8, 3, 0, [])
    with pytest.raises(ValueError, match="`n`"):
        jd.data.whitened_task(2, 3, 3, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("n", [1, 3, 6])
def test_haar_orthogonal_numpy_and_jax(n):
    Q = jd.data.haar_orthogonal(np.random.default_rng(0), n)
    assert isinstance(Q, np.ndarray) and Q.shape == (n, n)
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-13)
    # Sign convention: Q = QR factor of the drawn Gaussian with diag(R) > 0.
    A = np.random.default_rng(0).standard_normal((n, n))
    assert np.all(np.diag(Q.T @ A) > 0)
    np.testing.assert_array_equal(Q, jd.data.haar_orthogonal(np.random.default_rng(0), n))

    key = jax.random.key(1)
    Qj = jd.data.haar_orthogonal(key, n)
    assert isinstance(Qj, jax.Array) and Qj.dtype == jnp.float64
    np.testing.assert_allclose(Qj.T @ Qj, np.eye(n), atol=1e-13)
    Aj = jax.random.normal(key, (n, n), jnp.float64)
    assert np.all(np.diag(np.asarray(Qj.T @ Aj)) > 0)
    np.testing.assert_array_equal(Qj, jd.data.haar_orthogonal(key, n))
    assert jd.data.haar_orthogonal(key, n, jnp.float32).dtype == jnp.float32
    # Traceable: vmap over keys.
    Qs = jax.vmap(lambda k: jd.data.haar_orthogonal(k, n))(jax.random.split(key, 3))
    assert Qs.shape == (3, n, n)


def test_haar_orthogonal_edge_and_errors():
    assert jd.data.haar_orthogonal(jax.random.key(0), 0).shape == (0, 0)
    assert jd.data.haar_orthogonal(np.random.default_rng(0), 0).shape == (0, 0)
    with pytest.raises(ValueError, match="`n`"):
        jd.data.haar_orthogonal(jax.random.key(0), -1)
    with pytest.raises(ValueError, match="`n`"):
        jd.data.haar_orthogonal(np.random.default_rng(0), -2)


def test_haar_orthogonal_is_haar_in_distribution():
    # Haar: E[Q] = 0 and E[Q_ij²] = 1/n. Without the sign fix E[Q_11] would be far from 0.
    rng = np.random.default_rng(7)
    Qs = np.stack([jd.data.haar_orthogonal(rng, 3) for _ in range(4000)])
    np.testing.assert_allclose(Qs.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose((Qs**2).mean(0), 1.0 / 3.0, atol=0.03)


def test_orthonormal_columns_matches_numpy_and_jax():
    A = np.random.default_rng(0).standard_normal((7, 3))
    Qn = jd.data.orthonormal_columns(A)
    Qj = jd.data.orthonormal_columns(jnp.asarray(A))
    np.testing.assert_allclose(Qn, np.asarray(Qj), atol=1e-13)
    np.testing.assert_allclose(Qn.T @ Qn, np.eye(3), atol=1e-14)


def test_task_sequence():
    sv = np.array([2.0, 1.0, 0.5])
    S = jd.data.task_sequence(3, sv, 4, seed=2)
    assert S.shape == (4, 3, 3)
    for Sk in S:
        assert np.linalg.det(Sk) > 0
        np.testing.assert_allclose(np.linalg.svd(Sk, compute_uv=False), sv, rtol=1e-12)
    np.testing.assert_array_equal(S, jd.data.task_sequence(3, sv, 4, seed=2))
    assert not np.allclose(S[0], S[1])
    with pytest.raises(ValueError, match="`sv`"):
        jd.data.task_sequence(3, sv[:2], 4)
    with pytest.raises(ValueError, match="`n_tasks`"):
        jd.data.task_sequence(3, sv, 0)


def test_hierarchical_task():
    X, Y = jd.data.hierarchical_task()
    assert X.shape == (8, 8) and Y.shape == (8, 8)
    jd.data.check_whitened(X)
    s = np.linalg.svd(Y.T @ X / 8, compute_uv=False)
    np.testing.assert_allclose(
        s, [1.0, 1.0, 2**-0.5, 2**-0.5, 0.5, 0.5, 0.5, 0.5], rtol=1e-12, atol=1e-14
    )
    assert set(np.unique(Y)) <= {-1.0, 0.0, 1.0}


def test_sphere_and_teacher_student():
    key = jax.random.key(0)
    x = jd.data.sphere(key, 50, 4)
    assert x.shape == (50, 4) and x.dtype == jnp.float64
    np.testing.assert_allclose(jnp.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    assert jd.data.sphere(key, 5, 3, jnp.float32).dtype == jnp.float32
    with pytest.raises(ValueError, match="`n`"):
        jd.data.sphere(key, 0, 3)
    X, y, Xt, yt = jd.data.teacher_student(key, 12, 30, 5, 3)
    assert X.shape == (12, 5) and y.shape == (12,) and Xt.shape == (30, 5) and yt.shape == (30,)
    np.testing.assert_allclose(jnp.linalg.norm(Xt, axis=1), 1.0, rtol=1e-14)
    # Labels of a ReLU teacher with 3 unit-norm units and ±1 readouts: |y| ≤ 3.
    assert float(jnp.max(jnp.abs(y))) <= 3.0
    X2, y2, _, _ = jd.data.teacher_student(key, 12, 30, 5, 3)
    np.testing.assert_array_equal(y, y2)
    _, y3, _, _ = jd.data.teacher_student(jax.random.key(1), 12, 30, 5, 3)
    assert not np.array_equal(y, y3)
