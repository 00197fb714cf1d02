"""Property tests (hypothesis) of the sweep specification: the CLI's range parsing
(`parse_axis_values`) and grid validation (`make_grid`, `Domain`, `flat_points`,
`shard_range`)."""

import itertools
import math

import click
import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

import jaxdyn as jd
from jaxdyn import SweepError
from jaxdyn._sweep._experiment import Domain
from jaxdyn._sweep._plan import flat_points, make_grid, shard_range
from jaxdyn.cli import UserError, parse_axis_values

FAST = settings(max_examples=80, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False)
nums = st.integers(min_value=1, max_value=200)


# --------------------------------------------------------------------------------------------
# Range parsing


@FAST
@given(start=finite, stop=finite, num=nums, pad=st.sampled_from(["", " ", "  "]))
def test_linspace_form(start, stop, num, pad):
    got = parse_axis_values("a", f"{pad}{start!r}:{stop!r}:{num}{pad}")
    np.testing.assert_array_equal(got, np.linspace(start, stop, num))
    assert got.dtype == np.float64 and got.shape == (num,)


@FAST
@given(start=positive, stop=positive, num=nums)
def test_geomspace_form(start, stop, num):
    got = parse_axis_values("a", f"log:{start!r}:{stop!r}:{num}")
    np.testing.assert_array_equal(got, np.geomspace(start, stop, num))
    assert got.shape == (num,)


@FAST
@given(values=st.lists(finite, min_size=1, max_size=20), sep=st.sampled_from([",", ", ", " ,"]))
def test_list_form(values, sep):
    got = parse_axis_values("a", sep.join(repr(v) for v in values))
    np.testing.assert_array_equal(got, np.array(values, np.float64))


@FAST
@given(
    start=st.floats(max_value=0.0, allow_nan=False),
    stop=finite,
    num=nums,
    swap=st.booleans(),
)
def test_log_ranges_need_positive_ends(start, stop, num, swap):
    a, b = (stop, start) if swap else (start, stop)
    with pytest.raises(UserError, match="positive ends"):
        parse_axis_values("a", f"log:{a!r}:{b!r}:{num}")


@FAST
@given(num=st.integers(max_value=0))
def test_num_must_be_positive(num):
    with pytest.raises(UserError, match="num must be"):
        parse_axis_values("a", f"0:1:{num}")


#: Text made of the characters range specifications use, and some others.
range_text = st.text(alphabet=st.sampled_from(list("0123456789.,:-+eElognaif x_")), max_size=20)


def _parse_or_user_error(text: str):
    """`parse_axis_values` returns a 1-D float array or raises the CLI's user error (exit
    code 2), nothing else."""
    try:
        got = parse_axis_values("delta", text)
    except click.ClickException as e:  # UserError
        assert isinstance(e, UserError) and e.exit_code == 2
        assert "--delta" in e.format_message()
        return None
    except SystemExit as e:  # pragma: no cover - the same error, as an exit
        assert e.code == 2
        return None
    assert isinstance(got, np.ndarray) and got.ndim == 1 and got.size >= 1
    assert got.dtype == np.float64
    return got


@settings(max_examples=300, deadline=None)
@given(text=range_text | st.text(max_size=12))
@example("")
@example(":")
@example("::")
@example("1:2")
@example("log:1:2")
@example("1:2:3:4")
@example("log:1:2:3:4")
@example("1:2:3.5")
@example("1:2:1e3")
@example(",")
@example(" , ,")
@example("a,b")
@example("log:0:1:3")
@example("0x10")
def test_malformed_text_is_a_user_error(text):
    _parse_or_user_error(text)


def test_huge_num_is_a_user_error():
    """start:stop:10**11 would need 800 GB: a user error naming the limit, not a MemoryError."""
    assert _parse_or_user_error("0:1:100000000000") is None
    assert _parse_or_user_error("log:1:2:100000001") is None


# --------------------------------------------------------------------------------------------
# Domains and grid validation


@st.composite
def domains(draw):
    """`(spec string, lower, upper, lower_open, upper_open, integer)`."""
    integer = draw(st.booleans())
    bound = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    kind = draw(st.sampled_from(["interval", "lower", "upper", "real"]))
    lo = hi = None
    lo_open = hi_open = False
    if kind == "interval":
        a, b = sorted((draw(bound), draw(bound)))
        lo, hi, lo_open, hi_open = a, b, draw(st.booleans()), draw(st.booleans())
        text = f"in {'(' if lo_open else '['}{a!r}, {b!r}{')' if hi_open else ']'}"
    elif kind == "lower":
        lo, lo_open = draw(bound), draw(st.booleans())
        text = f"{draw(st.sampled_from(['>'] if lo_open else ['>=', '≥']))} {lo!r}"
    elif kind == "upper":
        hi, hi_open = draw(bound), draw(st.booleans())
        text = f"{draw(st.sampled_from(['<'] if hi_open else ['<=', '≤']))} {hi!r}"
    else:
        text = "real"
    if integer:
        text = f"integer {text}" if kind != "real" else "integer"
    return text, lo, hi, lo_open, hi_open, integer


