"""`jd.metrics.time_to_threshold`: first crossing, censoring at the budget, step 0, jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd


def test_first_crossing_and_censoring():
    acc = jnp.array(
        [
            [0.1, 0.5, 0.99, 0.2, 1.0],  # crosses at record 2 (later dip ignored)
            [0.1, 0.2, 0.3, 0.4, 0.5],  # never: censored at the budget
            [1.0, 1.0, 1.0, 1.0, 1.0],  # already there at step 0
            [0.0, jnp.nan, jnp.nan, jnp.nan, jnp.nan],  # diverged: never crosses
        ]
    )
    steps = jnp.array([0, 10, 20, 30, 40])
    step, censored = jd.metrics.time_to_threshold(acc, 0.99, steps=steps)
    np.testing.assert_array_equal(step, [20, 40, 0, 40])
    np.testing.assert_array_equal(censored, [False, True, False, True])
    # Crossing exactly at the last record is not censored, although it equals the budget.
    s, c = jd.metrics.time_to_threshold(jnp.array([0.0, 0.0, 0.995]), 0.99, steps=[0, 5, 10])
    assert int(s) == 10 and not bool(c)


def test_default_steps_budget_and_direction():
    loss = jnp.array([1.0, 0.5, 0.05, 0.01])
    s, c = jd.metrics.time_to_threshold(loss, 0.1, direction="below")
    assert int(s) == 2 and not bool(c)
    s, c = jd.metrics.time_to_threshold(loss, 1e-3, direction="below", budget=1000)
    assert int(s) == 1000 and bool(c)
    s, c = jd.metrics.time_to_threshold(loss, 1.0, direction="below")  # at step 0
    assert int(s) == 0 and not bool(c)


def test_jit_and_vmap():
    vals = np.asarray(jax.random.uniform(jax.random.key(0), (6, 7)))
    steps = np.arange(7) * 3
    thr = np.linspace(0.1, 1.1, 6)
    f = jax.jit(jax.vmap(lambda v, t: jd.metrics.time_to_threshold(v, t, steps=steps)))
    s, c = f(vals, thr)
    for i in range(6):  # NumPy reference
        hit = np.nonzero(vals[i] >= thr[i])[0]
        assert int(s[i]) == (steps[hit[0]] if hit.size else steps[-1])
        assert bool(c[i]) == (hit.size == 0)
    assert bool(c[-1])  # threshold 1.1 > any uniform value


def test_bad_arguments():
    with pytest.raises(ValueError, match="direction"):
        jd.metrics.time_to_threshold(jnp.ones(3), 0.5, direction="up")
    with pytest.raises(ValueError, match="steps"):
        jd.metrics.time_to_threshold(jnp.ones(3), 0.5, steps=[0, 1])
    with pytest.raises(ValueError, match="values"):
        jd.metrics.time_to_threshold(jnp.ones((2, 0)), 0.5)
