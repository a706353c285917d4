"""Whether a client takes gzip (the hosted agent bundle), and what a page request asks the upstream
for when it does (rum_prefer_gzip)."""

from __future__ import annotations

import pytest

from rumproxy.acceptencoding import accepts_gzip, preferring_gzip


@pytest.mark.parametrize(
    ("client", "upstream"),
    [
        ("gzip, deflate, br, zstd", "gzip, deflate"),  # Chromium
        ("gzip, deflate, br", "gzip, deflate"),  # Firefox, Safari
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip;q=0.8, *;q=0.1, br;q=0, zstd;q=0"),
        ("zstd, GZIP", "GZIP"),
        ("br, x-gzip", "x-gzip"),
        ("br, gzip;Q=0.5", "gzip;Q=0.5"),
        ("*", "*, br;q=0, zstd;q=0"),  # "*" accepts gzip and would still let the upstream pick br
        ("br, identity, *;q=0.3", "identity, *;q=0.3, br;q=0, zstd;q=0"),
    ],
)
def test_br_and_zstd_are_dropped_when_gzip_is_accepted(client, upstream):
    assert preferring_gzip(client) == upstream


@pytest.mark.parametrize(
    "client",
    [
        "gzip, deflate",  # nothing to drop
        "identity",
        "",
        "br",  # no gzip: the client gets what it asked for
        "br, zstd",
        "br, gzip;q=0",
        "br, *;q=0",
        "br, gzip;q=0, *",  # gzip refused by name, "*" does not bring it back
        "gzip;q=2, br",  # not a qvalue: the header goes upstream as it is
        "gzip;q=x, br",
        "gzip;q=nan, br",
        "gzip, br;q=0",  # br already refused
    ],
)
def test_otherwise_the_client_header_goes_upstream_as_it_is(client):
    assert preferring_gzip(client) is None


@pytest.mark.parametrize(
    ("client", "accepted"),
    [
        ("gzip", True),
        ("GZip;Q=0.1", True),
        ("x-gzip", True),
        ("br, *", True),
        ("*;q=0.5", True),
        ("", False),
        ("br, zstd", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("*, gzip;q=0", False),  # named beats "*", wherever it stands
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("gzip;q=high", False),
    ],
)
def test_accepts_gzip(client, accepted):
    assert accepts_gzip(client) is accepted
