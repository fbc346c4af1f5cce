"""Sampling one gateway worker with py-spy while wrk drives it, and summing up where the time went.

py-spy writes collapsed stacks (``--format raw``: ``frame;frame;frame count`` per line, root first,
with ``--threads`` the thread as the root). The summary counts, per function, the samples where it
was running (self) and those where it was anywhere on the stack (inclusive), and groups self time by
the package the function lives in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Where a sample's time goes: the first rule matching a frame, walking from the running function up
# the stack, so that a stdlib helper (dataclasses.replace, ipaddress) counts for whoever called it.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (structlog)", ("structlog/", "gateway/logs.py")),
    ("audit: canonical JSON (rfc8785)", ("rfc8785/",)),
    ("audit: SQLAlchemy + SQLite", ("sqlalchemy/", "sqlite3/")),
    ("audit: gateway code", ("gateway/audit/",)),
    ("upstream client: httpx layer", ("httpx/", "httpx_aiohttp/")),
    ("upstream client: aiohttp", ("aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/")),
    ("ASGI server (uvicorn, httptools)", ("uvicorn/", "httptools/")),
    ("token check", ("gateway/oauth/", "joserfc/")),
    ("policy", ("gateway/policy.py",)),
    ("connectors", ("connectors/", "zeep/", "lxml/", "xmlschema/")),
    ("gateway pipeline (rest, exchange)", ("gateway/",)),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def find_py_spy() -> str | None:
    import sys

    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float, rate: int = 200) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` for ``seconds`` into ``out``; None when py-spy is not installed."""
    py_spy = find_py_spy()
    if py_spy is None:
        return None
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
            "--rate", str(rate), "--format", "raw", "--threads", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Summary:
    samples: int = 0
    by_thread: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)
    components: dict[str, Counter[str]] = field(default_factory=dict)  # thread name -> component

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, int, float]]:
        total = self.samples or 1
        return [(name, count, 100 * count / total) for name, count in counter.most_common(n)]


def package(path: str) -> str:
    """Where a frame's file lives: the site-packages distribution, the project module, or stdlib."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for root in ("gateway/", "connectors/"):
        if root in path:
            tail = path.rsplit(root, 1)[1]
            return root + tail.removesuffix(".py")
    match = re.search(r"python3\.\d+/(?:lib-dynload/)?([^/]+)", path)
    if match:
        return "stdlib:" + match[1].removesuffix(".py")
    return path or "?"


def _name(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    file = match["file"]
    short = file.rsplit("site-packages/", 1)[-1]
    for root in ("/gateway/", "/connectors/"):
        if root in short:
            short = root.lstrip("/") + short.rsplit(root, 1)[1]
    return f"{match['func']} ({short})", file


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        path = match["file"] if match else frame
        for name, needles in COMPONENTS:
            if any(n in path for n in needles):
                return name
    return "event loop, stdlib, other"


def summarise(raw: Path) -> Summary:
    summary = Summary()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        body = [f for f in frames if not f.startswith(("thread ", "process "))]
        summary.samples += count
        summary.by_thread[thread] += count
        thread_name = thread.split(": ", 1)[-1]
        summary.components.setdefault(thread_name, Counter())[component(body)] += count
        if not body:
            continue
        leaf, leaf_file = _name(body[-1])
        summary.self_time[leaf] += count
        summary.packages[package(leaf_file)] += count
        for name in {_name(f)[0] for f in body}:
            summary.inclusive[name] += count
    return summary
