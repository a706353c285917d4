"""cspsource: CSP3 source-list matching of a URL, 'self' being the page's origin."""

import pytest

from rumproxy.cspsource import parse_url, url_allowed

PAGE = "https://shop.example.com"


@pytest.mark.parametrize(
    ("source_list", "url", "allowed"),
    [
        ("*", "https://cdn.other.org/a.js", True),
        ("'none'", "https://shop.example.com/a.js", False),
        ("", "https://shop.example.com/a.js", False),
        ("'self'", "https://shop.example.com/a.js", True),
        ("'self'", "https://shop.example.com:8443/a.js", False),
        ("'self'", "http://shop.example.com/a.js", False),
        ("https:", "https://anything.example.net/a.js", True),
        ("http:", "https://anything.example.net/a.js", True),  # an insecure scheme allows its upgrade
        ("*.example.com", "https://apm.example.com/intake", True),
        ("*.example.com", "https://example.com/intake", False),
        ("apm.example.com", "https://APM.example.com/x", True),
        ("apm.example.com:8200", "https://apm.example.com:8200/x", True),
        ("apm.example.com:8200", "https://apm.example.com/x", False),
        ("apm.example.com:*", "https://apm.example.com:9/x", True),
        ("https://apm.example.com:443", "https://apm.example.com/x", True),
        ("apm.example.com/intake/", "https://apm.example.com/intake/v3/rum/events", True),
        ("apm.example.com/intake", "https://apm.example.com/intake/v3/rum/events", False),
        ("apm.example.com/in%74ake/", "https://apm.example.com/intake/v3", True),
        ("127.0.0.1:8200", "https://127.0.0.1:8200/x", True),
        ("127.0.0.1:8200", "http://127.0.0.1:8200/x", False),  # no scheme: the page's (https)
        ("http://127.0.0.1:8200", "http://127.0.0.1:8200/x", True),
        ("*", "http://[::1]:8200/x", True),
        ("*.example.com", "http://[::1]:8200/x", False),
    ],
)
def test_source_lists(source_list, url, allowed):
    origin = parse_url(PAGE, PAGE)
    assert url_allowed(source_list.split(), parse_url(url, PAGE), origin) is allowed


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://apm.example.com/intake", "https://apm.example.com"),
        ("https://apm.example.com:443/intake", "https://apm.example.com"),
        ("http://apm.example.com:8200/x", "http://apm.example.com:8200"),
        ("/intake", "https://shop.example.com"),
        ("http://[::1]:8200/x", "http:"),  # host-source cannot spell an IPv6 literal
        ("https://bücher.example/x", "https://xn--bcher-kva.example"),
    ],
)
def test_a_url_as_the_source_that_allows_it(url, source):
    assert parse_url(url, PAGE).source == source
