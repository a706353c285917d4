import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy.tracecontext import (
    MAX_MEMBERS,
    MAX_TRACESTATE_LENGTH,
    TraceParent,
    decide_sampled,
    elastic_member_value,
    format_tracestate,
    is_valid_key,
    is_valid_value,
    new_traceparent,
    parse_traceparent,
    parse_tracestate,
    with_member,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
VALID = f"00-{TRACE}-{PARENT}-01"


# --- traceparent -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, flags",
    [
        (VALID, 0x01), (f"00-{TRACE}-{PARENT}-00", 0x00),
        # unknown flags are kept, not rejected
        (f"00-{TRACE}-{PARENT}-09", 0x09), (f"00-{TRACE}-{PARENT}-ff", 0xFF),
        (f" {VALID}", 0x01), (f"{VALID}\t", 0x01), (f" \t{VALID} \t", 0x01),
        (f"cc-{TRACE}-{PARENT}-01", 0x01), (f"cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like", 0x01),
        (f"01-{TRACE}-{PARENT}-00-", 0x00), (f"fe-{TRACE}-{PARENT}-01-x", 0x01),
    ],
)
def test_valid_traceparent(value, flags):
    assert parse_traceparent([value]) == TraceParent(TRACE, PARENT, flags)


@pytest.mark.parametrize(
    "value",
    [
        "", " ", "garbage",
        # uppercase hex anywhere
        f"00-{TRACE.upper()}-{PARENT}-01", f"00-{TRACE}-{PARENT.upper()}-01",
        f"00-{TRACE}-{PARENT}-0A", f"0A-{TRACE}-{PARENT}-01", f"CC-{TRACE}-{PARENT}-01",
        # wrong lengths
        f"0-{TRACE}-{PARENT}-01", f"000-{TRACE}-{PARENT}-01",
        f"00-{TRACE[:-1]}-{PARENT}-01", f"00-{TRACE}0-{PARENT}-01",
        f"00-{TRACE}-{PARENT[:-1]}-01", f"00-{TRACE}-{PARENT}0-01",
        f"00-{TRACE}-{PARENT}-1", f"00-{TRACE}-{PARENT}-001", f"00-{TRACE}-{PARENT}", f"00-{TRACE}",
        # non-hex characters and wrong separators
        f"00-{TRACE[:-1]}g-{PARENT}-01", f"00-{TRACE}-{PARENT[:-1]}z-01", f"00-{TRACE}-{PARENT}-0x",
        f"00_{TRACE}_{PARENT}_01", f"00-{TRACE}-{PARENT}.01", f"-0-{TRACE}-{PARENT}-01",
        # forbidden version
        f"ff-{TRACE}-{PARENT}-01",
        # all-zero ids
        f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", f"cc-{'0' * 32}-{PARENT}-01-future",
        # version 00 must end after the flags
        f"00-{TRACE}-{PARENT}-01-", f"00-{TRACE}-{PARENT}-01-what-the-future-will-be-like",
        f"00-{TRACE}-{PARENT}-01x",
        # a higher version shorter than 55 characters
        f"cc-{TRACE}-{PARENT}-0", f"cc-{TRACE}-{PARENT[:-1]}-01",
        # a higher version whose flags are followed by something other than a dash
        f"cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like", f"cc-{TRACE}-{PARENT}-01what",
        f"cc-{TRACE}-{PARENT}-012",
        # OWS only at the edges, and only spaces and tabs
        f"00 -{TRACE}-{PARENT}-01", f"\n{VALID}",
    ],
)
def test_invalid_traceparent(value):
    assert parse_traceparent([value]) is None


def test_absent_or_duplicated_traceparent_is_invalid():
    assert parse_traceparent([]) is None
    assert parse_traceparent([VALID, VALID]) is None
    assert parse_traceparent([VALID, f"00-{TRACE}-{PARENT}-00"]) is None
    # A proxy that folded duplicates into one value with a comma still yields an invalid header.
    assert parse_traceparent([f"{VALID},{VALID}"]) is None