def _inside(v, lo, hi, lo_open, hi_open, integer) -> bool:
    if not math.isfinite(v):
        return False
    if integer and v != math.floor(v):
        return False
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return not (hi is not None and (v >= hi if hi_open else v > hi))


#: Values near the domains' ends, integers, and a few far away.
axis_values = st.lists(
    st.one_of(
        st.floats(min_value=-2e6, max_value=2e6, allow_nan=False),
        st.integers(min_value=-10, max_value=10).map(float),
        st.sampled_from([0.0, -0.0, 1e-300, 5e-324]),
    ),
    min_size=1,
    max_size=8,
)


@FAST
@given(domain=domains(), values=st.lists(finite, min_size=1, max_size=10))
def test_domain_parse_and_contains(domain, values):
    text, lo, hi, lo_open, hi_open, integer = domain
    values = np.asarray(values)
    d = Domain.parse(text)
    assert (d.lower, d.upper, d.integer) == (lo, hi, integer)
    assert (d.lower_open, d.upper_open) == (lo is not None and lo_open, hi is not None and hi_open)
    expect = [_inside(v, lo, hi, lo_open, hi_open, integer) for v in values]
    assert d.contains(values).tolist() == expect
    assert not d.contains(np.array([np.nan, np.inf, -np.inf])).any()


def _experiment(domain_text: str) -> jd.Experiment:
    return jd.Experiment(
        name="probe",
        run=lambda points: {"y": points["u"]},
        axes={"u": np.array([0.0]), "w": np.array([1.0, 2.0])},
        domains={"u": domain_text},
    )


@FAST
@given(domain=domains(), values=axis_values)
def test_make_grid_accepts_exactly_the_values_inside(domain, values):
    text, *ends = domain
    exp = _experiment(text)
    inside = [_inside(v, *ends) for v in values]
    if all(inside):
        grid = make_grid(exp, {"u": values})
        np.testing.assert_array_equal(grid["u"], np.array(values, np.float64))
        np.testing.assert_array_equal(grid["w"], [1.0, 2.0])  # the default
        assert list(grid) == ["u", "w"]
    else:
        with pytest.raises(SweepError, match="axis 'u'") as e:
            make_grid(exp, {"u": values})
        assert "domain" in str(e.value) or "takes integers" in str(e.value)


@FAST
@given(
    values=st.lists(finite, min_size=0, max_size=4),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    at=st.integers(min_value=0, max_value=4),
)
def test_make_grid_rejects_non_finite_values_naming_the_axis(values, bad, at):
    values = [*values[:at], bad, *values[at:]]
    with pytest.raises(SweepError, match="axis 'w'"):
        make_grid(_experiment("real"), {"w": values})


@FAST
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
def test_make_grid_rejects_unknown_axes(name):
    assume(name not in ("u", "w"))
    with pytest.raises(SweepError, match=f"unknown axis {name!r}"):
        make_grid(_experiment("real"), {name: [1.0]})


@FAST
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_flat_points_are_in_c_order(sizes, seed):
    rng = np.random.default_rng(seed)
    grid = {f"a{i}": rng.normal(size=n) for i, n in enumerate(sizes)}
    flat = flat_points(grid)
    expect = list(itertools.product(*grid.values()))  # last axis fastest
    assert list(flat) == list(grid)
    got = list(zip(*flat.values(), strict=True))
    assert got == expect


@FAST
@given(n=st.integers(min_value=0, max_value=10_000), N=st.integers(min_value=1, max_value=64))
def test_shards_cover_every_point_once(n, N):
    ranges = [shard_range(n, (i, N)) for i in range(N)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (lo, hi), (lo2, _) in itertools.pairwise(ranges):
        assert lo <= hi == lo2
    covered = np.zeros(n, int)
    for lo, hi in ranges:
        covered[lo:hi] += 1
    assert (covered == 1).all()
    assert shard_range(n, None) == (0, n)


@FAST
@given(n=st.integers(min_value=0, max_value=100), i=st.integers(-5, 70), N=st.integers(-3, 64))
def test_malformed_shards_are_refused(n, i, N):
    assume(not (N >= 1 and 0 <= i < N))
    with pytest.raises(SweepError, match="shard") as e:
        shard_range(n, (i, N))
    assert e.value.argument == "shard"
