"""`gradient_flow(..., block_size=B)`: a batch solved in consecutive blocks of B members, one
block after another, each block one solve (stacked or vmap) with its own step control."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

TIGHT = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3))
    y = X @ np.array([1.0, -0.5, 0.3])
    models = jax.vmap(lambda dl: jd.init.single_neuron(jnp.array([0.1, 0.05, -0.02]), dl))(
        jnp.linspace(-2.0, 2.0, 5)
    )
    lr = jd.SingleNeuron(a=jnp.linspace(0.5, 2.0, 5), w=jnp.linspace(1.0, 0.5, 5))
    return (X, y), models, lr, jnp.linspace(0.0, 5.0, 11)


def _members(tree, i, j):
    return jax.tree_util.tree_map(lambda x: x[i:j], tree)


# vmap blocks (the same wrapper around the vmap solve) in the full suite only, for CI time
@pytest.mark.parametrize("mode", ["stacked", pytest.param("vmap", marks=pytest.mark.slow)])
def test_blocks_are_separate_solves(problem, mode):
    """5 members in blocks of 2: the solves of members 0-1, 2-3 and 4 alone (the last block
    is padded with a copy of member 4, which leaves its max-norm step control unchanged)."""
    data, models, lr, ts = problem
    got = jd.gradient_flow(models, data, ts, lr=lr, batch=mode, block_size=2, **TIGHT)
    parts = [
        jd.gradient_flow(
            _members(models, i, j), data, ts, lr=_members(lr, i, j), batch=mode, **TIGHT
        )
        for i, j in ((0, 2), (2, 4), (4, 5))
    ]
    assert got.model.w.shape == (5, 11, 3) and got.loss.shape == (5, 11)
    assert np.all(np.asarray(got.status) == 0)
    for field in ("a", "w"):
        want = np.concatenate([np.asarray(getattr(p.model, field)) for p in parts])
        np.testing.assert_allclose(getattr(got.model, field), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.loss, np.concatenate([p.loss for p in parts]), rtol=1e-12)
    steps = np.concatenate([np.asarray(p.stats["num_steps"]) for p in parts])
    np.testing.assert_array_equal(got.stats["num_steps"], steps)
    np.testing.assert_array_equal(got.ts, np.broadcast_to(ts, (5, 11)))


def test_blocks_meet_the_tolerance_against_the_closed_form(problem):
    """Every member of every block within the tolerance's reach of the exact solution."""
    _, models, _, ts = problem
    Xw = jd.data.whitened_inputs(12, 3, 0, fix_signs=False)
    yw = Xw @ np.array([1.0, -0.5, 0.3])
    got = jd.gradient_flow(models, (Xw, yw), ts, batch=True, block_size=3, **TIGHT)
    a_ex, w_ex = jax.vmap(jd.exact.single_neuron, in_axes=(None, None, 0, 0, None))(
        jnp.asarray(Xw), jnp.asarray(yw), models.a, models.w, ts
    )
    assert np.all(np.asarray(got.status) == 0)
    assert np.max(np.abs(np.asarray(got.model.a) - np.asarray(a_ex))) < 1e-8
    assert np.max(np.abs(np.asarray(got.model.w) - np.asarray(w_ex))) < 1e-8


def test_blocks_under_jit_and_a_block_covering_the_batch(problem):
    data, models, lr, ts = problem
    f = jax.jit(lambda m, e: jd.gradient_flow(m, data, ts, lr=e, batch=True, block_size=2).loss)
    eager = jd.gradient_flow(models, data, ts, lr=lr, batch=True, block_size=2).loss
    np.testing.assert_allclose(f(models, lr), eager, rtol=1e-12)
    # a block as large as the batch is the one solve, bit for bit
    a = jd.gradient_flow(models, data, ts, lr=lr, batch=True, block_size=5)
    b = jd.gradient_flow(models, data, ts, lr=lr, batch=True)
    np.testing.assert_array_equal(a.model.w, b.model.w)


@pytest.mark.parametrize("bad", [0, -3])
def test_block_size_must_be_positive(problem, bad):
    data, models, _, ts = problem
    with pytest.raises(ValueError, match="`block_size`"):
        jd.gradient_flow(models, data, ts, batch=True, block_size=bad)


@pytest.mark.parametrize("bad", [2.5, True, "4"])
def test_block_size_must_be_an_integer(problem, bad):
    data, models, _, ts = problem
    with pytest.raises(TypeError, match="block_size"):
        jd.gradient_flow(models, data, ts, batch=True, block_size=bad)


def test_block_size_needs_a_batch(problem):
    data, models, _, ts = problem
    one = jax.tree_util.tree_map(lambda x: x[0], models)
    with pytest.raises(ValueError, match="`block_size`"):
        jd.gradient_flow(one, data, ts, block_size=2)
