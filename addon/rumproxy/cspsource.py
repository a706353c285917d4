"""Does a URL match a Content-Security-Policy source list (CSP3 §6.7.2), and how a policy spells
a URL's origin as a source."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

_SCHEME_SOURCE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_SOURCE = re.compile(
    r"(?:([A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(\*|(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"(?::([0-9]+|\*))?"
    r"(/[^;,]*)?"
)
_IPV4 = re.compile(r"[0-9.]+")
_HOST_CHARS = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
# An insecure scheme in a policy also allows its secure counterpart (CSP3 §6.7.2.9).
_UPGRADES = {("http", "https"), ("ws", "wss"), ("ws", "http"), ("ws", "https"), ("wss", "https")}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


@dataclass(frozen=True)
class Url:
    scheme: str
    host: str
    port: int | None  # None for the scheme's default, as the URL standard stores it
    path: str

    @property
    def source(self) -> str:
        if not _HOST_CHARS.fullmatch(self.host):
            # host-source cannot spell an IPv6 literal; the scheme is the best CSP can say.
            return f"{self.scheme}:"
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}"


def parse_url(url: str, base: str) -> Url:
    parts = urlsplit(urljoin(base + "/", url))
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        # Browsers compare the punycode form, which is also the only one a policy can spell.
        host = host.encode("idna").decode("ascii")
    port = parts.port
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return Url(scheme, host, port, parts.path or "/")


def url_allowed(tokens: Sequence[str], url: Url, origin: Url) -> bool:
    """CSP3 §6.7.2.7: does ``url`` match the source list, 'self' meaning ``origin``."""
    if not tokens or (len(tokens) == 1 and tokens[0].lower() == "'none'"):
        return False
    return any(_source_matches(t, url, origin) for t in tokens)


def _source_matches(source: str, url: Url, origin: Url) -> bool:
    if source == "*" and (url.scheme in ("http", "https") or url.scheme == origin.scheme):
        return True
    if m := _SCHEME_SOURCE.fullmatch(source):
        return _scheme_matches(m.group(1), url.scheme)
    if m := _HOST_SOURCE.fullmatch(source):
        scheme, host, port, path = m.groups()
        return (
            _scheme_matches(scheme or origin.scheme, url.scheme) and _host_matches(host.lower(), url.host)
            and _port_matches(port, url) and (not path or _path_matches(path, url.path))
        )
    if source.lower() == "'self'":
        if (origin.scheme, origin.host, origin.port) == (url.scheme, url.host, url.port):
            return True
        # The spec lets 'self' follow a secure upgrade on the default ports.
        return (origin.host, origin.port) == (url.host, url.port) and (
            url.scheme in ("https", "wss") or (origin.scheme == "http" and url.scheme in ("http", "ws"))
        )
    return False


def _scheme_matches(expression: str, scheme: str) -> bool:
    return expression.lower() == scheme or (expression.lower(), scheme) in _UPGRADES


def _host_matches(pattern: str, host: str) -> bool:
    if host.startswith("["):
        return False
    if _IPV4.fullmatch(host) or not pattern.startswith("*"):
        # The spec matches domains only, but browsers honour an exact IPv4 literal, and an
        # APM server on a bare address would otherwise need a whole scheme allowed.
        return pattern == host
    return host.endswith(pattern[1:])  # "*" or "*.example.com"


def _port_matches(port: str | None, url: Url) -> bool:
    if port == "*":
        return True
    wanted = None if port is None else int(port)
    return wanted == url.port or (url.port is None and wanted == _DEFAULT_PORTS.get(url.scheme))


def _path_matches(pattern: str, path: str) -> bool:
    exact = not pattern.endswith("/")
    wanted, actual = pattern.split("/"), path.split("/")
    if len(wanted) > len(actual) or (exact and len(wanted) != len(actual)):
        return False
    if not exact:
        wanted.pop()
    return all(unquote(a) == unquote(b) for a, b in zip(wanted, actual))
