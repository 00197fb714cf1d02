"""Sweep specifications are checked before anything compiles: every experiment declares its
axes' domains and its config keys' domains; `jd.sweep` and `make` raise a `SweepError` naming
the axis or key and the bad value, the CLI prints one line and exits with code 2, and
`jaxdyn list -v` shows the domains and config keys."""

import math

import jax
import numpy as np
import pytest
from click.testing import CliRunner

import jaxdyn as jd
from jaxdyn._sweep import Experiment, make_grid
from jaxdyn._sweep._experiment import Domain
from jaxdyn.cli import main
from jaxdyn.experiments import get_experiment, names

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def no_compile(monkeypatch):
    """Any use of an experiment's jitted program fails the test: the check must come first."""

    def boom(self):
        pytest.fail(f"{self.name}: compiled before the sweep specification was checked")

    monkeypatch.setattr(Experiment, "jitted", property(boom))


# --------------------------------------------------------------------------------------------
# Domain


@pytest.mark.parametrize(
    "spec, text, inside, outside",
    [
        ("> 0", "> 0", [1e-300, 5.0], [0.0, -1.0, math.inf, math.nan]),
        (">= 0", "≥ 0", [0.0, 3.0], [-1e-12]),
        ("≥ 0", "≥ 0", [0.0], [-1.0]),
        ("< 1", "< 1", [0.5, -3.0], [1.0]),
        ("<= 1", "≤ 1", [1.0], [1.5]),
        ("in (0, 1)", "in (0, 1)", [0.5], [0.0, 1.0]),
        ("in [1, 50]", "in [1, 50]", [1.0, 50.0], [0.5, 51.0]),
        ("integer in [1, 50]", "integer in [1, 50]", [1, 50], [0, 51, 2.5]),
        ("integer >= 2", "integer ≥ 2", [2, 10], [1, 2.5]),
        ("real", "real", [-1e300, 0.0], [math.inf, math.nan]),
        ("> 1e-4", "> 0.0001", [1.0], [1e-4]),
    ],
)
def test_domain_parse_and_contains(spec, text, inside, outside):
    d = Domain.parse(spec)
    assert str(d) == text
    assert Domain.parse(str(d)) == d  # the description parses back to the same domain
    assert d.contains(np.array(inside)).all()
    assert not d.contains(np.array(outside)).any()


def test_domain_forms():
    d = Domain.parse(("optional > 0", "task singular values"))
    assert d.optional and d.meaning == "task singular values" and str(d) == "None or > 0"
    assert Domain.parse(d) is d
    c = Domain.parse("one of 'auto', 'stacked', 'vmap'")
    assert c.choices == ("auto", "stacked", "vmap")
    assert Domain.parse("one of True, False").choices == (True, False)
    for bad in ("positive", "> x", "in [1, 2", "one of auto"):
        with pytest.raises(ValueError, match="domain"):
            Domain.parse(bad)


def test_config_values_checked_by_type_and_domain():
    spec = {
        "n_t": "integer >= 2",
        "rtol": "in (0, 1)",
        "sv": "optional > 0",
        "mode": "one of 'auto', 'vmap'",
        "flag": "one of True, False",
    }
    good = {"n_t": 2, "rtol": 1e-8, "sv": [1.0, 0.5], "mode": "vmap", "flag": True}
    Experiment.check_config(spec, good)
    Experiment.check_config(spec, {**good, "sv": None, "n_t": np.int64(5)})
    Experiment.check_config(spec, {**good, "rtol": [1e-8, 1e-9]})  # checked elementwise
    for key, value in [
        ("n_t", 0),
        ("n_t", 10.0),  # an integer key takes integers, not floats
        ("n_t", True),
        ("rtol", "abc"),
        ("rtol", -1.0),
        ("rtol", math.nan),
        ("sv", [1.0, -1.0]),
        ("sv", []),
        ("mode", "fast"),
        ("flag", 1),  # choices compare types too
    ]:
        with pytest.raises(jd.SweepError, match=f"config {key}=") as e:
            Experiment.check_config(spec, {**good, key: value})
        assert e.value.argument == "config"


