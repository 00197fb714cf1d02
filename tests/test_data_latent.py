"""Latent-variable data (`jd.data.latent_variable`, `latent_variable_sample`,
`latent_statistics`): the moments the Xu–Ziyin solution uses, and errors naming the argument."""

import jax
import numpy as np
import pytest

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)


def test_latent_data_and_statistics():
    z = np.array([1.0, -2.0, 0.5])
    a = np.array([0.6, 0.8])
    X, Y = jd.data.latent_variable(z, a, 1.5, noise=np.array([0.1, 0.0, -0.2]))
    np.testing.assert_allclose(np.asarray(X), np.outer(z, a))
    a_hat, c_hat, s_zz = jd.data.latent_statistics(X, Y)
    np.testing.assert_allclose(np.asarray(a_hat) * np.sign(a_hat[0]), a)
    y = 1.5 * z + np.array([0.1, 0.0, -0.2])
    np.testing.assert_allclose(float(c_hat) * np.sign(a_hat[0]), (z @ y) / (z @ z))
    np.testing.assert_allclose(float(s_zz), np.mean(z**2))
    X, Y = jd.data.latent_variable_sample(jax.random.key(0), 16, c=-0.7, d_in=3, noise_std=0.5)
    a_hat, c_hat, s_zz = jd.data.latent_statistics(X, Y)
    np.testing.assert_allclose(float(s_zz), 1.0, rtol=1e-12)
    np.testing.assert_allclose(abs(float(c_hat)), 0.7, rtol=1e-12)


def test_inconsistent_latent_data_names_the_argument():
    z, a = np.ones(3), np.array([1.0, 0.0])
    with pytest.raises(ValueError, match="`noise`"):
        jd.data.latent_variable(z, a, 1.0, noise=np.ones(4))
    with pytest.raises(ValueError, match="`a`"):
        jd.data.latent_variable(z, np.array([1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="`z`"):
        jd.data.latent_variable(np.ones((3, 1)), a, 1.0)
    with pytest.raises(ValueError, match="`z`"):
        jd.data.latent_variable(np.zeros(3), a, 1.0)
    with pytest.raises(ValueError, match="`c`"):
        jd.data.latent_variable(z, a, np.ones(2))
    with pytest.raises(ValueError, match="`X`"):
        jd.data.latent_statistics(np.eye(3), np.ones(3))  # not on one line
    with pytest.raises(ValueError, match="`Y`"):
        jd.data.latent_statistics(np.outer(z, a), np.ones(2))
    with pytest.raises(ValueError, match="`n`"):
        jd.data.latent_variable_sample(jax.random.key(0), 0, c=1.0)
    with pytest.raises(ValueError, match="`noise_std`"):
        jd.data.latent_variable_sample(jax.random.key(0), 4, c=1.0, noise_std=-1.0)
