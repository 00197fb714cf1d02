"""`jd.parametrization` and `jd.init.mlp`: the SP / NTK / μP / spectral rules, their lr pytrees
in `gradient_flow` / `gradient_descent`, the multiplier symmetry, the Adam rule, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdyn as jd

P = jd.parametrization
WIDTHS = (8, 32, 48, 3)  # d_in, two hidden, d_out


@pytest.fixture(scope="module")
def data():
    X = jax.random.normal(jax.random.key(1), (6, WIDTHS[0]))
    Y = jax.random.normal(jax.random.key(2), (6, WIDTHS[-1]))
    return X, Y


def _rules(p, widths, optimizer="sgd"):
    return [
        (float(s.std), float(s.multiplier), float(s.lr)) for s in p.scalings(widths, optimizer)
    ]


def test_lookup_by_name():
    assert P.names() == ["sp", "ntk", "mup", "spectral"]
    for name, cls in zip(P.names(), (P.SP, P.NTK, P.MuP, P.Spectral), strict=True):
        p = P.get(name)
        assert type(p) is cls and p.name == name
        assert isinstance(p, P.AbstractParametrization)
    assert type(P.get("MuP")) is P.MuP
    p = P.MuP(base_width=7)
    assert P.get(p) is p
    with pytest.raises(ValueError, match=r"`parametrization`.*'mu-p'.*'sp', 'ntk', 'mup'"):
        P.get("mu-p")
    with pytest.raises(TypeError, match="parametrization"):
        P.get(3)
    with pytest.raises(TypeError):
        P.AbstractParametrization()


def test_tables():
    w = (10, 64, 128, 5)
    r64 = 1 / np.sqrt(64)
    # SP: 1/sqrt(fan_in), one lr.
    assert np.allclose(
        _rules(P.SP(), w), [(1 / np.sqrt(10), 1, 1), (r64, 1, 1), (1 / 128**0.5, 1, 1)]
    )
    assert _rules(P.SP(), w, "adam") == _rules(P.SP(), w)
    # NTK: unit init behind 1/sqrt(fan_in).
    assert np.allclose(
        _rules(P.NTK(), w), [(1, 1 / np.sqrt(10), 1), (1, r64, 1), (1, 1 / 128**0.5, 1)]
    )
    # Spectral (YSB Parametrization 1): std min(1, sqrt(fo/fi))/sqrt(fi); SGD fo/fi; Adam 1/fi.
    sp = _rules(P.Spectral(), w)
    assert np.allclose(
        sp, [(1 / np.sqrt(10), 1, 6.4), (r64, 1, 2.0), (np.sqrt(5) / 128, 1, 5 / 128)]
    )
    assert np.allclose([r[2] for r in _rules(P.Spectral(), w, "adam")], [0.1, 1 / 64, 1 / 128])
    # μP, TP5 Table 3 at base width 1 (readout as effective weights): readout var 1/fi²,
    # SGD input η·fo, hidden η (square) / fo/fi, readout η/fi; Adam 1, 1/fi, 1/fi.
    mu = _rules(P.MuP(readout_multiplier=False), w)
    assert np.allclose(mu, [(1 / np.sqrt(10), 1, 64), (r64, 1, 2.0), (1 / 128, 1, 1 / 128)])
    mu_adam = _rules(P.MuP(readout_multiplier=False), w, "adam")
    assert np.allclose([r[2] for r in mu_adam], [1, 1 / 64, 1 / 128])
    # mup's MuReadout form: stored std sqrt(w_in/fi), multiplier 1/w_in, lr w_in (SGD), 1 (Adam).
    b = 16
    ro = _rules(P.MuP(base_width=b), w)[-1]
    assert np.allclose(ro, (np.sqrt(128 / b / 128), b / 128, 128 / b))
    assert np.isclose(_rules(P.MuP(base_width=b), w, "adam")[-1][2], 1.0)
    # One layer: nothing grows, μP is SP.
    assert _rules(P.MuP(), (5, 3)) == _rules(P.SP(), (5, 3))


def test_mup_is_sp_at_base_width(data):
    w = (8, 32, 32, 3)
    key = jax.random.key(0)
    mu, sp = jd.init.mlp(key, w, P.MuP(base_width=32)), jd.init.mlp(key, w, "sp")
    for a, b in zip(jax.tree.leaves(mu), jax.tree.leaves(sp), strict=True):
        assert np.array_equal(a, b)
    for opt in ("sgd", "adam"):
        assert _rules(P.MuP(base_width=32), w, opt) == _rules(P.SP(), w, opt)


def test_init_statistics_and_spectral_norm():
    key = jax.random.key(3)
    w = (64, 512, 512, 8)
    for p in (P.SP(), P.NTK(), P.MuP(), P.Spectral()):
        m = jd.init.mlp(key, w, p, activation="tanh")
        assert [W.shape for W in m.layers] == [(512, 64), (512, 512), (8, 512)]
        for W, mult, s in zip(m.layers, m.multipliers, p.scalings(w), strict=True):
            assert np.isclose(float(mult), float(s.multiplier))
            assert abs(float(jnp.std(W)) / float(s.std) - 1) < 0.05
    # Notes §D.B 1: spectral init, sqrt(fi/fo)·‖W‖_* ≈ 1 + sqrt(min/max); 2.0 ± 0.1 square.
    m = jd.init.mlp(key, (256, 256, 256, 64), P.Spectral())
    for W in m.layers:
        fo, fi = W.shape
        target = 1 + np.sqrt(min(fo, fi) / max(fo, fi))
        assert abs(np.sqrt(fi / fo) * float(jnp.linalg.norm(W, 2)) - target) < 0.1


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def test_lr_tree_in_flow_and_descent(data):
    X, Y = data
    ps = (P.SP(), P.NTK(), P.MuP(base_width=8), P.Spectral())
    models = [jd.init.mlp(jax.random.key(0), WIDTHS, p, activation="tanh") for p in ps]
    lrs = [p.lr(m, 0.05) for p, m in zip(ps, models, strict=True)]
    for p, lr in zip(ps, lrs, strict=True):
        assert type(lr) is jd.MLP and [float(e) for e in lr.multipliers] == [0.0] * 3
        want = [0.05 * float(s.lr) for s in p.scalings(WIDTHS)]
        assert np.allclose([float(e) for e in lr.layers], want, rtol=1e-15)
    # One descent step is θ − η_l ∇_l L, layer by layer (the four nets in one vmap).
    tr = jax.vmap(lambda m, lr: jd.gradient_descent(m, (X, Y), 1, lr=lr))(
        _stack(models), _stack(lrs)
    )
    for k, (m, lr) in enumerate(zip(models, lrs, strict=True)):
        g = jax.grad(lambda mm: jd.mse_loss(mm, (X, Y)))(m)
        for i, (W, gW, e) in enumerate(zip(m.layers, g.layers, lr.layers, strict=True)):
            assert np.allclose(tr.model.layers[i][k, 1], W - e * gW, rtol=1e-13, atol=1e-15)
            assert tr.model.multipliers[i][k, 1] == m.multipliers[i]
    # The same trees drive gradient flow (a batched solve); the loss decreases.
    fl = jd.gradient_flow(
        _stack(models), (X, Y), jnp.linspace(0.0, 2.0, 3), lr=_stack(lrs), batch=True
    )
    assert np.all(fl.status == 0) and np.all(fl.loss[:, -1] < fl.loss[:, 0])


def _effective(model):
    return [m[..., None, None] * W for W, m in zip(model.layers, model.multipliers, strict=True)]


def _max_rel(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y)))
        for x, y in zip(_effective(a), _effective(b), strict=True)
    )


def test_multiplier_symmetry_sgd(data):
    """Notes §D.B 13: W = c·Ŵ with σ̂ = σ/c, η̂ = η/c² gives the same SGD training (1e-10):
    μP with mup's readout multiplier vs μP's absolute (TP5 Table 3) readout, and every
    parametrization rescaled per layer by (3, 0.1, 7), 6 steps (all in one vmap)."""
    X, Y = data
    key = jax.random.key(4)
    pairs = [(P.MuP(base_width=8), P.MuP(base_width=8, readout_multiplier=False))]
    pairs += [(p, p.rescaled((3.0, 0.1, 7.0))) for p in (P.SP(), P.NTK(), P.MuP(), P.Spectral())]
    flat = [r for pair in pairs for r in pair]
    models = [jd.init.mlp(key, WIDTHS, r, activation="tanh") for r in flat]
    lrs = [r.lr(m, 0.02) for r, m in zip(flat, models, strict=True)]
    tr = jax.vmap(lambda m, lr: jd.gradient_descent(m, (X, Y), 6, lr=lr))(
        _stack(models), _stack(lrs)
    )
    for k in range(len(pairs)):
        a, b = (jax.tree.map(lambda x, j=j: x[j], tr.model) for j in (2 * k, 2 * k + 1))
        assert np.max(np.abs(tr.loss[2 * k] - tr.loss[2 * k + 1])) <= 1e-10 * tr.loss[2 * k, 0]
        assert _max_rel(b, a) <= 1e-10
    assert np.all(tr.loss[:, -1] < 0.95 * tr.loss[:, 0])  # they did train


def test_multiplier_symmetry_adam(data):
    """The Adam version: η̂ = η/c, exact with ε = 0 (here 1e-300, which only avoids 0/0 on
    the untrained multiplier leaves)."""
    X, Y = data
    key = jax.random.key(5)
    opt = optax.adam(1.0, eps=1e-300)
    p = P.Spectral()
    q = p.rescaled((0.25, 5.0, 2.0))
    models = [jd.init.mlp(key, WIDTHS, r, activation="tanh") for r in (p, q)]
    lrs = [r.lr(m, 0.05, optimizer="adam") for r, m in zip((p, q), models, strict=True)]
    tr = jax.vmap(lambda m, lr: jd.gradient_descent(m, (X, Y), 5, lr=lr, optimizer=opt))(
        _stack(models), _stack(lrs)
    )
    assert np.max(np.abs(tr.loss[0] - tr.loss[1])) <= 1e-10 * tr.loss[0, 0]
    assert _max_rel(*(jax.tree.map(lambda x, j=j: x[j], tr.model) for j in (1, 0))) <= 1e-10
    assert tr.loss[0, -1] < tr.loss[0, 0]


def test_adam_rule_first_step():
    """Notes §D.B 3: the first batch-1 Adam step under the spectral Adam rule η₀/fan_in has
    ‖ΔW_l‖_* = η₀·sqrt(fo/fi) exactly, for every layer shape; the SGD rule applied to Adam
    (the pitfall) gives η₀·(fo/fi)·sqrt(fo·fi), growing like the width; μP's Adam rule (base
    b) gives ‖ΔW‖_* = η₀·b on a square hidden layer at any width."""
    eta = 0.3
    opt = optax.adam(1.0, eps=1e-300)
    X = jax.random.normal(jax.random.key(6), (1, 8))
    Y = jax.random.normal(jax.random.key(7), (1, 3))
    w = (8, 32, 32, 16, 3)
    sp, mu = P.Spectral(), P.MuP(base_width=4)
    runs = [(sp, "adam"), (sp, "sgd"), (mu, "adam")]
    models = [jd.init.mlp(jax.random.key(8), w, p, activation="tanh") for p, _ in runs]
    lrs = [p.lr(m, eta, optimizer=o) for (p, o), m in zip(runs, models, strict=True)]
    tr = jax.vmap(lambda m, lr: jd.gradient_descent(m, (X, Y), 1, lr=lr, optimizer=opt))(
        _stack(models), _stack(lrs)
    )
    dn = [
        jd.metrics.spectral_norms(jax.tree.map(lambda a, k=k: a[k, 1], tr.model), m)
        for k, m in enumerate(models)
    ]
    for W, d_adam, d_sgd in zip(models[0].layers, dn[0], dn[1], strict=True):
        fo, fi = W.shape
        assert abs(float(d_adam) / (eta * np.sqrt(fo / fi)) - 1) < 1e-10
        assert abs(float(d_sgd) / (eta * fo / fi * np.sqrt(fo * fi)) - 1) < 1e-10
    assert abs(float(dn[2][1]) / (eta * 4) - 1) < 1e-10


@pytest.mark.slow  # ≈ 8 s (compile); keeps the new tests' default run ≤ 60 s
def test_masked_widths_follow_the_small_net(data):
    X, Y = data
    p = P.Spectral()
    big = (8, 64, 64, 3)
    small = (8, 24, 24, 3)
    m = p.init(jax.random.key(9), jnp.asarray(small), activation="tanh", max_widths=big)
    for W, (fo, fi) in zip(m.layers, zip(small[1:], small[:-1], strict=True), strict=True):
        assert not np.any(W[fo:]) and not np.any(W[:, fi:]) and np.all(W[:fo, :fi] != 0)
    sub = jd.MLP(
        [W[:fo, :fi] for W, fo, fi in zip(m.layers, small[1:], small[:-1], strict=True)],
        m.multipliers,
        "tanh",
    )
    assert np.allclose(jax.vmap(m)(X), jax.vmap(sub)(X), rtol=1e-14)
    # The rates follow the true (traced) widths: training the masked net is training the small one.
    rates = jax.jit(lambda w: p.lr(m, 0.1, widths=w))(jnp.asarray(small))
    t = jd.gradient_descent(m, (X, Y), 4, lr=rates)
    ts = jd.gradient_descent(sub, (X, Y), 4, lr=p.lr(sub, 0.1))
    assert np.allclose(t.loss, ts.loss, rtol=1e-12)
    for W, Ws in zip(t.model.layers, ts.model.layers, strict=True):
        fo, fi = Ws.shape[-2:]
        assert np.allclose(W[:, :fo, :fi], Ws, rtol=1e-12, atol=1e-15)
        assert not np.any(W[:, fo:]) and not np.any(W[:, :, fi:])


def test_bad_input(data):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`parametrization`: unknown name 'standard'"):
        jd.init.mlp(key, WIDTHS, "standard")
    with pytest.raises(ValueError, match=r"`widths\[1\]` must be a positive width, got -4"):
        jd.init.mlp(key, (8, -4, 3))
    with pytest.raises(ValueError, match=r"`widths\[2\]` must be a positive width, got 0"):
        jd.init.mlp(key, (8, 4, 0))
    with pytest.raises(ValueError, match=r"`widths\[1\]` must be an integer"):
        jd.init.mlp(key, (8, 4.5, 3))
    with pytest.raises(ValueError, match="`widths` must list at least two sizes"):
        jd.init.mlp(key, (8,))
    with pytest.raises(ValueError, match="`widths` must be a sequence"):
        jd.init.mlp(key, 8)
    with pytest.raises(ValueError, match="`max_widths` has 3 sizes but `widths` has 4"):
        jd.init.mlp(key, WIDTHS, max_widths=(8, 64, 3))
    with pytest.raises(ValueError, match=r"`widths\[1\]` = 32 exceeds `max_widths\[1\]` = 16"):
        jd.init.mlp(key, WIDTHS, max_widths=(8, 16, 48, 3))
    with pytest.raises(ValueError, match=r"`widths\[1\]` is traced"):
        jax.jit(lambda w: jd.init.mlp(key, (8, w, 3)).layers[0])(4)
    with pytest.raises(ValueError, match="`base_width` must be a positive int"):
        P.MuP(base_width=0)
    with pytest.raises(ValueError, match="`factors` must be positive"):
        P.SP().rescaled((1.0, -1.0, 1.0))
    p = P.Spectral()
    m = jd.init.mlp(key, WIDTHS, p)
    with pytest.raises(ValueError, match="`widths` has 3 sizes but `model` has 3 layers"):
        p.lr(m, widths=(8, 32, 3))
    with pytest.raises(ValueError, match=r"`widths\[1\]` = 64 exceeds the model's size 32"):
        p.lr(m, widths=(8, 64, 48, 3))
    with pytest.raises(ValueError, match="`optimizer` must be one of 'sgd', 'adam'"):
        p.lr(m, optimizer="adamw")
    with pytest.raises(ValueError, match="`lr` must be non-negative"):
        p.lr(m, -1.0)
    with pytest.raises(TypeError, match="`model` must be a jd.MLP"):
        p.lr(jd.TwoLayer(jnp.ones((4, 8)), jnp.ones((3, 4))))
    with pytest.raises(ValueError, match="`factors` has 2 entries but the network has 3 layers"):
        p.rescaled((1.0, 2.0)).scalings(WIDTHS)
    # An lr pytree that does not fit the model: named `lr` by gradient_flow / gradient_descent.
    other = jd.init.mlp(key, (8, 32, 3), p)
    with pytest.raises(
        TypeError, match="`lr` must be a scalar or a pytree with the model's structure"
    ):
        jd.gradient_descent(m, data, 1, lr=p.lr(other))
    with pytest.raises(
        TypeError, match="`lr` must be a scalar or a pytree with the model's structure"
    ):
        jd.gradient_flow(m, data, jnp.linspace(0.0, 1.0, 2), lr=p.lr(other))


def test_widths_checks_name_the_argument():
    # One helper resolves `widths` against the built sizes for `init`, `from_normal` and `lr`;
    # each caller keeps its own message.
    p = P.SP()
    normals = [jnp.ones((4, 3)), jnp.ones((2, 4))]
    with pytest.raises(ValueError, match=r"`widths` has 2 sizes but there are 2 layers \(needs 3"):
        p.from_normal(normals, widths=(3, 4))
    with pytest.raises(ValueError, match=r"`widths\[1\]` = 5 exceeds the built size 4\."):
        p.from_normal(normals, widths=(3, 5, 2))
    m = p.from_normal(normals, widths=(3, 2, 2))
    assert not np.any(m.layers[0][2:]) and np.all(m.layers[0][:2])
    with pytest.raises(ValueError, match=r"\(needs depth \+ 1 = 3 sizes\)\."):
        p.lr(m, widths=(3, 2))
    with pytest.raises(ValueError, match=r"`widths\[0\]` = 4 exceeds the model's size 3\."):
        p.lr(m, widths=(4, 2, 2))


def test_traced_bad_lr_gives_nan_rates():
    p = P.SP()
    m = jd.init.mlp(jax.random.key(0), (3, 4, 2), p)
    for v in (-1.0, float("inf"), float("nan")):
        rates = jax.jit(lambda v: p.lr(m, v).layers)(v)
        assert all(np.isnan(r) for r in rates)
    rates = jax.jit(lambda v: p.lr(m, v).layers)(0.25)
    assert all(r == q for r, q in zip(rates, p.lr(m, 0.25).layers, strict=True))
