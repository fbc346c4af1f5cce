"""Driving wrk: a Lua script per request shape, one run, and what its ``--latency`` report says.

The script builds the request once per thread (``wrk.format`` in ``init``) and counts, in
``request()``, how many requests each thread put on the wire; ``done()`` prints the total as
``BENCH-SENT n``. The count of sent requests bounds from above what a server may have seen (wrk
abandons the requests still in flight when its time is up), the ``N requests`` of the report bounds
it from below: that is how the audit check knows how many leaves to expect. No ``response()``
callback: it would make wrk hand every response to Lua and slow the client down.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([\d.]+)(us|ms|s|m|h)\s*$")


@dataclass(frozen=True)
class HttpRequest:
    """One request shape: what wrk sends again and again, and the probe sends once."""

    url: str  # scheme, host, port and path
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def base(self) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @property
    def path(self) -> str:
        rest = self.url.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


@dataclass
class WrkResult:
    requests: int = 0  # completed, as "N requests in Xs"
    seconds: float = 0.0
    rps: float = 0.0  # "Requests/sec"
    latency_ms: dict[str, float] = field(default_factory=dict)  # "50%", "75%", "90%", "99%"
    non_2xx: int = 0  # "Non-2xx or 3xx responses"
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    sent: int | None = None  # from the script's done(): requests put on the wire
    output: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def p50(self) -> float | None:
        return self.latency_ms.get("50%")

    @property
    def p99(self) -> float | None:
        return self.latency_ms.get("99%")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(errors=self.errors, p50_ms=self.p50, p99_ms=self.p99)
        data.pop("output")
        return data


def lua_string(data: bytes) -> str:
    """A Lua string literal holding exactly ``data`` (bytes outside printable ASCII as ``\\ddd``)."""
    out = ['"']
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def script(request: HttpRequest, think_ms: float = 0.0) -> str:
    """The script for ``request``; with ``think_ms`` each connection pauses a random time
    (exponential, that mean) after each answer, as independent callers do, instead of sending the
    next request at once."""
    headers = ", ".join(f"[{lua_string(k.encode())}] = {lua_string(v.encode('latin-1'))}"
                        for k, v in request.headers.items())
    pause = "" if not think_ms else f"""
function delay()
  return -math.log(1 - math.random()) * {think_ms}
end
"""
    seed = "\n  math.randomseed(os.time() + math.floor(os.clock() * 1e6))" if think_ms else ""
    return f"""-- written by bench/wrk.py
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args){seed}
  sent = 0
  req = wrk.format({lua_string(request.method.encode())}, {lua_string(request.path.encode())},
                   {{{headers}}}, {lua_string(request.body) if request.body else "nil"})
end

function request()
  sent = sent + 1
  return req
end
{pause}
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  io.write(string.format("BENCH-SENT %d\\n", total))
end
"""


def to_ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``1.23ms``, ``2.01s``, ``1.00m``) in milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_S[match[2]] * 1000


def parse(output: str) -> WrkResult:
    """The figures of a ``wrk --latency`` report; ValueError when the report is not there."""
    result = WrkResult(output=output)
    done = re.search(r"^\s*(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if done is None or rps is None:
        raise ValueError("wrk printed no summary:\n" + output[-2000:])
    result.requests = int(done[1])
    result.seconds = to_ms(done[2]) / 1000
    result.rps = float(rps[1])
    block = output.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value in re.findall(r"^\s+(\d+%)\s+([\d.]+(?:us|ms|s|m|h))\s*$", block[1], re.M):
            result.latency_ms[pct] = to_ms(value)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result.non_2xx = int(non_2xx[1]) if non_2xx else 0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets:
        result.socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, sockets.groups()), strict=True))
    sent = re.search(r"^BENCH-SENT (\d+)$", output, re.M)
    result.sent = int(sent[1]) if sent else None
    return result


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return path


def version() -> str:
    run = subprocess.run([find_wrk(), "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (run.stdout or run.stderr).splitlines()[0].strip() if (run.stdout or run.stderr) else "wrk"


def run(request: HttpRequest, script_path: Path, *, duration: float, connections: int, threads: int,
        timeout: str = "5s", think_ms: float = 0.0) -> WrkResult:
    """One wrk run against ``request.url``, its script written to ``script_path`` (see ``script``
    for ``think_ms``)."""
    script_path.write_text(script(request, think_ms), encoding="utf-8")
    argv = [find_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={timeout}", "--latency", "-s", str(script_path), request.url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    return parse(done.stdout)