def test_header_is_always_version_00():
    parsed = parse_traceparent([f"cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"])
    assert parsed is not None
    assert parsed.header() == VALID
    assert parsed.sampled
    assert not TraceParent(TRACE, PARENT, 0x02).sampled
    assert TraceParent(TRACE, PARENT, 0x03).sampled
    assert TraceParent(TRACE, PARENT, 0x03).header() == f"00-{TRACE}-{PARENT}-03"


def test_new_traceparent():
    sampled = new_traceparent(True)
    assert sampled.flags == 0x01 and sampled.sampled
    unsampled = new_traceparent(False)
    assert unsampled.flags == 0x00 and not unsampled.sampled
    ids = {new_traceparent(True).trace_id for _ in range(100)}
    assert len(ids) == 100
    for tp in (sampled, unsampled):
        assert parse_traceparent([tp.header()]) == tp


def test_new_traceparent_never_returns_zero_ids(monkeypatch):
    reads = iter([bytes.fromhex("0" * 32 + PARENT), bytes.fromhex(TRACE + "0" * 16), bytes.fromhex(TRACE + PARENT)])
    monkeypatch.setattr("rumproxy.tracecontext.os.urandom", lambda n: next(reads))
    assert new_traceparent(True) == TraceParent(TRACE, PARENT, 1)


hex_ids = st.integers(min_value=1, max_value=2**128 - 1).map(lambda n: f"{n:032x}")
span_ids = st.integers(min_value=1, max_value=2**64 - 1).map(lambda n: f"{n:016x}")
traceparents = st.builds(TraceParent, hex_ids, span_ids, st.integers(0, 255))


@given(traceparents)
def test_traceparent_round_trip(tp):
    assert parse_traceparent([tp.header()]) == tp


