"""Header reads and edits on raw fields agree with mitmproxy's own Headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from rumproxy.headerview import HeaderView, edited

_NAMES = st.sampled_from([b"Content-Type", b"content-type", b"ETag", b"Server-Timing", b"X-A", b"x-a", b"Set-Cookie"])
_VALUES = st.sampled_from([b"text/html", b"", b"a, b", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe"])
_FIELDS = st.lists(st.tuples(_NAMES, _VALUES), max_size=6).map(tuple)
_LOOKUPS = [b"content-type", b"etag", b"server-timing", b"x-a", b"set-cookie", b"missing"]


@given(_FIELDS)
def test_reads_agree_with_headers(fields):
    headers = http.Headers(fields)
    view = HeaderView(headers)
    for name in _LOOKUPS:
        assert view.get(name) == headers.get(name)
        assert view.text(name) == headers.get(name, "")
        assert view.get_all(name) == headers.get_all(name)
        assert (name in view) == (name in headers)


@given(
    _FIELDS,
    st.dictionaries(
        st.sampled_from(_LOOKUPS),
        st.one_of(st.none(), st.sampled_from(["v", "é"]), st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2)),
        max_size=3,
    ),
)
def test_edits_agree_with_headers(fields, edits):
    expected = http.Headers(fields)
    for name, edit in edits.items():
        if edit is None:
            expected.pop(name, None)
        elif isinstance(edit, str):
            expected[name] = edit
        else:
            expected.set_all(name, edit)
    result = http.Headers(edited(fields, edits))
    for name in _LOOKUPS:
        assert result.get_all(name) == expected.get_all(name)
    untouched = [field for field in fields if field[0].lower() not in edits]
    assert [field for field in result.fields if field[0].lower() not in edits] == untouched


def test_a_set_header_keeps_the_place_and_case_of_its_first_occurrence():
    fields = ((b"A", b"1"), (b"ETag", b'"x"'), (b"B", b"2"), (b"etag", b'"y"'))
    assert edited(fields, {b"etag": 'W/"x"', b"c": "3"}) == ((b"A", b"1"), (b"ETag", b'W/"x"'), (b"B", b"2"), (b"c", b"3"))
