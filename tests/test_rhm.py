"""The Random Hierarchy Model generator (`jd.data.random_hierarchy`), the digits loader and the
filter smoothness score (`jd.metrics.filter_smoothness`)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn as jd

SMALL = {"levels": 2, "classes": 3, "synonyms": 2, "tuple_size": 2, "vocab": 3}


def _all_samples(rhm):
    tokens, labels = jax.vmap(rhm.sample)(jnp.arange(rhm.num_samples))
    return np.asarray(tokens), np.asarray(labels)


def test_rules_shapes_and_disjoint_synonyms():
    rhm = jd.data.random_hierarchy(jax.random.key(0), **SMALL)
    assert [r.shape for r in rhm.rules] == [(3, 2, 2), (3, 2, 2)]
    assert rhm.input_length == 4 and rhm.input_dim == 12
    assert rhm.num_nodes == 3 and rhm.num_samples == 3 * 2**3
    for rules in rhm.rules:
        r = np.asarray(rules)
        assert r.min() >= 0 and r.max() < SMALL["vocab"]
        # every symbol has m distinct synonymic tuples, and no tuple belongs to two symbols
        tuples = [tuple(t) for t in r.reshape(-1, SMALL["tuple_size"])]
        assert len(set(tuples)) == len(tuples)


def test_each_class_generated_by_its_rules():
    rhm = jd.data.random_hierarchy(jax.random.key(1), **SMALL)
    tokens, labels = _all_samples(rhm)
    top = np.asarray(rhm.rules[0])
    low = np.asarray(rhm.rules[1])
    parent = {tuple(t): sym for sym in range(3) for t in low[sym]}
    for toks, y in zip(tokens, labels, strict=True):
        # bottom-up: each pair of tokens is a rule of one level-1 symbol, and the pair of those
        # symbols is one of the class's own rules
        mid = tuple(parent[tuple(toks[i : i + 2])] for i in (0, 2))
        assert mid in {tuple(t) for t in top[y]}
    # all samples distinct: the class is a function of the string, and the count is
    # n_c · m^((s^L - 1)/(s - 1)) (Petrini et al. 2023, Eq. (1))
    assert len({tuple(t) for t in tokens}) == rhm.num_samples
    assert np.bincount(labels).tolist() == [8, 8, 8]


def test_synonyms_change_the_string_not_the_class():
    rhm = jd.data.random_hierarchy(jax.random.key(2), **SMALL)
    strings = {
        tuple(np.asarray(rhm.decode(jnp.asarray(0), jnp.asarray(c))))
        for c in itertools.product(range(2), repeat=3)
    }
    assert len(strings) == 8


def test_deterministic_per_seed_and_vmappable():
    a = jd.data.random_hierarchy(jax.random.key(3))
    b = jd.data.random_hierarchy(jax.random.key(3))
    c = jd.data.random_hierarchy(jax.random.key(4))
    assert all(np.array_equal(x, y) for x, y in zip(a.rules, b.rules, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.rules, c.rules, strict=True))
    assert a.num_samples == 8 * 4**7 == 131_072  # the paper's setting (notes §5.7)
    batch = jax.vmap(lambda k: jd.data.random_hierarchy(k))(jax.random.split(jax.random.key(3), 2))
    assert batch.rules[0].shape == (2, 8, 4, 2)


def test_data_one_hot_disjoint_and_labelled():
    rhm = jd.data.random_hierarchy(jax.random.key(5), **SMALL)
    X, y, Xt, yt = jd.data.random_hierarchy_data(jax.random.key(6), rhm, 15, 9)
    assert X.shape == (15, 12) and Xt.shape == (9, 12)
    onehot = np.asarray(X).reshape(15, 4, 3)
    assert np.all(onehot.sum(-1) == 1)
    strings = [tuple(r) for r in np.asarray(jnp.concatenate([X, Xt]))]
    assert len(set(strings)) == 24  # distinct, so training and test sets are disjoint
    tokens, labels = _all_samples(rhm)
    label_of = {tuple(t): int(c) for t, c in zip(tokens, labels, strict=True)}
    got = [label_of[tuple(r.argmax(-1))] for r in onehot]
    assert got == np.asarray(y).tolist()
    again = jd.data.random_hierarchy_data(jax.random.key(6), rhm, 15, 9)
    assert np.array_equal(again[0], X) and np.array_equal(again[3], yt)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"synonyms": 4, "vocab": 3, "tuple_size": 2, "classes": 2}, "synonyms = 4 exceeds"),
        ({"synonyms": 3, "vocab": 3, "tuple_size": 2, "classes": 4}, "classes × synonyms"),
        ({"tuple_size": 1}, "tuple_size"),
        ({"levels": 0}, "levels"),
        ({"vocab": 2.0}, "vocab"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, match):
    # a float where an int is due may be caught by the run-time type checker first
    with pytest.raises((ValueError, TypeError), match=match):
        jd.data.random_hierarchy(jax.random.key(0), **kwargs)


def test_too_many_samples_requested():
    rhm = jd.data.random_hierarchy(jax.random.key(0), **SMALL)
    with pytest.raises(ValueError, match="n_train \\+ n_test = 20 \\+ 5"):
        jd.data.random_hierarchy_data(jax.random.key(0), rhm, 20, 5)


def test_filter_smoothness_known_values():
    k = 5
    # The paper's stencil sums to -1 (centre 2, not 3): on a filter whose true Laplacian
    # vanishes (constant, linear ramp) it returns minus the filter, so the score is the
    # normalised filter's energy at the interior positions.
    delta = jnp.zeros((k, k)).at[2, 2].set(3.0)  # normalised: the stencil itself
    ramp = jnp.add.outer(jnp.arange(k), 2 * jnp.arange(k)).astype(float) + 1.0
    const = jnp.ones((k, k))
    checker = (-1.0) ** jnp.add.outer(jnp.arange(k), jnp.arange(k))  # response 3 at (π, π)
    s = jd.metrics.filter_smoothness(jnp.stack([delta, ramp, const, checker]))
    ramp_interior = float(jnp.sum(ramp[1:-1, 1:-1] ** 2) / jnp.sum(ramp**2))
    np.testing.assert_allclose(s, [5.25, ramp_interior, 9 / 25, 81 / 25], atol=1e-12)
    noise = jax.random.normal(jax.random.key(0), (4000, k, k))
    mean_noise = float(jd.metrics.filter_smoothness(noise).mean())
    assert abs(mean_noise - 5.25 * 9 / 25) < 0.05  # Σ Δ_ij² × the kept fraction
    same = jd.metrics.filter_smoothness(jnp.stack([delta, const]), mode="same")
    # zero padding: edge pixels of a constant filter score 0, each corner (2 - 1 - 0.25)/5
    np.testing.assert_allclose(same, [5.25, 9 / 25 + 4 * (0.75 / 5) ** 2], atol=1e-12)
    assert jd.metrics.filter_smoothness(jnp.zeros((2, 3, 3, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="kh, kw >= 3"):
        jd.metrics.filter_smoothness(jnp.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="mode"):
        jd.metrics.filter_smoothness(delta, mode="full")


def test_activation_hamming():
    a = jnp.array([[1.0, -1.0], [2.0, 3.0]])
    b = jnp.array([[1.0, 1.0], [-2.0, 3.0]])
    assert float(jd.metrics.activation_hamming(a, b)) == 0.5
    assert float(jd.metrics.activation_hamming(a, a)) == 0.0


def test_digits_split():
    pytest.importorskip("sklearn")
    X, y, Xt, yt = jd.data.digits(97, seed=1)
    assert X.shape == (1700, 1, 8, 8) and Xt.shape == (97, 1, 8, 8)
    assert set(np.unique(y).tolist()) == set(range(10))
    assert abs(float(X.mean())) < 1e-12
    Xf = jd.data.digits(97, seed=1, flatten=True)[0]
    np.testing.assert_array_equal(Xf, X.reshape(1700, 64))
    with pytest.raises(ValueError, match="n_test"):
        jd.data.digits(0)
