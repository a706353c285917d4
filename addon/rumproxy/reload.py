"""Applying edits of the rules file, and of the files it names, while the proxy runs.

mitmproxy reloads `-s` scripts, not the files they read, so the addon watches its rules file
itself, and the local agent scripts and templates the rules read: an edit of any of them reloads
the rules. Polling the files' stat is cheap and works on every file system and editor save style
(in-place writes and rename-over alike).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# As often as mitmproxy checks its own -s scripts: a wake-up of its event loop costs ~80,000 instructions.
POLL_SECONDS = 1.0


class RulesWatcher:
    def __init__(self, on_change: Callable[[Path], None], interval: float = POLL_SECONDS) -> None:
        self.on_change = on_change
        self.interval = interval
        self.path: Path | None = None
        self.stamps: dict[Path, Stamp | None] = {}
        self.task: asyncio.Task[None] | None = None

    def watch(self, path: Path, read_files: Iterable[Path] = ()) -> None:
        """Called after `path` was loaded, with the other files that load read: changes of any of
        them from now on are reported as changes of `path`."""
        self.path = path
        # A file already watched keeps the stamp taken before the load that read it: an edit made
        # during that load is still an edit.
        files = (path, *sorted(set(read_files) - {path}))
        self.stamps = {file: self.stamps[file] if file in self.stamps else _stamp(file) for file in files}

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
            stamps = {file: _stamp(file) for file in self.stamps}
            if stamps == self.stamps or stamps[self.path] is None:
                continue
            if None in stamps.values() and stamps[self.path] == self.stamps[self.path]:
                # A file that is briefly missing is being replaced by an editor: wait for it (an
                # edit of the rules still applies, or says what is missing).
                continue
            self.stamps = stamps
            try:
                self.on_change(self.path)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad reload
                logger.exception(f"reloading {self.path} failed")


Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
