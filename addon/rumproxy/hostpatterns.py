"""The host globs of the rules (`hosts:`) and how a site's host matches them; origins the rules
name, as a browser writes them.

Browsers write an internationalized host name in its ASCII form (`xn--bcher-kva.example` for
`bücher.example`), in the Host header, a CONNECT and an origin alike; a rule may name it either way.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import re
import unicodedata

_GLOB_CHARACTERS = frozenset("*?[]")


@dataclasses.dataclass(frozen=True)
class HostPattern:
    host: re.Pattern[str]
    port: int | None
    text: str

    def matches(self, host: str, port: int | None) -> bool:
        return (self.port is None or self.port == port) and self.host.fullmatch(host) is not None


def parse(value: str) -> HostPattern:
    """A glob like 'shop.example.com', '*.example.com', '127.0.0.1:8000' or '[::1]:*'; ValueError
    with what is wrong."""
    text = value.strip().lower()
    if not text or any(c.isspace() for c in text) or "/" in text or "@" in text:
        raise ValueError(f"a host glob like 'shop.example.com', '*.example.com' or '127.0.0.1:8000', got {value!r}")
    host, port = text, None
    match = re.fullmatch(r"(.*[^:]):(\d+|\*)", text) if not text.startswith("[") else re.fullmatch(r"(\[.*\]):(\d+|\*)", text)
    if match:
        host = match.group(1)
        port = None if match.group(2) == "*" else int(match.group(2))
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range in {value!r}")
    globs = spellings(host.strip("[]"), value)
    try:
        compiled = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs), re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"bad glob {value!r}: {e}") from None
    return HostPattern(host=compiled, port=port, text=text)


def spellings(host: str, value: str) -> list[str]:
    """`host` as it is and, for a name with non-ASCII labels, as requests write it: each such label
    in the ASCII form of IDNA 2008 (browsers) and of IDNA 2003 (Python, older clients), which
    differ for a few letters (ß: 'xn--zca' against 'ss')."""
    if host.isascii():
        return [host]
    choices = []
    for label in host.split("."):
        if label.isascii():
            choices.append([label])
            continue
        if not _GLOB_CHARACTERS.isdisjoint(label):
            raise ValueError(f"a glob inside a non-ASCII label of {value!r}: write whole labels, like '*.bücher.example'")
        try:
            idna2003 = label.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise ValueError(f"not an internationalized host name {value!r}: {e}") from None
        choices.append(list(dict.fromkeys((label, _idna2008(label), idna2003))))
    return list(dict.fromkeys(".".join(labels) for labels in itertools.product(*choices)))


_ORIGIN = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[^/\s:\[\]@?#]+)(?::(\d{1,5}))?", re.IGNORECASE)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def origin_spellings(value: str) -> list[str]:
    """An origin ('https://api.example.com', no path) as the Elastic agent compares a request's
    origin with it: lower case, without a default port; with an internationalized host both as
    written and in its ASCII form, since the agent reads a request's origin from its URL as the
    page's code wrote it. ValueError if `value` is no origin."""
    match = _ORIGIN.fullmatch(value.strip())
    if match is None:
        raise ValueError(value)
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if port is not None and (not 0 < int(port) < 65536):
        raise ValueError(value)
    suffix = "" if port is None or port.lstrip("0") == _DEFAULT_PORTS[scheme] else f":{int(port)}"
    hosts = [host]
    if not host.isascii():
        try:
            hosts.append(".".join(label if label.isascii() else _idna2008(label) for label in host.split(".")))
        except UnicodeError:
            raise ValueError(value) from None
    return [f"{scheme}://{name}{suffix}" for name in hosts]


def _idna2008(label: str) -> str:
    return "xn--" + unicodedata.normalize("NFC", label).encode("punycode").decode("ascii")
