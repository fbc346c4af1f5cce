"""The exchanges this process is answering for callers outside it, counted so that its background
work can give way to them.

A one-stop system filing a dossier waits for its answer; the flow engine advancing flows filed
earlier has days. Both share this process's event loop and the one SQLite write lock, so when the
engine takes large rounds (docs/benchmarks.md, "Joint procedures") the callers at the door wait for
it: the engine reads ``busy`` before each round and takes a smaller one while any of them is in.

Counted by the ASGI application (gateway/app.py) around the exchange entry points only (REST,
SOAP, X-Road's ``listClients``): a console page or a stream of the audit log is not a caller
waiting for an exchange's answer.
"""

from __future__ import annotations

__all__ = ["FrontDoor"]


class FrontDoor:
    """How many exchanges from outside are in flight in this process (one event loop: no lock)."""

    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0

    def busy(self) -> bool:
        return self.in_flight > 0
