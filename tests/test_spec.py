"""The spec language: parse/str round trips, validation errors that list what is valid, spec lists."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolstride import SpecError, ops
from poolstride.spec import OpSpec, Param, make, parse, parse_many

NAMES = ops.names()

# A few hand-written specs per operator (every registered operator gets at least its bare name).
EXAMPLES = {
    "max": ["max(k=3)"],
    "avg": ["avg(k=3)"],
    "lp": ["lp(p=3)", "lp(k=3,p=1.5)"],
    "conv": ["conv(k=1)", "conv(k=5,bias=false)", "conv(3)"],
    "convpool": ["convpool(k=1,pool=avg)", "convpool(pk=3)"],
    "s2d": ["s2d(bias=false)"],
    "blur": ["blur(base=avg,size=3)", "blur(base=conv,k=3)", "blur(size=1)"],
    "mixed": ["mixed(alpha=0.25)", "mixed(learnable=true,k=3)"],
    "softpool": ["softpool(k=3)"],
    "stochastic": ["stochastic(k=3)"],
    "diffstride": ["diffstride(init=2.5)", "diffstride(r=2,shared=false)"],
}


def _all_examples() -> list[str]:
    out = []
    for name in NAMES:
        out.append(name)
        out.extend(EXAMPLES.get(name, []))
    return out


@pytest.mark.parametrize("text", _all_examples())
def test_round_trip_examples(text):
    s = parse(text)
    assert isinstance(s, OpSpec)
    assert parse(str(s)) == s
    assert str(parse(str(s))) == str(s)  # canonical form is a fixed point
    # every argument is filled (defaults included) in schema order
    assert [k for k, _ in s.args] == [p.name for p in ops.get_info(s.name).params]


def test_canonical_form_hides_defaults_and_normalises():
    assert str(parse("max")) == "max"
    assert str(parse("max(k=2)")) == "max"
    assert str(parse(" Conv( K = 5 ) ")) == "conv(k=5)"
    assert parse("conv(5)") == make("conv", k=5)  # a bare value fills the first parameter
    assert str(parse("blur(size=3,base=avg)")) == "blur(base=avg,size=3)"  # schema order
    assert parse("lp(p=2.0)") == parse("lp")
    assert str(parse("diffstride(R=2)")) == "diffstride(r=2)"  # keys are case-insensitive
    assert parse(parse("max")) == parse("max")  # an OpSpec passes through


def test_every_operator_has_a_complete_registration():
    for info in ops.infos():
        assert info.summary and info.source and info.shape_rule and info.params_formula
        for p in info.params:
            assert p.name == p.name.lower(), "keys are lower-cased by the parser"
            p.coerce(info.name, p.default)  # the default is itself valid


def _value(p: Param) -> st.SearchStrategy:
    if p.choices is not None:
        return st.sampled_from(p.choices)
    if p.type is bool:
        return st.booleans()
    if p.type is int:
        lo = -1000 if p.min is None else int(p.min)
        hi = 1000 if p.max is None else int(p.max)
        return st.integers(lo, hi)
    if p.type is float:
        lo = -1e6 if p.min is None else p.min
        hi = 1e6 if p.max is None else p.max
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.just(p.default)


@st.composite
def _spec_kwargs(draw):
    name = draw(st.sampled_from(NAMES))
    kw = {}
    for p in ops.get_info(name).params:
        if draw(st.booleans()):
            kw[p.name] = draw(_value(p))
    return name, kw


@settings(max_examples=300, deadline=None)
@given(_spec_kwargs())
def test_round_trip_property(name_kw):
    name, kw = name_kw
    s = make(name, **kw)
    assert parse(str(s)) == s
    assert s.replace() == s


def test_unknown_operator_lists_valid_names():
    with pytest.raises(SpecError) as e:
        parse("maxx")
    msg = str(e.value)
    assert "maxx" in msg
    for name in NAMES:
        assert name in msg
    with pytest.raises(SpecError, match="valid operators"):
        make("nope")
    with pytest.raises(SpecError, match="valid operators"):
        parse("")


def test_unknown_argument_lists_valid_arguments():
    with pytest.raises(SpecError) as e:
        parse("conv(q=3)")
    msg = str(e.value)
    assert "'q'" in msg and "k" in msg and "bias" in msg
    with pytest.raises(SpecError, match="valid arguments: none"):
        parse("spectral(k=2)")
    with pytest.raises(SpecError, match="init, r, shared"):
        parse("diffstride(stride=2)")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("conv(k=99)", ">= 1 and <= 15"),
        ("conv(k=0)", ">= 1 and <= 15"),
        ("lp(p=0.5)", ">= 1 and <= 64"),
        ("mixed(alpha=1.5)", ">= 0 and <= 1"),
        ("diffstride(init=0.5)", ">= 1 and <= 8"),
        ("diffstride(init=9)", ">= 1 and <= 8"),
    ],
)
def test_out_of_range_states_the_range(text, expected):
    with pytest.raises(SpecError, match="out of range") as e:
        parse(text)
    assert expected in str(e.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("conv(k=2.5)", "an integer"),
        ("conv(k=abc)", "an integer"),
        ("conv(bias=maybe)", "true or false"),
        ("blur(base=min)", "one of max, avg, conv"),
        ("lp(p=nan)", "a number"),
        ("lp(p=inf)", "a number"),
    ],
)
def test_bad_value_states_what_is_valid(text, expected):
    with pytest.raises(SpecError) as e:
        parse(text)
    assert expected in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        "conv(k=",
        "conv(k=3",
        "(k=3)",
        "conv(,)",
        "conv(k=3,k=4)",
        "conv(k=3,)",
        "conv(=3)",
        "conv(k=)",
        "conv(k=(3))",
        "conv(k=3) x",
        "conv(3,5)",
        "3conv",
        "   ",
    ],
)
def test_malformed_specs_raise_spec_error(text):
    with pytest.raises(SpecError):
        parse(text)


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse("conv(k=")


def test_parse_many_splits_at_top_level_commas():
    got = parse_many("max,conv(k=3),blur(base=max,size=3)")
    assert got == [parse("max"), parse("conv(k=3)"), make("blur", base="max", size=3)]
    assert parse_many(["max", "avg"]) == [parse("max"), parse("avg")]
    assert parse_many(" max , spectral ") == [parse("max"), parse("spectral")]
    for bad in ("max,,avg", "max,", "conv(k=3", "conv(k=3))", "max)"):
        with pytest.raises(SpecError):
            parse_many(bad)


def test_replace_revalidates():
    s = parse("conv(k=3)")
    assert s.replace(k=5) == parse("conv(k=5)")
    assert s["k"] == 3 and s.get("missing", 7) == 7 and s.kwargs["bias"] is True
    with pytest.raises(SpecError):
        s.replace(k=100)