def test_experiment_validates_its_domains():
    def run(points):
        return {"y": points["x"]}

    with pytest.raises(ValueError, match="'z', which is not an axis"):
        Experiment(name="e", run=run, axes={"x": [1.0]}, domains={"z": "> 0"})
    exp = Experiment(name="e", run=run, axes={"x": [1.0], "k": [1]}, domains={"k": "integer >= 1"})
    assert exp.integer_axes == {"k"}  # an integer domain makes an integer axis
    assert make_grid(exp, {"k": [3.0]})["k"].dtype == np.int64
    with pytest.raises(jd.SweepError, match="'k'.*: 0 is outside its domain"):
        make_grid(exp, {"k": [0, 1]})
    with pytest.raises(jd.SweepError, match="does not fit the program's int32"):
        make_grid(exp, {"k": [2**31]})
    with pytest.raises(jd.SweepError, match="takes numbers"):
        make_grid(exp, {"x": ["a"]})


# --------------------------------------------------------------------------------------------
# Axis domains of the built-in experiments: rejected before any compile

SMALL = {"t_max": 2.0, "n_t": 5}

AXIS_CASES = [
    ("single-neuron", SMALL, "scale", [0.0]),
    ("single-neuron", SMALL, "scale", [0.1, -1.0]),
    ("single-neuron", SMALL, "lr_ratio", [-1.0]),
    ("single-neuron", SMALL, "lr_ratio", [0.0]),
    ("relu-lazy-rich", {}, "width", [100]),  # above max_width = 50: used to run at 50
    ("relu-lazy-rich", {}, "width", [0]),  # used to give NaN with status ok
    ("relu-lazy-rich", {}, "width", [-4]),
    ("relu-lazy-rich", {"max_width": 8}, "width", [10]),
    ("relu-lazy-rich", {}, "scale", [0.0]),
    ("relu-lazy-rich", {}, "seed", [-1]),
    ("lambda-balanced", SMALL, "width", [7]),  # max_width = 6
    ("lambda-balanced", SMALL, "width", [0]),
    ("lambda-balanced", SMALL, "scale", [-0.5]),
    ("lambda-balanced", SMALL, "seed", [-2]),
    ("continual", {"t_task": 2.0, "n_t": 5}, "scale", [0.0]),
    ("continual", {"t_task": 2.0, "n_t": 5}, "seed", [-1]),
    ("reversal", SMALL, "seed", [-1]),
    ("transfer", {"t_max": 2.0, "n_t": 5}, "seed", [-1]),
]


@pytest.mark.parametrize("name, config, axis, values", AXIS_CASES)
def test_axis_outside_domain_is_a_sweep_error(name, config, axis, values, no_compile):
    exp = get_experiment(name, **config)
    bad = next(v for v in values if not Domain.parse(exp.domains[axis]).contains(v))
    with pytest.raises(jd.SweepError, match=rf"axis '{axis}'.*: {bad:g} is outside its domain"):
        jd.sweep(exp, {axis: values}, progress=False)


def test_every_default_grid_is_inside_its_domains():
    for name in names():
        exp = get_experiment(name)
        make_grid(exp, None)  # raises if a default lies outside its domain
        assert exp.config, name  # every built-in declares its config keys' domains


# --------------------------------------------------------------------------------------------
# Config keys of the built-in experiments

CONFIG_CASES = [
    ("single-neuron", "rtol", "abc"),
    ("single-neuron", "rtol", -1.0),
    ("single-neuron", "atol", math.nan),
    ("single-neuron", "n_t", 0),
    ("single-neuron", "n_t", 10.5),
    ("single-neuron", "mode", "fast"),
    ("relu-lazy-rich", "max_width", 7),  # odd: units come in pairs
    ("relu-lazy-rich", "max_width", 0),
    ("relu-lazy-rich", "dtmin", 0.0),
    ("relu-lazy-rich", "n_t", 2),
    ("lambda-balanced", "sv", [2.0, -1.0, 0.5, 0.25]),
    ("lambda-balanced", "match_sign", "yes"),
    ("continual", "n_tasks", 1),
    ("reversal", "t_max", -1.0),
    ("transfer", "t_max", 1e-5),
]


@pytest.mark.parametrize("name, key, value", CONFIG_CASES)
def test_config_outside_domain_is_a_sweep_error(name, key, value):
    with pytest.raises(jd.SweepError, match=f"config {key}=") as e:
        get_experiment(name, **{key: value})
    assert e.value.argument == "config"


