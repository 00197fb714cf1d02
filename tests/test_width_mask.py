"""Width as a batch axis: masked units stay exactly zero and the masked net follows the
unpadded net of that width (DESIGN.md, "Sweeps")."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

jax.config.update("jax_enable_x64", True)


def data(key, n=24, d=5, o=2):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, d)), jax.random.normal(ky, (n, o))


@pytest.mark.parametrize(
    "kind",
    [
        "relu",
        pytest.param("tanh", marks=pytest.mark.slow),
        pytest.param("linear-net", marks=pytest.mark.slow),
    ],
)
def test_masked_width_matches_unpadded_net(kind):
    X, Y = data(jax.random.key(0))
    h, H = 3, 8
    k1, k2 = jax.random.split(jax.random.key(1))
    W1 = 0.7 * jax.random.normal(k1, (h, 5))
    W2 = 0.7 * jax.random.normal(k2, (2, h))
    if kind == "linear-net":
        small = jd.TwoLayerLinear(W1, W2)
    else:
        small = jd.TwoLayer(W1, W2, kind)
    # A net built at width H whose first h units are `small` and whose other units are junk,
    # then masked with a *traced* width: one program for every width.
    junk = jd.init.pad_width(small, H)
    junk = type(junk)(
        **{**_fields(junk), "W1": junk.W1.at[h:].set(1.0), "W2": junk.W2.at[:, h:].set(-2.0)}
    )
    ts = jnp.linspace(0.0, 5.0, 11)
    # Fixed steps: the padded and unpadded solves then differ only by rounding in the matmuls.
    # (With adaptive steps, last-ulp differences can change accepted steps, so agreement is at
    # the tolerance level instead: checked below.)
    kw = dict(solver=diffrax.Tsit5(), dt0=0.01, stepsize_controller=diffrax.ConstantStepSize())

    @jax.jit
    def solve_masked(width):
        return jd.gradient_flow(jd.init.mask_width(junk, width), (X, Y), ts, **kw)

    ref = jd.gradient_flow(small, (X, Y), ts, **kw)
    got = solve_masked(h)
    assert float(jnp.max(jnp.abs(got.model.W1[:, h:]))) == 0.0
    assert float(jnp.max(jnp.abs(got.model.W2[:, :, h:]))) == 0.0
    scale = float(jnp.max(jnp.abs(ref.model.W1)))
    assert float(jnp.max(jnp.abs(got.model.W1[:, :h] - ref.model.W1))) <= 1e-12 * scale
    assert float(jnp.max(jnp.abs(got.model.W2[:, :, :h] - ref.model.W2))) <= 1e-12 * scale
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12, atol=0)
    # Another width reuses the compiled program (width is traced).
    n_compiled = solve_masked._cache_size()
    solve_masked(5)
    assert solve_masked._cache_size() == n_compiled
    # Adaptive steps (what sweeps use): agreement to the tolerance, masked units exactly zero.
    ad = dict(solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-12)
    ref = jd.gradient_flow(small, (X, Y), ts, **ad)
    got = jd.gradient_flow(jd.init.mask_width(junk, h), (X, Y), ts, **ad)
    assert float(jnp.max(jnp.abs(got.model.W1[:, h:]))) == 0.0
    # Two independent adaptive solves of a ReLU net (kinks!) agree to ~global error.
    assert float(jnp.max(jnp.abs(got.model.W1[:, :h] - ref.model.W1))) <= 1e-7 * scale


def _fields(m):
    out = {"W1": m.W1, "W2": m.W2}
    if isinstance(m, jd.TwoLayer):
        out["activation"] = m.activation
    return out


def test_mask_width_errors():
    m = jd.TwoLayer(jnp.ones((4, 2)), jnp.ones((1, 4)))
    with pytest.raises(ValueError, match="`width`"):
        jd.init.mask_width(m, 0)
    with pytest.raises(ValueError, match="`width`"):
        jd.init.mask_width(m, 5)
    with pytest.raises(TypeError, match="`model`"):
        jd.init.mask_width(jd.SingleNeuron(1.0, jnp.ones(2)), 1)
    with pytest.raises(ValueError, match="`max_width`"):
        jd.init.pad_width(m, 3)
