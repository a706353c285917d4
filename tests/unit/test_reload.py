"""The rules watcher: an edit of the rules file, or of a file it names, reloads the rules; a file
an editor is replacing is waited for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable
from pathlib import Path

from rumproxy.reload import RulesWatcher

INTERVAL = 0.01


def run_watcher(watcher: RulesWatcher, steps: list[Callable[[], None]]) -> None:
    """Run the watcher's polling while `steps` are taken one after another, a few polls apart."""

    async def main() -> None:
        watcher.start()
        try:
            for step in steps:
                await asyncio.sleep(INTERVAL * 5)
                step()
            await asyncio.sleep(INTERVAL * 5)
        finally:
            watcher.stop()

    # In a thread of its own: the browser tests' sync Playwright keeps a loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, main()).result()


def edit(path: Path, text: str) -> Callable[[], None]:
    def step() -> None:
        path.write_text(text)
        # Two writes within the file system's timestamp granularity differ by size at least.
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    return step


def watching(tmp_path: Path, *names: str) -> tuple[RulesWatcher, list[Path], list[Path]]:
    """A watcher of the rules file and the files `names` (each written), and the reloads it asks for."""
    files = [tmp_path / name for name in ("rules.yaml", *names)]
    for file in files:
        file.write_text("v1")
    reloads: list[Path] = []
    watcher = RulesWatcher(reloads.append, interval=INTERVAL)
    watcher.watch(files[0], files[1:])
    return watcher, reloads, files


def test_an_edit_of_a_file_the_rules_read_reloads_them(tmp_path: Path) -> None:
    watcher, reloads, (rules, template) = watching(tmp_path, "template.html")
    other = tmp_path / "other.js"
    other.write_text("v1")
    run_watcher(watcher, [edit(other, "not read by the rules"), edit(template, "v2")])
    assert reloads == [rules]


def test_a_file_being_replaced_is_waited_for(tmp_path: Path) -> None:
    watcher, reloads, (rules, template) = watching(tmp_path, "template.html")
    run_watcher(watcher, [template.unlink, lambda: None])
    assert reloads == []  # missing: maybe an editor's rename-over half done
    run_watcher(watcher, [edit(template, "v2")])
    assert reloads == [rules]


def test_an_edit_of_the_rules_applies_while_a_file_they_named_is_gone(tmp_path: Path) -> None:
    """The user removed the template file and the rules' reference to it: the reload must happen
    (it fails with a clear message if the rules still name the file)."""
    watcher, reloads, (rules, template) = watching(tmp_path, "template.html")
    run_watcher(watcher, [template.unlink, edit(rules, "v2, without the template")])
    assert reloads == [rules]


def test_a_reload_watches_the_files_the_new_rules_read(tmp_path: Path) -> None:
    rules, old, new = tmp_path / "rules.yaml", tmp_path / "old.html", tmp_path / "new.html"
    for file in (rules, old, new):
        file.write_text("v1")
    reloads: list[Path] = []

    def reload(path: Path) -> None:
        reloads.append(path)
        watcher.watch(path, [new])  # the edited rules name new.html instead

    watcher = RulesWatcher(reload, interval=INTERVAL)
    watcher.watch(rules, [old])
    run_watcher(watcher, [edit(rules, "v2, naming new.html"), edit(old, "v2"), edit(new, "v2")])
    assert reloads == [rules, rules]


def test_a_failing_reload_is_not_retried_until_the_next_edit(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("v1")
    calls: list[Path] = []

    def reload(path: Path) -> None:
        calls.append(path)
        raise RuntimeError("bad rules")

    watcher = RulesWatcher(reload, interval=INTERVAL)
    watcher.watch(rules)
    run_watcher(watcher, [edit(rules, "v2"), lambda: None, edit(rules, "v3")])
    assert calls == [rules, rules]
