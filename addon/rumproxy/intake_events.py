"""Decode APM intake bodies and normalize their events to the v2 shape.

The RUM agent's v3 protocol abbreviates field names (see `compress.js` in
@elastic/apm-rum-core and APM Server's `rum_v3_mapping.go`); everything downstream
(the tree printer, the tests) only ever sees v2 field names.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

__all__ = ["IntakeError", "decode_body", "parse_ndjson", "EVENT_KINDS"]

EVENT_KINDS = ("transaction", "span", "error", "metricset")
_GZIP_MAGIC = b"\x1f\x8b"


class IntakeError(ValueError):
    """A body or line the intake cannot understand; the message goes back to the client."""


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    try:
        # Sniff the magic too: a beacon or a misconfigured client may drop the header.
        if encoding in ("gzip", "x-gzip") or body[:2] == _GZIP_MAGIC:
            return gzip.decompress(body)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                # Some clients send a raw deflate stream without the zlib wrapper.
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except (OSError, EOFError, zlib.error) as exc:
        raise IntakeError(f"cannot decode {encoding or 'gzip'} body: {exc}") from exc
    if encoding not in ("", "identity"):
        raise IntakeError(f"unsupported Content-Encoding: {content_encoding}")
    return body


def _pick(source: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    return {long: source[short] for short, long in mapping.items() if source.get(short) is not None}


def _v3_metadata(m: dict[str, Any]) -> dict[str, Any]:
    se = m.get("se") or {}
    service = _pick(se, {"n": "name", "ve": "version", "en": "environment"})
    if isinstance(se.get("a"), dict):
        service["agent"] = _pick(se["a"], {"n": "name", "ve": "version"})
    if isinstance(se.get("la"), dict):
        service["language"] = _pick(se["la"], {"n": "name", "ve": "version"})
    metadata: dict[str, Any] = {"service": service}
    if m.get("l"):
        metadata["labels"] = m["l"]
    return metadata


_V3_TRANSACTION = {
    "id": "id", "tid": "trace_id", "pid": "parent_id", "n": "name", "t": "type", "d": "duration",
    "s": "start", "sm": "sampled", "sr": "sample_rate", "o": "outcome",
}
_V3_SPAN = {
    "id": "id", "pid": "parent_id", "n": "name", "t": "type", "su": "subtype", "ac": "action",
    "s": "start", "d": "duration", "sy": "sync", "o": "outcome", "sr": "sample_rate",
}
_V3_ERROR = {"id": "id", "tid": "trace_id", "pid": "parent_id", "xid": "transaction_id", "cl": "culprit"}


def _v3_context(c: Any) -> dict[str, Any] | None:
    """The parts of a compressed context worth showing: page and HTTP request, not all of it."""
    if not isinstance(c, dict):
        return None
    context: dict[str, Any] = {}
    if isinstance(c.get("p"), dict):
        context["page"] = _pick(c["p"], {"url": "url", "rf": "referer"})
    if isinstance(c.get("h"), dict):
        context["http"] = _pick(c["h"], {"url": "url", "mt": "method", "sc": "status_code"})
    return context or None


def _with_context(event: dict[str, Any], c: Any) -> dict[str, Any]:
    context = _v3_context(c)
    if context:
        event["context"] = context
    return event


def _v3_metricset(me: dict[str, Any], transaction: dict[str, Any] | None = None) -> dict[str, Any]:
    samples = {}
    for short, long in (("ysc", "span.self_time.count"), ("yss", "span.self_time.sum.us")):
        if short in (me.get("sa") or {}):
            samples[long] = {"value": me["sa"][short].get("v")}
    metricset: dict[str, Any] = {"samples": samples or me.get("sa") or {}}
    if isinstance(me.get("y"), dict):
        metricset["span"] = _pick(me["y"], {"t": "type", "su": "subtype"})
    if me.get("g"):
        metricset["tags"] = me["g"]
    if transaction:
        metricset["transaction"] = {"name": transaction.get("name"), "type": transaction.get("type")}
    return metricset


def _v3_transaction(x: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    transaction = _with_context(_pick(x, _V3_TRANSACTION), x.get("c"))
    spans = [s for s in x.get("y") or [] if isinstance(s, dict)]
    transaction["span_count"] = {"started": len(spans)}
    events: list[tuple[str, dict[str, Any]]] = [("transaction", transaction)]
    for y in spans:
        span = _with_context(_pick(y, _V3_SPAN), y.get("c"))
        # v3 leaves out what it can infer: a span without `pid` is a child of its transaction.
        span.setdefault("parent_id", x.get("id"))
        span["transaction_id"] = x.get("id")
        span["trace_id"] = x.get("tid")
        events.append(("span", span))
    for me in x.get("me") or []:
        if isinstance(me, dict):
            events.append(("metricset", _v3_metricset(me, transaction)))
    return events


def _v3_error(e: dict[str, Any]) -> dict[str, Any]:
    error = _with_context(_pick(e, _V3_ERROR), e.get("c"))
    ex = e.get("ex") or {}
    if ex:
        error["exception"] = _pick(ex, {"mg": "message", "t": "type", "st": "stacktrace"})
    if isinstance(e.get("x"), dict):
        error["transaction"] = _pick(e["x"], {"t": "type", "sm": "sampled"})
    return error


def _service_name(metadata: dict[str, Any] | None) -> str | None:
    service = (metadata or {}).get("service") or {}
    name = service.get("name")
    return name if isinstance(name, str) else None


def parse_ndjson(text: str, endpoint: str, v3: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Records for every event in an intake body, plus one message per rejected line.

    A record is `{"kind", "event", "service", "endpoint", "trace_id"}`; `event` is in v2 shape.
    Like APM Server, the first line must be metadata; lines after a bad one are still read.
    """
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    metadata: dict[str, Any] | None = None
    metadata_key = "m" if v3 else "metadata"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            errors.append(f"line {number}: invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict) or len(obj) != 1 or not isinstance(next(iter(obj.values())), dict):
            errors.append(f"line {number}: expected one object keyed by the event type")
            continue
        (key, value), = obj.items()
        if key == metadata_key and metadata is None and not records and not errors:
            metadata = _v3_metadata(value) if v3 else value
            continue
        if metadata is None:
            errors.append(f"line {number}: the first line must be metadata")
            return records, errors
        if v3 and key == "x":
            events = _v3_transaction(value)
        elif v3 and key == "e":
            events = [("error", _v3_error(value))]
        elif v3 and key == "me":
            events = [("metricset", _v3_metricset(value))]
        elif not v3 and key in EVENT_KINDS:
            events = [(key, value)]
        else:
            errors.append(f"line {number}: unknown event type {key!r}")
            continue
        for kind, event in events:
            records.append(
                {
                    "kind": kind,
                    "event": event,
                    "service": _service_name(metadata),
                    "endpoint": endpoint,
                    "trace_id": event.get("trace_id"),
                }
            )
    return records, errors
