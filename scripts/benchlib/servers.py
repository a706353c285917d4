"""The processes of a bench run: nginx as the origin, nginx sub_filter as the reference proxy, and
mitmdump with or without the addon. Each listens on 127.0.0.1 only and runs in its own session;
stop() signals only that process group.

nginx's own configs are generated into the run's temporary directory (`daemon off`, no file
outside it is written). nginx-light has no brotli module, so the origin serves `br` from
pre-compressed files: a request that accepts br is rewritten to an internal location holding
brotli bytes under the same names, which adds `Content-Encoding: br`; gzip comes from
`gzip_static on` and `NAME.html.gz` files; anything else gets the plain file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_SCRIPT = REPO_ROOT / "addon" / "inject.py"
NGINX = "nginx"


class StartError(RuntimeError):
    pass


class Process:
    """A server whose output goes to a log file; started once `ready` appears in the log."""

    def __init__(self, argv: Sequence[str], log: Path, ready: re.Pattern[str], name: str) -> None:
        self.argv = list(argv)
        self.log = log
        self.ready = ready
        self.name = name
        self.popen: subprocess.Popen[bytes] | None = None
        self.match: re.Match[str] | None = None

    def start(self, timeout: float = 30.0) -> Process:
        return self.launch().wait_ready(timeout)

    def launch(self) -> Process:
        """Start the process without waiting for it (several can then start side by side)."""
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> Process:
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.popen.poll() is not None
            self.match = self.ready.search(self.log.read_text("utf-8", "replace"))
            if self.match and not exited:
                return self
            if exited:
                break
            time.sleep(0.05)
        tail = self.log.read_text("utf-8", "replace")[-2000:]
        self.stop()
        raise StartError(f"{self.name} did not start ({' '.join(self.argv)}):\n{tail}")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def terminate(self) -> None:
        """Ask the process group to exit (SIGTERM) without waiting; stop() reaps it."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def nginx_has_sub_filter() -> bool:
    result = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=False)
    return "http_sub_module" in result.stderr + result.stdout


_COMMON = """\
worker_processes 1;
{user}pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ text/html html; }}
    default_type application/octet-stream;
    charset utf-8;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
{server}
}}
"""

CHUNKED_PREFIX = "/chunked"  # the origin's location that sends its pages without a Content-Length

_ORIGIN = """\
    map $http_accept_encoding $accepts_br {{ "~(^|[,\\s])br([,;\\s]|$)" 1; default 0; }}
    server {{
        listen 127.0.0.1:{port};
        root {pages};
        gzip_vary on;
        location / {{
            if ($accepts_br) {{ rewrite ^(.*)$ /__br$1 last; }}
            gzip_static on;
        }}
        location /__br/ {{
            internal;
            alias {pages}/br/;
            add_header Content-Encoding br;
            add_header Vary Accept-Encoding;
        }}
        # The same files without a Content-Length, as dynamic apps answer: a sub_filter that never
        # matches makes nginx drop the length and send the bytes as they are, chunked.
        location {chunked}/ {{
            alias {pages}/;
            if ($accepts_br) {{ rewrite ^{chunked}(.*)$ /__chunked_br$1 last; }}
            gzip_static on;
            sub_filter '<!-- rumproxy bench: never in a page -->' '';
        }}
        location /__chunked_br/ {{
            internal;
            alias {pages}/br/;
            add_header Content-Encoding br;
            add_header Vary Accept-Encoding;
            sub_filter '<!-- rumproxy bench: never in a page -->' '';
        }}
    }}
"""

# nginx's sub_filter sees only uncompressed bodies: the upstream is asked for identity, and the
# answer is gzipped again (level 1, like the addon) for clients that accept gzip; br clients get
# identity (nginx-light has no brotli).
_REFERENCE = """\
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding "";
            sub_filter '</head>' '{snippet}</head>';
            sub_filter_once on;
            gzip on;
            gzip_comp_level 1;
            gzip_types text/html;
        }}
    }}
"""


def nginx(work: Path, server: str, name: str) -> Process:
    """An nginx serving `server` (one or more http-level blocks); config and logs under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(exist_ok=True)
    # As root, nginx's workers would run as "nobody", who cannot read a private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = work / "nginx.conf"
    config.write_text(_COMMON.format(user=user, work=work, server=server))
    ready = re.compile(r"(?s)\A")  # nginx logs nothing when it starts: the port is polled instead
    return Process([NGINX, "-p", str(work), "-e", str(work / "error.log"), "-c", str(config), "-g", "daemon off;"],
                   work / "stdout.log", ready, name)


def start_nginx(work: Path, make_server, name: str, attempts: int = 3) -> tuple[Process, int]:
    """Start nginx on a free port (picked, then bound by nginx: retried if someone took it)."""
    last = ""
    for _ in range(attempts):
        port = free_port()
        process = nginx(work, make_server(port), name)
        process.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.popen.poll() is None:
            if port_open(port):
                return process, port
            time.sleep(0.05)
        process.stop()
        last = (work / "error.log").read_text("utf-8", "replace")[-1000:] if (work / "error.log").exists() else ""
    raise StartError(f"{name}: nginx did not listen after {attempts} attempts:\n{last}")


def start_origin(work: Path, pages: Path) -> tuple[Process, int]:
    return start_nginx(work, lambda port: _ORIGIN.format(port=port, pages=pages, chunked=CHUNKED_PREFIX), "nginx-origin")


def start_reference(work: Path, origin_port: int, snippet: str) -> tuple[Process, int]:
    if "'" in snippet:
        raise ValueError("the sub_filter snippet is written in single quotes")
    return start_nginx(work, lambda port: _REFERENCE.format(port=port, origin=origin_port, snippet=snippet),
                       "nginx-sub_filter")


_LISTENING = re.compile(r"listening at [^\s]*:(?P<port>\d+)")


def mitmdump(work: Path, name: str, origin_port: int, args: Sequence[str], *, confdir: Path) -> Process:
    """mitmdump in reverse mode in front of the origin, on a port of its own choice (read from its log)."""
    executable = Path(sys.executable).parent / "mitmdump"
    argv = [
        str(executable), *args,
        "--mode", f"reverse:http://127.0.0.1:{origin_port}",
        "--listen-host", "127.0.0.1", "--listen-port", "0",
        "--set", f"confdir={confdir}",
        # No line per flow: writing the flow log would be a cost of its own, equal for all.
        "--set", "flow_detail=0",
    ]  # fmt: skip
    return Process(argv, work / f"mitmdump-{name}.log", _LISTENING, f"mitmdump ({name})")


def mitmdump_port(process: Process) -> int:
    assert process.match is not None
    return int(process.match["port"])


def write_rules(path: Path, agent: Path) -> Path:
    """The addon's rules for the bench: every page of the origin (127.0.0.1, any port)."""
    path.write_text(
        "version: 1\n"
        "rules:\n"
        "  - name: bench\n"
        "    hosts: [\"127.0.0.1\"]\n"
        "    agent:\n"
        f"      script: {agent}\n"
        "      config:\n"
        "        serviceName: bench\n"
        "        serverUrl: http://127.0.0.1:8200\n"
    )
    return path


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start or the last reset) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+: write 5 to clear_refs); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def children(pid: int) -> list[int]:
    """Direct children of a process (nginx's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes used so far (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total
