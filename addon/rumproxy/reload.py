"""Applying edits of the rules file while the proxy runs.

mitmproxy reloads `-s` scripts, not the files they read, so the addon watches its rules file
itself. Polling the file's stat is cheap and works on every file system and editor save style
(in-place writes and rename-over alike).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# As often as mitmproxy checks its own -s scripts: a wake-up of its event loop costs ~80,000 instructions.
POLL_SECONDS = 1.0


class RulesWatcher:
    def __init__(self, on_change: Callable[[Path], None], interval: float = POLL_SECONDS) -> None:
        self.on_change = on_change
        self.interval = interval
        self.path: Path | None = None
        self.stamp: tuple[int, int, int] | None = None
        self.task: asyncio.Task[None] | None = None

    def watch(self, path: Path) -> None:
        """Called after `path` was loaded: changes from now on are reported."""
        self.path = path
        self.stamp = _stamp(path)

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._poll())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.path is None:
                continue
            stamp = _stamp(self.path)
            if stamp is None or stamp == self.stamp:
                # A file that is briefly missing is being replaced by an editor: wait for it.
                continue
            self.stamp = stamp
            try:
                self.on_change(self.path)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad reload
                logger.exception(f"reloading {self.path} failed")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