@given(
    traceparents,
    st.integers(1, 254).map(lambda v: f"{v:02x}"),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
def test_future_versions_parse_as_00(tp, version, tail):
    value = f"{version}{tp.header()[2:]}" + (f"-{tail}" if tail else "")
    assert parse_traceparent([value]) == tp


@given(st.text(max_size=80))
def test_parse_traceparent_never_raises(text):
    parsed = parse_traceparent([text])
    if parsed is not None:
        assert parse_traceparent([parsed.header()]) == parsed


# --- sampling ------------------------------------------------------------------------------


def test_sampling_extremes_are_deterministic():
    assert all(decide_sampled(1.0) for _ in range(1000))
    assert not any(decide_sampled(0.0) for _ in range(1000))


def test_sampling_rate_is_roughly_honoured():
    random.seed(1234)
    hits = sum(decide_sampled(0.25) for _ in range(4000))
    assert 800 < hits < 1200


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_sampling_rejects_nonsense(rate):
    with pytest.raises(ValueError):
        decide_sampled(rate)
    with pytest.raises(ValueError):
        elastic_member_value(rate)


@pytest.mark.parametrize(
    "rate, expected",
    [
        (1.0, "s:1.0"), (1, "s:1.0"), (0.5, "s:0.5"), (0.1, "s:0.1"), (0.12345, "s:0.1235"),
        (0.33333, "s:0.3333"), (0.0001, "s:0.0001"), (0.0, "s:0"),
        (0.00004, "s:0.0001"),  # a non-zero rate never rounds to zero
    ],
)
def test_elastic_member_value(rate, expected):
    assert elastic_member_value(rate) == expected


@given(st.floats(min_value=0.0, max_value=1.0))
def test_elastic_member_value_matches_the_python_agent(rate):
    # The agent validates the rate with PrecisionValidator(4, 0.0001) and writes str(rate),
    # or "0" when it does not sample.
    from elasticapm.conf import PrecisionValidator

    rounded = PrecisionValidator(4, 0.0001)(rate, "TRANSACTION_SAMPLE_RATE")
    expected = "0" if rounded == 0 else str(rounded)
    assert elastic_member_value(rate) == f"s:{expected}"
    assert is_valid_value(elastic_member_value(rate))


# --- tracestate grammar --------------------------------------------------------------------


VALID_KEYS = ["a", "es", "congo", "rojo", "foo_bar", "a-b*c/d", "a0", "a" * 256, "tenant@system",
              "0tenant@sys", "t@s", "t@" + "s" * 14, "t" * 241 + "@s"]
INVALID_KEYS = ["", "A", "Es", "0abc", "_a", "a" * 257, "a b", "a=b", "a,b", "a.b", "@system", "tenant@",
                "tenant@0sys", "t@" + "s" * 15, "t" * 242 + "@s", "a@b@c", "tenant@SYSTEM", "\u00e9"]
VALID_VALUES = ["x", "t61rcWkgMzE", "s:0.5", " leading", "in ner", "~!@#$%^&*()", "v" * 256]
INVALID_VALUES = ["", " ", "trailing ", "a,b", "a=b", "v" * 257, "tab\there", "caf\u00e9", "a\x7f"]


@pytest.mark.parametrize("key, valid", [(k, True) for k in VALID_KEYS] + [(k, False) for k in INVALID_KEYS])
def test_key_grammar(key, valid):
    assert is_valid_key(key) is valid


@pytest.mark.parametrize(
    "value, valid", [(v, True) for v in VALID_VALUES] + [(v, False) for v in INVALID_VALUES]
)
def test_value_grammar(value, valid):
    assert is_valid_value(value) is valid


# --- tracestate parsing and mutation --------------------------------------------------------


def test_parse_tracestate_spec_examples():
    expected = [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
    assert parse_tracestate(["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]) == expected
    # Multiple header values combine as if joined by commas.
    assert parse_tracestate(["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"]) == expected
    # OWS around commas and empty members are allowed.
    assert parse_tracestate([" a=1 ,\t, ,b=2,", ",c=3"]) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert parse_tracestate(["tenant@system=x"]) == [("tenant@system", "x")]
    assert parse_tracestate([]) == []
    assert parse_tracestate(["", " "]) == []


def test_parse_tracestate_drops_invalid_members_and_duplicates():
    value = "Bad=1,ok=2,noequals,empty=,x=has=equals,trail=a ,es=s:0.5,ok=again"
    assert parse_tracestate([value]) == [("ok", "2"), ("trail", "a"), ("es", "s:0.5")]


def test_parse_tracestate_keeps_at_most_32_members():
    members = [f"k{i}={i}" for i in range(40)]
    parsed = parse_tracestate([",".join(members)])
    assert len(parsed) == MAX_MEMBERS
    assert parsed[0] == ("k0", "0") and parsed[-1] == ("k31", "31")


def test_with_member_moves_own_member_left():
    members = [("rojo", "00f067aa0ba902b7"), ("es", "s:0.1"), ("congo", "t61rcWkgMzE")]
    assert with_member(members, "es", "s:1.0") == [
        ("es", "s:1.0"),
        ("rojo", "00f067aa0ba902b7"),
        ("congo", "t61rcWkgMzE"),
    ]
    assert with_member([], "es", "s:1.0") == [("es", "s:1.0")]
    assert members[1] == ("es", "s:0.1"), "input must not be mutated"


def test_with_member_caps_at_32_dropping_from_the_right():
    members = [(f"k{i}", str(i)) for i in range(32)]
    result = with_member(members, "es", "s:1.0")
    assert len(result) == 32
    assert result[0] == ("es", "s:1.0")
    assert result[1:] == members[:31]
    # Replacing an existing member does not drop anybody.
    members[10] = ("es", "s:0.5")
    assert with_member(members, "es", "s:1.0") == [("es", "s:1.0")] + members[:10] + members[11:]


def test_with_member_drops_large_members_first_to_stay_within_512():
    big = ("big", "b" * 200)
    members = [("a", "x" * 100), big, ("c", "y" * 100), ("d", "z" * 100)]
    result = with_member(members, "es", "s:1.0")
    assert big not in result
    assert result == [("es", "s:1.0"), ("a", "x" * 100), ("c", "y" * 100), ("d", "z" * 100)]
    assert len(format_tracestate(result)) <= MAX_TRACESTATE_LENGTH


def test_with_member_then_drops_from_the_right():
    members = [(f"k{i}", "v" * 100) for i in range(6)]
    result = with_member(members, "es", "s:1.0")
    assert result == [("es", "s:1.0")] + members[:4]
    assert len(format_tracestate(result)) <= MAX_TRACESTATE_LENGTH


def test_with_member_keeps_small_members_when_dropping_large_ones_suffices():
    members = [("a", "1"), ("big1", "b" * 250), ("big2", "c" * 250), ("z", "2")]
    result = with_member(members, "es", "s:1.0")
    assert result == [("es", "s:1.0"), ("a", "1"), ("big1", "b" * 250), ("z", "2")]


@pytest.mark.parametrize("key, value", [("Es", "s:1"), ("es", "a,b"), ("es", ""), ("es", "x=y")])
def test_with_member_rejects_invalid_own_member(key, value):
    with pytest.raises(ValueError):
        with_member([], key, value)


def test_tracestate_round_trip_of_elastic_member():
    state = format_tracestate(with_member(parse_tracestate(["rojo=1"]), "es", elastic_member_value(0.5)))
    assert state == "es=s:0.5,rojo=1"


# --- tracestate properties --------------------------------------------------------------------

_key_tail = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-*/", max_size=20)
simple_keys = st.builds(lambda head, tail: head + tail, st.sampled_from("abcxyz"), _key_tail)
tenant_keys = st.builds(
    lambda tenant, system: f"{tenant}@{system}",
    st.text(alphabet="abc0123456789", min_size=1, max_size=8),
    st.builds(lambda head, tail: head + tail[:13], st.sampled_from("abc"), _key_tail),
)
keys = st.one_of(simple_keys, tenant_keys)
values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=",="),
    min_size=1,
    max_size=40,
).map(lambda v: v.rstrip(" ") or "v")
member_lists = st.lists(st.tuples(keys, values), max_size=MAX_MEMBERS, unique_by=lambda m: m[0])


@given(keys, values)
def test_generated_keys_and_values_are_valid(key, value):
    assert is_valid_key(key) and is_valid_value(value)


@given(member_lists)
def test_tracestate_round_trip(members):
    # Leading spaces of a value are indistinguishable from OWS after a comma.
    members = [(k, v.lstrip(" ") or "v") for k, v in members]
    assert parse_tracestate([format_tracestate(members)]) == members


@given(member_lists, st.integers(0, MAX_MEMBERS))
def test_tracestate_split_across_headers(members, cut):
    members = [(k, v.lstrip(" ") or "v") for k, v in members]
    head, tail = format_tracestate(members[:cut]), format_tracestate(members[cut:])
    assert parse_tracestate([head, tail]) == members


@given(st.text(max_size=200))
@settings(max_examples=200)
def test_parse_tracestate_is_total_and_idempotent(text):
    parsed = parse_tracestate([text])
    assert parse_tracestate([format_tracestate(parsed)]) == parsed


@given(st.lists(st.tuples(keys, values), max_size=60), keys, values)
def test_with_member_invariants(members, key, value):
    result = with_member(members, key, value)
    assert result[0] == (key, value)
    assert len(result) <= MAX_MEMBERS
    assert len(format_tracestate(result)) <= max(MAX_TRACESTATE_LENGTH, len(key) + 1 + len(value))
    others = [m for m in members if m[0] != key]
    rest = iter(others)
    assert all(any(m == o for o in rest) for m in result[1:]), "order of the others is kept"