def test_config_ints_for_reals_and_unknown_keys():
    exp = get_experiment("single-neuron", t_max=5, n_t=11)  # `--config t_max=5` (an int)
    assert exp.coords["t"][-1] == 5.0
    with pytest.raises(TypeError, match=r"single_neuron\.make\(\): .*'bogus'"):
        get_experiment("single-neuron", bogus=1)


@pytest.mark.parametrize("name", ["single-neuron", "relu-lazy-rich", "lambda-balanced"])
@pytest.mark.parametrize("key, value", [("n_t", 0), ("rtol", -1.0), ("rtol", "abc")])
def test_every_experiment_checks_its_solver_settings(name, key, value):
    with pytest.raises(jd.SweepError, match=f"config {key}="):
        get_experiment(name, **{key: value})


@pytest.mark.parametrize("name", ["continual", "reversal", "transfer"])
def test_every_experiment_checks_n_t_and_rtol(name):
    for key, value in [("n_t", 0), ("rtol", -1.0), ("atol", "abc")]:
        with pytest.raises(jd.SweepError, match=f"config {key}="):
            get_experiment(name, **{key: value})


# --------------------------------------------------------------------------------------------
# CLI: one line, exit 2


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "rtol=abc"], "--config rtol='abc' must be in (0, 1)"),
        (["--config", "n_t=0"], "--config n_t=0 must be an integer ≥ 2"),
        (["--config", "rtol=-1"], "--config rtol=-1 must be in (0, 1)"),
        (["--config", "bogus=1"], "unknown key 'bogus'"),
        (["--scale=0"], "axis 'scale' of experiment 'single-neuron': 0 is outside"),
        (["--lr_ratio=-1,1"], "axis 'lr_ratio' of experiment 'single-neuron': -1 is outside"),
    ],
)
def test_cli_single_neuron_errors(args, message, no_compile):
    r = invoke("sweep", "single-neuron", *args, "--no-progress")
    _assert_one_line(r, message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width=100"], "axis 'width' of experiment 'relu-lazy-rich': 100 is outside"),
        (["--width=0"], "'width' of experiment 'relu-lazy-rich': 0 is outside"),
        (["--width=-2"], "-2 is outside its domain (integer in [1, 50])"),
        (["--seed=-1"], "axis 'seed'"),
        (["--config", "max_width=7"], "--config max_width=7 must be even"),
    ],
)
def test_cli_relu_lazy_rich_errors(args, message, no_compile):
    r = invoke("sweep", "relu-lazy-rich", *args, "--no-progress")
    _assert_one_line(r, message)


def test_cli_lambda_balanced_errors(no_compile):
    r = invoke("sweep", "lambda-balanced", "--width=7", "--no-progress")
    _assert_one_line(r, "axis 'width' of experiment 'lambda-balanced': 7 is outside")
    r = invoke("sweep", "continual", "--config", "sv=[1.0,2.0]", "--no-progress")
    _assert_one_line(r, "--config: `sv` must have d = 3 values")


def _assert_one_line(r, message):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxdyn: error:"), r.output
    assert message in lines[0], r.output
    assert "Traceback" not in r.output


def test_list_verbose_shows_domains_and_config_keys():
    r = invoke("list", "-v")
    assert r.exit_code == 0, r.output
    for name in names():
        assert f"{name}:" in r.output
    out = r.output
    assert "--scale: 3 value(s), 0.01 … 1; domain: > 0" in out
    assert "--width: 1 value(s), 50; domain: integer in [1, 50]" in out
    assert "--seed: 1 value(s), 0; domain: integer ≥ 0" in out
    assert "config keys (--config KEY=VALUE):" in out
    assert "n_t: int = 121; domain: integer ≥ 2; linearly spaced save times" in out
    assert "rtol: float = 1e-10; domain: in (0, 1)" in out
    assert "max_width: int = 50; domain: integer ≥ 2" in out
    assert "mode: str = 'auto'; domain: one of 'auto', 'stacked', 'vmap'" in out
    assert "sv = None; domain: None or > 0; task singular values" in out
    # Non-verbose listing keeps its short form; one experiment can be asked for by name.
    short = invoke("list").output
    assert "domain:" not in short and "--delta" in short
    one = invoke("list", "-v", "transfer")
    assert one.exit_code == 0 and "transfer:" in one.output and "single-neuron" not in one.output
    assert "t_max: float = 50.0; domain: > 0.0001" in one.output
    _assert_one_line(invoke("list", "nope"), "unknown experiment 'nope'")
