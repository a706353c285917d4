"""Render the events of one trace as an indented tree, and print traces once they go quiet.

The tree follows `parent_id` across services, so a backend transaction whose parent is the
browser's document span shows up under that span: the link the proxy exists to create.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO

__all__ = ["render_trace_tree", "TracePrinter"]

_INDENT = "  "
_TREE_KINDS = ("transaction", "span", "error")


def _duration(event: dict[str, Any]) -> str:
    value = event.get("duration")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "? ms"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def _type(event: dict[str, Any]) -> str:
    kind = str(event.get("type") or "?")
    subtype = event.get("subtype")
    if subtype and not kind.endswith(f".{subtype}") and "." not in kind:
        kind = f"{kind}.{subtype}"
    return kind


def _origin(record: dict[str, Any]) -> str:
    return f"[{record.get('endpoint') or '?'}: {record.get('service') or '?'}]"


def _line(record: dict[str, Any], parents: dict[str, dict[str, Any]]) -> str:
    event = record["event"]
    kind = record["kind"]
    name = event.get("name")
    if kind == "transaction":
        text = f'transaction "{name}" ({_type(event)}) {_duration(event)}  {_origin(record)}'
        if event.get("sampled") is False:
            text += "  (not sampled)"
    elif kind == "span":
        text = f'span "{name}" ({_type(event)}) {_duration(event)} id={event.get("id")}'
    else:
        exception = event.get("exception") or {}
        log = event.get("log") or {}
        message = exception.get("message") or log.get("message") or event.get("culprit")
        text = f'error "{message}" ({exception.get("type") or "error"})  {_origin(record)}'
    parent_id = event.get("parent_id")
    if parent_id:
        parent = parents.get(parent_id)
        if parent is None:
            text += f"  (parent {parent_id} not seen)"
        elif (parent["service"], parent["endpoint"]) != (record["service"], record["endpoint"]):
            text += f"  \u2190 parent {parent_id}"
    return text


def _sorted(siblings: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Siblings by start time when they share a clock, else in arrival order; errors last."""
    timed = [item for item in siblings if item[1]["kind"] != "error"]
    errors = [item for item in siblings if item[1]["kind"] == "error"]
    for field in ("start", "timestamp"):
        values = [record["event"].get(field) for _, record in timed]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            timed.sort(key=lambda item: (item[1]["event"][field], item[0]))
            break
    return timed + errors


def render_trace_tree(events: list[dict[str, Any]], trace_id: str, *, updated: bool = False) -> str:
    """The tree of `trace_id` from intake records (as `IntakeServer.events()` returns them)."""
    records = [
        (index, record)
        for index, record in enumerate(events)
        if record.get("trace_id") == trace_id and record.get("kind") in _TREE_KINDS
    ]
    parents: dict[str, dict[str, Any]] = {}
    for _, record in records:
        if record["kind"] != "error" and record["event"].get("id"):
            parents[record["event"]["id"]] = record
    children: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    top: list[tuple[int, dict[str, Any]]] = []
    for item in records:
        parent_id = item[1]["event"].get("parent_id")
        if parent_id and parent_id in parents and parents[parent_id] is not item[1]:
            children[parent_id].append(item)
        else:
            top.append(item)
    # True roots first, then orphans whose parent has not (yet) arrived.
    top.sort(key=lambda item: bool(item[1]["event"].get("parent_id")))

    lines = [f"trace {trace_id}" + (" (updated)" if updated else "")]
    seen: set[int] = set()

    def walk(start: list[tuple[int, dict[str, Any]]], depth: int) -> None:
        # An explicit stack: a hostile client could send a parent chain deep enough to hit
        # Python's recursion limit.
        stack = [(item, depth) for item in reversed(_sorted(start))]
        while stack:
            (index, record), level = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            lines.append(_INDENT * level + _line(record, parents))
            kids = children.get(record["event"].get("id"), []) if record["kind"] != "error" else []
            stack.extend((kid, level + 1) for kid in reversed(_sorted(kids)))

    walk(top, 1)
    # Whatever is left hangs in a parent cycle and has no way in from the top.
    left = [item for item in records if item[0] not in seen]
    while left:
        walk(left[:1], 1)
        left = [item for item in left if item[0] not in seen]
    return "\n".join(lines) + "\n"


class TracePrinter:
    """Prints each trace once no event for it has arrived for `quiet_seconds`."""

    def __init__(self, out: TextIO | None = None, quiet_seconds: float = 1.5) -> None:
        self._out = out
        self._quiet = quiet_seconds
        self._lock = threading.Lock()
        self._records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._last_seen: dict[str, float] = {}
        self._printed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake-trace-printer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, records: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        with self._lock:
            for record in records:
                trace_id = record.get("trace_id")
                if trace_id and record.get("kind") in _TREE_KINDS:
                    self._records[trace_id].append(record)
                    self._last_seen[trace_id] = now

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._last_seen.clear()
            self._printed.clear()

    def stop(self) -> None:
        """Stop the thread and print what is still pending, so a Ctrl-C loses nothing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._print_due(float("inf"))

    def _run(self) -> None:
        while not self._stop.wait(min(0.25, self._quiet / 2)):
            self._print_due(time.monotonic() - self._quiet)

    def _print_due(self, cutoff: float) -> None:
        with self._lock:
            due = [trace for trace, seen in self._last_seen.items() if seen <= cutoff]
            texts = []
            for trace_id in due:
                del self._last_seen[trace_id]
                texts.append(render_trace_tree(self._records[trace_id], trace_id,
                                               updated=trace_id in self._printed))
                self._printed.add(trace_id)
        if texts:
            out = self._out or sys.stdout
            out.write("".join(text + "\n" for text in texts))
            out.flush()
