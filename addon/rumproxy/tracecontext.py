"""W3C Trace Context (Level 1 and 2): parse, create and mutate `traceparent` / `tracestate`.

Pure functions on strings; nothing here knows about mitmproxy, so the proxy, the tests and
the demo tooling share one implementation of the spec's edge cases.
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
from typing import NamedTuple

__all__ = [
    "TraceParent",
    "parse_traceparent",
    "new_traceparent",
    "new_ids",
    "format_traceparent",
    "decide_sampled",
    "parse_tracestate",
    "format_tracestate",
    "with_member",
    "elastic_member_value",
    "is_valid_key",
    "is_valid_value",
    "MAX_MEMBERS",
    "MAX_TRACESTATE_LENGTH",
]

FLAG_SAMPLED = 0x01
MAX_MEMBERS = 32
# The spec only obliges participants to propagate 512 characters; staying within it means
# nobody downstream has a reason to truncate what we send.
MAX_TRACESTATE_LENGTH = 512
# Members above this size are the first to go when truncating (spec, "tracestate limits").
LARGE_MEMBER_LENGTH = 128

_OWS = " \t"
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
_TRACEPARENT_00_LENGTH = 55
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

_KEY_CHARS = r"[a-z0-9_\-*/]"
_KEY_RE = re.compile(
    rf"[a-z]{_KEY_CHARS}{{0,255}}"
    rf"|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}}"
)
# Printable ASCII except "," and "=", at most 256 characters, not ending in a space.
_VALUE_RE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class TraceParent(NamedTuple):
    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & FLAG_SAMPLED)

    def header(self) -> str:
        return format_traceparent(self.trace_id, self.parent_id, self.flags)


def format_traceparent(trace_id: str, parent_id: str, flags: int) -> str:
    # Whatever version we parsed, we only know how to speak version 00 (spec: re-emit as 00).
    return f"00-{trace_id}-{parent_id}-{flags:02x}"


def parse_traceparent(values: list[str]) -> TraceParent | None:
    """The request's trace parent, or None when it is absent or invalid.

    `values` holds every `traceparent` header value of the request: the spec makes a
    duplicated header invalid rather than picking one.
    """
    if len(values) != 1:
        return None
    value = values[0].strip(_OWS)
    match = _TRACEPARENT_RE.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff":
        return None
    if version == "00":
        if len(value) != _TRACEPARENT_00_LENGTH:
            return None
    elif len(value) > _TRACEPARENT_00_LENGTH and value[_TRACEPARENT_00_LENGTH] != "-":
        # A future version may append fields, but only after another dash.
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def new_traceparent(sampled: bool) -> TraceParent:
    return TraceParent(*new_ids(), FLAG_SAMPLED if sampled else 0)


def new_ids() -> tuple[str, str]:
    """A new trace id and parent id, neither all zeros."""
    while True:
        # Both ids from one read of the OS's CSPRNG (what `secrets` reads): a read is a system call.
        ids = os.urandom(24).hex()
        trace_id, parent_id = ids[:32], ids[32:]
        if trace_id != _ZERO_TRACE_ID and parent_id != _ZERO_PARENT_ID:
            return trace_id, parent_id


def _check_rate(sample_rate: float) -> None:
    if math.isnan(sample_rate) or not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample rate must be between 0.0 and 1.0, got {sample_rate!r}")


def decide_sampled(sample_rate: float) -> bool:
    if sample_rate == 1.0:
        return True  # the rate of most rules: no check, no random number
    _check_rate(sample_rate)
    # Same expression as the Elastic agents: 1.0 always samples, 0.0 never does.
    return sample_rate == 1.0 or sample_rate > random.random()


def is_valid_key(key: str) -> bool:
    return _KEY_RE.fullmatch(key) is not None


def is_valid_value(value: str) -> bool:
    return _VALUE_RE.fullmatch(value) is not None


def _parse_member(text: str) -> tuple[str, str] | None:
    key, sep, value = text.partition("=")
    if not sep or not is_valid_key(key) or not is_valid_value(value):
        return None
    return key, value


def parse_tracestate(values: list[str]) -> list[tuple[str, str]]:
    """The list-members of all `tracestate` header values, leftmost first.

    Invalid members are dropped rather than discarding the whole header, so one broken
    vendor does not erase everybody else's state. A repeated key keeps its leftmost
    (most recently updated) member, and the list is cut to 32 members from the right.
    """
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for part in ",".join(values).split(","):
        part = part.strip(_OWS)
        if not part:
            continue
        member = _parse_member(part)
        if member is None or member[0] in seen:
            continue
        seen.add(member[0])
        members.append(member)
    return members[:MAX_MEMBERS]


def format_tracestate(members: list[tuple[str, str]]) -> str:
    if len(members) == 1:
        return "=".join(members[0])  # the proxy's own member alone: most page requests
    return ",".join(f"{key}={value}" for key, value in members)


def _member_length(member: tuple[str, str]) -> int:
    return len(member[0]) + 1 + len(member[1])


def _header_length(members: list[tuple[str, str]]) -> int:
    return sum(map(_member_length, members)) + max(len(members) - 1, 0)


def with_member(members: list[tuple[str, str]], key: str, value: str) -> list[tuple[str, str]]:
    """`members` with our own member updated and moved to the front, within the spec's limits.

    Other members are dropped whole: first the ones over 128 characters, then from the right,
    until the list holds 32 members and formats to at most 512 characters. Our own member is
    never dropped.
    """
    own = _checked_member(key, value)
    if not members:
        return [own]
    others = [member for member in members if member[0] != key][: MAX_MEMBERS - 1]

    def too_long() -> bool:
        return _header_length([own, *others]) > MAX_TRACESTATE_LENGTH

    for index in range(len(others) - 1, -1, -1):
        if not too_long():
            break
        if _member_length(others[index]) > LARGE_MEMBER_LENGTH:
            del others[index]
    while others and too_long():
        others.pop()
    return [own, *others]


@functools.lru_cache(maxsize=64)
def _checked_member(key: str, value: str) -> tuple[str, str]:
    # Cached: a proxy adds the same member of its own to every page request.
    if not is_valid_key(key):
        raise ValueError(f"invalid tracestate key: {key!r}")
    if not is_valid_value(value):
        raise ValueError(f"invalid tracestate value: {value!r}")
    return key, value


@functools.lru_cache(maxsize=64)
def elastic_member_value(sample_rate: float) -> str:
    """The value of Elastic's `es` member, formatted like the Elastic Python agent does.

    The agent rounds `transaction_sample_rate` half up to 4 decimals (a non-zero rate never
    rounds to 0) and prints it with `str(float)`, so 1.0 becomes "s:1.0"; a rate of 0 is
    written as "s:0". Pass 0.0 for an unsampled trace, as the agents record it that way.
    """
    _check_rate(sample_rate)
    rounded = math.floor(sample_rate * 10000 + 0.5) / 10000
    if rounded == 0.0:
        return "s:0" if sample_rate == 0.0 else "s:0.0001"
    return f"s:{rounded}"
